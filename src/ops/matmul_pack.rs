//! The f16 packs of mixed-precision products (`ops::matmul` with the `coop`
//! variant): `matmul_pack` rounds each operand to f16 once per product
//! into the device's pack buffers, padded to whole block tiles, and
//! `matmul_coop_direct` multiplies the packs with no staging. Sizes and the
//! recording (also into new tensors: `Matmul::record_packs`).

use glam::UVec2;

use bytemuck::Pod;

use super::u32_of;
use crate::device::record::Recorder;
use crate::device::shader::{Constants, Kernel};
use crate::device::tensor::Tensor;
use crate::error::{Error, Result};

/// The u32 (pairs of halves) of the f16 packs of A and B that
/// `matmul_coop_direct` multiplies for an m × n × k product on `tile`
/// (columns × rows) blocks, at the static sizes (capacities): K padded to a
/// multiple of 32, M and N to whole tiles (`pack_kp` in
/// shaders/shared/matmul_core.wgsl); None where one would not fit a binding
/// of `max_bytes` or u32 indices.
pub fn pack_lens((m, n, k): (u32, u32, u32), tile: UVec2, max_bytes: u64) -> Option<(usize, usize)> {
    let kp = u64::from(k.div_ceil(32)) * 32;
    let halves_a = u64::from(m.div_ceil(tile.y)) * u64::from(tile.y) * kp;
    let halves_b = u64::from(n.div_ceil(tile.x)) * u64::from(tile.x) * kp;
    let fits = |h: u64| h * 2 <= max_bytes && h <= u64::from(u32::MAX);
    // At least one vec2 of u32 each (an empty K has nothing to pack).
    let len = |h: u64| usize::try_from(h / 2).ok().map(|l| l.max(2));
    if fits(halves_a) && fits(halves_b) { len(halves_a).zip(len(halves_b)) } else { None }
}

/// `matmul_pack` of A and B, in one launch, into the device's f16 packs
/// (`Tensor::coop_pack`) for `matmul_coop_direct`: the product's layout,
/// sizes and implicit operand (`constants`, `params`), `lens` from
/// `pack_lens`.
pub(super) fn record_packs<P: Pod>(
    rec: &mut Recorder,
    constants: &Constants,
    params: &P,
    (a, b, dims): (&Tensor, &Tensor, &Tensor),
    (len_a, len_b): (usize, usize),
) -> Result<(Tensor, Tensor)> {
    let gpu = rec.gpu();
    let pa = Tensor::coop_pack(gpu, 0, len_a)?;
    let pb = Tensor::coop_pack(gpu, 1, len_b)?;
    record_pack_into(rec, (constants, params), (a, b, dims), [(&pa, len_a), (&pb, len_b)])?;
    Ok((pa, pb))
}

/// One launch of `matmul_pack`: the packs of A and B into `outs` (each with
/// its length in u32).
pub(super) fn record_pack_into<P: Pod>(
    rec: &mut Recorder,
    (constants, params): (&Constants, &P),
    (a, b, dims): (&Tensor, &Tensor, &Tensor),
    [(out_a, len_a), (out_b, len_b)]: [(&Tensor, usize); 2],
) -> Result<()> {
    const WG: u32 = 256;
    let gpu = rec.gpu();
    let mut pack: Constants = constants
        .iter()
        .copied()
        .filter(|(name, _)| {
            matches!(
                *name,
                "TRANS_A"
                    | "TRANS_B"
                    | "VEC4_A"
                    | "VEC4_B"
                    | "IMPLICIT"
                    | "IM_POW2"
                    | "IM_QUADS_A"
                    | "IM_QUADS_B"
                    | "PACK_BM"
                    | "PACK_BN"
                    | "PAIR"
            )
        })
        .collect();
    pack.extend([("WG_X", f64::from(WG)), ("WG_Y", 1.0)]);
    // One thread per four halves (a vec2 of u32) of the packs.
    let quads = u32_of("matmul", "pack", len_a / 2 + len_b / 2)?;
    let groups = super::grid_for_capacity(gpu, quads, WG);
    let bind = [(1, a), (2, b), (6, dims), (8, out_a), (11, out_b)];
    rec.dispatch(Kernel::MatmulPack, &pack, (0, params), &bind, groups)
}

/// `matmul_pack` of A and B into new tensors of `pack_lens`' lengths, on
/// blocks of `tile` (columns × rows, multiples of 8; `Matmul::record_packs`).
pub(super) fn record_packs_alone<P: Pod>(
    rec: &mut Recorder,
    (constants, params): (&Constants, &P),
    (a, b, dims): (&Tensor, &Tensor, &Tensor),
    (m, n, k): (u32, u32, u32),
    tile: UVec2,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "matmul pack";
    if tile.x == 0 || tile.y == 0 || !tile.x.is_multiple_of(8) || !tile.y.is_multiple_of(8) {
        return Err(Error::InvalidArgument(format!(
            "{OP}: block tiles are whole multiples of 8 a side, got {} × {}",
            tile.y, tile.x
        )));
    }
    let gpu = rec.gpu();
    let (len_a, len_b) = pack_lens((m, n, k), tile, gpu.limits().max_storage_buffer_binding_size)
        .ok_or_else(|| Error::InvalidArgument(format!("{OP}: a pack of {m} × {n} × {k} exceeds one binding")))?;
    let mut constants = constants.clone();
    constants.extend([("PACK_BM", f64::from(tile.y)), ("PACK_BN", f64::from(tile.x))]);
    // Poisoned (NaN halves), so that a test sees any value left unwritten.
    let pa = Tensor::from_u32(gpu, "f16 pack of A", &[len_a], &vec![u32::MAX; len_a])?;
    let pb = Tensor::from_u32(gpu, "f16 pack of B", &[len_b], &vec![u32::MAX; len_b])?;
    record_pack_into(rec, (&constants, params), (a, b, dims), [(&pa, len_a), (&pb, len_b)])?;
    Ok((pa, pb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_lengths_and_the_binding_limit() {
        // K to 32, M and N to whole tiles (128 rows × 64 columns here).
        let tile = UVec2::new(64, 128);
        assert_eq!(pack_lens((130, 70, 33), tile, 1 << 30), Some((256 * 64 / 2, 64 * 128 / 2)));
        // An empty K still gets one vec2 of u32 per pack.
        assert_eq!(pack_lens((4, 4, 0), tile, 1 << 30), Some((2, 2)));
        // A pack past the binding (here 1 MiB) runs staged instead.
        assert_eq!(pack_lens((1024, 64, 512), tile, 1 << 20), Some((1024 * 512 / 2, 512 * 64 / 2)));
        assert_eq!(pack_lens((1024, 64, 544), tile, 1 << 20), None);
        assert_eq!(pack_lens((64, 1088, 512), tile, 1 << 20), None);
    }
}
