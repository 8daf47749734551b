// The matmul family's shared core (included by matmul.wgsl and
// matmul_coop.wgsl): parameters, bindings, override constants, effective
// sizes, bounds-checked operand loaders and the store epilogues. The header
// of matmul.wgsl describes the features.

// Keep in sync with `MatmulParams` in src/ops/matmul.rs.
struct MatmulParams {
    // Static sizes; each is replaced per its code dyn_*: NONE keeps it; a
    // batch code (step.wgsl) gives the step's rows; else ceil4(dims[code &
    // 0xffff]) × max(code >> 16, 1) (kept count, padded, times blocks).
    m: u32,
    n: u32,
    k: u32,
    // Zero means C is overwritten and never read (it may hold garbage).
    beta: f32,
    alpha: f32,
    dyn_m: u32,
    dyn_n: u32,
    dyn_k: u32,
    // SCATTER: row length of the full-size C, and where the row / column
    // maps start in `maps` (NONE: the identity).
    ldc: u32,
    rows_map: u32,
    cols_map: u32,
    // SCATTER: the columns are col_blocks blocks of kept channels, each of
    // col_block_full channels in the full-size C.
    col_blocks: u32,
    col_block_full: u32,
    // IMPLICIT: the convolution whose im2col columns the implicit operand
    // is: NHWC X of im_h × im_w pixels, output im_oh × im_ow, kernel
    // im_kh × im_kw, stride and padding. Its stored channels are the
    // operand's column count / (im_kh · im_kw).
    im_h: u32,
    im_w: u32,
    im_oh: u32,
    im_ow: u32,
    im_kh: u32,
    im_kw: u32,
    im_stride: u32,
    im_pad: u32,
    // matmul_split_reduce: the partial products to add (split-K).
    splits: u32,
    // 0: K splits as the grid says (matmul_split_reduce: `splits`). Else the
    // device decides: as many splits as this many floats of partial
    // products hold for the M × N it reads (`split_count`).
    split_room: u32,
    // Products in this launch: 1, or 2 (a pair: the two mask samples' same
    // product, see `load_sample`). Sample s's operands start s·stride_*
    // floats into their bindings (multiples of 4), its kept counts
    // s·stride_dims into `dims`.
    samples: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    stride_bias: u32,
    stride_gate: u32,
    stride_dims: u32,
    // A pair on f16 packs (`matmul_pack`, `matmul_coop_direct`): halves
    // between the two samples' packs of A and of B (multiples of 4).
    stride_pack_a: u32,
    stride_pack_b: u32,
}


// A is stored [K, M] instead of [M, K].
override TRANS_A: bool = false;
// B is stored [N, K] instead of [K, N].
override TRANS_B: bool = false;
// The contiguous dimension of A (M if TRANS_A, else K) is a multiple of 4.
override VEC4_A: bool = false;
// The contiguous dimension of B (K if TRANS_B, else N) is a multiple of 4.
override VEC4_B: bool = false;
// N is a multiple of 4: rows of C can be written as vec4.
override VEC4_C: bool = false;
// Workgroup shape; each thread of `regtile` and `shared` covers 4×4 outputs
// (a workgroup (4·WG_Y) × (4·WG_X) of C), of `wide` 8×8.
override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
// Depth of the K slice staged in workgroup memory by `matmul_shared`.
override BK: u32 = 16u;
// Implicit convolution (see the header): 1 when A [M, K] is im2col(X), 2
// when B [K, N] is (neither transposed); X is bound in that operand's place
// and its stored channels are a multiple of 4. 3 for the input gradient
// dX = col2im(dY·W) as one product: A [M, K] gathers dY (rows: X's pixels,
// columns: kernel positions × output channels), B [K, N] is W [out,
// positions, N] read by (position, output channel) rows; both channel
// counts in fours.
override IMPLICIT: u32 = 0u;
// Whether an implicit convolution's stride is a power of two (shifts, not
// divisions, in the input gradient's lookup).
override IM_POW2: bool = true;
// The implicit operands' values four at a time (`a_quad_k`, `b_quad_n`).
override IM_QUADS_A: bool = false;
override IM_QUADS_B: bool = false;
// Epilogues (see the header).
override BIAS: bool = false;
override RELU: bool = false;
override GATE: bool = false;
override SCATTER: bool = false;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;
// Bound to a one-element dummy when the feature is off.
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// As vec4, so that the aligned store (`store_tile`) reads four gates at once.
@group(0) @binding(5) var<storage, read> gate: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> dims: array<u32>;
@group(0) @binding(7) var<storage, read> maps: array<u32>;

// The effective sizes of this dispatch (of the current sample of a pair),
// set by `load_dims` at entry (`load_sample` for each sample of a pair).
var<private> M: u32;
var<private> N: u32;
var<private> K: u32;
// Unpadded M and N: the rows and columns that map to real units (SCATTER).
var<private> REAL_M: u32;
var<private> REAL_N: u32;
// The offsets of the current sample of a pair (`load_sample`): floats into
// a, b, c, bias and gate, entries into dims. Zero for one product.
var<private> OFF_A: u32;
var<private> OFF_B: u32;
var<private> OFF_C: u32;
var<private> OFF_BIAS: u32;
var<private> OFF_GATE: u32;
var<private> OFF_DIMS: u32;
// Halves into the f16 packs of A and B.
var<private> OFF_PA: u32;
var<private> OFF_PB: u32;
// This workgroup's range [KB, KE) of K and its split (SPLIT_K), set by
// `split_k`; [0, K) and 0 without splitting.
var<private> KB: u32;
var<private> KE: u32;
var<private> SPLIT_Z: u32;

// Split-K (every variant but `matmul_naive`): the grid's z
// runs over splits of K, each a multiple of 32 (so that no staged K slice
// straddles two splits), and each split stores its raw partial product
// into c[z][M][N]; `matmul_split_reduce` adds them up through the
// epilogues. For products with few output tiles and a long K (the weight
// gradient of a convolution: K = batch × pixels), which otherwise leave
// a large GPU to a few workgroups looping over all of K.
//
// The launcher may leave the number of splits to the device (split_room >
// 0), for products whose M or N is a kept count: it records the product
// unsplit and split in nz, and the device runs the split launches with as
// many splits as `split_room` floats of partials hold for its M × N (at
// most nz: a small kept count, few output tiles, leaves a large GPU idle
// while they walk K), or the unsplit one where that is fewer than two.
override SPLIT_K: bool = false;

// The splits a device-decided product runs (see above); nz where the
// launcher decided. Call after `load_dims`.
fn split_count(nz: u32) -> u32 {
    if p.split_room == 0u {
        return nz;
    }
    let mn = M * N;
    if mn == 0u {
        return 1u;
    }
    return clamp(p.split_room / mn, 1u, nz);
}

// Sets this workgroup's K range; false where it has nothing to do: a split
// past the device's count, or the launch of a device-decided product that
// the device runs the other way. The same for the whole workgroup, so
// returning on it keeps barriers in uniform control flow.
fn split_k(z: u32, nz: u32) -> bool {
    if !SPLIT_K {
        KB = 0u;
        KE = K;
        SPLIT_Z = 0u;
        return p.split_room == 0u || split_count(2u) < 2u;
    }
    let n = split_count(nz);
    if z >= n || (n < 2u && p.split_room != 0u) {
        return false;
    }
    let chunk = ((K + n - 1u) / n + 31u) & ~31u;
    KB = min(z * chunk, K);
    KE = min(KB + chunk, K);
    SPLIT_Z = z;
    return true;
}

// The quads of K indices [base, base + count) inside this split's [KB, KE),
// as a range of quads from `base`: the implicit operands walk K as (kernel
// position, channel quad) pairs, and a split takes the pairs of its range.
// KB, KE and `base` are multiples of 4.
fn quad_range(base: u32, count: u32) -> vec2<u32> {
    if !SPLIT_K {
        // Folded away where the product is not split.
        return vec2(0u, count / 4u);
    }
    let lo = clamp(KB, base, base + count) - base;
    let hi = clamp(KE, base, base + count) - base;
    return vec2(lo / 4u, hi / 4u);
}

fn dyn_size(fixed: u32, code: u32) -> u32 {
    if code == NONE || is_batch_code(code) {
        return rows_of(fixed, code);
    }
    return ((dims[(code & 0xffffu) + OFF_DIMS] + 3u) & ~3u) * max(code >> 16u, 1u);
}

// The unpadded size: a kept count itself rather than its padding.
fn real_size(fixed: u32, code: u32) -> u32 {
    if code == NONE || is_batch_code(code) {
        return rows_of(fixed, code);
    }
    return dims[(code & 0xffffu) + OFF_DIMS];
}

fn load_dims() {
    load_sample(0u);
}

// A pair's launch (the launcher sets it with p.samples = 2): without it
// the sample loops run once with constant bounds and the offsets are
// constant zeros, so a single product's code is what it was before pairs.
override PAIR: bool = false;

fn samples() -> u32 {
    return select(1u, p.samples, PAIR);
}

// Pairs (PAIR, p.samples = 2): one launch runs the same product of both mask
// samples of a sparse step, each on its own operands, sizes and maps, so
// that a kept product fills twice the workgroups and the step launches
// once. The grid runs over the tiles of sample 0, then of sample 1
// (`sample_run`); with f16 packs, each sample's at its own offset in the
// packs; split along K, each sample's partials in its part of the scratch
// (each sample's reduce is a launch of its own). Implicit operands read X
// (or dY) at the sample's offset; their geometry is the same for both.
// Not with K-major packs, or `coop` staged, tiled or split, nor a scatter
// unsplit (the launcher runs those one by one). Sets this dispatch's sizes
// and offsets to sample s's.
fn load_sample(s: u32) {
    if PAIR {
        OFF_A = s * p.stride_a;
        OFF_B = s * p.stride_b;
        OFF_C = s * p.stride_c;
        OFF_BIAS = s * p.stride_bias;
        OFF_GATE = s * p.stride_gate;
        OFF_DIMS = s * p.stride_dims;
        OFF_PA = s * p.stride_pack_a;
        OFF_PB = s * p.stride_pack_b;
    }
    M = dyn_size(p.m, p.dyn_m);
    N = dyn_size(p.n, p.dyn_n);
    K = dyn_size(p.k, p.dyn_k);
    REAL_M = real_size(p.m, p.dyn_m);
    REAL_N = real_size(p.n, p.dyn_n);
}

// The f16 packs of the mixed-precision path (`matmul_pack` in
// matmul.wgsl writes them, `matmul_coop_direct` multiplies them): each
// operand rounded to f16 once per product, laid out along its contiguous
// dimension as stored (A [M, K] as rows of K, with TRANS_A as rows of M; B
// [K, N] as rows of N, with TRANS_B as rows of K), its sides padded with
// zeros: K to a multiple of 32 (a split of K starts at a multiple of 32),
// M to a multiple of PACK_BM and N of PACK_BN (the direct kernel's block
// tile), so that the cooperative matrices load whole pieces with no bounds
// checks. The sizes are this launch's (kept counts read on the device):
// the packs of a small kept count are small and dense.
override PACK_BM: u32 = 64u;
override PACK_BN: u32 = 64u;

fn pack_kp() -> u32 {
    return (K + 31u) & ~31u;
}

fn pack_mp() -> u32 {
    return ((M + PACK_BM - 1u) / PACK_BM) * PACK_BM;
}

fn pack_np() -> u32 {
    return ((N + PACK_BN - 1u) / PACK_BN) * PACK_BN;
}

// Output tiles of tile_w × tile_h.
fn tile_count(tile_w: u32, tile_h: u32) -> vec2<u32> {
    return vec2((N + tile_w - 1u) / tile_w, (M + tile_h - 1u) / tile_h);
}

// The part of a run of tiles (over all samples of a pair) that falls on
// the `count` tiles of a sample starting at tile `base`, as that sample's
// tile indices.
fn sample_run(run: vec2<u32>, base: u32, count: u32) -> vec2<u32> {
    return vec2(clamp(run.x, base, base + count) - base, clamp(run.y, base, base + count) - base);
}

// The output tiles of tile_w × tile_h of every sample of this launch
// (`load_sample` left at the last).
fn pair_tiles(tile_w: u32, tile_h: u32) -> u32 {
    var total = 0u;
    for (var s = 0u; s < samples(); s++) {
        load_sample(s);
        let t = tile_count(tile_w, tile_h);
        total += t.x * t.y;
    }
    return total;
}

// This workgroup's run of tiles [x, y) among `total`.
fn tile_run(wid: vec3<u32>, nwg: vec3<u32>, total: u32) -> vec2<u32> {
    let groups = nwg.x * nwg.y;
    let per = (total + groups - 1u) / groups;
    let first = (wid.y * nwg.x + wid.x) * per;
    return vec2(min(first, total), min(first + per, total));
}

// Where an implicit A's [row, col] is read: im2col(X) (IMPLICIT 1, the
// forward) or the gather of dY (3, the input gradient); NONE in padding.
fn implicit_a_index(row: u32, col: u32) -> u32 {
    let c = K / (p.im_kh * p.im_kw);
    if IMPLICIT == 1u {
        return im_index(row, col, c);
    }
    return im_back_index(row, col, c);
}

// Logical A[row, col] (row < M, col < K), zero outside.
fn a_at(row: u32, col: u32) -> f32 {
    if row >= M || col >= K {
        return 0.0;
    }
    if IMPLICIT == 1u || IMPLICIT == 3u {
        let i = implicit_a_index(row, col);
        if i == NONE {
            return 0.0;
        }
        // A pair's offsets are multiples of 4 (`load_sample`).
        return a[(i + OFF_A) >> 2u][i & 3u];
    }
    var idx: u32;
    if TRANS_A {
        idx = col * M + row;
    } else {
        idx = row * K + col;
    }
    idx += OFF_A;
    return a[idx >> 2u][idx & 3u];
}

// Logical B[row, col] (row < K, col < N), zero outside.
fn b_at(row: u32, col: u32) -> f32 {
    if row >= K || col >= N {
        return 0.0;
    }
    if IMPLICIT == 2u {
        let i = im_index(row, col, N / (p.im_kh * p.im_kw));
        if i == NONE {
            return 0.0;
        }
        return b[(i + OFF_B) >> 2u][i & 3u];
    }
    if IMPLICIT == 3u {
        // Row (position, output channel) of W [out, positions, N].
        let taps = p.im_kh * p.im_kw;
        let cout = K / taps;
        let tap = row / cout;
        let i = ((row - tap * cout) * taps + tap) * N + col;
        return b[(i + OFF_B) >> 2u][i & 3u];
    }
    var idx: u32;
    if TRANS_B {
        idx = col * K + row;
    } else {
        idx = row * N + col;
    }
    idx += OFF_B;
    return b[idx >> 2u][idx & 3u];
}

// A[row, k..k+4] (k a multiple of 4), zero outside. Where A is a
// convolution's implicit operand (IMPLICIT 1: im2col(X); 3: the gather of
// dY) whose channels per kernel position are a multiple of 4 (IM_QUADS_A,
// set by the launcher), the four are consecutive channels of one position
// and pixel: one index (its integer divisions) and one vec4 load, not four
// of each. A compile-time choice, so that CPU adapters, which run both
// sides of a branch their lanes may disagree on, do not pay for both.
fn a_quad_k(row: u32, k: u32) -> vec4<f32> {
    if IM_QUADS_A && (IMPLICIT == 1u || IMPLICIT == 3u) {
        if row >= M || k >= K {
            return vec4(0.0);
        }
        let i = implicit_a_index(row, k);
        if i == NONE {
            return vec4(0.0);
        }
        // i and a pair's offset are multiples of 4.
        return a[(i + OFF_A) >> 2u];
    }
    return vec4(a_at(row, k), a_at(row, k + 1u), a_at(row, k + 2u), a_at(row, k + 3u));
}

// B[k, col..col+4] (col a multiple of 4), zero outside; one index and one
// vec4 load where B is implicit (IMPLICIT 2: im2col(X); 3: W read by kernel
// position) and the four are consecutive in memory (IM_QUADS_B: the
// channels per position, or N, a multiple of 4; as `a_quad_k`).
fn b_quad_n(k: u32, col: u32) -> vec4<f32> {
    if IM_QUADS_B && (IMPLICIT == 2u || IMPLICIT == 3u) {
        if k >= K || col >= N {
            return vec4(0.0);
        }
        var i: u32;
        if IMPLICIT == 2u {
            i = im_index(k, col, N / (p.im_kh * p.im_kw));
            if i == NONE {
                return vec4(0.0);
            }
        } else {
            let taps = p.im_kh * p.im_kw;
            let cout = K / taps;
            let tap = k / cout;
            i = ((k - tap * cout) * taps + tap) * N + col;
        }
        return b[(i + OFF_B) >> 2u];
    }
    return vec4(b_at(k, col), b_at(k, col + 1u), b_at(k, col + 2u), b_at(k, col + 3u));
}

// A[r0..r0+4, k0..k0+4] as four rows (result[i][kk] = A[r0+i, k0+kk]).
fn a_block(r0: u32, k0: u32) -> mat4x4<f32> {
    var blk: mat4x4<f32>;
    if TRANS_A {
        // Columns of A are contiguous: load them and transpose.
        for (var kk = 0u; kk < 4u; kk++) {
            let kr = k0 + kk;
            if VEC4_A {
                if kr < K {
                    blk[kk] = a[(kr * M + r0 + OFF_A) >> 2u];
                }
            } else {
                blk[kk] = vec4(a_at(r0, kr), a_at(r0 + 1u, kr), a_at(r0 + 2u, kr), a_at(r0 + 3u, kr));
            }
        }
        return transpose(blk);
    }
    for (var i = 0u; i < 4u; i++) {
        let r = r0 + i;
        if VEC4_A {
            if r < M {
                blk[i] = a[(r * K + k0 + OFF_A) >> 2u];
            }
        } else {
            blk[i] = vec4(a_at(r, k0), a_at(r, k0 + 1u), a_at(r, k0 + 2u), a_at(r, k0 + 3u));
        }
    }
    return blk;
}

// B[k0..k0+4, c0..c0+4] as four rows along K (result[kk][j] = B[k0+kk, c0+j]).
fn b_block(k0: u32, c0: u32) -> mat4x4<f32> {
    var blk: mat4x4<f32>;
    if TRANS_B {
        for (var j = 0u; j < 4u; j++) {
            let col = c0 + j;
            if VEC4_B {
                if col < N {
                    blk[j] = b[(col * K + k0 + OFF_B) >> 2u];
                }
            } else {
                blk[j] = vec4(b_at(k0, col), b_at(k0 + 1u, col), b_at(k0 + 2u, col), b_at(k0 + 3u, col));
            }
        }
        return transpose(blk);
    }
    for (var kk = 0u; kk < 4u; kk++) {
        let kr = k0 + kk;
        if VEC4_B {
            if kr < K {
                blk[kk] = b[(kr * N + c0 + OFF_B) >> 2u];
            }
        } else {
            blk[kk] = vec4(b_at(kr, c0), b_at(kr, c0 + 1u), b_at(kr, c0 + 2u), b_at(kr, c0 + 3u));
        }
    }
    return blk;
}

// Where output (r, col) is stored: packed C, or the full-size C through the
// unit maps when scattering.
fn map_row(r: u32) -> u32 {
    if SCATTER && p.rows_map != NONE {
        return maps[p.rows_map + r];
    }
    return r;
}

// NONE for a padding column.
fn map_col(col: u32) -> u32 {
    if p.cols_map == NONE {
        return select(NONE, col, col < N);
    }
    if p.col_blocks > 1u {
        let len = (REAL_N + 3u) & ~3u;
        let j = col % len;
        if j >= REAL_N {
            return NONE;
        }
        return (col / len) * p.col_block_full + maps[p.cols_map + j];
    }
    if col >= REAL_N {
        return NONE;
    }
    return maps[p.cols_map + col];
}

// One output element through the epilogues; `c_at` is its store index
// (within the current sample's C).
fn store_one(r: u32, col: u32, c_at: u32, v: f32) {
    let at = c_at + OFF_C;
    var out = p.alpha * v;
    if BIAS {
        out += bias[col + OFF_BIAS];
    }
    let g = r * N + col + OFF_GATE;
    if GATE && gate[g >> 2u][g & 3u] <= 0.0 {
        out = 0.0;
    }
    if p.beta != 0.0 {
        out += p.beta * c[at >> 2u][at & 3u];
    }
    if RELU {
        out = max(out, 0.0);
    }
    c[at >> 2u][at & 3u] = out;
}

// Writes the 4×4 tile acc (acc[i] = row r0+i, columns c0..c0+4).
fn store_tile(r0: u32, c0: u32, acc: mat4x4<f32>) {
    if SPLIT_K {
        // This split's raw partial product (see `split_k`), in the current
        // sample's part of the partials.
        let base = SPLIT_Z * M * N + OFF_C;
        for (var i = 0u; i < 4u; i++) {
            let r = r0 + i;
            if r >= M {
                return;
            }
            for (var j = 0u; j < 4u; j++) {
                if c0 + j < N {
                    let at = base + r * N + c0 + j;
                    c[at >> 2u][at & 3u] = acc[i][j];
                }
            }
        }
        return;
    }
    if SCATTER {
        // Map lookups once per tile row and column, not per element; padding
        // rows and columns (past the real counts) are dropped.
        var cols: vec4<u32>;
        for (var j = 0u; j < 4u; j++) {
            cols[j] = map_col(c0 + j);
        }
        for (var i = 0u; i < 4u; i++) {
            let r = r0 + i;
            if r >= REAL_M {
                return;
            }
            let base = map_row(r) * p.ldc;
            for (var j = 0u; j < 4u; j++) {
                if cols[j] != NONE {
                    store_one(r, c0 + j, base + cols[j], acc[i][j]);
                }
            }
        }
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        let r = r0 + i;
        if r >= M {
            return;
        }
        if VEC4_C {
            // Whole vec4 of C and of the gate: N, c0 and the samples'
            // offsets are multiples of 4. (The gated stores went element
            // by element until the twenty-first session; in an H100's
            // dense 8192-wide step the gated product ran 0.25 ms longer
            // than its two siblings.)
            let v4 = (r * N + c0 + OFF_C) >> 2u;
            var out = p.alpha * acc[i];
            if BIAS {
                let bc = c0 + OFF_BIAS;
                out += vec4(bias[bc], bias[bc + 1u], bias[bc + 2u], bias[bc + 3u]);
            }
            if GATE {
                // As `store_one`: zero where the gate is <= 0 (not NaN).
                let g = gate[(r * N + c0 + OFF_GATE) >> 2u];
                out = select(out, vec4(0.0), g <= vec4(0.0));
            }
            if p.beta != 0.0 {
                out += p.beta * c[v4];
            }
            if RELU {
                out = max(out, vec4(0.0));
            }
            c[v4] = out;
        } else {
            for (var j = 0u; j < 4u; j++) {
                if c0 + j < N {
                    store_one(r, c0 + j, r * N + c0 + j, acc[i][j]);
                }
            }
        }
    }
}

// The e-th vec4 of a bm × bk slice of A at (row_base, k0), along A's
// contiguous dimension: K (four k of one row) or, with TRANS_A, M (four
// rows of one k); the slice-staging variants (`wide`, `coop`) share it.
// Interior slices of plain operands load a vec4; edges, unaligned shapes
// and implicit operands go through the bounds-checked `a_at`.
fn fetch_a_vec4(row_base: u32, k0: u32, e: u32, bm: u32, bk: u32, interior: bool) -> vec4<f32> {
    if TRANS_A {
        let kk = e / (bm / 4u);
        let m = row_base + 4u * (e % (bm / 4u));
        if interior && VEC4_A && IMPLICIT == 0u {
            return a[((k0 + kk) * M + m + OFF_A) >> 2u];
        }
        return vec4(a_at(m, k0 + kk), a_at(m + 1u, k0 + kk), a_at(m + 2u, k0 + kk), a_at(m + 3u, k0 + kk));
    }
    let row = row_base + e / (bk / 4u);
    let k = k0 + 4u * (e % (bk / 4u));
    if interior && VEC4_A && IMPLICIT == 0u {
        return a[(row * K + k + OFF_A) >> 2u];
    }
    return a_quad_k(row, k);
}

// The e-th vec4 of a bk × bn slice of B at (k0, col_base), along B's
// contiguous dimension: N (four columns of one k) or, with TRANS_B, K.
fn fetch_b_vec4(k0: u32, col_base: u32, e: u32, bn: u32, bk: u32, interior: bool) -> vec4<f32> {
    if TRANS_B {
        let col = col_base + e / (bk / 4u);
        let k = k0 + 4u * (e % (bk / 4u));
        if interior && VEC4_B && IMPLICIT == 0u {
            return b[(col * K + k + OFF_B) >> 2u];
        }
        return vec4(b_at(k, col), b_at(k + 1u, col), b_at(k + 2u, col), b_at(k + 3u, col));
    }
    let kk = e / (bn / 4u);
    let col = col_base + 4u * (e % (bn / 4u));
    if interior && VEC4_B && IMPLICIT == 0u {
        return b[((k0 + kk) * N + col + OFF_B) >> 2u];
    }
    return b_quad_n(k0 + kk, col);
}
