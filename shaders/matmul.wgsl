//#include common
//#include step
//#include matmul_implicit
//#include matmul_wide

// Dense matmul family: C[M,N] = alpha * op(A) * op(B) + beta * C, in the three
// layouts that backprop needs (A·B, A·Bᵀ, Aᵀ·B, picked by TRANS_A / TRANS_B).
//
// Four entry points share the indexing helpers below:
// - `matmul_regtile`: each thread owns a 4×4 register tile and reads A and B
//   straight from memory as vec4. No workgroup barriers: the fastest on
//   software rasterisers (lavapipe), where every barrier is expensive. Its
//   tile narrows to N when N is small (see `regtile_threads_x`).
// - `matmul_shared`: the workgroup stages BK-deep slices of A and B in
//   workgroup memory and each thread still owns a 4×4 register tile. Real GPUs
//   reward the reuse.
// - `matmul_wide` (shared/matmul_wide.wgsl): built for large GPUs: 128×128
//   block tiles, 8×8 outputs per thread, double-buffered K slices in
//   workgroup memory, vec4 loads with bounds checks on edge tiles only.
// - `matmul_naive`: one thread per output; the baseline of `bench matmul`.
//
// Buffers are bound as arrays of vec4 so that the aligned path can load four
// floats at once; unaligned shapes (VEC4_* = false) read single elements from
// the same binding, so one binding type serves every size.
//
// Compressed (sparse) layers use two more features, selected by constants:
// - dynamic sizes: M, N or K may come from `dims` on the device (the kept-unit
//   counts written by compact.wgsl), rounded up to a multiple of 4 because
//   compacted operands are zero-padded to 4, times a number of blocks (a
//   convolution's K is kernel positions × kept channels), or from the step
//   block (the step's batch times rows per sample). The grid is sized for
//   the largest case and threads past the real size exit: no host round trip.
// - a capped grid: each workgroup loops over a contiguous run of output tiles
//   (row-major, the order an uncapped grid is scheduled in, which keeps
//   neighbouring tiles' operands in cache together), so a dispatch sized for
//   the layer's full width costs nothing for the tiles that a small kept
//   count leaves empty (see `Gpu::grid_cap`).
// - epilogues applied at the store: + bias[col], ReLU, a ReLU gate
//   (zero where gate[row, col] <= 0, for the backward pass), and a scatter
//   store C[rows_map[r], cols_map[c]] += ... into a full-size gradient; with
//   column blocks (a convolution's weight, [out, positions × channels]) the
//   column map applies within each block of kept channels.
// - an implicit convolution operand (IMPLICIT): A or B is the im2col
//   columns of an NHWC X, read from X through the convolution's geometry
//   instead of from materialised columns (no im2col pass, no columns
//   written and read back); and the input gradient dX = col2im(dY·W) as
//   one product gathering dY (no col2im pass). `matmul_regtile` walks
//   kernel positions and pixels incrementally; the other variants index
//   per element.

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
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
// Workgroup shape; each thread of the tiled variants covers 4×4 outputs, so a
// workgroup covers (4·WG_Y) × (4·WG_X) of C.
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
@group(0) @binding(5) var<storage, read> gate: array<f32>;
@group(0) @binding(6) var<storage, read> dims: array<u32>;
@group(0) @binding(7) var<storage, read> maps: array<u32>;

// The effective sizes of this dispatch, set once at entry by `load_dims`.
var<private> M: u32;
var<private> N: u32;
var<private> K: u32;
// Unpadded M and N: the rows and columns that map to real units (SCATTER).
var<private> REAL_M: u32;
var<private> REAL_N: u32;

fn dyn_size(fixed: u32, code: u32) -> u32 {
    if code == NONE || is_batch_code(code) {
        return rows_of(fixed, code);
    }
    return ((dims[code & 0xffffu] + 3u) & ~3u) * max(code >> 16u, 1u);
}

// The unpadded size: a kept count itself rather than its padding.
fn real_size(fixed: u32, code: u32) -> u32 {
    if code == NONE || is_batch_code(code) {
        return rows_of(fixed, code);
    }
    return dims[code & 0xffffu];
}

fn load_dims() {
    M = dyn_size(p.m, p.dyn_m);
    N = dyn_size(p.n, p.dyn_n);
    K = dyn_size(p.k, p.dyn_k);
    REAL_M = real_size(p.m, p.dyn_m);
    REAL_N = real_size(p.n, p.dyn_n);
}

// Output tiles of tile_w × tile_h.
fn tile_count(tile_w: u32, tile_h: u32) -> vec2<u32> {
    return vec2((N + tile_w - 1u) / tile_w, (M + tile_h - 1u) / tile_h);
}

// This workgroup's run of tiles [x, y) among `total`.
fn tile_run(wid: vec3<u32>, nwg: vec3<u32>, total: u32) -> vec2<u32> {
    let groups = nwg.x * nwg.y;
    let per = (total + groups - 1u) / groups;
    let first = (wid.y * nwg.x + wid.x) * per;
    return vec2(min(first, total), min(first + per, total));
}

// Logical A[row, col] (row < M, col < K), zero outside.
fn a_at(row: u32, col: u32) -> f32 {
    if row >= M || col >= K {
        return 0.0;
    }
    if IMPLICIT == 1u || IMPLICIT == 3u {
        // im2col(X) (forward) or the gather of dY (input gradient).
        let c = K / (p.im_kh * p.im_kw);
        var i: u32;
        if IMPLICIT == 1u {
            i = im_index(row, col, c);
        } else {
            i = im_back_index(row, col, c);
        }
        if i == NONE {
            return 0.0;
        }
        return a[i >> 2u][i & 3u];
    }
    var idx: u32;
    if TRANS_A {
        idx = col * M + row;
    } else {
        idx = row * K + col;
    }
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
        return b[i >> 2u][i & 3u];
    }
    if IMPLICIT == 3u {
        // Row (position, output channel) of W [out, positions, N].
        let taps = p.im_kh * p.im_kw;
        let cout = K / taps;
        let tap = row / cout;
        let i = ((row - tap * cout) * taps + tap) * N + col;
        return b[i >> 2u][i & 3u];
    }
    var idx: u32;
    if TRANS_B {
        idx = col * K + row;
    } else {
        idx = row * N + col;
    }
    return b[idx >> 2u][idx & 3u];
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
                    blk[kk] = a[(kr * M + r0) >> 2u];
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
                blk[i] = a[(r * K + k0) >> 2u];
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
                    blk[j] = b[(col * K + k0) >> 2u];
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
                blk[kk] = b[(kr * N + c0) >> 2u];
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

// One output element through the epilogues; `at` is its store index.
fn store_one(r: u32, col: u32, at: u32, v: f32) {
    var out = p.alpha * v;
    if BIAS {
        out += bias[col];
    }
    if GATE && gate[r * N + col] <= 0.0 {
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
        if VEC4_C && !GATE {
            let v4 = (r * N + c0) >> 2u;
            var out = p.alpha * acc[i];
            if BIAS {
                out += vec4(bias[c0], bias[c0 + 1u], bias[c0 + 2u], bias[c0 + 3u]);
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

// Threads along N in a `matmul_regtile` tile: the fewest (a power of two, at
// most WG_X) whose 4-wide columns cover N; the rest of the workgroup is
// stacked along M. Narrow products (a convolution's few kept output
// channels) then keep every invocation busy instead of leaving the threads
// past N idle in each row: software rasterisers run consecutive invocations
// as SIMD lanes, so with N = 8 and WG_X = 8 three lanes in four were
// masked off. Where M fills every tile's rows whatever the shape, the
// widest tile that pads N by at most an eighth is taken instead, so N = 36
// runs on five 8-wide columns rather than two 32-wide tiles, the second one
// 1/8 busy (a 1024-wide product keeps its 32-wide tiles).
// Keep in sync with `regtile_tile` in src/ops/matmul.rs.
fn regtile_threads_x() -> u32 {
    let quads_n = (N + 3u) / 4u;
    var tx = 1u;
    while tx < quads_n && tx < WG_X {
        tx *= 2u;
    }
    tx = min(tx, WG_X);
    if (M + 3u) / 4u >= WG_X * WG_Y {
        // The widest that pads N by at most an eighth (one always does).
        for (var t = tx; t > 0u; t /= 2u) {
            if ((quads_n + t - 1u) / t) * t * 8u <= quads_n * 9u {
                tx = t;
                break;
            }
        }
    }
    return tx;
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_regtile(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    load_dims();
    let tx = regtile_threads_x();
    let ty = (WG_X * WG_Y) / tx;
    let lx = lidx % tx;
    let ly = lidx / tx;
    if ly >= ty {
        // Left over when tx does not divide the workgroup.
        return;
    }
    let tiles = tile_count(4u * tx, 4u * ty);
    let run = tile_run(wid, nwg, tiles.x * tiles.y);
    // The run's tiles are consecutive: (tile row, tile column) is stepped,
    // not divided out per tile.
    var tile_r = run.x / max(tiles.x, 1u);
    var tile_c = run.x - tile_r * tiles.x;
    for (var t = run.x; t < run.y; t++) {
        let r0 = (tile_r * ty + ly) * 4u;
        let c0 = (tile_c * tx + lx) * 4u;
        tile_c++;
        if tile_c == tiles.x {
            tile_c = 0u;
            tile_r++;
        }
        if r0 < M && c0 < N {
            var acc = mat4x4<f32>();
            if IMPLICIT == 1u {
                acc = regtile_implicit_a(r0, c0);
            } else if IMPLICIT == 2u {
                acc = regtile_implicit_b(r0, c0);
            } else if IMPLICIT == 3u {
                acc = regtile_implicit_dx(r0, c0);
            } else {
                for (var k0 = 0u; k0 < K; k0 += 4u) {
                    // Column i of (B-block · A-block) is Σ_kk B[k0+kk, c0..c0+4] · A[r0+i, k0+kk],
                    // which is row i of the C tile: one 4×4 product, 64 FMAs per step.
                    acc += b_block(k0, c0) * a_block(r0, k0);
                }
            }
            store_tile(r0, c0, acc);
        }
    }
}

// Workgroup tiles, k-major: tile_a[kk][m] and tile_b[kk][n], as vec4 over m / n.
var<workgroup> tile_a: array<vec4<f32>, BK * WG_Y>;
var<workgroup> tile_b: array<vec4<f32>, BK * WG_X>;

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_shared(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    load_dims();
    let bm = 4u * WG_Y;
    let bn = 4u * WG_X;
    let threads = WG_X * WG_Y;
    let tiles = tile_count(bn, bm);
    // The loop bounds are uniform across the workgroup, so the barriers
    // inside stay in uniform control flow.
    let run = tile_run(wid, nwg, tiles.x * tiles.y);
    for (var t = run.x; t < run.y; t++) {
        let row_base = (t / tiles.x) * bm;
        let col_base = (t % tiles.x) * bn;
        var acc = mat4x4<f32>();
        for (var k0 = 0u; k0 < K; k0 += BK) {
            // Cooperative loads. Consecutive threads walk the contiguous
            // dimension of each operand so that global reads coalesce.
            for (var e = lidx; e < bm * BK; e += threads) {
                var mm: u32;
                var kk: u32;
                if TRANS_A {
                    kk = e / bm;
                    mm = e % bm;
                } else {
                    mm = e / BK;
                    kk = e % BK;
                }
                let slot = kk * bm + mm;
                tile_a[slot >> 2u][slot & 3u] = a_at(row_base + mm, k0 + kk);
            }
            for (var e = lidx; e < bn * BK; e += threads) {
                var nn: u32;
                var kk: u32;
                if TRANS_B {
                    nn = e / BK;
                    kk = e % BK;
                } else {
                    kk = e / bn;
                    nn = e % bn;
                }
                let slot = kk * bn + nn;
                tile_b[slot >> 2u][slot & 3u] = b_at(k0 + kk, col_base + nn);
            }
            workgroupBarrier();
            for (var kk = 0u; kk < BK; kk++) {
                let av = tile_a[kk * WG_Y + lid.y];
                let bv = tile_b[kk * WG_X + lid.x];
                acc[0] += av.x * bv;
                acc[1] += av.y * bv;
                acc[2] += av.z * bv;
                acc[3] += av.w * bv;
            }
            workgroupBarrier();
        }
        let r0 = row_base + lid.y * 4u;
        let c0 = col_base + lid.x * 4u;
        if r0 < M && c0 < N {
            store_tile(r0, c0, acc);
        }
    }
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_naive(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    load_dims();
    let tiles = tile_count(WG_X, WG_Y);
    let run = tile_run(wid, nwg, tiles.x * tiles.y);
    for (var t = run.x; t < run.y; t++) {
        let row = (t / tiles.x) * WG_Y + lid.y;
        let col = (t % tiles.x) * WG_X + lid.x;
        if row < M && col < N {
            var sum = 0.0;
            for (var kk = 0u; kk < K; kk++) {
                sum += a_at(row, kk) * b_at(kk, col);
            }
            if !SCATTER {
                store_one(row, col, row * N + col, sum);
            } else if row < REAL_M && map_col(col) != NONE {
                store_one(row, col, map_row(row) * p.ldc + map_col(col), sum);
            }
        }
    }
}
