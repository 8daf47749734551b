//! Tile shapes of the matmul launcher (`ops::matmul`): the workgroup and
//! output tile of each variant, `matmul_regtile`'s narrowing to N,
//! `matmul_wide`'s sides of 64 or 128, `matmul_coop`'s subgroup layout
//! checked against the adapter, and how far K is split on GPUs.

use glam::UVec2;

use super::matmul_thin::{thin_blocks, thin_splits};
use crate::device::gpu::{CoopSupport, Gpu};
use crate::device::variant::{Variant, check_wide_depth, wide_depth_env, wide_tile_env};
use crate::error::{Error, Result};

/// How a variant covers an m × n product on a device: its workgroup, the
/// output tile of one workgroup, and `matmul_coop`'s subgroup layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocks {
    pub wg: UVec2,
    pub tile: UVec2,
    pub coop: Option<(u32, u32, u32)>,
    /// `coop` runs `matmul_coop_direct` from f16 packs (else `matmul_coop`).
    pub coop_direct: bool,
}

/// Whether a kept count sets M or N of a product (known only on the
/// device: the static size is its capacity), and the `wide` workgroup a
/// caller asked for (`Matmul::wide_tile`: x along N, 8 outputs per thread).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TileFit {
    pub kept: bool,
    pub wide_wg: Option<UVec2>,
    /// `coop` stages its operands (`matmul_coop`) instead of multiplying
    /// f16 packs of them (`matmul_coop_direct`).
    pub coop_staged: bool,
    /// The shape of `coop` from f16 packs (direct or tiled) asked for
    /// (`Matmul::coop_direct_shape`, `SPARSETRAIN_COOP_SHAPE`), or set by
    /// the launcher to `coop_tiled_shape` for a tiled product; None:
    /// `coop_direct_shape`'s rule.
    pub coop_shape: Option<(u32, u32, u32)>,
    /// A is stored [K, M] (Aᵀ·B, the layout of weight gradients), where
    /// `wide`'s rule takes tiles of 128 × 64 for static sizes.
    pub trans_a: bool,
}

/// The blocks of `variant` for an m × n product on `gpu` (the launcher's
/// grid, and the benchmark's count of output tiles for `auto_splits`).
pub fn block_shape(gpu: &Gpu, variant: Variant, m: u32, n: u32, fit: TileFit) -> Result<Blocks> {
    let (wg, per_thread) = shape(variant);
    match variant {
        Variant::RegTile => Ok(Blocks { wg, tile: regtile_tile(wg, m, n), coop: None, coop_direct: false }),
        Variant::Coop => {
            let support = gpu.coop().map_err(|why| {
                Error::InvalidArgument(format!("the mixed-precision matmul (coop) cannot run: {why}"))
            })?;
            let f = support.frag;
            if !fit.coop_staged {
                let (tm, wm, wn) = fit.coop_shape.unwrap_or_else(|| coop_direct_shape(m, n, fit.kept, f));
                let wg = UVec2::new(wm * wn * support.subgroup, 1);
                // A forced shape of 8 subgroups may outgrow an adapter with
                // wide subgroups; the rule's 4 never does (4 × 64 = 256).
                let limits = gpu.limits();
                if wg.x > limits.max_compute_invocations_per_workgroup || wg.x > limits.max_compute_workgroup_size_x {
                    return Err(Error::InvalidArgument(format!(
                        "coop shape {tm}x{wm}x{wn} needs {} threads per workgroup ({} subgroups of {}); {} offers {}",
                        wg.x,
                        wm * wn,
                        support.subgroup,
                        gpu.report().name,
                        limits.max_compute_invocations_per_workgroup.min(limits.max_compute_workgroup_size_x)
                    )));
                }
                let side = f * tm;
                let tile = UVec2::new(side * wn, side * wm);
                return Ok(Blocks { wg, tile, coop: Some((tm, wm, wn)), coop_direct: true });
            }
            let (tm, wm, wn) = coop_shape(m, n, fit.kept, support, gpu.limits().max_compute_workgroup_storage_size)?;
            let wg = UVec2::new(wm * wn * support.subgroup, 1);
            Ok(Blocks { wg, tile: UVec2::new(2 * f * wn, f * tm * wm), coop: Some((tm, wm, wn)), coop_direct: false })
        }
        Variant::Wide => {
            let wg = wide_workgroup(fit)?;
            Ok(Blocks { wg, tile: wg * per_thread, coop: None, coop_direct: false })
        }
        Variant::Shared => {
            let wg = shared_workgroup(m, n);
            Ok(Blocks { wg, tile: wg * per_thread, coop: None, coop_direct: false })
        }
        Variant::Thin => {
            let (wg, tile) = thin_blocks(m, n)?;
            Ok(Blocks { wg, tile, coop: None, coop_direct: false })
        }
        _ => Ok(Blocks { wg, tile: wg * per_thread, coop: None, coop_direct: false }),
    }
}

/// `matmul_wide`'s workgroup (x along N, y along M; 8 outputs per thread
/// each way): the tile asked for, else `SPARSETRAIN_WIDE_TILE`, else 128 ×
/// 128 where both sizes are static (128 × 64 for Aᵀ·B, see `wide_rule`)
/// and 64 × 64 where a kept count sets one.
///
/// Why 64 for kept counts: a compressed product is recorded for the
/// capacity (every unit kept) but runs on the step's kept units. At 10% of
/// the 784-8192-8192-10 MLP's units and batch 2048, its weight gradients are
/// 819 × 819 and 819 × 784 over K = 2048: 49 tiles of 128 × 128 each, which
/// on a 132-multiprocessor GPU leave most of it idle while each walks K;
/// tiles of 64 make 169. Its forward and input-gradient products (2048 ×
/// 819) go from 112 tiles to 416. Both sides shrink, the static one too
/// (784 inputs): a side of 64 along the kept one alone would leave that
/// weight gradient 91 tiles. Static products keep 128 rows: at 4096³ its
/// 8 × 8 outputs per thread over 256 threads ran at 45–51% of an H100's
/// fp32 peak.
pub fn wide_workgroup(fit: TileFit) -> Result<UVec2> {
    if let Some(wg) = fit.wide_wg {
        return Ok(wg);
    }
    if let Some(wg) = wide_tile_env()? {
        return Ok(wg);
    }
    Ok(wide_rule(fit.kept, fit.trans_a))
}

/// `wide_workgroup`'s rule: 8 × 8 threads (64 × 64 outputs) where a kept
/// count sets M or N; for static sizes 8 × 16 (128 rows × 64 columns) for
/// Aᵀ·B, else 16 × 16 (128 × 128).
///
/// Why 128 × 64 for Aᵀ·B: on an H100, in one run of the dense
/// 784-8192-8192-10 step with every static product on 128 × 64 tiles
/// (nineteenth session, call 3), the two weight gradients took 7.34 and
/// 0.86 ms against 7.48 and 0.96 on 128 × 128: more, smaller tiles fill
/// the last wave better, and 784 columns pad to 832 rather than 896. Its
/// forward products gained nothing there (7.51 against 7.48 ms), and at
/// 4096³ the three layouts ran alike on both tiles.
fn wide_rule(kept: bool, trans_a: bool) -> UVec2 {
    match (kept, trans_a) {
        (true, _) => UVec2::new(8, 8),
        (false, true) => UVec2::new(8, 16),
        (false, false) => UVec2::new(16, 16),
    }
}

/// `matmul_shared`'s workgroup (x along N; 4 outputs per thread each
/// way) for an m × n product at its static sizes: 16 × 16 threads (64 ×
/// 64 outputs), but a thin side of at most 16 gets tiles 16 wide and 128
/// long on 4 × 32 threads. A classifier's output layer (10 units) is such
/// a side in two of its three products: its forward product (N = 10) and
/// its weight gradient (M = 10). On 64 × 64 tiles 54 of each tile's 64
/// rows or columns computed nothing. On an H100 those products took
/// 0.38 ms of the dense 784-8192-8192-10 step and 0.16 ms of its keep-0.1
/// step, for 0.2% of their FLOPs; on these tiles 0.20 and 0.10 ms
/// (BENCHMARKS.md, nineteenth session).
fn shared_workgroup(m: u32, n: u32) -> UVec2 {
    match (m <= 16, n <= 16) {
        (false, true) => UVec2::new(4, 32),
        (true, false) => UVec2::new(32, 4),
        _ => UVec2::new(16, 16),
    }
}

/// Workgroup shape (x, y) of a variant and the outputs each thread covers per side.
fn shape(v: Variant) -> (UVec2, u32) {
    match v {
        Variant::RegTile => (UVec2::new(8, 8), 4),
        // The workgroup is `shared_workgroup`'s.
        Variant::Shared => (UVec2::new(16, 16), 4),
        // The workgroup is `wide_workgroup`'s (this one is not used); 8
        // outputs per thread each way.
        Variant::Wide => (UVec2::new(16, 16), 8),
        Variant::Naive => (UVec2::new(16, 16), 1),
        // The workgroup is `thin_blocks`'s.
        Variant::Thin => (UVec2::new(64, 4), 4),
        // Sized per adapter and product by `coop_shape`.
        Variant::Coop => (UVec2::new(128, 1), 0),
    }
}

/// `matmul_wide`'s K slice depth (its WBK) for workgroup `wg`: `asked`,
/// else `SPARSETRAIN_WIDE_BK`, else 8. A depth of 16 halves the slices, so
/// the barriers and the partial cache lines of row-major operands per
/// multiply (a slice of A [M, K] reads 4·WBK bytes of each of the tile's
/// rows); it doubles the double-buffered slices' workgroup memory (to 32 KiB
/// for a 128 × 128 tile), which the adapter must offer. The loads of a slice
/// are shared evenly either way (`wide_loads_a`, `wide_loads_b`).
pub fn wide_depth(gpu: &Gpu, asked: Option<u32>, wg: UVec2) -> Result<u32> {
    let bk = match asked {
        Some(bk) => check_wide_depth(bk)?,
        None => wide_depth_env()?.unwrap_or(8),
    };
    // The kernel shares a slice's loads evenly only where each side of the
    // workgroup divides 2·bk, in at most 4 vec4 per thread (WIDE_MAX_LOADS:
    // it would drop the rest): sides of 8 or 16 threads, as
    // `check_wide_tile` and `wide_rule` give.
    let loads = |side: u32| side > 0 && (2 * bk).is_multiple_of(side) && 2 * bk / side <= 4;
    if !loads(wg.x) || !loads(wg.y) {
        return Err(Error::InvalidArgument(format!(
            "the wide matmul cannot share K slices of {bk} over {} × {} threads",
            wg.x, wg.y
        )));
    }
    // Two buffers × bk rows of each operand's side of the block tile.
    let per_thread = shape(Variant::Wide).1;
    let bytes = 2 * bk * (wg.x + wg.y) * per_thread * 4;
    let have = gpu.limits().max_compute_workgroup_storage_size;
    if bytes > have {
        return Err(Error::InvalidArgument(format!(
            "the wide matmul with K slices of {bk} and {} × {} block tiles needs {bytes} bytes of workgroup memory; this device offers {have}",
            per_thread * wg.y,
            per_thread * wg.x
        )));
    }
    Ok(bk)
}

/// `matmul_wide`'s padding (WIDE_PAD_A, WIDE_PAD_B: a vec4 after each k
/// row of a staged slice) for K slices of `bk` on workgroup `wg`: where
/// `want`ed (`Matmul::wide_padding`, `SPARSETRAIN_WIDE_PAD`), on the side
/// whose store transposes (A stored [M, K], B stored [N, K]), where the
/// adapter's `wg_bytes` of workgroup memory hold it (16 bytes per k row
/// and buffer; at 128 × 128 with slices of 16 more than 32 KiB).
pub fn wide_pads(wg_bytes: u32, bk: u32, wg: UVec2, (trans_a, trans_b): (bool, bool), want: bool) -> (u32, u32) {
    let (pad_a, pad_b) = (u32::from(!trans_a), u32::from(trans_b));
    let per_thread = shape(Variant::Wide).1;
    let bytes = 2 * bk * ((wg.x + wg.y) * per_thread * 4 + 16 * (pad_a + pad_b));
    if want && bytes <= wg_bytes { (pad_a, pad_b) } else { (0, 0) }
}

/// `matmul_coop`'s shape for an m × n product: (F-row pieces per
/// subgroup, subgroups along M, along N), F the side of the adapter's
/// cooperative matrices (16; 8 on lavapipe). Each subgroup computes
/// 2F × 2F; products that still give at least 256 block tiles of 8F × 4F
/// (128 × 64) run 4 × 2 subgroups, smaller ones and those a kept count
/// sizes (`kept`: m or n is only a capacity) 2 × 2 (64 × 64 blocks: enough
/// of them to fill a large GPU on the narrow products of compressed layers).
/// `SPARSETRAIN_COOP_TILE=64x32` gives big products 2 × 2 subgroups of
/// 4F × 2F instead (each staged B piece serving four products): on an
/// H200 that ran at 12.8 TFLOP/s against 22.6 at 4096³ (BENCHMARKS.md),
/// so it is not the default. The first candidate that `coop_fits` the
/// adapter is taken.
pub fn coop_shape(m: u32, n: u32, kept: bool, support: CoopSupport, wg_bytes: u32) -> Result<(u32, u32, u32)> {
    let f = support.frag;
    let big = !kept && m.div_ceil(8 * f) * n.div_ceil(4 * f) >= 256;
    let tall = std::env::var("SPARSETRAIN_COOP_TILE").is_ok_and(|v| v.trim() == "64x32");
    let preferred: &[(u32, u32, u32)] = match (big, tall) {
        (true, true) => &[(4, 2, 2), (2, 4, 2), (2, 2, 2)],
        (true, false) => &[(2, 4, 2), (2, 2, 2)],
        (false, _) => &[(2, 2, 2)],
    };
    preferred.iter().copied().find(|&s| coop_fits(s, support, wg_bytes)).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "the mixed-precision matmul has no block shape for subgroups of {} within {wg_bytes} bytes of workgroup memory",
            support.subgroup
        ))
    })
}

/// `matmul_coop_direct`'s shape for an m × n product on cooperative
/// matrices of f × f: (pieces a side per subgroup, subgroups along M,
/// along N). Products that still give at least 256 block tiles of 8f × 8f
/// (128 × 128) run 4 × 4 pieces per subgroup on 2 × 2 subgroups (the shape
/// of issue 9's probe, 77 TFLOP/s on an H100); smaller ones and those a
/// kept count sizes 2 × 2 pieces (64 × 64 blocks). Its only workgroup
/// memory is the epilogue's scratch, well within any adapter's.
pub fn coop_direct_shape(m: u32, n: u32, kept: bool, f: u32) -> (u32, u32, u32) {
    let big = !kept && m.div_ceil(8 * f) * n.div_ceil(8 * f) >= 256;
    if big { (4, 2, 2) } else { (2, 2, 2) }
}

/// `matmul_coop_tiled`'s shape for an m × n product where none is asked.
/// The direct rule's big products (`coop_direct_shape`: 4 × 4 pieces per
/// subgroup) run on eight subgroups instead of four, 2 × 4 (blocks of
/// 8f × 16f, 128 × 256 at f = 16) where n ≥ m and 4 × 2 otherwise, where
/// the adapter has the threads and the workgroup memory (`coop_tiled_depth`:
/// K slices of 16 in 48 KiB, of 32 where 72.5 KiB fit); the rest, and
/// adapters without, run the direct rule's shape. On an H100 eight
/// subgroups multiplied 4096³ at 116–124 TFLOP/s against four's 95–109,
/// and the 8192-wide MLP's dense mixed step took 9.2–9.4 ms of GPU time
/// against 11.0; its first layer's weight gradient (8192 × 784, 224 tiles
/// of 256 × 128 for 132 multiprocessors) took 0.27 ms (BENCHMARKS.md,
/// twentieth session).
pub fn coop_tiled_shape(m: u32, n: u32, kept: bool, support: CoopSupport, limits: &wgpu::Limits) -> (u32, u32, u32) {
    let rule = coop_direct_shape(m, n, kept, support.frag);
    if rule != (4, 2, 2) {
        return rule;
    }
    let shape = if n >= m { (4, 2, 4) } else { (4, 4, 2) };
    let threads = 8 * support.subgroup;
    let fits = threads <= limits.max_compute_invocations_per_workgroup
        && threads <= limits.max_compute_workgroup_size_x
        && coop_tiled_depth(shape, support, limits.max_compute_workgroup_storage_size).is_some();
    if fits { shape } else { rule }
}

/// The K slice depth (CBK) `matmul_coop_tiled` runs a `matmul_coop_direct`
/// shape at on an adapter, 32 or else 16, or None where neither fits: each
/// thread copies at most COOP_MAX_LOADS (8) chunks of 8 halves of a slice
/// per operand, and the double-buffered slices of both operands plus the
/// subgroups' f32 scratch fit the workgroup memory (the kernel's
/// COOP_A_LEN, COOP_B_LEN with COOP_TN = TM, COOP_C_LEN).
/// The rule's 4 × 4 pieces on 2 × 2 subgroups take 48 640 bytes at 16 × 16
/// pieces and CBK = 32: within the 48 KiB GPUs offer. Eight subgroups (4 ×
/// 2 or 2 × 4, tiles of 256 × 128 or 128 × 256) take as much at CBK = 16:
/// half as deep a slice a barrier, a quarter fewer staged halves a FLOP.
pub fn coop_tiled_depth((tm, wm, wn): (u32, u32, u32), support: CoopSupport, wg_bytes: u32) -> Option<u32> {
    const PAD: u32 = 8;
    let f = support.frag;
    let (bm, bn) = (f * tm * wm, f * tm * wn);
    let threads = wm * wn * support.subgroup;
    [32, 16].into_iter().filter(|&cbk| cbk % f == 0).find(|&cbk| {
        let loads_ok = bm * cbk / 8 <= 8 * threads && bn * cbk / 8 <= 8 * threads;
        let bytes = 2 * (bm + PAD) * (cbk + PAD) * 2 + 2 * (bn + PAD) * (cbk + PAD) * 2 + f * (f + 4) * wm * wn * 4;
        loads_ok && bytes <= wg_bytes
    })
}

/// Whether a `matmul_coop` shape runs on an adapter: each thread stages at
/// most COOP_MAX_LOADS (8) vec4 of a K slice (CBK = 32) per operand, and
/// the two double-buffered f16 slices plus the subgroups' f32 scratch fit
/// the workgroup memory (the kernel's COOP_*_LEN).
pub fn coop_fits((tm, wm, wn): (u32, u32, u32), support: CoopSupport, wg_bytes: u32) -> bool {
    const CBK: u32 = 32;
    const PAD: u32 = 8;
    let f = support.frag;
    let (bm, bn) = (f * tm * wm, 2 * f * wn);
    let threads = wm * wn * support.subgroup;
    let loads_ok = bm * CBK / 4 <= 8 * threads && bn * CBK / 4 <= 8 * threads;
    let bytes = 2 * (bm + PAD) * (CBK + PAD) * 2 + 2 * (bn + PAD) * (CBK + PAD) * 2 + f * (f + 4) * wm * wn * 4;
    loads_ok && bytes <= wg_bytes
}

/// The output tile of one `matmul_regtile` workgroup of shape `wg` for an
/// m × n product: the fewest threads along N (a power of two, at most wg.x)
/// whose 4-wide columns cover n, the rest of the workgroup stacked along M;
/// where m fills every tile's rows whatever the shape, the widest that pads
/// n by at most an eighth. Keep in sync with `regtile_threads_x` in
/// matmul.wgsl.
pub fn regtile_tile(wg: UVec2, m: u32, n: u32) -> UVec2 {
    let quads_n = n.div_ceil(4);
    let mut tx = 1;
    while tx < quads_n && tx < wg.x {
        tx *= 2;
    }
    let mut tx = tx.min(wg.x);
    if m.div_ceil(4) >= wg.x * wg.y {
        // The widest that pads n by at most an eighth (one always does).
        let mut t = tx;
        while t > 0 {
            if quads_n.div_ceil(t) * t * 8 <= quads_n * 9 {
                tx = t;
                break;
            }
            t /= 2;
        }
    }
    UVec2::new(4 * tx, 4 * ((wg.x * wg.y) / tx))
}

/// Splits of K for a product by `variant` of `tiles` output tiles and
/// inner size `k` on a device of type `ty`; `kept_tiles` where a kept count
/// sets M or N, `kept_k` where one sets K (known only on the device).
///
/// - GPUs (`shared`, `wide`, `coop`): enough workgroups for a large GPU
///   (about 256: two waves of 132 multiprocessors) where the tiles alone
///   leave most of it idle and K is long, with splits of at least 512.
///   Tiles are counted at the capacity where a kept count sets M or N; a
///   product this leaves unsplit may leave its count to the device
///   (`kept_splits` in matmul_split.rs).
/// - CPU adapters (`regtile`; lavapipe runs each workgroup on one of the
///   host's cores): a product of fewer than four tiles per core leaves cores
///   idle, or waiting on its widest tile, while its few workgroups walk a
///   long K — a convolution's weight gradient (K = batch × pixels), above
///   all at a few kept channels. It splits K until every core has about four
///   workgroups, in splits of at least 2048. Where a kept count sets M or N,
///   one tile is assumed, as a small count leaves; where one sets K, the
///   product is not split (its K on the device may be far below the
///   capacity: a layer's kept inputs). The split count, and so the order of
///   the sums, follows the host's core count.
///
/// Other pairings (`regtile` on a GPU, `shared` on a CPU adapter) are not
/// split unless asked (`Matmul::split_k`).
pub fn auto_splits(ty: wgpu::DeviceType, variant: Variant, tiles: u32, k: u32, kept_tiles: bool, kept_k: bool) -> u32 {
    let cpu = ty == wgpu::DeviceType::Cpu;
    if variant == Variant::Thin {
        return if cpu || kept_k { 1 } else { thin_splits(tiles, k) };
    }
    if !variant.splits_k() || cpu != (variant == Variant::RegTile) {
        return 1;
    }
    if cpu {
        let want = 4 * host_cores();
        let tiles = if kept_tiles { 1 } else { tiles.max(1) };
        if kept_k || tiles >= want || k < 4096 {
            return 1;
        }
        return want.div_ceil(tiles).min(k / 2048).clamp(1, 64);
    }
    const TARGET: u32 = 256;
    if tiles >= TARGET / 2 || k < 2048 {
        return 1;
    }
    (TARGET / tiles.max(1)).min(k / 512).clamp(1, 64)
}

/// The host's cores, which a CPU adapter runs workgroups on.
fn host_cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(1024) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_coop_takes_eight_subgroups_for_big_products() {
        use crate::device::report::CoopSupport;
        let gpu = CoopSupport { subgroup: 32, frag: 16 };
        let limits = wgpu::Limits { max_compute_workgroup_storage_size: 49152, ..wgpu::Limits::default() };
        assert_eq!(coop_tiled_shape(4096, 4096, false, gpu, &limits), (4, 2, 4));
        assert_eq!(coop_tiled_shape(8192, 2048, false, gpu, &limits), (4, 4, 2));
        // Small products and kept counts: the direct rule's 2 × 2 pieces.
        assert_eq!(coop_tiled_shape(256, 1024, false, gpu, &limits), (2, 2, 2));
        assert_eq!(coop_tiled_shape(4096, 4096, true, gpu, &limits), (2, 2, 2));
        // Without the workgroup memory or the threads: four subgroups.
        let small = wgpu::Limits { max_compute_workgroup_storage_size: 32768, ..limits.clone() };
        assert_eq!(coop_tiled_shape(4096, 4096, false, gpu, &small), (4, 2, 2));
        let wide = CoopSupport { subgroup: 64, frag: 16 };
        assert_eq!(coop_tiled_shape(4096, 4096, false, wide, &limits), (4, 2, 2));
    }

    #[test]
    fn tiled_coop_fits_the_rule_shape_in_48_kib() {
        use crate::device::report::CoopSupport;
        let gpu = CoopSupport { subgroup: 32, frag: 16 };
        assert_eq!(coop_tiled_depth((4, 2, 2), gpu, 49152), Some(32));
        // 48 639 bytes: one short of CBK = 32; CBK = 16 takes 31 232.
        assert_eq!(coop_tiled_depth((4, 2, 2), gpu, 48639), Some(16));
        // Eight subgroups: 48 640 bytes at CBK = 16, 74 240 at 32.
        assert_eq!(coop_tiled_depth((4, 2, 4), gpu, 49152), Some(16));
        assert_eq!(coop_tiled_depth((4, 4, 2), gpu, 49152), Some(16));
        assert_eq!(coop_tiled_depth((4, 4, 2), gpu, 48639), None);
        assert_eq!(coop_tiled_depth((2, 2, 2), gpu, 32768), Some(32));
        // Lavapipe's 8 × 8 pieces in 32 KiB.
        let cpu = CoopSupport { subgroup: 8, frag: 8 };
        assert_eq!(coop_tiled_depth((4, 2, 2), cpu, 32768), Some(32));
        assert_eq!(coop_tiled_depth((4, 4, 2), cpu, 32768), Some(16));
        assert_eq!(coop_tiled_depth((4, 2, 4), cpu, 32768), Some(16));
        // Four subgroups of 8 copying the 512 chunks of a 128-row slice: more
        // than 8 each at CBK = 32, 256 (8 each) at 16.
        assert_eq!(coop_tiled_depth((4, 4, 1), cpu, 1 << 20), Some(16));
        assert_eq!(coop_tiled_depth((4, 4, 1), CoopSupport { subgroup: 4, frag: 8 }, 1 << 20), None);
    }

    #[test]
    fn thin_products_split_on_gpus_only_over_a_static_k() {
        use wgpu::DeviceType::{Cpu, DiscreteGpu};
        assert_eq!(auto_splits(DiscreteGpu, Variant::Thin, 128, 8192, false, false), 4);
        assert_eq!(auto_splits(DiscreteGpu, Variant::Thin, 64, 2048, true, false), 8);
        // K a kept count (a sparse forward product), or a CPU adapter: unsplit.
        assert_eq!(auto_splits(DiscreteGpu, Variant::Thin, 128, 8192, false, true), 1);
        assert_eq!(auto_splits(Cpu, Variant::Thin, 1, 1 << 20, false, false), 1);
    }

    #[test]
    fn wide_tiles_shrink_for_kept_sizes() {
        // x along N (columns), y along M (rows); 8 outputs per thread.
        assert_eq!(wide_rule(false, false), UVec2::new(16, 16));
        assert_eq!(wide_rule(true, false), UVec2::new(8, 8));
        // Aᵀ·B (weight gradients): 128 rows × 64 columns, unless kept.
        assert_eq!(wide_rule(false, true), UVec2::new(8, 16));
        assert_eq!(wide_rule(true, true), UVec2::new(8, 8));
        // A tile asked for wins over the rule (and the variable).
        let asked = TileFit { kept: true, wide_wg: Some(UVec2::new(16, 8)), ..TileFit::default() };
        assert_eq!(wide_workgroup(asked).unwrap(), UVec2::new(16, 8));
        assert_eq!(crate::device::variant::check_wide_tile(64, 128).unwrap(), UVec2::new(16, 8));
    }

    #[test]
    fn shared_tiles_thin_along_a_side_of_16_or_less() {
        // x along N (columns), y along M (rows); 4 outputs per thread.
        assert_eq!(shared_workgroup(2048, 10), UVec2::new(4, 32));
        assert_eq!(shared_workgroup(10, 8192), UVec2::new(32, 4));
        assert_eq!(shared_workgroup(16, 17), UVec2::new(32, 4));
        assert_eq!(shared_workgroup(17, 17), UVec2::new(16, 16));
        assert_eq!(shared_workgroup(5, 7), UVec2::new(16, 16));
    }

    #[test]
    fn wide_pads_the_transposing_side_where_it_fits() {
        let wg = UVec2::new(16, 16);
        // (trans_a, trans_b) of A·B, A·Bᵀ, Aᵀ·B: A [M, K] and B [N, K] pad.
        assert_eq!(wide_pads(49152, 8, wg, (false, false), true), (1, 0));
        assert_eq!(wide_pads(49152, 8, wg, (false, true), true), (1, 1));
        assert_eq!(wide_pads(49152, 8, wg, (true, false), true), (0, 0));
        assert_eq!(wide_pads(49152, 8, wg, (false, true), false), (0, 0));
        // 128 × 128 with slices of 16 fills 32 KiB unpadded: no room.
        assert_eq!(wide_pads(32768, 16, wg, (false, false), true), (0, 0));
        assert_eq!(wide_pads(33792, 16, wg, (false, true), true), (1, 1));
        assert_eq!(wide_pads(32768, 8, UVec2::new(8, 8), (false, true), true), (1, 1));
    }

    #[test]
    fn coop_shapes_fit_the_adapter() {
        // 32-wide subgroups, 48 KiB: 4 × 2 subgroups for big products.
        let tc = |subgroup| CoopSupport { subgroup, frag: 16 };
        assert_eq!(coop_shape(4096, 4096, false, tc(32), 49152).unwrap(), (2, 4, 2));
        assert_eq!(coop_shape(256, 1024, false, tc(32), 49152).unwrap(), (2, 2, 2));
        // Kept counts may be far below the capacity: 64 × 64 blocks.
        assert_eq!(coop_shape(4096, 4096, true, tc(32), 49152).unwrap(), (2, 2, 2));
        // 32 KiB cannot hold the big shape's slices (43520 bytes).
        assert!(!coop_fits((2, 4, 2), tc(32), 32768));
        assert_eq!(coop_shape(4096, 4096, false, tc(32), 32768).unwrap(), (2, 2, 2));
        // Narrow subgroups: 16-wide threads still stage 8 vec4 each on
        // 2 × 2; 8-wide ones would need 16, which the kernel cannot.
        assert!(coop_fits((2, 2, 2), tc(16), 49152));
        assert!(!coop_fits((4, 2, 2), tc(16), 49152));
        assert!(coop_shape(64, 64, false, tc(8), 49152).is_err());
        // 8 × 8 pieces on 8-wide subgroups (lavapipe): 32 × 32 blocks of
        // 4 vec4 per thread, 4 × 2 subgroups for big products.
        let lvp = CoopSupport { subgroup: 8, frag: 8 };
        assert_eq!(coop_shape(64, 64, false, lvp, 32768).unwrap(), (2, 2, 2));
        assert_eq!(coop_shape(4096, 4096, false, lvp, 32768).unwrap(), (2, 4, 2));
        // The direct kernel: 128 × 128 blocks where they fill a large GPU,
        // else 64 × 64 (on 8 × 8 pieces 64 × 64 and 32 × 32).
        assert_eq!(coop_direct_shape(4096, 4096, false, 16), (4, 2, 2));
        assert_eq!(coop_direct_shape(2048, 2048, false, 16), (4, 2, 2));
        assert_eq!(coop_direct_shape(256, 4096, false, 16), (2, 2, 2));
        assert_eq!(coop_direct_shape(8192, 8192, true, 16), (2, 2, 2));
        assert_eq!(coop_direct_shape(1024, 1024, false, 8), (4, 2, 2));
    }

    #[test]
    fn splits_fill_the_device() {
        use Variant::{RegTile, Shared};
        use wgpu::DeviceType::{Cpu, DiscreteGpu};
        // GPUs: about 256 workgroups for few tiles over a long K.
        assert_eq!(auto_splits(DiscreteGpu, Shared, 3, 131072, false, false), 64);
        assert_eq!(auto_splits(DiscreteGpu, Shared, 16, 131072, false, false), 16);
        assert_eq!(auto_splits(DiscreteGpu, Shared, 200, 131072, false, false), 1);
        assert_eq!(auto_splits(DiscreteGpu, Shared, 3, 1024, false, false), 1);
        // Each rule for its own variant only.
        assert_eq!(auto_splits(DiscreteGpu, RegTile, 3, 131072, false, false), 1);
        assert_eq!(auto_splits(Cpu, Shared, 1, 131072, false, false), 1);
        assert_eq!(auto_splits(Cpu, Variant::Naive, 1, 131072, false, false), 1);
        // CPUs: about four workgroups per core, in splits of at least 2048,
        // none on short K or a kept K.
        let want = 4 * host_cores();
        assert_eq!(auto_splits(Cpu, RegTile, 1, 131072, false, false), want.min(64));
        assert_eq!(auto_splits(Cpu, RegTile, want, 131072, false, false), 1);
        assert_eq!(auto_splits(Cpu, RegTile, want, 131072, true, false), want.min(64));
        assert_eq!(auto_splits(Cpu, RegTile, 1, 8192, true, false), want.min(4));
        assert_eq!(auto_splits(Cpu, RegTile, 1, 4095, true, false), 1);
        assert_eq!(auto_splits(Cpu, RegTile, 1, 131072, true, true), 1);
    }

    #[test]
    fn regtile_tiles_follow_narrow_and_tall_products() {
        let wg = UVec2::new(8, 8);
        // Wide products keep the square tile.
        assert_eq!(regtile_tile(wg, 4096, 4096), UVec2::new(32, 32));
        // Narrow N: the fewest threads along N, the rest along M.
        assert_eq!(regtile_tile(wg, 100, 8), UVec2::new(8, 128));
        assert_eq!(regtile_tile(wg, 100, 1), UVec2::new(4, 256));
        // N = 36 (nine 4-wide columns): short M keeps the covering width;
        // tall M takes the widest that pads N by at most an eighth.
        assert_eq!(regtile_tile(wg, 100, 36), UVec2::new(32, 32));
        assert_eq!(regtile_tile(wg, 1031, 36), UVec2::new(8, 128));
        assert_eq!(regtile_tile(wg, 1031, 40), UVec2::new(8, 128));
        assert_eq!(regtile_tile(wg, 1031, 20), UVec2::new(4, 256));
        // 103 columns of four: 32-wide tiles pad by one column only.
        assert_eq!(regtile_tile(wg, 1031, 410), UVec2::new(32, 32));
        // A workgroup width that is not a power of two.
        assert_eq!(regtile_tile(UVec2::new(6, 6), 10, 8), UVec2::new(8, 72));
    }

    #[test]
    fn gpus_leave_kept_weight_gradients_splits_to_the_device() {
        use crate::device::variant::KeptSplits;
        use crate::ops::matmul_split::kept_splits;
        use wgpu::DeviceType::{Cpu, DiscreteGpu, IntegratedGpu};
        let kept = TileFit { kept: true, ..TileFit::default() };
        let (s, room) = kept_splits(DiscreteGpu, Variant::Wide, kept, (false, 2048), KeptSplits::Auto).unwrap();
        assert!(s >= 2 && room >= 1 << 20, "{s} splits within {room}");
        assert!(kept_splits(IntegratedGpu, Variant::Shared, kept, (false, 4096), KeptSplits::Auto).is_some());
        // `regtile` splits on GPUs only when asked, as in `auto_splits`.
        assert_eq!(kept_splits(DiscreteGpu, Variant::RegTile, kept, (false, 4096), KeptSplits::Auto), None);
        // Not on CPU adapters (auto_splits' rule), not for static sizes, a
        // kept K, a short K or the naive kernel.
        assert_eq!(kept_splits(Cpu, Variant::RegTile, kept, (false, 2048), KeptSplits::Auto), None);
        assert_eq!(kept_splits(DiscreteGpu, Variant::Wide, TileFit::default(), (false, 2048), KeptSplits::Auto), None);
        assert_eq!(kept_splits(DiscreteGpu, Variant::Wide, kept, (true, 2048), KeptSplits::Auto), None);
        assert_eq!(kept_splits(DiscreteGpu, Variant::Wide, kept, (false, 2047), KeptSplits::Auto), None);
        assert_eq!(kept_splits(DiscreteGpu, Variant::Naive, kept, (false, 2048), KeptSplits::Auto), None);
        // `all`: a kept or short K too, still only kept-count products on
        // GPUs; `off`: none.
        assert!(kept_splits(DiscreteGpu, Variant::Wide, kept, (true, 2048), KeptSplits::All).is_some());
        assert!(kept_splits(DiscreteGpu, Variant::Wide, kept, (false, 784), KeptSplits::All).is_some());
        assert_eq!(kept_splits(DiscreteGpu, Variant::Wide, TileFit::default(), (true, 784), KeptSplits::All), None);
        assert_eq!(kept_splits(Cpu, Variant::RegTile, kept, (true, 784), KeptSplits::All), None);
        assert_eq!(kept_splits(DiscreteGpu, Variant::Wide, kept, (false, 4096), KeptSplits::Off), None);
    }

    #[test]
    fn tiles_are_sized_for_kept_m_or_n() {
        use crate::ops::matmul::{Layout, Matmul, Size as S};
        let kept = S::Kept { count: 0, blocks: 1 };
        let fit = |m: S, n: S, k: S| Matmul::new(Layout::NN).sizes(None, m, n, k).tile_fit().unwrap();
        assert!(!Matmul::new(Layout::NN).tile_fit().unwrap().kept);
        assert!(fit(kept, S::Static, S::Static).kept);
        assert!(fit(S::Static, kept, S::Static).kept);
        // A kept K, or a batch for M, leaves every tile of the grid work.
        assert!(!fit(S::Static, S::Static, kept).kept);
        assert!(!fit(S::Batch { per: 1 }, S::Static, kept).kept);
        // A tile asked for becomes `wide`'s workgroup, x along the columns.
        let asked = Matmul::new(Layout::NT).wide_tile(64, 128).tile_fit().unwrap();
        assert_eq!(asked.wide_wg, Some(glam::UVec2::new(16, 8)));
        assert!(Matmul::new(Layout::NT).wide_tile(96, 64).tile_fit().is_err());
    }
}
