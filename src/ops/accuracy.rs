//! Launcher of shaders/accuracy.wgsl: count of rows whose argmax equals the
//! label, added into a u32 counter on the device.

use super::{KernelParams, Rows, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, grid_1d};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// Keep in sync with `AccuracyParams` in shaders/accuracy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AccuracyParams {
    pub rows: u32,
    pub cols: u32,
    pub rows_code: u32,
    pub _pad: u32,
}

impl KernelParams for AccuracyParams {
    const SHADER: Shader = Shader::Accuracy;
    const WGSL_NAME: &'static str = "AccuracyParams";
}

const WG: u32 = 64;

/// count[0] += #{r : argmax logits[r, :] == labels[r]}. logits: [rows, cols].
pub fn accuracy_count(
    rec: &mut Recorder,
    count: &Tensor,
    logits: &Tensor,
    labels: &Tensor,
    rows: impl Into<Rows>,
    cols: usize,
) -> Result<()> {
    const OP: &str = "accuracy_count";
    let rows_at = rows.into();
    let rows = rows_at.max();
    need(OP, "count", count, 1, DType::U32)?;
    need(OP, "logits", logits, rows * cols, DType::F32)?;
    need(OP, "labels", labels, rows, DType::U32)?;
    if cols == 0 {
        return Err(Error::Shape { op: OP, detail: "zero classes".into() });
    }
    let r = u32_of(OP, "rows*cols", rows * cols)?;
    if r == 0 {
        return Ok(());
    }
    let params = AccuracyParams { rows: rows as u32, cols: cols as u32, rows_code: rows_at.code(), _pad: 0 };
    let groups = grid_1d(rows as u32, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(
        Kernel::AccuracyCount,
        &vec![("WG", WG.into())],
        (0, &params),
        &[(1, logits), (2, labels), (3, count)],
        groups,
    )
}
