// `matmul_wide`, the variant built for large GPUs (included by matmul.wgsl
// only; uses its bindings, sizes, loaders and epilogues). Each workgroup of
// WG_X × WG_Y threads computes a block tile of (8·WG_Y) × (8·WG_X) outputs
// (128 × 128 with 16 × 16 threads; each side 64 or 128), each thread 8 × 8
// of them as four 4 × 4 register tiles: rows 4·ly and 4·(WG_Y + ly),
// columns 4·lx and 4·(WG_X + lx) of the block, so that the threads of a row
// read consecutive vec4 from workgroup memory. K runs in slices of WBK,
// staged in two workgroup-memory buffers: while the block multiplies one
// slice, its threads hold the next slice's global loads in registers and
// store them into the other buffer, so each slice costs one barrier, and
// the global loads' latency hides behind the arithmetic. Interior tiles
// load vec4 straight from memory; only edge tiles, unaligned shapes and
// implicit operands go through the bounds-checked element loaders (`a_at`,
// `b_at`). Sides of 64 serve products with few tiles of 128, above all the
// compressed products of kept units, whose counts are known only on the
// device (the launcher picks the tile: `wide_workgroup` in
// src/ops/matmul_tiles.rs).
//
// K-major packs (KPACK_A, KPACK_B): on an H100 `wide` ran Aᵀ·B, whose
// slices of both operands are rows along M and N, 15–20% faster than A·B
// and A·Bᵀ, whose A (and Bᵀ) slices are short runs along K stored
// transposed. For large products the launcher first copies such an
// operand, with `matmul_kpack` below, into a pack laid out the Aᵀ·B way:
// A as [Kp, Mp], B as [Kp, Np], K padded to a multiple of 32 and M, N to
// whole block tiles (PACK_BM × PACK_BN, the launch's tile), zeros in the
// padding. The product then binds the pack in the operand's place and
// reads whole vec4 with no bounds checks: every slice of a pack is
// interior. The copy is one pass over the operand (about 2% of a 2048 ×
// 8192 × 8192 product's time).

// Depth of a K slice: a multiple of 4 with 2·WBK a multiple of WG_X and of
// WG_Y (8 or 16 each), so that the threads share a slice's loads evenly
// (`wide_loads_a`, `wide_loads_b`, at most WIDE_MAX_LOADS).
override WBK: u32 = 8u;

const WIDE_MAX_LOADS: u32 = 4u;

// Vec4 of padding after each k row of A's and B's staged slices (0 or 1):
// the launcher pads the side whose store transposes (A [M, K], B stored
// [N, K]). There each thread writes its four k of one column as scalars
// into k-major rows of 2·WG_Y vec4, a multiple of 32 floats apart, so the
// threads of a warp holding k and k + 4 of a column store into one bank. A
// vec4 of padding moves k + 4 by 16 banks: with slices of 8 the conflict
// is gone; with 16 (k, k + 4, k + 8, k + 12 in one warp) it is halved.
override WIDE_PAD_A: u32 = 0u;
override WIDE_PAD_B: u32 = 0u;

// Two buffers × WBK rows × the block's side (A: 8·WG_Y floats = 2·WG_Y
// vec4; B: 8·WG_X floats) and its padding, k-major. (The lengths are named
// overrides: naga 30 cannot specialise an array length written as a
// compound expression.)
override WIDE_A_LEN: u32 = 2u * WBK * (2u * WG_Y + WIDE_PAD_A);
override WIDE_B_LEN: u32 = 2u * WBK * (2u * WG_X + WIDE_PAD_B);
var<workgroup> wide_a: array<vec4<f32>, WIDE_A_LEN>;
var<workgroup> wide_b: array<vec4<f32>, WIDE_B_LEN>;

// Vec4 between k rows of A's and B's staged slices.
fn wide_lda() -> u32 {
    return 2u * WG_Y + WIDE_PAD_A;
}

fn wide_ldb() -> u32 {
    return 2u * WG_X + WIDE_PAD_B;
}

// vec4 loads per thread and slice: a slice of A holds 8·WG_Y·WBK floats =
// 2·WBK·WG_Y vec4 over WG_X·WG_Y threads (one each with 16 × 16 threads and
// WBK = 8), a slice of B 2·WBK·WG_X vec4.
fn wide_loads_a() -> u32 {
    return min((2u * WBK) / WG_X, WIDE_MAX_LOADS);
}

fn wide_loads_b() -> u32 {
    return min((2u * WBK) / WG_Y, WIDE_MAX_LOADS);
}

// A (B) is bound as its K-major pack (see the header).
override KPACK_A: bool = false;
override KPACK_B: bool = false;

// The e-th vec4 of A's and B's slices (see `fetch_a_vec4`); from a pack,
// four rows (columns) of one k.
fn wide_fetch_a(row_base: u32, k0: u32, e: u32, interior: bool) -> vec4<f32> {
    let bm = 8u * WG_Y;
    if KPACK_A {
        let kk = e / (bm / 4u);
        return a[((k0 + kk) * pack_mp() + row_base + 4u * (e % (bm / 4u))) >> 2u];
    }
    return fetch_a_vec4(row_base, k0, e, bm, WBK, interior);
}

fn wide_fetch_b(k0: u32, col_base: u32, e: u32, interior: bool) -> vec4<f32> {
    let bn = 8u * WG_X;
    if KPACK_B {
        let kk = e / (bn / 4u);
        return b[((k0 + kk) * pack_np() + col_base + 4u * (e % (bn / 4u))) >> 2u];
    }
    return fetch_b_vec4(k0, col_base, e, bn, WBK, interior);
}

// Stores what `wide_fetch_a` returned for e into buffer `buf`. Without
// TRANS_A, four threads write different components of one vec4 between the
// same barriers (as `matmul_shared` does): SPIR-V and MSL store a component
// as a scalar, but WGSL allows a component write to touch the whole vector,
// so a backend lowering it as read-modify-write would need f32 buffers here
// (which would cost the vec4 reads of the inner loop).
fn wide_store_a(buf: u32, e: u32, v: vec4<f32>) {
    let rows = 2u * WG_Y;
    let ld = wide_lda();
    if TRANS_A || KPACK_A {
        wide_a[(buf * WBK + e / rows) * ld + e % rows] = v;
        return;
    }
    let mm = e / (WBK / 4u);
    let kk = 4u * (e % (WBK / 4u));
    for (var q = 0u; q < 4u; q++) {
        wide_a[(buf * WBK + kk + q) * ld + mm / 4u][mm % 4u] = v[q];
    }
}

fn wide_store_b(buf: u32, e: u32, v: vec4<f32>) {
    let cols = 2u * WG_X;
    let ld = wide_ldb();
    if TRANS_B && !KPACK_B {
        let nn = e / (WBK / 4u);
        let kk = 4u * (e % (WBK / 4u));
        for (var q = 0u; q < 4u; q++) {
            wide_b[(buf * WBK + kk + q) * ld + nn / 4u][nn % 4u] = v[q];
        }
        return;
    }
    wide_b[(buf * WBK + e / cols) * ld + e % cols] = v;
}

// A thread's share of the next slice's global loads of one operand, held
// in registers while the current slice is multiplied (`wide_regs`, then
// `wide_put`): up to WIDE_MAX_LOADS vec4 as named fields, each behind a
// test of a constant (`wide_loads_a`, `wide_loads_b`). An array indexed
// by the loads' loop counter did the same until the nineteenth session,
// but where a driver places such an array before it unrolls the loop (and
// where naga clamps its index) it lives in local memory. Every workgroup
// shape that loads more than one vec4 a slice has that loop: on an H100
// the keep-0.1 step's 64 × 64 products (two loads) ran 20–35% faster
// with named fields (the forward pair 0.449 → 0.302 ms; BENCHMARKS.md).
struct WideRegs {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

// The e-th vec4 of A's slice at (`base` rows, k0) or of B's at (k0, `base`
// columns), and its store into buffer `buf`.
fn wide_fetch(is_a: bool, base: u32, k0: u32, e: u32, interior: bool) -> vec4<f32> {
    if is_a {
        return wide_fetch_a(base, k0, e, interior);
    }
    return wide_fetch_b(k0, base, e, interior);
}

fn wide_store(is_a: bool, buf: u32, e: u32, v: vec4<f32>) {
    if is_a {
        wide_store_a(buf, e, v);
    } else {
        wide_store_b(buf, e, v);
    }
}

// This thread's loads of A's (`is_a`) or B's next slice.
fn wide_regs(is_a: bool, base: u32, k0: u32, lidx: u32, interior: bool) -> WideRegs {
    let t = WG_X * WG_Y;
    let n = select(wide_loads_b(), wide_loads_a(), is_a);
    var r: WideRegs;
    r.r0 = wide_fetch(is_a, base, k0, lidx, interior);
    if n > 1u {
        r.r1 = wide_fetch(is_a, base, k0, lidx + t, interior);
    }
    if n > 2u {
        r.r2 = wide_fetch(is_a, base, k0, lidx + 2u * t, interior);
    }
    if n > 3u {
        r.r3 = wide_fetch(is_a, base, k0, lidx + 3u * t, interior);
    }
    return r;
}

// Stores what `wide_regs` loaded into buffer `buf`.
fn wide_put(is_a: bool, buf: u32, lidx: u32, r: WideRegs) {
    let t = WG_X * WG_Y;
    let n = select(wide_loads_b(), wide_loads_a(), is_a);
    wide_store(is_a, buf, lidx, r.r0);
    if n > 1u {
        wide_store(is_a, buf, lidx + t, r.r1);
    }
    if n > 2u {
        wide_store(is_a, buf, lidx + 2u * t, r.r2);
    }
    if n > 3u {
        wide_store(is_a, buf, lidx + 3u * t, r.r3);
    }
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let threads = WG_X * WG_Y;
    let bm = 8u * WG_Y;
    let bn = 8u * WG_X;
    let loads_a = wide_loads_a();
    let loads_b = wide_loads_b();
    // The tiles of every sample of a pair (`sample_run`).
    let all = tile_run(wid, nwg, pair_tiles(bn, bm));
    var base = 0u;
    for (var ps = 0u; ps < samples(); ps++) {
        load_sample(ps);
        let tiles = tile_count(bn, bm);
        let run = sample_run(all, base, tiles.x * tiles.y);
        base += tiles.x * tiles.y;
        if !split_k(wid.z, nwg.z) {
            continue;
        }
        let slices = (KE - KB + WBK - 1u) / WBK;
        for (var t = run.x; t < run.y; t++) {
            let row_base = (t / tiles.x) * bm;
            let col_base = (t % tiles.x) * bn;
            let rows_in = row_base + bm <= M;
            let cols_in = col_base + bn <= N;
            var ra: WideRegs;
            var rb: WideRegs;
            // Prologue: slice 0 into buffer 0.
            if slices > 0u {
                let k_in = KB + WBK <= K;
                for (var l = 0u; l < loads_a; l++) {
                    let e = lidx + l * threads;
                    wide_store_a(0u, e, wide_fetch_a(row_base, KB, e, rows_in && k_in));
                }
                for (var l = 0u; l < loads_b; l++) {
                    let e = lidx + l * threads;
                    wide_store_b(0u, e, wide_fetch_b(KB, col_base, e, cols_in && k_in));
                }
            }
            workgroupBarrier();
            var acc00 = mat4x4<f32>();
            var acc01 = mat4x4<f32>();
            var acc10 = mat4x4<f32>();
            var acc11 = mat4x4<f32>();
            for (var s = 0u; s < slices; s++) {
                let cur = s & 1u;
                let more = s + 1u < slices;
                if more {
                    // The next slice's global loads, held while this one runs.
                    let k0 = KB + (s + 1u) * WBK;
                    let k_in = k0 + WBK <= K;
                    ra = wide_regs(true, row_base, k0, lidx, rows_in && k_in);
                    rb = wide_regs(false, col_base, k0, lidx, cols_in && k_in);
                }
                for (var kk = 0u; kk < WBK; kk++) {
                    let ia = (cur * WBK + kk) * wide_lda();
                    let ib = (cur * WBK + kk) * wide_ldb();
                    let a0 = wide_a[ia + lid.y];
                    let a1 = wide_a[ia + WG_Y + lid.y];
                    let b0 = wide_b[ib + lid.x];
                    let b1 = wide_b[ib + WG_X + lid.x];
                    acc00[0] += a0.x * b0;
                    acc00[1] += a0.y * b0;
                    acc00[2] += a0.z * b0;
                    acc00[3] += a0.w * b0;
                    acc01[0] += a0.x * b1;
                    acc01[1] += a0.y * b1;
                    acc01[2] += a0.z * b1;
                    acc01[3] += a0.w * b1;
                    acc10[0] += a1.x * b0;
                    acc10[1] += a1.y * b0;
                    acc10[2] += a1.z * b0;
                    acc10[3] += a1.w * b0;
                    acc11[0] += a1.x * b1;
                    acc11[1] += a1.y * b1;
                    acc11[2] += a1.z * b1;
                    acc11[3] += a1.w * b1;
                }
                if more {
                    wide_put(true, cur ^ 1u, lidx, ra);
                    wide_put(false, cur ^ 1u, lidx, rb);
                }
                workgroupBarrier();
            }
            let r0 = row_base + 4u * lid.y;
            let r1 = row_base + 4u * (WG_Y + lid.y);
            let c0 = col_base + 4u * lid.x;
            let c1 = col_base + 4u * (WG_X + lid.x);
            if r0 < M && c0 < N {
                store_tile(r0, c0, acc00);
            }
            if r0 < M && c1 < N {
                store_tile(r0, c1, acc01);
            }
            if r1 < M && c0 < N {
                store_tile(r1, c0, acc10);
            }
            if r1 < M && c1 < N {
                store_tile(r1, c1, acc11);
            }
        }
    }
}

// `matmul_kpack`: the K-major packs of A (with KPACK_A) and B (with
// KPACK_B) that `matmul_wide` reads in their place (see the header), at
// this launch's sizes (kept counts and batch read on the device), in one
// launch. Each workgroup copies tiles of 32 k × 64 rows (columns) of a
// pack: it loads a tile along the operand's contiguous dimension (the same
// vec4 fetches as the products, zero outside the operand), stages it
// k-major in workgroup memory, and writes rows of the pack as vec4. A row
// of the staged tile is 65 floats, so that a warp's transposing stores
// fall in 32 different banks.
const KPACK_K: u32 = 32u;
const KPACK_C: u32 = 64u;
const KPACK_LD: u32 = 65u;
const KPACK_WG: u32 = 256u;
// KPACK_K × KPACK_LD floats (8320 bytes).
var<workgroup> kpack_tile: array<f32, 2080>;

@group(0) @binding(16) var<storage, read_write> kpack_out_a: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read_write> kpack_out_b: array<vec4<f32>>;

// Stages the e-th vec4 of a tile as `fetch_a_vec4` / `fetch_b_vec4`
// return it for a KPACK_C × KPACK_K slice: four k of one row or column
// (`along_k`: 8 vec4 per row), or four rows or columns of one k (16 vec4
// per k).
fn kpack_stage(e: u32, v: vec4<f32>, along_k: bool) {
    for (var q = 0u; q < 4u; q++) {
        if along_k {
            kpack_tile[(4u * (e % 8u) + q) * KPACK_LD + e / 8u] = v[q];
        } else {
            kpack_tile[(e / 16u) * KPACK_LD + 4u * (e % 16u) + q] = v[q];
        }
    }
}

// The e-th vec4 of the staged tile as a pack row: k = e / 16, columns
// 4·(e % 16)…
fn kpack_row(e: u32) -> vec4<f32> {
    let at = (e / 16u) * KPACK_LD + 4u * (e % 16u);
    return vec4(kpack_tile[at], kpack_tile[at + 1u], kpack_tile[at + 2u], kpack_tile[at + 3u]);
}

@compute @workgroup_size(KPACK_WG)
fn matmul_kpack(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    load_dims();
    // K padded to 32 (a whole number of tiles), M and N to whole blocks
    // (multiples of 64).
    let kp = pack_kp();
    let mp = pack_mp();
    let np = pack_np();
    let k_tiles = kp / KPACK_K;
    let tiles_a = select(0u, k_tiles * (mp / KPACK_C), KPACK_A);
    let tiles_b = select(0u, k_tiles * (np / KPACK_C), KPACK_B);
    let loads = (KPACK_K * KPACK_C / 4u) / KPACK_WG;
    for (var t = wid.y * nwg.x + wid.x; t < tiles_a + tiles_b; t += nwg.x * nwg.y) {
        let is_a = t < tiles_a;
        let u = select(t - tiles_a, t, is_a);
        let k0 = (u % k_tiles) * KPACK_K;
        let c0 = (u / k_tiles) * KPACK_C;
        let k_in = k0 + KPACK_K <= K;
        for (var l = 0u; l < loads; l++) {
            let e = lidx + l * KPACK_WG;
            if is_a {
                let v = fetch_a_vec4(c0, k0, e, KPACK_C, KPACK_K, k_in && c0 + KPACK_C <= M);
                kpack_stage(e, v, !TRANS_A);
            } else {
                let v = fetch_b_vec4(k0, c0, e, KPACK_C, KPACK_K, k_in && c0 + KPACK_C <= N);
                kpack_stage(e, v, TRANS_B);
            }
        }
        workgroupBarrier();
        for (var l = 0u; l < loads; l++) {
            let e = lidx + l * KPACK_WG;
            let at = (k0 + e / 16u) * select(np, mp, is_a) + c0 + 4u * (e % 16u);
            if is_a {
                kpack_out_a[at >> 2u] = kpack_row(e);
            } else {
                kpack_out_b[at >> 2u] = kpack_row(e);
            }
        }
        workgroupBarrier();
    }
}
