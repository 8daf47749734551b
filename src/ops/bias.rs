//! Launcher of shaders/bias.wgsl: bias add (forward) and bias gradient
//! (backward, a column sum of the output gradient).

use super::{KernelParams, Rows, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, grid_1d};
use crate::device::tensor::{DType, Tensor};
use crate::error::Result;

/// Keep in sync with `BiasParams` in shaders/bias.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BiasParams {
    pub rows: u32,
    pub cols: u32,
    pub accumulate: u32,
    pub rows_code: u32,
}

impl KernelParams for BiasParams {
    const SHADER: Shader = Shader::Bias;
    const WGSL_NAME: &'static str = "BiasParams";
}

const WG: u32 = 256;

/// y[r, j] += bias[j]. y: [rows, cols], bias: [cols].
pub fn bias_add(rec: &mut Recorder, y: &Tensor, bias: &Tensor, rows: impl Into<Rows>, cols: usize) -> Result<()> {
    let rows_at = rows.into();
    let rows = rows_at.max();
    need("bias_add", "y", y, rows * cols, DType::F32)?;
    need("bias_add", "bias", bias, cols, DType::F32)?;
    let n = u32_of("bias_add", "rows*cols", rows * cols)?;
    if n == 0 {
        return Ok(());
    }
    let params = BiasParams { rows: rows as u32, cols: cols as u32, accumulate: 0, rows_code: rows_at.code() };
    let groups = grid_1d(n, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(Kernel::BiasAdd, &vec![("WG", WG.into())], (0, &params), &[(1, y), (2, bias)], groups)
}

/// dbias[j] = Σ_r dy[r, j] (+ dbias[j] when `accumulate`). dy: [rows, cols].
pub fn bias_grad(
    rec: &mut Recorder,
    dbias: &Tensor,
    dy: &Tensor,
    accumulate: bool,
    rows: impl Into<Rows>,
    cols: usize,
) -> Result<()> {
    let rows_at = rows.into();
    let rows = rows_at.max();
    need("bias_grad", "dbias", dbias, cols, DType::F32)?;
    need("bias_grad", "dy", dy, rows * cols, DType::F32)?;
    let c = u32_of("bias_grad", "cols", cols)?;
    u32_of("bias_grad", "rows*cols", rows * cols)?;
    if c == 0 {
        return Ok(());
    }
    let params = BiasParams { rows: rows as u32, cols: c, accumulate: accumulate.into(), rows_code: rows_at.code() };
    let groups = grid_1d(c, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(Kernel::BiasGrad, &vec![("WG", WG.into())], (0, &params), &[(3, dbias), (4, dy)], groups)
}
