//! The shapes of `matmul_coop` on an adapter's cooperative matrices: how
//! many pieces each subgroup multiplies and how its subgroups lie, for the
//! staged kernel (`coop_shape`), from f16 packs directly
//! (`coop_direct_shape`) and through workgroup tiles (`coop_tiled_shape`,
//! `coop_tiled_depth`), each checked against the adapter's threads and
//! workgroup memory (`coop_fits`). `matmul_tiles` turns them into blocks.

use crate::device::gpu::CoopSupport;
use crate::error::{Error, Result};

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
}
