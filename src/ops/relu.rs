//! Launcher of shaders/relu.wgsl: ReLU forward and backward, both in place.

use super::{KernelParams, need, u32_of};
use crate::error::Result;
use crate::record::Recorder;
use crate::shader::{Kernel, Shader, grid_1d};
use crate::tensor::{DType, Tensor};

/// Keep in sync with `ReluParams` in shaders/relu.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReluParams {
    pub n: u32,
    pub _pad: [u32; 3],
}

impl KernelParams for ReluParams {
    const SHADER: Shader = Shader::Relu;
    const WGSL_NAME: &'static str = "ReluParams";
}

const WG: u32 = 256;

/// x = max(x, 0) over the first `n` elements.
pub fn relu_forward(rec: &mut Recorder, x: &Tensor, n: usize) -> Result<()> {
    need("relu_forward", "x", x, n, DType::F32)?;
    let n = u32_of("relu_forward", "n", n)?;
    if n == 0 {
        return Ok(());
    }
    let groups = grid_1d(n, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    let params = ReluParams { n, _pad: [0; 3] };
    rec.dispatch(Kernel::ReluForward, &vec![("WG", WG.into())], (0, &params), &[(1, x)], groups)
}

/// dy = dy · [y > 0] over the first `n` elements; y is the forward output.
pub fn relu_backward(rec: &mut Recorder, dy: &Tensor, y: &Tensor, n: usize) -> Result<()> {
    need("relu_backward", "dy", dy, n, DType::F32)?;
    need("relu_backward", "y", y, n, DType::F32)?;
    let n = u32_of("relu_backward", "n", n)?;
    if n == 0 {
        return Ok(());
    }
    let groups = grid_1d(n, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    let params = ReluParams { n, _pad: [0; 3] };
    rec.dispatch(Kernel::ReluBackward, &vec![("WG", WG.into())], (0, &params), &[(2, dy), (3, y)], groups)
}
