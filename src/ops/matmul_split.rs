//! Split-K recording for the matmul launcher (`ops::matmul`): a product's
//! K split over the grid's z into raw partial products in the device's
//! scratch, which `matmul_split_reduce` adds up through the epilogues; the
//! split count fixed when recorded, or left to the device for products
//! whose kept counts vary from step to step (`Matmul::split_k_within`).

use bytemuck::Pod;

use super::matmul_tiles::TileFit;
use crate::device::record::Recorder;
use crate::device::shader::{Constants, Kernel, capped_grid, grid_2d};
use crate::device::tensor::Tensor;
use crate::device::variant::{KeptSplits, Variant};
use crate::error::Result;
use glam::UVec2;

/// On GPUs, a product whose M or N is a kept count and whose K (at least
/// 2048, not a kept count) is long, such as a linear layer's weight
/// gradient over the batch, leaves its splits of K to the device
/// (`Matmul::split_k_within`): up to KEPT_SPLITS within KEPT_SPLIT_ROOM
/// floats (16 MiB) of partials, so that it splits in four while its output
/// holds at most a million values (at 10% of an 8192-wide layer, 819 × 819:
/// 169 tiles of 64 × 64, two warps each, for 132 multiprocessors) and not
/// at all from two million (keep 0.18 and up there).
const KEPT_SPLITS: u32 = 4;
const KEPT_SPLIT_ROOM: usize = 1 << 22;

/// The device-decided splits (`Matmul::split_k_within`) a product that the
/// fixed rule (`auto_splits`) leaves unsplit takes without asking: on GPUs,
/// by the variants they split (`shared`, `wide`, `coop`), where a kept count
/// sets M or N and K, not a kept count, is at least 2048 (see
/// `KEPT_SPLITS`); with `KeptSplits::All`, wherever a kept count sets M or
/// N; with `KeptSplits::Off`, nowhere.
pub(crate) fn kept_splits(
    ty: wgpu::DeviceType,
    v: Variant,
    fit: TileFit,
    (kept_k, k): (bool, u32),
    rule: KeptSplits,
) -> Option<(u32, usize)> {
    let gpu_split = matches!(v, Variant::Shared | Variant::Wide | Variant::Coop);
    let long_k = match rule {
        KeptSplits::Off => false,
        KeptSplits::Auto => !kept_k && k >= 2048,
        KeptSplits::All => true,
    };
    let take = ty != wgpu::DeviceType::Cpu && gpu_split && fit.kept && long_k;
    take.then_some((KEPT_SPLITS, KEPT_SPLIT_ROOM))
}

/// A split-K launch: splits of K (the grid's z), the floats of partials
/// its scratch holds, the output tiles' grid and its cap.
pub(super) struct Split {
    pub splits: u32,
    pub scratch_len: usize,
    pub groups: glam::UVec3,
    pub cap: u32,
}

/// Split-K: the variant writes each split's raw partial product into the
/// device's scratch, then `matmul_split_reduce` adds them up through the
/// epilogues into C (`bind` is the product's bindings, C at 3; `params`
/// those of the split launch and of the reduce).
pub(super) fn record_split<P: Pod>(
    rec: &mut Recorder,
    kernel: Kernel,
    constants: &Constants,
    (params, reduce): (&P, &P),
    bind: &[(u32, &Tensor)],
    split: Split,
    (m, n): (u32, u32),
) -> Result<()> {
    let scratch = Tensor::split_scratch(rec.gpu(), split.scratch_len)?;
    let first_groups = glam::UVec3::new(split.groups.x, split.groups.y, split.splits);
    record_partials(rec, kernel, constants, params, &with(bind, 3, &scratch), first_groups)?;
    record_reduce(rec, constants, reduce, &with(bind, 1, &scratch), split.cap, (m, n))
}

/// The product's bindings with `t` in `slot`'s place.
pub(super) fn with<'t>(bind: &[(u32, &'t Tensor)], slot: u32, t: &'t Tensor) -> Vec<(u32, &'t Tensor)> {
    bind.iter().map(|&(s, b)| if s == slot { (s, t) } else { (s, b) }).collect()
}

/// The split launch: each split's raw partial product (no epilogue) into
/// the scratch bound as C, over `groups` (z: the splits).
pub(super) fn record_partials<P: Pod>(
    rec: &mut Recorder,
    kernel: Kernel,
    constants: &Constants,
    params: &P,
    bind: &[(u32, &Tensor)],
    groups: glam::UVec3,
) -> Result<()> {
    let mut first = constants.clone();
    for (name, v) in first.iter_mut() {
        if matches!(*name, "BIAS" | "RELU" | "GATE" | "SCATTER") {
            *v = 0.0;
        }
    }
    first.push(("SPLIT_K", 1.0));
    rec.dispatch(kernel, &first, (0, params), bind, groups)
}

/// The reduce pass: the partials (bound as A) added up through the
/// product's store epilogues, on 16 × 16 threads, at most `cap` workgroups.
pub(super) fn record_reduce<P: Pod>(
    rec: &mut Recorder,
    constants: &Constants,
    reduce: &P,
    bind: &[(u32, &Tensor)],
    cap: u32,
    (m, n): (u32, u32),
) -> Result<()> {
    let limit = rec.gpu().limits().max_compute_workgroups_per_dimension;
    let wg = UVec2::new(16, 16);
    let mut reduce_consts: Constants = constants
        .iter()
        .copied()
        .filter(|(name, _)| matches!(*name, "VEC4_C" | "BIAS" | "RELU" | "GATE" | "SCATTER"))
        .collect();
    reduce_consts.extend([("WG_X", f64::from(wg.x)), ("WG_Y", f64::from(wg.y))]);
    let tiles = grid_2d(n, m, wg * 4);
    let reduce_groups = capped_grid(tiles.x.saturating_mul(tiles.y), cap, limit);
    rec.dispatch(Kernel::MatmulSplitReduce, &reduce_consts, (0, reduce), bind, reduce_groups)
}
