//#include common
//#include step
//#include matmul_core
//#include matmul_implicit
//#include matmul_wide
//#include matmul_thin

// Dense matmul family: C[M,N] = alpha * op(A) * op(B) + beta * C, in the three
// layouts that backprop needs (A·B, A·Bᵀ, Aᵀ·B, picked by TRANS_A / TRANS_B).
//
// The entry points here share the indexing helpers of shared/matmul_core.wgsl:
// - `matmul_regtile`: each thread owns a 4×4 register tile and reads A and B
//   straight from memory as vec4. No workgroup barriers: the fastest on
//   software rasterisers (lavapipe), where every barrier is expensive. Its
//   tile narrows to N when N is small (see `regtile_threads_x`); it splits K
//   where a CPU adapter would leave cores idle on few tiles (`auto_splits`).
// - `matmul_shared`: the workgroup stages BK-deep slices of A and B in
//   workgroup memory and each thread still owns a 4×4 register tile. Real GPUs
//   reward the reuse.
// - `matmul_wide` (shared/matmul_wide.wgsl): built for large GPUs: block
//   tiles of 64 or 128 a side, 8×8 outputs per thread, double-buffered K
//   slices in workgroup memory, vec4 loads with bounds checks on edge tiles
//   only.
// - `matmul_thin` (shared/matmul_thin.wgsl): products with a side of at
//   most 16 (a classifier's forward product and weight gradient) and long
//   others, read once along the long operand.
// - `matmul_naive`: one thread per output; the baseline of `bench matmul`.
// - `matmul_split_reduce`: the second pass of split-K (see `split_k` in
//   shared/matmul_core.wgsl), adding the splits' partial products.
// - `matmul_pack`: an operand rounded to f16 and padded, for
//   `matmul_coop_direct`.
// - `matmul_kpack` (shared/matmul_wide.wgsl): an operand copied K-major
//   and padded, for `matmul_wide` on large products.
// The mixed-precision kernels, `matmul_coop` and `matmul_coop_direct`
// (matmul_coop.wgsl), multiply f16 copies of the operands on tensor cores
// through cooperative matrices; they live in their own file because its
// `enable` directives would keep this module from building on adapters
// without those features.
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
    // The tiles of every sample of a pair (one product: its own), each
    // sample's tile shaped for its N (`regtile_threads_x`).
    var total = 0u;
    for (var s = 0u; s < samples(); s++) {
        load_sample(s);
        let tx = regtile_threads_x();
        let t = tile_count(4u * tx, 4u * ((WG_X * WG_Y) / tx));
        total += t.x * t.y;
    }
    let all = tile_run(wid, nwg, total);
    var base = 0u;
    for (var s = 0u; s < samples(); s++) {
        load_sample(s);
        let tx = regtile_threads_x();
        let ty = (WG_X * WG_Y) / tx;
        let tiles = tile_count(4u * tx, 4u * ty);
        let run = sample_run(all, base, tiles.x * tiles.y);
        base += tiles.x * tiles.y;
        let lx = lidx % tx;
        let ly = lidx / tx;
        // ly >= ty: left over when tx does not divide the workgroup.
        if !split_k(wid.z, nwg.z) || ly >= ty {
            continue;
        }
        regtile_run(run, tiles, vec2(tx, ty), vec2(lx, ly));
    }
}

// `matmul_regtile`'s run of tiles of the current sample, tx × ty threads
// of 4 × 4 outputs each, this thread at (lx, ly).
fn regtile_run(run: vec2<u32>, tiles: vec2<u32>, threads: vec2<u32>, l: vec2<u32>) {
    let tx = threads.x;
    let ty = threads.y;
    let lx = l.x;
    let ly = l.y;
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
                for (var k0 = KB; k0 < KE; k0 += 4u) {
                    // Column i of (B-block · A-block) is Σ_kk B[k0+kk, c0..c0+4] · A[r0+i, k0+kk],
                    // which is row i of the C tile: one 4×4 product, 64 FMAs per step.
                    acc += b_block(k0, c0) * a_block(r0, k0);
                }
            }
            store_tile(r0, c0, acc);
        }
    }
}

// `shared` loads an implicit convolution operand four values at a time
// (`a_quad_k`, `b_quad_n`: a quarter of the index arithmetic, vec4 loads;
// A where stored along K and the slice depth allows).
// Element e of a `len` × BK slice (rows of A, or columns of B, by BK
// values of K) as (index along len, k): consecutive e along K, or along
// `len` where the operand is stored k-major, so that global reads coalesce.
fn slice_at(e: u32, len: u32, k_major: bool) -> vec2<u32> {
    if k_major {
        return vec2(e % len, e / len);
    }
    return vec2(e / BK, e % BK);
}

fn implicit_quads_a() -> bool {
    return IM_QUADS_A && (IMPLICIT == 1u || IMPLICIT == 3u) && !TRANS_A && BK % 4u == 0u;
}

fn implicit_quads_b() -> bool {
    return IM_QUADS_B && (IMPLICIT == 2u || IMPLICIT == 3u);
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
    let bm = 4u * WG_Y;
    let bn = 4u * WG_X;
    let threads = WG_X * WG_Y;
    // The loop bounds are uniform across the workgroup, so the barriers
    // inside stay in uniform control flow.
    let all = tile_run(wid, nwg, pair_tiles(bn, bm));
    var base = 0u;
    for (var s = 0u; s < samples(); s++) {
        load_sample(s);
        let tiles = tile_count(bn, bm);
        let run = sample_run(all, base, tiles.x * tiles.y);
        base += tiles.x * tiles.y;
        if !split_k(wid.z, nwg.z) {
            continue;
        }
        for (var t = run.x; t < run.y; t++) {
            let row_base = (t / tiles.x) * bm;
            let col_base = (t % tiles.x) * bn;
            var acc = mat4x4<f32>();
            for (var k0 = KB; k0 < KE; k0 += BK) {
                // Cooperative loads. Consecutive threads walk the contiguous
                // dimension of each operand so that global reads coalesce.
                if implicit_quads_a() {
                    // Four k of one row at a time (`a_quad_k`).
                    for (var e = lidx; e < bm * BK / 4u; e += threads) {
                        let mm = e / (BK / 4u);
                        let kq = 4u * (e % (BK / 4u));
                        let v = a_quad_k(row_base + mm, k0 + kq);
                        for (var i = 0u; i < 4u; i++) {
                            let slot = (kq + i) * bm + mm;
                            tile_a[slot >> 2u][slot & 3u] = v[i];
                        }
                    }
                } else {
                    for (var e = lidx; e < bm * BK; e += threads) {
                        let at = slice_at(e, bm, TRANS_A);
                        let slot = at.y * bm + at.x;
                        tile_a[slot >> 2u][slot & 3u] = a_at(row_base + at.x, k0 + at.y);
                    }
                }
                if implicit_quads_b() {
                    // Four columns of one k at a time (`b_quad_n`): one slot.
                    for (var e = lidx; e < bn * BK / 4u; e += threads) {
                        let kk = e / (bn / 4u);
                        let nq = 4u * (e % (bn / 4u));
                        tile_b[(kk * bn + nq) >> 2u] = b_quad_n(k0 + kk, col_base + nq);
                    }
                }
                for (var e = lidx; e < bn * BK && !implicit_quads_b(); e += threads) {
                    let at = slice_at(e, bn, !TRANS_B);
                    let slot = at.y * bn + at.x;
                    tile_b[slot >> 2u][slot & 3u] = b_at(k0 + at.y, col_base + at.x);
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
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_naive(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let all = tile_run(wid, nwg, pair_tiles(WG_X, WG_Y));
    var base = 0u;
    for (var s = 0u; s < samples(); s++) {
        load_sample(s);
        let tiles = tile_count(WG_X, WG_Y);
        let run = sample_run(all, base, tiles.x * tiles.y);
        base += tiles.x * tiles.y;
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
}

// `matmul_pack`: the operands of a mixed-precision product rounded to f16
// and padded (the layout is in shared/matmul_core.wgsl, at `pack_kp`), for
// `matmul_coop_direct`: A into `packed_a` and B into `packed_b`, in one
// launch. Four halves per thread and step of a grid-stride loop over this
// launch's padded sizes, A's quads then B's; every value
// goes through the operand's loaders (`a_at`, `b_at`: zero outside the
// product, implicit operands gathered), or one vec4 where it is plain and
// whole. Written as pairs of halves in u32, rounded to nearest even in
// integer arithmetic (`f16_bits`), so that it needs no f16 support, runs on
// every adapter and rounds the same on all of them.
@group(0) @binding(8) var<storage, read_write> packed_a: array<vec2<u32>>;
@group(0) @binding(11) var<storage, read_write> packed_b: array<vec2<u32>>;

// The binary16 bits of x, rounded to nearest even: overflow to ±inf,
// subnormals kept, NaN stays NaN (quiet). Exact integer steps: pack2x16float
// would need f16 support where naga checks it, and leaves its rounding to
// the driver.
fn f16_bits(x: f32) -> u32 {
    let u = bitcast<u32>(x);
    let sign = (u >> 16u) & 0x8000u;
    let a = u & 0x7fffffffu;
    if a >= 0x7f800000u {
        return sign | 0x7c00u | select(0u, 0x200u, a > 0x7f800000u);
    }
    // From 65520 (halfway past the largest half, 65504) up: infinity.
    if a >= 0x477ff000u {
        return sign | 0x7c00u;
    }
    var q: u32;
    var rem: u32;
    var half: u32;
    if a >= 0x38800000u {
        // Normal: rebias the exponent (127 → 15), drop 13 bits.
        let r = a - 0x38000000u;
        q = r >> 13u;
        rem = r & 0x1fffu;
        half = 0x1000u;
    } else {
        // Below 2^-14: a multiple of 2^-24 (subnormal), or zero below 2^-25.
        let e = a >> 23u;
        if e < 102u {
            return sign;
        }
        let m = (a & 0x7fffffu) | 0x800000u;
        let shift = 126u - e;
        q = m >> shift;
        rem = m & ((1u << shift) - 1u);
        half = 1u << (shift - 1u);
    }
    let up = rem > half || (rem == half && (q & 1u) == 1u);
    return sign | (q + select(0u, 1u, up));
}

fn pack_halves(x: f32, y: f32) -> u32 {
    return f16_bits(x) | (f16_bits(y) << 16u);
}

// A's values at (o, i..i+4) of its pack: (row, k) or with TRANS_A (k, row).
fn pack_a_quad(o: u32, i: u32) -> vec4<f32> {
    if TRANS_A {
        if VEC4_A && IMPLICIT == 0u && o < K && i < M {
            return a[(o * M + i + OFF_A) >> 2u];
        }
        return vec4(a_at(i, o), a_at(i + 1u, o), a_at(i + 2u, o), a_at(i + 3u, o));
    }
    if VEC4_A && IMPLICIT == 0u && o < M && i < K {
        return a[(o * K + i + OFF_A) >> 2u];
    }
    return a_quad_k(o, i);
}

// B's values at (o, i..i+4) of its pack: (k, col) or with TRANS_B (col, k).
fn pack_b_quad(o: u32, i: u32) -> vec4<f32> {
    if TRANS_B {
        if VEC4_B && IMPLICIT == 0u && o < N && i < K {
            return b[(o * K + i + OFF_B) >> 2u];
        }
        return vec4(b_at(i, o), b_at(i + 1u, o), b_at(i + 2u, o), b_at(i + 3u, o));
    }
    if VEC4_B && IMPLICIT == 0u && o < K && i < N {
        return b[(o * N + i + OFF_B) >> 2u];
    }
    return b_quad_n(o, i);
}

@compute @workgroup_size(WG_X)
fn matmul_pack(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    // A pair's samples one after the other, each into its own packs.
    for (var s = 0u; s < samples(); s++) {
        load_sample(s);
        // Each pack's rows and their length (its contiguous side) in quads.
        let quads_a = select(pack_kp(), pack_mp(), TRANS_A) / 4u;
        let quads_b = select(pack_np(), pack_kp(), TRANS_B) / 4u;
        let rows_a = select(pack_mp(), pack_kp(), TRANS_A);
        let rows_b = select(pack_kp(), pack_np(), TRANS_B);
        let total_a = rows_a * quads_a;
        let total_b = rows_b * quads_b;
        let stride = nwg.x * nwg.y * WG_X;
        for (var t = flat_id(wid, nwg, lidx, WG_X); t < total_a + total_b; t += stride) {
            if t < total_a {
                let o = t / quads_a;
                let v = pack_a_quad(o, 4u * (t - o * quads_a));
                packed_a[t + OFF_PA / 4u] = vec2(pack_halves(v.x, v.y), pack_halves(v.z, v.w));
            } else {
                let u = t - total_a;
                let o = u / quads_b;
                let v = pack_b_quad(o, 4u * (u - o * quads_b));
                packed_b[u + OFF_PB / 4u] = vec2(pack_halves(v.x, v.y), pack_halves(v.z, v.w));
            }
        }
    }
}

// Split-K's second pass: C = epilogues(Σ_z partial[z]), where the partial
// products [splits][M][N] written by a split-K pass are bound as `a`. Each
// thread sums one 4×4 tile in a fixed order (z = 0, 1, ...), so the result
// does not depend on scheduling; the same store epilogues as every variant.
@compute @workgroup_size(WG_X, WG_Y)
fn matmul_split_reduce(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    load_dims();
    // A device-decided product that the device ran unsplit is done.
    let splits = split_count(p.splits);
    if splits < 2u && p.split_room != 0u {
        return;
    }
    let bm = 4u * WG_Y;
    let bn = 4u * WG_X;
    let tiles = tile_count(bn, bm);
    let run = tile_run(wid, nwg, tiles.x * tiles.y);
    for (var t = run.x; t < run.y; t++) {
        let r0 = (t / tiles.x) * bm + 4u * lid.y;
        let c0 = (t % tiles.x) * bn + 4u * lid.x;
        if r0 < M && c0 < N {
            var acc = mat4x4<f32>();
            for (var z = 0u; z < splits; z++) {
                for (var i = 0u; i < 4u; i++) {
                    let r = min(r0 + i, M - 1u);
                    if VEC4_C {
                        // Four columns at once: N and c0 are multiples of 4.
                        acc[i] += a[((z * M + r) * N + c0) >> 2u];
                        continue;
                    }
                    for (var j = 0u; j < 4u; j++) {
                        let at = (z * M + r) * N + min(c0 + j, N - 1u);
                        acc[i][j] += a[at >> 2u][at & 3u];
                    }
                }
            }
            store_tile(r0, c0, acc);
        }
    }
}
