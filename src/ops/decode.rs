//! Launcher of shaders/decode.wgsl: a batch's float inputs built on the
//! device from its pixel bytes and the per-channel tables of its loader
//! (`data::Norm::tables`), so that training uploads a quarter of the bytes
//! per step (`Trainer::stage_byte_batches`).

use super::{KernelParams, Rows, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, grid_1d};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// Keep in sync with `DecodeParams` in shaders/decode.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DecodeParams {
    pub rows: u32,
    pub rows_code: u32,
    pub dim: u32,
    pub channels: u32,
}

impl KernelParams for DecodeParams {
    const SHADER: Shader = Shader::Decode;
    const WGSL_NAME: &'static str = "DecodeParams";
}

const WG: u32 = 256;

/// The u32 words that hold `values` bytes, four to a word.
pub fn words_for(values: usize) -> usize {
    values.div_ceil(4)
}

/// Packs bytes four to a little-endian u32 word (the layout `decode_bytes`
/// reads), the last word padded with zeros, appending to `out`.
pub fn pack_bytes(bytes: &[u8], out: &mut Vec<u32>) {
    let mut chunks = bytes.chunks_exact(4);
    out.extend(chunks.by_ref().map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 4];
        last[..rest.len()].copy_from_slice(rest);
        out.push(u32::from_le_bytes(last));
    }
}

/// x[i] = table[(i % channels)·256 + byte i] over x: [rows, dim] (NHWC:
/// `dim` a multiple of `channels`), the bytes packed by `pack_bytes` and
/// `table` [channels, 256].
pub fn decode_bytes(
    rec: &mut Recorder,
    (bytes, table): (&Tensor, &Tensor),
    x: &Tensor,
    rows: impl Into<Rows>,
    (dim, channels): (usize, usize),
) -> Result<()> {
    const OP: &str = "decode_bytes";
    let rows = rows.into();
    if channels == 0 || !dim.is_multiple_of(channels) {
        return Err(Error::InvalidArgument(format!(
            "{OP}: {dim} values per sample are not a whole number of pixels of {channels} channels"
        )));
    }
    let values = rows.max() * dim;
    need(OP, "table", table, channels * 256, DType::F32)?;
    need(OP, "bytes", bytes, words_for(values), DType::U32)?;
    need(OP, "x", x, values, DType::F32)?;
    let n = u32_of(OP, "rows*dim", values)?;
    if n == 0 {
        return Ok(());
    }
    let params = DecodeParams {
        rows: rows.max() as u32,
        rows_code: rows.code(),
        dim: u32_of(OP, "dim", dim)?,
        channels: u32_of(OP, "channels", channels)?,
    };
    let groups = grid_1d(n.div_ceil(4), WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(Kernel::DecodeBytes, &vec![("WG", WG.into())], (0, &params), &[(1, bytes), (2, table), (3, x)], groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_pack_little_endian_with_a_padded_last_word() {
        let mut out = vec![7];
        pack_bytes(&[1, 2, 3, 4, 5, 6], &mut out);
        assert_eq!(out, [7, 0x0403_0201, 0x0000_0605]);
        assert_eq!(words_for(6), 2);
        assert_eq!(words_for(0), 0);
    }
}
