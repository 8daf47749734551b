//#include common
//#include step

// Compression of a layer's parameters to its kept units, and the way back for
// the bias gradient. Forward and backward side by side:
// gather_weights:    Wc[j, q] = W[rows[j], cols[q]]  (j < kept rows, q < kept cols);
//                    with col_blocks > 1, W is [rows, blocks × cols_full] (a
//                    convolution's kernel positions × input channels) and each
//                    block of Wc keeps the kept columns of that block
//                    and, with `bias`, in the same launch
//                    bc[j]    = b[rows[j]]  (one launch per layer, not two);
//                    a pair's two mask samples in one launch (the grid's z)
// scatter_bias_grad: db[rows[j]] += Σ_r dy[r, j]      (dy compacted, [batch, ·])
// column_partials:   P[c, j] = Σ_{r in chunk c} dy[r, j], chunks of `chunk`
//                    rows, `chunks` of them (zero past the batch): the first
//                    level of a column sum over many rows (a convolution's
//                    pixels, a large batch), so that no thread loops over
//                    them all; bias_grad / scatter_bias_grad sum P's rows.
// Compacted operands are zero-padded to multiples of 4 (see matmul.wgsl):
// padding slots are written as 0, so later products ignore them. Kept counts
// come from `dims` on the device; a map index NONE is the identity (the input
// layer's columns, the classifier's rows), with the static size as count.
// Every kernel loops with a stride of the launched threads: the grid is sized
// on the host, the work on the device (see `Gpu::grid_cap`).

// Keep in sync with `GatherParams` in src/ops/gather.rs.
struct GatherParams {
    // Full-size W is [rows_full, cols_full].
    rows_full: u32,
    cols_full: u32,
    // Index into `dims` of the kept row / column count, or NONE.
    dyn_rows: u32,
    dyn_cols: u32,
    // Offset of the row / column map in `maps`, or NONE.
    rows_map: u32,
    cols_map: u32,
    // scatter_bias_grad: rows of dy (the batch, or its capacity when
    // batch_code is BATCH).
    batch: u32,
    batch_code: u32,
    // gather_weights: column blocks of W (1 for a linear layer).
    col_blocks: u32,
    // column_partials: rows per chunk, and chunks written.
    chunk: u32,
    chunks: u32,
    // gather_weights: 1 also gathers the bias (bias_src into bias_dst).
    bias: u32,
    // gather_weights of a pair (the grid's z: both mask samples of a sparse
    // step): where sample 1's Wc and bc start after sample 0's (floats),
    // and its kept counts and lists after sample 0's (entries); 0 for one.
    stride_dst: u32,
    stride_bias: u32,
    stride_dims: u32,
    stride_maps: u32,
}


override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> dims: array<u32>;
@group(0) @binding(2) var<storage, read> maps: array<u32>;
@group(0) @binding(3) var<storage, read> src: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
// gather_weights with `bias`: b [rows_full] and bc [padded kept rows]
// (bound to one-element dummies otherwise).
@group(0) @binding(5) var<storage, read> bias_src: array<f32>;
@group(0) @binding(6) var<storage, read_write> bias_dst: array<f32>;

fn real_count(fixed: u32, idx: u32) -> u32 {
    if idx == NONE {
        return fixed;
    }
    return dims[idx];
}

fn map(off: u32, j: u32) -> u32 {
    if off == NONE {
        return j;
    }
    return maps[off + j];
}

// Index i (NONE: none) of sample z of a pair, `by` apart per sample.
fn of_sample(i: u32, z: u32, by: u32) -> u32 {
    if i == NONE {
        return NONE;
    }
    return i + z * by;
}

fn stride(nwg: vec3<u32>) -> u32 {
    return nwg.x * nwg.y * WG;
}

@compute @workgroup_size(WG)
fn gather_weights(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    // A pair's sample z reads its own kept sets and writes its own Wc, bc.
    let z = wid.z;
    let dyn_rows = of_sample(p.dyn_rows, z, p.stride_dims);
    let dyn_cols = of_sample(p.dyn_cols, z, p.stride_dims);
    let rows_map = of_sample(p.rows_map, z, p.stride_maps);
    let cols_map = of_sample(p.cols_map, z, p.stride_maps);
    let kr = real_count(p.rows_full, dyn_rows);
    let kc = real_count(p.cols_full, dyn_cols);
    // The static side keeps its own size (padding it would misalign the
    // classifier's 10 outputs); compacted sides are padded to 4.
    let pr = side_len(kr, dyn_rows);
    let pc = side_len(kc, dyn_cols);
    let blocks = max(p.col_blocks, 1u);
    let row_len = pc * blocks;
    for (var t = flat_id(wid, nwg, lidx, WG); t < pr * row_len; t += stride(nwg)) {
        let j = t / row_len;
        let b = (t % row_len) / pc;
        let q = t % pc;
        var v = 0.0;
        if j < kr && q < kc {
            v = src[(map(rows_map, j) * blocks + b) * p.cols_full + map(cols_map, q)];
        }
        dst[z * p.stride_dst + t] = v;
    }
    if p.bias == 0u {
        return;
    }
    for (var j = flat_id(wid, nwg, lidx, WG); j < pr; j += stride(nwg)) {
        var v = 0.0;
        if j < kr {
            v = bias_src[map(rows_map, j)];
        }
        bias_dst[z * p.stride_bias + j] = v;
    }
}

// One thread per kept unit; neighbouring threads read neighbouring columns.
@compute @workgroup_size(WG)
fn scatter_bias_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let kr = real_count(p.rows_full, p.dyn_rows);
    let row_len = side_len(kr, p.dyn_rows);
    for (var j = flat_id(wid, nwg, lidx, WG); j < kr; j += stride(nwg)) {
        var sum = 0.0;
        let rows = rows_of(p.batch, p.batch_code);
        for (var r = 0u; r < rows; r++) {
            sum += src[r * row_len + j];
        }
        let at = map(p.rows_map, j);
        dst[at] += sum;
    }
}

// Neighbouring threads read neighbouring columns of a row.
@compute @workgroup_size(WG)
fn column_partials(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let kr = real_count(p.rows_full, p.dyn_rows);
    let row_len = side_len(kr, p.dyn_rows);
    let rows = rows_of(p.batch, p.batch_code);
    for (var t = flat_id(wid, nwg, lidx, WG); t < p.chunks * row_len; t += stride(nwg)) {
        let c = t / row_len;
        let j = t % row_len;
        let end = min(rows, (c + 1u) * p.chunk);
        var sum = 0.0;
        for (var r = c * p.chunk; r < end; r++) {
            sum += src[r * row_len + j];
        }
        dst[t] = sum;
    }
}
