//! The loss head: softmax cross-entropy of the logits against the labels,
//! its batch mean reduced on the device into a slot of a loss tensor, and
//! its gradient; plus the count of correct predictions. The mean and the
//! gradient use the step's batch from the step block. A training step uses
//! `train_head`: per-row losses, gradient and count in one launch.

use crate::cpu;
use crate::device::record::Recorder;
use crate::device::tensor::Tensor;
use crate::error::Result;
use crate::ops::reduce::Reducer;
use crate::ops::{Rows, accuracy, softmax_xent};

/// Softmax cross-entropy over `classes` logits per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxXent {
    pub classes: usize,
}

/// Device buffers of the loss for batches of up to `capacity` rows.
pub struct LossBuffers {
    pub probs: Tensor,
    /// Per-row losses of two parts, `stride` apart: part j holds pass j's
    /// (the sparse step's two passes keep both for VR-PGE).
    pub loss_rows: Tensor,
    /// The capacity rounded up to an aligned view (`aligned_len`).
    pub stride: usize,
    pub reducer: Reducer,
}

impl SoftmaxXent {
    pub const KIND: &'static str = "softmax_xent";

    /// out.0[out.1] = mean over the batch of −log softmax(logits)[label].
    pub fn forward(
        &self,
        rec: &mut Recorder,
        b: &LossBuffers,
        logits: &Tensor,
        labels: &Tensor,
        rows: Rows,
        out: (&Tensor, usize),
    ) -> Result<()> {
        softmax_xent::forward(rec, &b.probs, &b.loss_rows, logits, labels, rows, self.classes)?;
        self.mean(rec, b, 0, rows, (out.0, out.1, None))
    }

    /// The training head: per-row losses into part `part` of
    /// `b.loss_rows`, dlogits = gradient of `scale` · (the batch-mean loss)
    /// (times the loss scale, with `loss_scale`), and with `count`,
    /// count[0] += correct predictions; one launch.
    #[allow(clippy::too_many_arguments)]
    pub fn train_head(
        &self,
        rec: &mut Recorder,
        b: &LossBuffers,
        (logits, dlogits): (&Tensor, &Tensor),
        labels: &Tensor,
        rows: Rows,
        (scale, part): (f32, usize),
        count: Option<&Tensor>,
        loss_scale: Option<&Tensor>,
    ) -> Result<()> {
        let head = softmax_xent::Head {
            logits,
            labels,
            dlogits,
            loss_rows: (&b.loss_rows, part * b.stride),
            count,
            loss_scale,
        };
        softmax_xent::train(rec, head, scale, rows, self.classes)
    }

    /// out.0[out.1] = the batch mean of part `part`'s per-row losses, also
    /// added to out.0[sum] when `out.2` is Some(sum).
    pub fn mean(
        &self,
        rec: &mut Recorder,
        b: &LossBuffers,
        part: usize,
        rows: Rows,
        out: (&Tensor, usize, Option<usize>),
    ) -> Result<()> {
        let view = b.loss_rows.view(part * b.stride, &[b.stride])?;
        match out.2 {
            Some(sum) => b.reducer.mean_and_add(rec, out.0, (out.1, sum), &view, rows),
            None => b.reducer.mean(rec, out.0, out.1, &view, rows),
        }
    }

    /// count[0] += correct predictions among the batch's logits.
    pub fn count_correct(
        &self,
        rec: &mut Recorder,
        count: &Tensor,
        logits: &Tensor,
        labels: &Tensor,
        rows: Rows,
    ) -> Result<()> {
        accuracy::accuracy_count(rec, count, logits, labels, rows, self.classes)
    }

    /// f64 reference: (mean loss, d(mean loss)/dlogits · scale).
    pub fn cpu(&self, logits: &[f64], labels: &[u32], batch: usize, scale: f64) -> (f64, Vec<f64>) {
        let (probs, rows) = cpu::softmax_xent::forward(logits, labels, batch, self.classes);
        let loss = cpu::reduce::mean(&rows);
        let d = cpu::softmax_xent::backward(&probs, labels, scale / batch as f64, batch, self.classes);
        (loss, d)
    }
}
