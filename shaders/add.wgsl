//#include common
//#include step

// The residual sum of two NHWC activations whose stored channels may be
// different sets (each input keeps its own layer's channels; the sum keeps
// their union), forward and backward side by side. A side is either all
// channels (map NONE: channel c at column c) or a kept set: its count at
// dims[count], its channel list at maps[map..] and each channel's column,
// or NONE, at ranks[map + c] (compact.wgsl). A kept side stores its count
// padded to 4 columns, or (EXACT: the fixed sets of a compacted network's
// sums) exactly its count.
// add_forward:  out[r, j] = A[r, col_A(c)] + B[r, col_B(c)] [ReLU], c the
//               j-th channel of the sum; a channel an input lacks counts 0;
//               padding columns (past the sum's count) are 0.
// add_backward: dX[r, i] (+)= dOut[r, col_out(c)], c the i-th channel of
//               input X (every channel of an input is in the sum), zero
//               where X is a ReLU's output and not positive (GATE).

// Keep in sync with `AddParams` in src/ops/add.rs.
struct AddParams {
    rows: u32,
    rows_code: u32,
    // Channels when all are stored.
    c_full: u32,
    relu: u32,
    // The sides: output (or the gradient's input, backward), A, B.
    out_count: u32,
    out_map: u32,
    a_count: u32,
    a_map: u32,
    b_count: u32,
    b_map: u32,
    accumulate: u32,
    gate: u32,
    exact: u32,
    // A pair (the grid's z: both mask samples of a sparse step, see
    // `sample`): where sample 1's a, b and out start after sample 0's
    // (floats), and its kept counts, lists and ranks (entries).
    stride_a: u32,
    stride_b: u32,
    stride_out: u32,
    stride_dims: u32,
    stride_map: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: AddParams;
@group(0) @binding(1) var<storage, read> dims: array<u32>;
@group(0) @binding(2) var<storage, read> maps: array<u32>;
@group(0) @binding(3) var<storage, read> ranks: array<u32>;
@group(0) @binding(4) var<storage, read> a: array<f32>;
@group(0) @binding(5) var<storage, read> b: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// Pairs: one launch over both mask samples of a sparse step, the grid's z
// the sample (strides zero and z = 0 for one). Each kernel calls
// `sample(wid.z)` first; a, b, out and the kept sets are read at these
// offsets. Every write is to the sample's own out.
var<private> OA: u32;
var<private> OB: u32;
var<private> OOUT: u32;
var<private> ODIMS: u32;
var<private> OMAP: u32;

fn sample(s: u32) {
    OA = s * p.stride_a;
    OB = s * p.stride_b;
    OOUT = s * p.stride_out;
    ODIMS = s * p.stride_dims;
    OMAP = s * p.stride_map;
}

// (stored columns, kept channels) of a side.
fn side(count: u32) -> vec2<u32> {
    if count == NONE {
        return vec2(p.c_full, p.c_full);
    }
    let k = dims[count + ODIMS];
    if p.exact != 0u {
        return vec2(k, k);
    }
    return vec2((k + 3u) & ~3u, k);
}

// The channel at column j of a side (j below its kept count).
fn channel(map: u32, j: u32) -> u32 {
    if map == NONE {
        return j;
    }
    return maps[map + OMAP + j];
}

// The column of channel c in a side, or NONE where it lacks c.
fn column(map: u32, c: u32) -> u32 {
    if map == NONE {
        return c;
    }
    return ranks[map + OMAP + c];
}

// Where output column j of the sum reads A and B (NONE: that input lacks
// its channel; both NONE past the sum's count).
fn sources(j: u32, so: vec2<u32>) -> vec2<u32> {
    if j >= so.y {
        return vec2(NONE, NONE);
    }
    let c = channel(p.out_map, j);
    return vec2(column(p.a_map, c), column(p.b_map, c));
}

fn forward_one(src: vec2<u32>, r: u32, t: u32, sa: u32, sb: u32) {
    var v = 0.0;
    if src.x != NONE {
        v += a[OA + r * sa + src.x];
    }
    if src.y != NONE {
        v += b[OB + r * sb + src.y];
    }
    if p.relu != 0u {
        v = max(v, 0.0);
    }
    out[OOUT + t] = v;
}

// A thread stays on one column where the threads cover the columns
// (`col_walk`), so its sources are found once.
@compute @workgroup_size(WG)
fn add_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    sample(wid.z);
    let so = side(p.out_count);
    let sa = side(p.a_count).x;
    let sb = side(p.b_count).x;
    let rows = rows_of(p.rows, p.rows_code);
    let id = flat_id(wid, nwg, lidx, WG);
    let threads = nwg.x * nwg.y * WG;
    if so.x <= threads {
        let w = col_walk(id, threads, so.x);
        if w.busy {
            let src = sources(w.c, so);
            for (var r = w.r; r < rows; r += w.per) {
                forward_one(src, r, r * so.x + w.c, sa, sb);
            }
        }
        return;
    }
    for (var w = row_walk(id, threads, so.x); w.t < rows * so.x; row_walk_next(&w, so.x)) {
        forward_one(sources(w.c, so), w.r, w.t, sa, sb);
    }
}

fn backward_one(jo: u32, r: u32, t: u32, so: u32) {
    var g = 0.0;
    if jo != NONE {
        g = a[OA + r * so + jo];
    }
    if p.gate != 0u && b[OB + t] <= 0.0 {
        g = 0.0;
    }
    if p.accumulate != 0u {
        g += out[OOUT + t];
    }
    out[OOUT + t] = g;
}

// Where column i of the input reads dOut (NONE past the input's count).
fn grad_source(i: u32, sx: vec2<u32>) -> u32 {
    if i >= sx.y {
        return NONE;
    }
    return column(p.out_map, channel(p.a_map, i));
}

// The input side is (a_count, a_map), the sum's (out_count, out_map); `a`
// holds dOut, `b` the input's activation (for the gate), `out` dX.
@compute @workgroup_size(WG)
fn add_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    sample(wid.z);
    let so = side(p.out_count).x;
    let sx = side(p.a_count);
    let rows = rows_of(p.rows, p.rows_code);
    let id = flat_id(wid, nwg, lidx, WG);
    let threads = nwg.x * nwg.y * WG;
    if sx.x <= threads {
        let w = col_walk(id, threads, sx.x);
        if w.busy {
            let jo = grad_source(w.c, sx);
            for (var r = w.r; r < rows; r += w.per) {
                backward_one(jo, r, r * sx.x + w.c, so);
            }
        }
        return;
    }
    for (var w = row_walk(id, threads, sx.x); w.t < rows * sx.x; row_walk_next(&w, sx.x)) {
        backward_one(grad_source(w.c, sx), w.r, w.t, so);
    }
}
