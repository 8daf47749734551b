//! Launcher of shaders/fill.wgsl: set every element to one 32-bit pattern.

use super::{KernelParams, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, grid_1d};
use crate::device::tensor::{DType, Tensor};
use crate::error::Result;

/// Keep in sync with `FillParams` in shaders/fill.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FillParams {
    pub n: u32,
    pub bits: u32,
    pub _pad: [u32; 2],
}

impl KernelParams for FillParams {
    const SHADER: Shader = Shader::Fill;
    const WGSL_NAME: &'static str = "FillParams";
}

const WG: u32 = 256;

/// Sets every element of `x` to the 32-bit pattern `bits`.
pub fn fill(rec: &mut Recorder, x: &Tensor, bits: u32) -> Result<()> {
    let n = u32_of("fill", "len", x.len())?;
    if n == 0 {
        return Ok(());
    }
    let params = FillParams { n, bits, _pad: [0; 2] };
    let groups = grid_1d(n, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(Kernel::Fill, &vec![("WG", WG.into())], (0, &params), &[(1, x)], groups)
}

/// Records a fill of an f32 tensor with `value`.
pub fn fill_f32(rec: &mut Recorder, x: &Tensor, value: f32) -> Result<()> {
    x.expect(DType::F32, "fill_f32")?;
    fill(rec, x, value.to_bits())
}

/// Records a fill of a u32 tensor with `value`.
pub fn fill_u32(rec: &mut Recorder, x: &Tensor, value: u32) -> Result<()> {
    x.expect(DType::U32, "fill_u32")?;
    fill(rec, x, value)
}
