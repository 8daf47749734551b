enable f16;
enable wgpu_cooperative_matrix;

//#include common
//#include step
//#include matmul_core
//#include matmul_implicit

// `matmul_coop`: the matmul family on tensor cores (mixed precision). Same
// parameters, layouts, dynamic sizes, capped grid, implicit convolution
// operands and store epilogues as matmul.wgsl (shared/matmul_core.wgsl);
// only the multiply differs: operands are rounded to f16 and multiplied in
// FRAG×FRAG×FRAG cooperative matrices (16, or 8 where the adapter has only
// those) with f32 accumulation. Outputs stay f32.
//
// A workgroup is COOP_WM × COOP_WN subgroups; each subgroup owns a
// (FRAG·COOP_TM) × 2·FRAG output tile as 2·COOP_TM FRAG×FRAG f32
// accumulators (COOP_TM = 2 or 4: each B piece loaded from workgroup memory
// then serves 2 or 4 products), so a workgroup covers
// (FRAG·COOP_TM·COOP_WM) × (2·FRAG·COOP_WN) of C. The host sizes the workgroup as that
// many subgroups of the adapter's fixed subgroup width (`WG_X` threads) and
// only builds this kernel where the subgroup width is fixed.
//
// K runs in slices of CBK (a multiple of FRAG). Every thread loads its share
// of the next slice from global memory as f32 (vec4 on interior tiles, the
// bounds-checked loaders on edges and implicit operands), rounds it to f16
// and stores it into one of two workgroup buffers while the subgroups
// multiply the other: one barrier per slice. Staging through workgroup
// memory is what lets the f32 master copies serve as operands directly (no
// f16 copies in global memory): each value is read from memory once per
// block tile and converted once.
//
// The layout of a staged slice follows the operand's contiguous dimension,
// so that a thread's four values land side by side: A [M, K] stages as
// rows of K (read with coopLoadT, row-major), A stored [K, M] (TRANS_A) as
// rows of M (coopLoad, column-major); likewise B [K, N] as rows of N and B
// stored [N, K] (TRANS_B) as rows of K. Rows are padded by 8 halves to
// spread workgroup-memory banks.
//
// The epilogue goes through workgroup memory too: each subgroup stores one
// accumulator at a time into its FRAG×FRAG f32 scratch, and its lanes pass
// 4×4 pieces to `store_tile`, the same epilogue code as every other variant
// (alpha, beta, bias, ReLU, gate, scatter).

// The cooperative matrices: FRAG × FRAG pieces (16, or 8 on adapters
// that offer only 8 × 8 × 8, such as lavapipe: `coop_source` in
// src/device/shader.rs rewrites these four lines).
alias CoopA = coop_mat16x16<f16, A>;
alias CoopB = coop_mat16x16<f16, B>;
alias CoopC = coop_mat16x16<f32, C>;
const FRAG: u32 = 16u;

// Subgroups of a workgroup along M and N, and FRAG-row pieces of a
// subgroup's tile (2 or 4).
override COOP_WM: u32 = 2u;
override COOP_WN: u32 = 2u;
override COOP_TM: u32 = 2u;
// FRAG-column pieces of a subgroup's tile in the staged kernels' B: 2 in
// `matmul_coop`, COOP_TM in `matmul_coop_tiled` (the launcher sets it).
override COOP_TN: u32 = 2u;
// Depth of a staged K slice, a multiple of FRAG.
override CBK: u32 = 32u;

// vec4 of a K slice a thread stages per operand; the launcher only builds
// shapes within it (`coop_fits` in src/ops/matmul.rs).
const COOP_MAX_LOADS: u32 = 8u;
const COOP_PAD: u32 = 8u;
const COOP_C_STRIDE: u32 = FRAG + 4u;

// Two buffers of a slice, each at most (rows + pad) × (CBK + pad) halves
// whichever way it is laid out; one FRAG × COOP_C_STRIDE f32 scratch per
// subgroup. (Named overrides: naga 30 cannot specialise an array length
// written as a compound expression.)
override COOP_A_LEN: u32 = 2u * (FRAG * COOP_TM * COOP_WM + COOP_PAD) * (CBK + COOP_PAD);
override COOP_B_LEN: u32 = 2u * (FRAG * COOP_TN * COOP_WN + COOP_PAD) * (CBK + COOP_PAD);
override COOP_C_LEN: u32 = FRAG * COOP_C_STRIDE * COOP_WM * COOP_WN;
var<workgroup> coop_a: array<f16, COOP_A_LEN>;
var<workgroup> coop_b: array<f16, COOP_B_LEN>;
var<workgroup> coop_c: array<f32, COOP_C_LEN>;

// Rows of a block tile.
fn coop_bm() -> u32 {
    return FRAG * COOP_TM * COOP_WM;
}

// Columns of a block tile in the staged kernels.
fn coop_bn() -> u32 {
    return FRAG * COOP_TN * COOP_WN;
}

// Halves between staged rows: A is [BM][CBK] (or [CBK][BM] with TRANS_A),
// B is [CBK][BN] (or [BN][CBK] with TRANS_B).
fn coop_lda() -> u32 {
    return select(CBK, coop_bm(), TRANS_A) + COOP_PAD;
}

fn coop_ldb() -> u32 {
    return select(coop_bn(), CBK, TRANS_B) + COOP_PAD;
}

// Halves of one staged buffer.
fn coop_a_buf() -> u32 {
    return coop_lda() * select(coop_bm(), CBK, TRANS_A);
}

fn coop_b_buf() -> u32 {
    return coop_ldb() * select(CBK, coop_bn(), TRANS_B);
}

// The e-th vec4 of A's and B's slices (see `fetch_a_vec4`); where its
// first value is staged: `coop_store_a` / `coop_store_b` (its others follow).
fn coop_fetch_a(row_base: u32, k0: u32, e: u32, interior: bool) -> vec4<f32> {
    return fetch_a_vec4(row_base, k0, e, coop_bm(), CBK, interior);
}

fn coop_fetch_b(k0: u32, col_base: u32, e: u32, interior: bool) -> vec4<f32> {
    return fetch_b_vec4(k0, col_base, e, coop_bn(), CBK, interior);
}

fn coop_store_a(buf: u32, e: u32, v: vec4<f32>) {
    let bm = coop_bm();
    var at: u32;
    if TRANS_A {
        at = (e / (bm / 4u)) * coop_lda() + 4u * (e % (bm / 4u));
    } else {
        at = (e / (CBK / 4u)) * coop_lda() + 4u * (e % (CBK / 4u));
    }
    at += buf * coop_a_buf();
    let h = vec4<f16>(v);
    coop_a[at] = h.x;
    coop_a[at + 1u] = h.y;
    coop_a[at + 2u] = h.z;
    coop_a[at + 3u] = h.w;
}

fn coop_store_b(buf: u32, e: u32, v: vec4<f32>) {
    let bn = coop_bn();
    var at: u32;
    if TRANS_B {
        at = (e / (CBK / 4u)) * coop_ldb() + 4u * (e % (CBK / 4u));
    } else {
        at = (e / (bn / 4u)) * coop_ldb() + 4u * (e % (bn / 4u));
    }
    at += buf * coop_b_buf();
    let h = vec4<f16>(v);
    coop_b[at] = h.x;
    coop_b[at + 1u] = h.y;
    coop_b[at + 2u] = h.z;
    coop_b[at + 3u] = h.w;
}

// The FRAG×FRAG piece of the staged A at (row r, k kk) of buffer `buf`.
fn coop_load_a(buf: u32, r: u32, kk: u32) -> CoopA {
    let lda = coop_lda();
    let base = buf * coop_a_buf();
    if TRANS_A {
        return coopLoad<CoopA>(&coop_a[base + kk * lda + r], lda);
    }
    return coopLoadT<CoopA>(&coop_a[base + r * lda + kk], lda);
}

fn coop_load_b(buf: u32, kk: u32, col: u32) -> CoopB {
    let ldb = coop_ldb();
    let base = buf * coop_b_buf();
    if TRANS_B {
        return coopLoad<CoopB>(&coop_b[base + col * ldb + kk], ldb);
    }
    return coopLoadT<CoopB>(&coop_b[base + kk * ldb + col], ldb);
}

// Stores one accumulator through the subgroup's scratch and the epilogues:
// output rows r0.., columns c0.. of C.
fn coop_store(acc: CoopC, sg: u32, lane: u32, lanes: u32, r0: u32, c0: u32) {
    let base = sg * FRAG * COOP_C_STRIDE;
    let stride = COOP_C_STRIDE;
    coopStoreT(acc, &coop_c[base], stride);
    workgroupBarrier();
    let quads = FRAG / 4u;
    for (var t = lane; t < quads * quads; t += lanes) {
        let tr = 4u * (t / quads);
        let tc = 4u * (t % quads);
        if r0 + tr < M && c0 + tc < N {
            var tile: mat4x4<f32>;
            for (var i = 0u; i < 4u; i++) {
                let at = base + (tr + i) * COOP_C_STRIDE + tc;
                tile[i] = vec4(coop_c[at], coop_c[at + 1u], coop_c[at + 2u], coop_c[at + 3u]);
            }
            store_tile(r0 + tr, c0 + tc, tile);
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG_X)
fn matmul_coop(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    load_dims();
    // No early return where a workgroup has nothing to do: naga requires
    // the cooperative operations' control flow to be uniform, which a
    // return breaks; an empty run of tiles does the same.
    let busy = split_k(wid.z, nwg.z);
    let bm = coop_bm();
    let bn = coop_bn();
    // vec4 loads of a slice per operand, over WG_X threads.
    let a_vecs = bm * CBK / 4u;
    let b_vecs = bn * CBK / 4u;
    let tiles = tile_count(bn, bm);
    let run = select(vec2(0u), tile_run(wid, nwg, tiles.x * tiles.y), busy);
    let slices = (KE - KB + CBK - 1u) / CBK;
    // This subgroup's (FRAG·COOP_TM) × 2·FRAG piece of the block.
    let wr = FRAG * COOP_TM * (sg / COOP_WN);
    let wc = 2u * FRAG * (sg % COOP_WN);
    for (var t = run.x; t < run.y; t++) {
        let row_base = (t / tiles.x) * bm;
        let col_base = (t % tiles.x) * bn;
        let rows_in = row_base + bm <= M;
        let cols_in = col_base + bn <= N;
        var ra: array<vec4<f32>, COOP_MAX_LOADS>;
        var rb: array<vec4<f32>, COOP_MAX_LOADS>;
        // Prologue: slice 0 into buffer 0.
        if slices > 0u {
            let k_in = KB + CBK <= K;
            for (var e = lidx; e < a_vecs; e += WG_X) {
                coop_store_a(0u, e, coop_fetch_a(row_base, KB, e, rows_in && k_in));
            }
            for (var e = lidx; e < b_vecs; e += WG_X) {
                coop_store_b(0u, e, coop_fetch_b(KB, col_base, e, cols_in && k_in));
            }
        }
        workgroupBarrier();
        var acc00 = CoopC();
        var acc01 = CoopC();
        var acc10 = CoopC();
        var acc11 = CoopC();
        var acc20 = CoopC();
        var acc21 = CoopC();
        var acc30 = CoopC();
        var acc31 = CoopC();
        for (var s = 0u; s < slices; s++) {
            let cur = s & 1u;
            let more = s + 1u < slices;
            if more {
                // The next slice's global loads, held while this one runs.
                let k0 = KB + (s + 1u) * CBK;
                let k_in = k0 + CBK <= K;
                for (var l = 0u; l < COOP_MAX_LOADS; l++) {
                    let e = lidx + l * WG_X;
                    if e < a_vecs {
                        ra[l] = coop_fetch_a(row_base, k0, e, rows_in && k_in);
                    }
                    if e < b_vecs {
                        rb[l] = coop_fetch_b(k0, col_base, e, cols_in && k_in);
                    }
                }
            }
            for (var kk = 0u; kk < CBK; kk += FRAG) {
                let b0 = coop_load_b(cur, kk, wc);
                let b1 = coop_load_b(cur, kk, wc + FRAG);
                let a0 = coop_load_a(cur, wr, kk);
                acc00 = coopMultiplyAdd(a0, b0, acc00);
                acc01 = coopMultiplyAdd(a0, b1, acc01);
                let a1 = coop_load_a(cur, wr + FRAG, kk);
                acc10 = coopMultiplyAdd(a1, b0, acc10);
                acc11 = coopMultiplyAdd(a1, b1, acc11);
                if COOP_TM == 4u {
                    let a2 = coop_load_a(cur, wr + 2u * FRAG, kk);
                    acc20 = coopMultiplyAdd(a2, b0, acc20);
                    acc21 = coopMultiplyAdd(a2, b1, acc21);
                    let a3 = coop_load_a(cur, wr + 3u * FRAG, kk);
                    acc30 = coopMultiplyAdd(a3, b0, acc30);
                    acc31 = coopMultiplyAdd(a3, b1, acc31);
                }
            }
            if more {
                for (var l = 0u; l < COOP_MAX_LOADS; l++) {
                    let e = lidx + l * WG_X;
                    if e < a_vecs {
                        coop_store_a(cur ^ 1u, e, ra[l]);
                    }
                    if e < b_vecs {
                        coop_store_b(cur ^ 1u, e, rb[l]);
                    }
                }
            }
            workgroupBarrier();
        }
        let r0 = row_base + wr;
        let c0 = col_base + wc;
        coop_store(acc00, sg, lane, lanes, r0, c0);
        coop_store(acc01, sg, lane, lanes, r0, c0 + FRAG);
        coop_store(acc10, sg, lane, lanes, r0 + FRAG, c0);
        coop_store(acc11, sg, lane, lanes, r0 + FRAG, c0 + FRAG);
        if COOP_TM == 4u {
            coop_store(acc20, sg, lane, lanes, r0 + 2u * FRAG, c0);
            coop_store(acc21, sg, lane, lanes, r0 + 2u * FRAG, c0 + FRAG);
            coop_store(acc30, sg, lane, lanes, r0 + 3u * FRAG, c0);
            coop_store(acc31, sg, lane, lanes, r0 + 3u * FRAG, c0 + FRAG);
        }
    }
}

// `matmul_coop_direct`: the same product from f16 packs of the operands
// (`matmul_pack` in matmul.wgsl rounds each operand once and pads it with
// zeros to whole block tiles and K to a multiple of 32; layout at
// `pack_kp` in shared/matmul_core.wgsl). Each subgroup loads its
// cooperative matrices straight from the packs, with no staging through
// workgroup memory, no conversion and no barrier in the K loop: the
// subgroups of a workgroup share their pieces through the L1 cache. On an
// H100 a kernel of this shape (64 × 64 per subgroup, 2 × 2 subgroups)
// loading f16 operands from memory ran at 77 TFLOP/s (issue 9's probe),
// against 23 for `matmul_coop`'s staging of f32 operands.
//
// A subgroup computes (FRAG·COOP_TM)² outputs (COOP_TM = 2 or 4 pieces a
// side), a workgroup COOP_WM × COOP_WN subgroups; the launcher sets
// PACK_BM and PACK_BN to the block tile's sides. The packs are bound as f16
// arrays (written as u32 pairs of halves).
//
// COOP_UNROLL (the launcher's default): each pass of the K loop takes two
// K pieces, all their loads before any multiply (twice the pieces in
// registers), for memory latency that 4 to 8 subgroups per multiprocessor
// cannot hide by themselves: on an H100 5–13% faster on A·B and Aᵀ·B, the
// same on A·Bᵀ (BENCHMARKS.md). Such a loop runs to K rounded up to
// 2·FRAG, within the packs' zero padding (K to a multiple of 32; a split
// that is not the last ends at a multiple of 32), so that a pass needs no
// guard: cooperative operations must stay in uniform control flow.
override COOP_UNROLL: bool = true;
@group(0) @binding(9) var<storage, read> pack_a: array<f16>;
@group(0) @binding(10) var<storage, read> pack_b: array<f16>;

// The piece of A at rows r.., k k.. and of B at k k.., columns col.., from
// the packs (rows of K, or with TRANS_A of M; rows of N, or with TRANS_B
// of K). Strides bound with `let` first (naga 30's SPIR-V writer).
fn direct_load_a(r: u32, k: u32) -> CoopA {
    if TRANS_A {
        let ld = pack_mp();
        return coopLoad<CoopA>(&pack_a[OFF_PA + k * ld + r], ld);
    }
    let ld = pack_kp();
    return coopLoadT<CoopA>(&pack_a[OFF_PA + r * ld + k], ld);
}

fn direct_load_b(k: u32, col: u32) -> CoopB {
    if TRANS_B {
        let ld = pack_kp();
        return coopLoad<CoopB>(&pack_b[OFF_PB + col * ld + k], ld);
    }
    let ld = pack_np();
    return coopLoadT<CoopB>(&pack_b[OFF_PB + k * ld + col], ld);
}

@compute @workgroup_size(WG_X)
fn matmul_coop_direct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    let side = FRAG * COOP_TM;
    let bm = side * COOP_WM;
    let bn = side * COOP_WN;
    let wr = side * (sg / COOP_WN);
    let wc = side * (sg % COOP_WN);
    let f = FRAG;
    // The tiles of every sample of a pair (`sample_run`), each from its
    // own packs.
    let all = tile_run(wid, nwg, pair_tiles(bn, bm));
    var base = 0u;
    for (var ps = 0u; ps < samples(); ps++) {
        load_sample(ps);
        // No early return (uniform control flow for the cooperative
        // operations): a workgroup with nothing to do runs no tiles.
        let busy = split_k(wid.z, nwg.z);
        let tiles = tile_count(bn, bm);
        let run = select(vec2(0u), sample_run(all, base, tiles.x * tiles.y), busy);
        base += tiles.x * tiles.y;
        // K in whole pieces: the packs hold zeros from K to a multiple of 32.
        // A split starts at a multiple of 32, or at K where it has nothing to
        // do (and must not round up into the next row of a pack).
        let k_end = select(KB, ((KE + FRAG - 1u) / FRAG) * FRAG, KE > KB);
        for (var t = run.x; t < run.y; t++) {
            let r0 = (t / tiles.x) * bm + wr;
            let c0 = (t % tiles.x) * bn + wc;
            var acc00 = CoopC();
            var acc01 = CoopC();
            var acc02 = CoopC();
            var acc03 = CoopC();
            var acc10 = CoopC();
            var acc11 = CoopC();
            var acc12 = CoopC();
            var acc13 = CoopC();
            var acc20 = CoopC();
            var acc21 = CoopC();
            var acc22 = CoopC();
            var acc23 = CoopC();
            var acc30 = CoopC();
            var acc31 = CoopC();
            var acc32 = CoopC();
            var acc33 = CoopC();
            let k_end2 = select(KB, ((KE + 2u * f - 1u) / (2u * f)) * (2u * f), KE > KB);
            for (var k = KB; k < select(KB, k_end2, COOP_UNROLL); k += 2u * f) {
                let k2 = k + f;
                if COOP_TM == 4u {
                    let b0 = direct_load_b(k, c0);
                    let b1 = direct_load_b(k, c0 + f);
                    let b2 = direct_load_b(k, c0 + 2u * f);
                    let b3 = direct_load_b(k, c0 + 3u * f);
                    let a0 = direct_load_a(r0, k);
                    let a1 = direct_load_a(r0 + f, k);
                    let a2 = direct_load_a(r0 + 2u * f, k);
                    let a3 = direct_load_a(r0 + 3u * f, k);
                    let b0_ = direct_load_b(k2, c0);
                    let b1_ = direct_load_b(k2, c0 + f);
                    let b2_ = direct_load_b(k2, c0 + 2u * f);
                    let b3_ = direct_load_b(k2, c0 + 3u * f);
                    let a0_ = direct_load_a(r0, k2);
                    let a1_ = direct_load_a(r0 + f, k2);
                    let a2_ = direct_load_a(r0 + 2u * f, k2);
                    let a3_ = direct_load_a(r0 + 3u * f, k2);
                    acc00 = coopMultiplyAdd(a0, b0, acc00);
                    acc01 = coopMultiplyAdd(a0, b1, acc01);
                    acc02 = coopMultiplyAdd(a0, b2, acc02);
                    acc03 = coopMultiplyAdd(a0, b3, acc03);
                    acc10 = coopMultiplyAdd(a1, b0, acc10);
                    acc11 = coopMultiplyAdd(a1, b1, acc11);
                    acc12 = coopMultiplyAdd(a1, b2, acc12);
                    acc13 = coopMultiplyAdd(a1, b3, acc13);
                    acc20 = coopMultiplyAdd(a2, b0, acc20);
                    acc21 = coopMultiplyAdd(a2, b1, acc21);
                    acc22 = coopMultiplyAdd(a2, b2, acc22);
                    acc23 = coopMultiplyAdd(a2, b3, acc23);
                    acc30 = coopMultiplyAdd(a3, b0, acc30);
                    acc31 = coopMultiplyAdd(a3, b1, acc31);
                    acc32 = coopMultiplyAdd(a3, b2, acc32);
                    acc33 = coopMultiplyAdd(a3, b3, acc33);
                    acc00 = coopMultiplyAdd(a0_, b0_, acc00);
                    acc01 = coopMultiplyAdd(a0_, b1_, acc01);
                    acc02 = coopMultiplyAdd(a0_, b2_, acc02);
                    acc03 = coopMultiplyAdd(a0_, b3_, acc03);
                    acc10 = coopMultiplyAdd(a1_, b0_, acc10);
                    acc11 = coopMultiplyAdd(a1_, b1_, acc11);
                    acc12 = coopMultiplyAdd(a1_, b2_, acc12);
                    acc13 = coopMultiplyAdd(a1_, b3_, acc13);
                    acc20 = coopMultiplyAdd(a2_, b0_, acc20);
                    acc21 = coopMultiplyAdd(a2_, b1_, acc21);
                    acc22 = coopMultiplyAdd(a2_, b2_, acc22);
                    acc23 = coopMultiplyAdd(a2_, b3_, acc23);
                    acc30 = coopMultiplyAdd(a3_, b0_, acc30);
                    acc31 = coopMultiplyAdd(a3_, b1_, acc31);
                    acc32 = coopMultiplyAdd(a3_, b2_, acc32);
                    acc33 = coopMultiplyAdd(a3_, b3_, acc33);
                } else {
                    let b0 = direct_load_b(k, c0);
                    let b1 = direct_load_b(k, c0 + f);
                    let a0 = direct_load_a(r0, k);
                    let a1 = direct_load_a(r0 + f, k);
                    let b0_ = direct_load_b(k2, c0);
                    let b1_ = direct_load_b(k2, c0 + f);
                    let a0_ = direct_load_a(r0, k2);
                    let a1_ = direct_load_a(r0 + f, k2);
                    acc00 = coopMultiplyAdd(a0, b0, acc00);
                    acc01 = coopMultiplyAdd(a0, b1, acc01);
                    acc10 = coopMultiplyAdd(a1, b0, acc10);
                    acc11 = coopMultiplyAdd(a1, b1, acc11);
                    acc00 = coopMultiplyAdd(a0_, b0_, acc00);
                    acc01 = coopMultiplyAdd(a0_, b1_, acc01);
                    acc10 = coopMultiplyAdd(a1_, b0_, acc10);
                    acc11 = coopMultiplyAdd(a1_, b1_, acc11);
                }
            }
            // Without COOP_UNROLL: one piece of K a pass.
            for (var k = select(KB, k_end, COOP_UNROLL); k < k_end; k += f) {
                let b0 = direct_load_b(k, c0);
                let b1 = direct_load_b(k, c0 + f);
                let a0 = direct_load_a(r0, k);
                let a1 = direct_load_a(r0 + f, k);
                acc00 = coopMultiplyAdd(a0, b0, acc00);
                acc01 = coopMultiplyAdd(a0, b1, acc01);
                acc10 = coopMultiplyAdd(a1, b0, acc10);
                acc11 = coopMultiplyAdd(a1, b1, acc11);
                if COOP_TM == 4u {
                    let b2 = direct_load_b(k, c0 + 2u * f);
                    let b3 = direct_load_b(k, c0 + 3u * f);
                    let a2 = direct_load_a(r0 + 2u * f, k);
                    let a3 = direct_load_a(r0 + 3u * f, k);
                    acc02 = coopMultiplyAdd(a0, b2, acc02);
                    acc03 = coopMultiplyAdd(a0, b3, acc03);
                    acc12 = coopMultiplyAdd(a1, b2, acc12);
                    acc13 = coopMultiplyAdd(a1, b3, acc13);
                    acc20 = coopMultiplyAdd(a2, b0, acc20);
                    acc21 = coopMultiplyAdd(a2, b1, acc21);
                    acc22 = coopMultiplyAdd(a2, b2, acc22);
                    acc23 = coopMultiplyAdd(a2, b3, acc23);
                    acc30 = coopMultiplyAdd(a3, b0, acc30);
                    acc31 = coopMultiplyAdd(a3, b1, acc31);
                    acc32 = coopMultiplyAdd(a3, b2, acc32);
                    acc33 = coopMultiplyAdd(a3, b3, acc33);
                }
            }
            coop_store(acc00, sg, lane, lanes, r0, c0);
            coop_store(acc01, sg, lane, lanes, r0, c0 + f);
            coop_store(acc10, sg, lane, lanes, r0 + f, c0);
            coop_store(acc11, sg, lane, lanes, r0 + f, c0 + f);
            if COOP_TM == 4u {
                coop_store(acc02, sg, lane, lanes, r0, c0 + 2u * f);
                coop_store(acc03, sg, lane, lanes, r0, c0 + 3u * f);
                coop_store(acc12, sg, lane, lanes, r0 + f, c0 + 2u * f);
                coop_store(acc13, sg, lane, lanes, r0 + f, c0 + 3u * f);
                coop_store(acc20, sg, lane, lanes, r0 + 2u * f, c0);
                coop_store(acc21, sg, lane, lanes, r0 + 2u * f, c0 + f);
                coop_store(acc22, sg, lane, lanes, r0 + 2u * f, c0 + 2u * f);
                coop_store(acc23, sg, lane, lanes, r0 + 2u * f, c0 + 3u * f);
                coop_store(acc30, sg, lane, lanes, r0 + 3u * f, c0);
                coop_store(acc31, sg, lane, lanes, r0 + 3u * f, c0 + f);
                coop_store(acc32, sg, lane, lanes, r0 + 3u * f, c0 + 2u * f);
                coop_store(acc33, sg, lane, lanes, r0 + 3u * f, c0 + 3u * f);
            }
        }
    }
}

//#include matmul_coop_tiled
