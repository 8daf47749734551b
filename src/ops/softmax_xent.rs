//! Launcher of shaders/softmax_xent.wgsl: softmax cross-entropy per row
//! (forward) and its gradient (backward). The batch mean of the loss is
//! reduced on the device with `reduce::mean`.

use super::{KernelParams, need, u32_of};
use crate::error::{Error, Result};
use crate::record::Recorder;
use crate::shader::{Kernel, Shader, grid_1d};
use crate::tensor::{DType, Tensor};

/// Keep in sync with `SoftmaxXentParams` in shaders/softmax_xent.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SoftmaxXentParams {
    pub rows: u32,
    pub cols: u32,
    pub scale: f32,
    pub _pad: u32,
}

impl KernelParams for SoftmaxXentParams {
    const SHADER: Shader = Shader::SoftmaxXent;
    const WGSL_NAME: &'static str = "SoftmaxXentParams";
}

const WG: u32 = 64;

fn check(op: &'static str, rows: usize, cols: usize) -> Result<(u32, u32)> {
    if cols == 0 {
        return Err(Error::Shape { op, detail: "softmax over zero classes".into() });
    }
    u32_of(op, "rows*cols", rows * cols)?;
    Ok((rows as u32, cols as u32))
}

/// probs = softmax(logits) row-wise; loss_rows[r] = -log probs[r, labels[r]].
/// logits, probs: [rows, cols]; labels, loss_rows: [rows].
pub fn forward(
    rec: &mut Recorder,
    probs: &Tensor,
    loss_rows: &Tensor,
    logits: &Tensor,
    labels: &Tensor,
    rows: usize,
    cols: usize,
) -> Result<()> {
    const OP: &str = "softmax_xent_forward";
    let (r, c) = check(OP, rows, cols)?;
    need(OP, "probs", probs, rows * cols, DType::F32)?;
    need(OP, "loss_rows", loss_rows, rows, DType::F32)?;
    need(OP, "logits", logits, rows * cols, DType::F32)?;
    need(OP, "labels", labels, rows, DType::U32)?;
    if r == 0 {
        return Ok(());
    }
    let params = SoftmaxXentParams { rows: r, cols: c, scale: 0.0, _pad: 0 };
    let groups = grid_1d(r, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(
        Kernel::SoftmaxXentForward,
        &vec![("WG", WG.into())],
        (0, &params),
        &[(1, labels), (2, probs), (3, loss_rows), (4, logits)],
        groups,
    )
}

/// dlogits = scale · (probs - onehot(labels)). Use scale = 1/rows for the
/// gradient of the batch-mean loss.
pub fn backward(
    rec: &mut Recorder,
    dlogits: &Tensor,
    probs: &Tensor,
    labels: &Tensor,
    scale: f32,
    rows: usize,
    cols: usize,
) -> Result<()> {
    const OP: &str = "softmax_xent_backward";
    let (r, c) = check(OP, rows, cols)?;
    need(OP, "dlogits", dlogits, rows * cols, DType::F32)?;
    need(OP, "probs", probs, rows * cols, DType::F32)?;
    need(OP, "labels", labels, rows, DType::U32)?;
    if r == 0 {
        return Ok(());
    }
    let params = SoftmaxXentParams { rows: r, cols: c, scale, _pad: 0 };
    let groups = grid_1d(r, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(
        Kernel::SoftmaxXentBackward,
        &vec![("WG", WG.into())],
        (0, &params),
        &[(1, labels), (5, dlogits), (6, probs)],
        groups,
    )
}
