// `matmul_coop_tiled` (included by matmul_coop.wgsl only; uses its
// bindings, staging buffers, loads and epilogue, the packs of matmul_core.wgsl and FRAG,
// which `coop_source` rewrites for 8 × 8 pieces).
//
// `matmul_coop_tiled`: the product from the f16 packs, staged through
// workgroup memory (on GPUs the default for products whose sizes are no
// kept count: `coop_mode_rule`; `SPARSETRAIN_COOP=tiled` everywhere).
// `matmul_coop_direct` loads its cooperative matrices from the packs in
// memory, which a GPU most likely assembles from per-thread loads; here the
// workgroup copies each K slice of its block tile (CBK deep) in chunks of
// 16 bytes into workgroup memory, double-buffered (the next slice's loads
// are held in registers while the current one is multiplied), and the
// subgroups load their pieces from there. Same shapes as the direct kernel
// (COOP_TM × COOP_TM pieces per subgroup, COOP_WM × COOP_WN subgroups),
// staged in `matmul_coop`'s layout (rows padded by 8 halves, B COOP_TN =
// COOP_TM pieces a subgroup wide); the packs' zero padding (block tiles,
// K to a multiple of 32) lets every copy run unchecked. CBK is 32, or 16
// where a slice of 32 would not fit the workgroup memory, as for eight
// subgroups (`coop_tiled_depth` in src/ops/matmul_tiles.rs).
//
// A thread holds its chunks of the next slice in named registers
// (`TiledRegs`), as `wide` does: a private array indexed by the loads' loop
// counter may live in local memory. (Chunks of 8 halves as two vec4<f16>:
// naga 30 miscompiles a bitcast from u32 to vec2<f16>, and unpacking needs
// a capability. The staged buffers stay halves, stored one by one: naga
// takes a cooperative load's element type from its pointer, so f16 pieces
// cannot load from words.)
alias Chunk = array<vec4<f16>, 2>;
@group(0) @binding(12) var<storage, read> pack_a8: array<Chunk>;
@group(0) @binding(13) var<storage, read> pack_b8: array<Chunk>;

// Chunk e (8 halves) of a slice: its offset in the pack (in halves, a
// multiple of 8) and in the staged buffer. Along the stored contiguous
// dimension a staged row holds `width` halves.
fn tiled_chunk(e: u32, width: u32, ld_pack: u32, ld_stage: u32, at_pack: u32) -> vec2<u32> {
    let per_row = width / 8u;
    let row = e / per_row;
    let col = 8u * (e % per_row);
    return vec2(at_pack + row * ld_pack + col, row * ld_stage + col);
}

fn tiled_chunk_a(e: u32, row_base: u32, k0: u32) -> vec2<u32> {
    if TRANS_A {
        return tiled_chunk(e, coop_bm(), pack_mp(), coop_lda(), k0 * pack_mp() + row_base);
    }
    return tiled_chunk(e, CBK, pack_kp(), coop_lda(), row_base * pack_kp() + k0);
}

fn tiled_chunk_b(e: u32, k0: u32, col_base: u32) -> vec2<u32> {
    if TRANS_B {
        return tiled_chunk(e, CBK, pack_kp(), coop_ldb(), col_base * pack_kp() + k0);
    }
    return tiled_chunk(e, coop_bn(), pack_np(), coop_ldb(), k0 * pack_np() + col_base);
}

// 8-half chunks of a slice of A (`is_a`) or B, and how many a thread
// copies (the launcher keeps it within COOP_MAX_LOADS: `coop_tiled_depth`).
fn tiled_chunks(is_a: bool) -> u32 {
    return select(coop_bn(), coop_bm(), is_a) * CBK / 8u;
}

fn tiled_loads(is_a: bool) -> u32 {
    return (tiled_chunks(is_a) + WG_X - 1u) / WG_X;
}

// Chunk e of A's or B's slice at k0 of this tile (pack offset and staged
// offset, in halves).
fn tiled_at(is_a: bool, e: u32, row_base: u32, col_base: u32, k0: u32) -> vec2<u32> {
    if is_a {
        return tiled_chunk_a(e, row_base, k0);
    }
    return tiled_chunk_b(e, k0, col_base);
}

// Chunk e of a slice from its pack; zero past the slice's chunks.
fn tiled_fetch(is_a: bool, e: u32, row_base: u32, col_base: u32, k0: u32) -> Chunk {
    if e >= tiled_chunks(is_a) {
        return Chunk();
    }
    let at = tiled_at(is_a, e, row_base, col_base, k0).x / 8u;
    if is_a {
        return pack_a8[at];
    }
    return pack_b8[at];
}

// Stores chunk e (8 halves) into buffer `buf` of the staged A or B.
fn tiled_put(is_a: bool, buf: u32, e: u32, row_base: u32, col_base: u32, v: Chunk) {
    if e >= tiled_chunks(is_a) {
        return;
    }
    let at = tiled_at(is_a, e, row_base, col_base, 0u).y;
    if is_a {
        let base = buf * coop_a_buf() + at;
        for (var i = 0u; i < 8u; i++) {
            coop_a[base + i] = v[i / 4u][i % 4u];
        }
    } else {
        let base = buf * coop_b_buf() + at;
        for (var i = 0u; i < 8u; i++) {
            coop_b[base + i] = v[i / 4u][i % 4u];
        }
    }
}

// A thread's chunks of the next slice of one operand, as named fields
// behind tests of a constant (`tiled_loads`): COOP_MAX_LOADS of them.
struct TiledRegs {
    r0: Chunk,
    r1: Chunk,
    r2: Chunk,
    r3: Chunk,
    r4: Chunk,
    r5: Chunk,
    r6: Chunk,
    r7: Chunk,
}

fn tiled_regs(is_a: bool, lidx: u32, row_base: u32, col_base: u32, k0: u32) -> TiledRegs {
    let n = tiled_loads(is_a);
    var r: TiledRegs;
    r.r0 = tiled_fetch(is_a, lidx, row_base, col_base, k0);
    if n > 1u {
        r.r1 = tiled_fetch(is_a, lidx + WG_X, row_base, col_base, k0);
    }
    if n > 2u {
        r.r2 = tiled_fetch(is_a, lidx + 2u * WG_X, row_base, col_base, k0);
    }
    if n > 3u {
        r.r3 = tiled_fetch(is_a, lidx + 3u * WG_X, row_base, col_base, k0);
    }
    if n > 4u {
        r.r4 = tiled_fetch(is_a, lidx + 4u * WG_X, row_base, col_base, k0);
    }
    if n > 5u {
        r.r5 = tiled_fetch(is_a, lidx + 5u * WG_X, row_base, col_base, k0);
    }
    if n > 6u {
        r.r6 = tiled_fetch(is_a, lidx + 6u * WG_X, row_base, col_base, k0);
    }
    if n > 7u {
        r.r7 = tiled_fetch(is_a, lidx + 7u * WG_X, row_base, col_base, k0);
    }
    return r;
}

// Stores what `tiled_regs` loaded into buffer `buf`.
fn tiled_regs_put(is_a: bool, buf: u32, lidx: u32, row_base: u32, col_base: u32, r: TiledRegs) {
    let n = tiled_loads(is_a);
    tiled_put(is_a, buf, lidx, row_base, col_base, r.r0);
    if n > 1u {
        tiled_put(is_a, buf, lidx + WG_X, row_base, col_base, r.r1);
    }
    if n > 2u {
        tiled_put(is_a, buf, lidx + 2u * WG_X, row_base, col_base, r.r2);
    }
    if n > 3u {
        tiled_put(is_a, buf, lidx + 3u * WG_X, row_base, col_base, r.r3);
    }
    if n > 4u {
        tiled_put(is_a, buf, lidx + 4u * WG_X, row_base, col_base, r.r4);
    }
    if n > 5u {
        tiled_put(is_a, buf, lidx + 5u * WG_X, row_base, col_base, r.r5);
    }
    if n > 6u {
        tiled_put(is_a, buf, lidx + 6u * WG_X, row_base, col_base, r.r6);
    }
    if n > 7u {
        tiled_put(is_a, buf, lidx + 7u * WG_X, row_base, col_base, r.r7);
    }
}

@compute @workgroup_size(WG_X)
fn matmul_coop_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    load_dims();
    let busy = split_k(wid.z, nwg.z);
    let side = FRAG * COOP_TM;
    let bm = coop_bm();
    let bn = coop_bn();
    let tiles = tile_count(bn, bm);
    let run = select(vec2(0u), tile_run(wid, nwg, tiles.x * tiles.y), busy);
    // Whole slices: a split starts at a multiple of 32 (of CBK) and the
    // packs hold zeros from K to the next one.
    let slices = select(0u, (KE - KB + CBK - 1u) / CBK, KE > KB);
    let wr = side * (sg / COOP_WN);
    let wc = side * (sg % COOP_WN);
    let f = FRAG;
    for (var t = run.x; t < run.y; t++) {
        let row_base = (t / tiles.x) * bm;
        let col_base = (t % tiles.x) * bn;
        var ra: TiledRegs;
        var rb: TiledRegs;
        if slices > 0u {
            ra = tiled_regs(true, lidx, row_base, col_base, KB);
            rb = tiled_regs(false, lidx, row_base, col_base, KB);
            tiled_regs_put(true, 0u, lidx, row_base, col_base, ra);
            tiled_regs_put(false, 0u, lidx, row_base, col_base, rb);
        }
        workgroupBarrier();
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
        for (var s = 0u; s < slices; s++) {
            let cur = s & 1u;
            let more = s + 1u < slices;
            if more {
                // The next slice's chunks, held while this one is multiplied.
                let k0 = KB + (s + 1u) * CBK;
                ra = tiled_regs(true, lidx, row_base, col_base, k0);
                rb = tiled_regs(false, lidx, row_base, col_base, k0);
            }
            for (var kk = 0u; kk < CBK; kk += f) {
                let b0 = coop_load_b(cur, kk, wc);
                let b1 = coop_load_b(cur, kk, wc + f);
                let a0 = coop_load_a(cur, wr, kk);
                let a1 = coop_load_a(cur, wr + f, kk);
                acc00 = coopMultiplyAdd(a0, b0, acc00);
                acc01 = coopMultiplyAdd(a0, b1, acc01);
                acc10 = coopMultiplyAdd(a1, b0, acc10);
                acc11 = coopMultiplyAdd(a1, b1, acc11);
                if COOP_TM == 4u {
                    let b2 = coop_load_b(cur, kk, wc + 2u * f);
                    let b3 = coop_load_b(cur, kk, wc + 3u * f);
                    let a2 = coop_load_a(cur, wr + 2u * f, kk);
                    let a3 = coop_load_a(cur, wr + 3u * f, kk);
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
            if more {
                tiled_regs_put(true, cur ^ 1u, lidx, row_base, col_base, ra);
                tiled_regs_put(false, cur ^ 1u, lidx, row_base, col_base, rb);
            }
            workgroupBarrier();
        }
        let r0 = row_base + wr;
        let c0 = col_base + wc;
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
