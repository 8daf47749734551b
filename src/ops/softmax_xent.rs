//! Launcher of shaders/softmax_xent.wgsl: softmax cross-entropy per row
//! (forward, for evaluation), and the training head that adds its gradient
//! (and the accuracy count) in the same launch. The batch mean of the loss
//! is reduced on the device with `reduce::mean`, or by VR-PGE itself.

use super::{KernelParams, Rows, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, grid_1d};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// Keep in sync with `SoftmaxXentParams` in shaders/softmax_xent.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SoftmaxXentParams {
    pub rows: u32,
    pub cols: u32,
    pub scale: f32,
    pub rows_code: u32,
    pub loss_off: u32,
    pub _pad: [u32; 3],
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
    rows: impl Into<Rows>,
    cols: usize,
) -> Result<()> {
    const OP: &str = "softmax_xent_forward";
    let rows_at = rows.into();
    let rows = rows_at.max();
    let (r, c) = check(OP, rows, cols)?;
    need(OP, "probs", probs, rows * cols, DType::F32)?;
    need(OP, "loss_rows", loss_rows, rows, DType::F32)?;
    need(OP, "logits", logits, rows * cols, DType::F32)?;
    need(OP, "labels", labels, rows, DType::U32)?;
    if r == 0 {
        return Ok(());
    }
    let params =
        SoftmaxXentParams { rows: r, cols: c, scale: 0.0, rows_code: rows_at.code(), loss_off: 0, _pad: [0; 3] };
    let groups = grid_1d(r, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(
        Kernel::SoftmaxXentForward,
        &vec![("WG", WG.into())],
        (0, &params),
        &[(1, labels), (2, probs), (3, loss_rows), (4, logits)],
        groups,
    )
}

/// The buffers of the training head (`train`).
pub struct Head<'a> {
    pub logits: &'a Tensor,
    pub labels: &'a Tensor,
    /// [rows, cols]: the gradient of `scale` · (the batch-mean loss).
    pub dlogits: &'a Tensor,
    /// The rows' losses go to loss_rows[loss_off..loss_off + rows].
    pub loss_rows: (&'a Tensor, usize),
    /// count[0] += the rows whose argmax is their label.
    pub count: Option<&'a Tensor>,
    /// The clip record holding the loss scale S (mixed precision): the
    /// gradient is then S times the true one.
    pub loss_scale: Option<&'a Tensor>,
}

/// `forward`'s loss rows, their gradient dlogits = (scale / rows) ·
/// (probs − onehot(labels)) (the gradient of scale · the batch-mean loss),
/// and with `count` what `accuracy::accuracy_count` adds, in one launch.
pub fn train(rec: &mut Recorder, h: Head, scale: f32, rows: impl Into<Rows>, cols: usize) -> Result<()> {
    const OP: &str = "softmax_xent_train";
    let rows_at = rows.into();
    let rows = rows_at.max();
    let (r, c) = check(OP, rows, cols)?;
    need(OP, "dlogits", h.dlogits, rows * cols, DType::F32)?;
    need(OP, "logits", h.logits, rows * cols, DType::F32)?;
    need(OP, "labels", h.labels, rows, DType::U32)?;
    let (loss_rows, off) = h.loss_rows;
    need(OP, "loss_rows", loss_rows, off + rows, DType::F32)?;
    u32_of(OP, "loss row offset", off + rows)?;
    let loss_off = off as u32;
    if let Some(t) = h.count {
        need(OP, "count", t, 1, DType::U32)?;
    }
    // The written buffers apart from the read ones (the exponentials wait
    // in dlogits while the logits are still read).
    let written = [Some(h.dlogits), Some(loss_rows), h.count];
    let read = [Some(h.logits), Some(h.labels), h.loss_scale];
    let clash = written.iter().flatten().any(|w| read.iter().flatten().any(|r| w.buffer() == r.buffer()));
    if clash || h.dlogits.buffer() == loss_rows.buffer() {
        return Err(Error::InvalidArgument(
            "the loss head's outputs must lie apart from its inputs and each other".into(),
        ));
    }
    if let Some(t) = h.loss_scale {
        need(OP, "loss scale", t, super::LOSS_SCALE_SLOT + 1, DType::F32)?;
    }
    if r == 0 {
        return Ok(());
    }
    let params = SoftmaxXentParams { rows: r, cols: c, scale, rows_code: rows_at.code(), loss_off, _pad: [0; 3] };
    let flag = |b: bool| f64::from(u8::from(b));
    let consts =
        vec![("WG", WG.into()), ("LOSS_SCALE", flag(h.loss_scale.is_some())), ("COUNT", flag(h.count.is_some()))];
    let groups = grid_1d(r, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    // Unused bindings get stand-ins of the right type (never read).
    let (one, zero) = (Tensor::one(rec.gpu()), Tensor::zero_u32(rec.gpu()));
    rec.dispatch(
        Kernel::SoftmaxXentTrain,
        &consts,
        (0, &params),
        &[
            (1, h.labels),
            (3, loss_rows),
            (4, h.logits),
            (5, h.dlogits),
            (7, h.loss_scale.unwrap_or(&one)),
            (8, h.count.unwrap_or(&zero)),
        ],
        groups,
    )
}
