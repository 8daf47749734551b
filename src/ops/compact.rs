//! Launcher of shaders/compact.wgsl: the ordered list of kept units of every
//! layer, and their counts, built on the device from the masks.

use super::{KernelParams, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// Keep in sync with `CompactParams` in shaders/compact.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CompactParams {
    pub layers: u32,
    pub units: u32,
    pub _pad: [u32; 2],
}

impl KernelParams for CompactParams {
    const SHADER: Shader = Shader::Compact;
    const WGSL_NAME: &'static str = "CompactParams";
}

const WG: u32 = 256;

/// For each layer l (units offsets[l]..offsets[l+1] of `mask`):
/// kept[offsets[l] + j] = local index of the j-th kept unit; counts[l] = kept.
/// `offsets` is a u32 tensor of layers + 1 entries, non-decreasing.
pub fn compact_kept(
    rec: &mut Recorder,
    kept: &Tensor,
    counts: &Tensor,
    mask: &Tensor,
    offsets: &Tensor,
    layers: usize,
    units: usize,
) -> Result<()> {
    compact_samples(rec, kept, counts, mask, offsets, layers, units, 1)
}

/// `compact_kept` of `samples` consecutive masks in one dispatch: mask s at
/// mask[s·units..], its lists at kept[s·units..], its counts at counts[s·layers..].
#[allow(clippy::too_many_arguments)]
pub fn compact_samples(
    rec: &mut Recorder,
    kept: &Tensor,
    counts: &Tensor,
    mask: &Tensor,
    offsets: &Tensor,
    layers: usize,
    units: usize,
    samples: usize,
) -> Result<()> {
    const OP: &str = "compact_kept";
    need(OP, "kept", kept, units * samples, DType::U32)?;
    need(OP, "counts", counts, layers * samples, DType::U32)?;
    need(OP, "mask", mask, units * samples, DType::U32)?;
    need(OP, "offsets", offsets, layers + 1, DType::U32)?;
    let l32 = u32_of(OP, "layers", layers)?;
    if l32 == 0 {
        return Ok(());
    }
    if l32 > rec.gpu().limits().max_compute_workgroups_per_dimension {
        return Err(Error::InvalidArgument(format!("{layers} layers exceed one workgroup per layer")));
    }
    let s32 = u32_of(OP, "samples", samples)?;
    if s32 == 0 {
        return Ok(());
    }
    let params = CompactParams { layers: l32, units: u32_of(OP, "units", units)?, _pad: [0; 2] };
    rec.dispatch(
        Kernel::CompactKept,
        &vec![("WG", WG.into())],
        (0, &params),
        &[(1, mask), (2, offsets), (3, kept), (4, counts)],
        glam::UVec3::new(l32, s32, 1),
    )
}
