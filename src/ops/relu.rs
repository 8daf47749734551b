//! Launcher of shaders/relu.wgsl: ReLU forward and backward, both in place.

use super::{KernelParams, Rows, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, grid_1d};
use crate::device::tensor::{DType, Tensor};
use crate::error::Result;

/// Keep in sync with `ReluParams` in shaders/relu.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReluParams {
    pub rows: u32,
    pub cols: u32,
    pub rows_code: u32,
    pub _pad: u32,
}

impl KernelParams for ReluParams {
    const SHADER: Shader = Shader::Relu;
    const WGSL_NAME: &'static str = "ReluParams";
}

const WG: u32 = 256;

fn params(op: &'static str, rows: Rows, cols: usize) -> Result<Option<(ReluParams, u32)>> {
    let n = u32_of(op, "rows*cols", rows.max() * cols)?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some((ReluParams { rows: rows.max() as u32, cols: cols as u32, rows_code: rows.code(), _pad: 0 }, n)))
}

/// x = max(x, 0) over x: [rows, cols].
pub fn relu_forward(rec: &mut Recorder, x: &Tensor, rows: impl Into<Rows>, cols: usize) -> Result<()> {
    let rows = rows.into();
    need("relu_forward", "x", x, rows.max() * cols, DType::F32)?;
    let Some((params, n)) = params("relu_forward", rows, cols)? else { return Ok(()) };
    let groups = grid_1d(n, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(Kernel::ReluForward, &vec![("WG", WG.into())], (0, &params), &[(1, x)], groups)
}

/// dy = dy · [y > 0] over dy, y: [rows, cols]; y is the forward output.
pub fn relu_backward(rec: &mut Recorder, dy: &Tensor, y: &Tensor, rows: impl Into<Rows>, cols: usize) -> Result<()> {
    let rows = rows.into();
    need("relu_backward", "dy", dy, rows.max() * cols, DType::F32)?;
    need("relu_backward", "y", y, rows.max() * cols, DType::F32)?;
    let Some((params, n)) = params("relu_backward", rows, cols)? else { return Ok(()) };
    let groups = grid_1d(n, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(Kernel::ReluBackward, &vec![("WG", WG.into())], (0, &params), &[(2, dy), (3, y)], groups)
}
