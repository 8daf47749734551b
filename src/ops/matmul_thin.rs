//! The launcher's side of `matmul_thin` (shaders/shared/matmul_thin.wgsl):
//! which products run it (`thin_rule`), its workgroups and tiles for each
//! thin side (`thin_blocks`), and its splits of K on GPUs (`thin_splits`,
//! through `auto_splits`).

use glam::UVec2;

use super::matmul_desc::Layout;
use crate::device::variant::Variant;
use crate::error::{Error, Result};

/// The most rows or columns a thin side of `matmul_thin` holds (its
/// THIN_MAX).
pub const THIN_MAX: u32 = 16;

/// `matmul_thin`'s workgroup and tile (x along N) for an m × n product: N thin (at
/// most THIN_MAX columns) on 64 lanes along K × 4 groups of 4 rows (tiles
/// of 16 rows × THIN_MAX columns), else M thin on 32 column quads × 8
/// groups along K (tiles of THIN_MAX rows × 128 columns); an error where
/// neither side is thin. The thin side is the whole tile edge, so the
/// grid runs along the other side alone.
pub fn thin_blocks(m: u32, n: u32) -> Result<(UVec2, UVec2)> {
    let (wg, tile) = if n <= THIN_MAX {
        (UVec2::new(64, 4), UVec2::new(THIN_MAX, 16))
    } else if m <= THIN_MAX {
        (UVec2::new(32, 8), UVec2::new(128, THIN_MAX))
    } else {
        return Err(Error::InvalidArgument(format!(
            "the thin matmul needs M or N of at most {THIN_MAX}, not {m} × {n}"
        )));
    };
    Ok((wg, tile))
}

/// Whether the launcher runs a product of static sizes m × n × k (the
/// capacities where a kept count or the step's batch sets them) on
/// `matmul_thin` rather than on `variant`, the device's choice: on GPUs,
/// for the f32 tile variants and for `coop`, where a side is at most THIN_MAX, the other
/// at least 256 and K at least 1024: a classifier's forward product and
/// weight gradient over a wide layer and a large batch. A short K leaves
/// the kernel's lanes idle and its sums' reduction in workgroup memory
/// (four barriers and more per four outputs) unpaid for, as in the
/// convolutions of few channels that ResNet-20 and LeNet-5 run (K of 25
/// to 150, or a long side of 25 to 150), which keep their tiles. Not for
/// CPU adapters, whose `regtile` narrows its tile to N already and whose
/// cores run each workgroup's barriers one lane at a time.
///
/// Mixed precision too: such a product is bound by memory, so tensor cores
/// buy nothing there, while `coop` pads the thin side to a whole block of
/// 64 and packs the long operand to f16 first. On an H100 (twentieth
/// session) the output layer's forward product and weight gradient took
/// 0.28 ms of the dense mixed step that way, packs and reductions
/// included, and about 0.32 ms of the keep-0.1 one (each sample's one by
/// one). The thin kernel multiplies the f32 operands as they are.
///
/// The long operand must lie along what the kernel reads as vec4: A along
/// K for N thin (A·B, A·Bᵀ: the forward product), B along N for M thin
/// (A·B, Aᵀ·B: the weight gradient); the other way it would read the
/// operand it exists to stream one strided element at a time.
pub fn thin_rule(ty: wgpu::DeviceType, variant: Variant, layout: Layout, (m, n, k): (u32, u32, u32)) -> bool {
    let tile_variant = matches!(variant, Variant::Shared | Variant::Wide | Variant::Coop);
    let long = m.max(n) >= 256 && k >= 1024;
    let along = if n <= THIN_MAX { !layout.trans_a() } else { m <= THIN_MAX && !layout.trans_b() };
    ty != wgpu::DeviceType::Cpu && tile_variant && long && along
}

/// `matmul_thin`'s splits of K on GPUs: about 512 workgroups of 256
/// threads (four per multiprocessor of a 132-multiprocessor GPU, enough
/// loads in flight to stream the long operand), in splits of at least
/// 256, at most 32. Where a kept count sets the long side, `tiles` counts
/// its capacity. Where one sets K (a sparse forward product over a layer's
/// kept inputs), `auto_splits` does not split: at 10% of 8192 inputs each
/// lane of an unsplit workgroup walks about three quads, and splits would
/// only add their partials and two reduce launches per pair.
pub(super) fn thin_splits(tiles: u32, k: u32) -> u32 {
    const TARGET: u32 = 512;
    if tiles >= TARGET / 2 || k < 512 {
        return 1;
    }
    (TARGET / tiles.max(1)).min(k / 256).clamp(1, 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_products_take_the_thin_kernel_on_gpus() {
        use wgpu::DeviceType::{Cpu, DiscreteGpu, IntegratedGpu};
        // The 784-8192-8192-10 MLP's output layer at batch 2048: forward
        // and weight gradient; its input gradient (K = 10) is not thin.
        assert!(thin_rule(DiscreteGpu, Variant::Shared, Layout::NT, (2048, 10, 8192)));
        assert!(thin_rule(IntegratedGpu, Variant::Wide, Layout::TN, (10, 8192, 2048)));
        assert!(!thin_rule(DiscreteGpu, Variant::Wide, Layout::NN, (2048, 8192, 10)));
        // CPU adapters, other variants, short K, short long sides.
        assert!(!thin_rule(Cpu, Variant::Shared, Layout::NT, (2048, 10, 8192)));
        assert!(!thin_rule(DiscreteGpu, Variant::RegTile, Layout::NT, (2048, 10, 8192)));
        assert!(thin_rule(DiscreteGpu, Variant::Coop, Layout::NT, (2048, 10, 8192)));
        assert!(!thin_rule(DiscreteGpu, Variant::Naive, Layout::NT, (2048, 10, 8192)));
        assert!(!thin_rule(DiscreteGpu, Variant::Shared, Layout::NN, (131072, 16, 144)));
        assert!(!thin_rule(DiscreteGpu, Variant::Shared, Layout::TN, (16, 144, 131072)));
        assert!(!thin_rule(DiscreteGpu, Variant::Shared, Layout::NT, (2048, 17, 8192)));
        // The long operand across what the kernel reads as vec4: A stored
        // [K, M] for N thin, B stored [N, K] for M thin.
        assert!(!thin_rule(DiscreteGpu, Variant::Shared, Layout::TN, (2048, 10, 8192)));
        assert!(!thin_rule(DiscreteGpu, Variant::Shared, Layout::NT, (10, 8192, 2048)));
        assert!(thin_rule(DiscreteGpu, Variant::Shared, Layout::NN, (10, 8192, 2048)));
        // N thin on 64 lanes × 4 row groups, else M thin on 32 column
        // quads × 8 groups along K; neither side thin is refused.
        assert_eq!(thin_blocks(2048, 10).unwrap(), (UVec2::new(64, 4), UVec2::new(16, 16)));
        assert_eq!(thin_blocks(10, 8192).unwrap(), (UVec2::new(32, 8), UVec2::new(128, 16)));
        assert!(thin_blocks(17, 17).is_err());
        // About 512 workgroups (splits of at least 256 rows of K, at most 32).
        assert_eq!(thin_splits(128, 8192), 4);
        assert_eq!(thin_splits(64, 2048), 8);
        assert_eq!(thin_splits(1, 1 << 20), 32);
        assert_eq!(thin_splits(300, 8192), 1);
    }
}
