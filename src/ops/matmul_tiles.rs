//! Tile shapes of the matmul launcher (`ops::matmul`): the workgroup and
//! output tile of each variant, `matmul_regtile`'s narrowing to N,
//! `matmul_wide`'s sides of 64 or 128, `matmul_coop`'s blocks from its
//! subgroup layouts (`matmul_coop_shape`), `matmul_thin`'s (`matmul_thin`),
//! and how far K is split on GPUs.

use glam::UVec2;

// Re-exported: callers reach the coop shapes with the other tiles.
pub use super::matmul_coop_shape::{coop_direct_shape, coop_fits, coop_shape, coop_tiled_depth, coop_tiled_shape};
use super::matmul_thin::{thin_blocks, thin_splits};
use crate::device::gpu::Gpu;
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
