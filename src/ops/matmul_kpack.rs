//! The K-major f32 packs of large `wide` products (`matmul_kpack` in
//! shaders/shared/matmul_wide.wgsl). On an H100 `wide` ran Aᵀ·B at 34.5
//! TFLOP/s and A·B, A·Bᵀ at 29–31 (4096³, one call, BENCHMARKS.md): Aᵀ·B
//! stages both operands as rows along M and N, the others stage A (and
//! Bᵀ) from short runs along K. Here an operand stored along K (A as
//! [M, K], B as [N, K]) is copied once per product into a pack laid out
//! the Aᵀ·B way and padded to whole tiles, so every product runs as Aᵀ·B
//! with no bounds checks. The copy is one pass over the operand, worth it
//! only where the product does far more arithmetic than that (`kpack_rule`).

use glam::UVec2;

use bytemuck::Pod;

use crate::device::record::Recorder;
use crate::device::shader::{Constants, Kernel, capped_grid};
use crate::device::tensor::Tensor;
use crate::error::Result;

/// Rows of K a pack tile covers, and its columns (`KPACK_K`, `KPACK_C` in
/// the shader): packs pad K to 32 and M, N to whole block tiles of `wide`
/// (64 or 128).
const TILE_K: u64 = 32;
const TILE_C: u64 = 64;

/// Whether `SPARSETRAIN_WIDE_KPACK=auto` packs a `wide` product of static
/// sizes m × n × k on a device of type `ty`: on GPUs, where the copy (two
/// passes over m·k + k·n floats) is at most a few percent of the product
/// (1/m + 1/n ≤ 1/512: the product does 256 multiply-adds or more per
/// float copied) and the product is long enough that one more launch does
/// not count (m·n·k ≥ 2³⁰). Software adapters never run `wide` by choice.
/// (The launcher leaves out products that a kept count sizes.)
pub fn kpack_rule(ty: wgpu::DeviceType, (m, n, k): (u32, u32, u32)) -> bool {
    let (m, n, k) = (u64::from(m), u64::from(n), u64::from(k));
    ty != wgpu::DeviceType::Cpu && 512 * (m + n) <= m * n && m * n * k >= 1 << 30
}

/// The floats of the packs of an m × n × k product on `tile` (columns ×
/// rows) blocks: A's where it is stored [M, K] (`trans_a` false), B's
/// where it is stored [N, K] (`trans_b`), at the static sizes
/// (capacities); None for an operand already K-major or whose pack would
/// not fit a binding of `max_bytes`.
pub fn kpack_lens(
    (m, n, k): (u32, u32, u32),
    tile: UVec2,
    (trans_a, trans_b): (bool, bool),
    max_bytes: u64,
) -> (Option<usize>, Option<usize>) {
    let kp = u64::from(k).div_ceil(TILE_K) * TILE_K;
    let len = |side: u32, block: u32| {
        let floats = u64::from(side).div_ceil(u64::from(block)) * u64::from(block) * kp;
        // u32 indices of vec4 in the kernel; at least one vec4.
        (floats * 4 <= max_bytes && floats <= u64::from(u32::MAX)).then(|| floats.max(4) as usize)
    };
    let a = if trans_a { None } else { len(m, tile.y) };
    let b = if trans_b { len(n, tile.x) } else { None };
    (a, b)
}

/// One launch of `matmul_kpack` writing the packs of `lens` (A's, B's)
/// into the device's shared pack buffers (`Tensor::kpack`): the product's
/// layout, sizes and block tile in `constants` (with `KPACK_A`, `KPACK_B`,
/// `PACK_BM`, `PACK_BN`) and `params`; at most `cap` workgroups.
/// Returns the packs to bind in A's and B's places.
pub(super) fn record_kpacks<P: Pod>(
    rec: &mut Recorder,
    (constants, params): (&Constants, &P),
    (a, b, dims): (&Tensor, &Tensor, &Tensor),
    (len_a, len_b): (Option<usize>, Option<usize>),
    cap: u32,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let gpu = rec.gpu();
    // The side not packed is still bound (unwritten): a vec4.
    let pa = Tensor::kpack(gpu, 0, len_a.unwrap_or(4))?;
    let pb = Tensor::kpack(gpu, 1, len_b.unwrap_or(4))?;
    let pack: Constants = constants
        .iter()
        .copied()
        .filter(|(name, _)| {
            matches!(*name, "TRANS_A" | "TRANS_B" | "VEC4_A" | "VEC4_B" | "KPACK_A" | "KPACK_B" | "PACK_BM" | "PACK_BN")
        })
        .collect();
    // Tiles of 32 × 64 in the packs at the static sizes (kept counts and
    // batches only shrink them; the kernel loops over its launch's tiles).
    let tiles = |len: Option<usize>| len.map_or(0, |l| l as u64 / (TILE_K * TILE_C));
    let total = u32::try_from(tiles(len_a) + tiles(len_b)).unwrap_or(u32::MAX);
    let groups = capped_grid(total, cap, gpu.limits().max_compute_workgroups_per_dimension);
    let bind = [(1, a), (2, b), (6, dims), (16, &pa), (17, &pb)];
    rec.dispatch(Kernel::MatmulKpack, &pack, (0, params), &bind, groups)?;
    Ok((len_a.map(|_| pa), len_b.map(|_| pb)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_large_gpu_products_pack() {
        let gpu = wgpu::DeviceType::DiscreteGpu;
        assert!(kpack_rule(gpu, (4096, 4096, 4096)));
        assert!(kpack_rule(gpu, (2048, 8192, 784)));
        // 1/256 + 1/4096 > 1/512: the copy would cost too much.
        assert!(!kpack_rule(gpu, (256, 4096, 4096)));
        // Too short for one more launch to vanish.
        assert!(!kpack_rule(gpu, (1024, 1024, 512)));
        assert!(!kpack_rule(wgpu::DeviceType::Cpu, (4096, 4096, 4096)));
    }

    #[test]
    fn pack_lengths_follow_the_layout_and_the_binding_limit() {
        let tile = UVec2::new(64, 128);
        // A·B: A [M, K] packs (K to 32, M to 128 rows); B [K, N] does not.
        assert_eq!(kpack_lens((130, 70, 33), tile, (false, false), 1 << 30), (Some(64 * 256), None));
        // A·Bᵀ: both (N to 64 columns).
        assert_eq!(kpack_lens((130, 70, 33), tile, (false, true), 1 << 30), (Some(64 * 256), Some(64 * 128)));
        // Aᵀ·B: neither.
        assert_eq!(kpack_lens((130, 70, 33), tile, (true, false), 1 << 30), (None, None));
        // An empty K still gets a vec4.
        assert_eq!(kpack_lens((4, 4, 0), tile, (false, true), 1 << 30), (Some(4), Some(4)));
        // A pack past the binding (1 MiB here) is left out.
        assert_eq!(kpack_lens((1024, 64, 256), tile, (false, true), 1 << 20), (Some(1024 * 256), Some(64 * 256)));
        assert_eq!(kpack_lens((1024, 64, 288), tile, (false, true), 1 << 20), (None, Some(64 * 288)));
    }
}
