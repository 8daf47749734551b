//! Runs of steps submitted together. The batch inputs and labels of a
//! trainer are slotted tensors (`Tensor::slotted`) with a slot per step of
//! a run; `stage_batches` uploads the batches of up to `max_chunk` steps
//! into them at once, and `run_staged` encodes the steps back to back into
//! one command buffer, replay j reading slot j of the inputs and of the
//! step blocks by dynamic offsets (`Plan::run_chunk`), and submits once.
//! The arithmetic is that of one `set_batch` + `run` per step, in the same
//! order; what changes is the host's cost per step: one submission instead
//! of one per step, no copies, and the encoding of the later steps finds
//! the host's caches warm (on lavapipe the "GPU" is the host's own cores,
//! which leave them cold after every step).

use super::{Phase, Trainer};
use crate::device::gpu::Gpu;
use crate::device::step::{STEP_SLOTS, StepBlock};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};
use crate::nn::Workspace;

/// Most steps one `run_staged` submits: as many as the step buffer has
/// slots.
pub const MAX_CHUNK: usize = STEP_SLOTS;

/// Most bytes the slots of the batch inputs may take: fewer steps per run
/// where batches are large (one step when a single batch exceeds it).
const INPUT_BYTES: usize = 32 << 20;

/// Steps per run for batches of `capacity` rows of `dim` inputs: one where
/// the device binds no storage or no uniform with dynamic offsets (a device
/// shared by an application that asked for such limits).
pub(super) fn chunk_for(gpu: &Gpu, capacity: usize, dim: usize) -> usize {
    let limits = gpu.limits();
    if limits.max_dynamic_storage_buffers_per_pipeline_layout == 0 || !crate::device::layout::step_uses_offsets(limits)
    {
        return 1;
    }
    let per_step = capacity.saturating_mul(dim).saturating_mul(4);
    (INPUT_BYTES / per_step.max(1)).clamp(1, MAX_CHUNK)
}

/// Gives `ws` batch inputs and labels of `slots` slots (before any plan
/// binds them). Workspaces are made plain (evaluation of an export and the
/// layer tests use them so); a trainer's replaces its two batch tensors
/// once, when it is built.
pub(super) fn slot_inputs(gpu: &Gpu, ws: &mut Workspace, slots: usize) -> Result<()> {
    if slots > 1 {
        ws.x = Tensor::slotted(gpu, "batch x", ws.x.shape(), slots, DType::F32)?;
        ws.y = Tensor::slotted(gpu, "batch labels", ws.y.shape(), slots, DType::U32)?;
    }
    Ok(())
}

impl Trainer {
    /// Steps one `run_staged` takes at most: `MAX_CHUNK`, fewer where the
    /// batch inputs of that many steps would pass `INPUT_BYTES`.
    pub fn max_chunk(&self) -> usize {
        self.ws.x.slots()
    }

    /// Queues the batches of the next `rows.len()` steps (at most
    /// `max_chunk`): `x` holds their samples packed one batch after the
    /// other, `rows[j]` of them for step j, and `y` their labels; every
    /// batch but the last is full (`capacity` rows). Replaces whatever was
    /// staged and not run.
    pub fn stage_batches(&mut self, gpu: &Gpu, x: &[f32], y: &[u32], rows: &[usize]) -> Result<()> {
        let dim = self.net.graph.input().len();
        let max = self.max_chunk();
        if rows.is_empty() || rows.len() > max {
            return Err(Error::InvalidArgument(format!(
                "{} batches staged at once, this trainer takes 1 to {max}",
                rows.len()
            )));
        }
        for &r in rows {
            self.check_rows(r)?;
        }
        if let Some(j) = rows[..rows.len() - 1].iter().position(|&r| r != self.capacity()) {
            return Err(Error::InvalidArgument(format!(
                "staged batch {j} of {} has {} rows: every batch but the last must be full ({})",
                rows.len(),
                rows[j],
                self.capacity()
            )));
        }
        let total: usize = rows.iter().sum();
        if y.len() != total || x.len() != total * dim {
            return Err(Error::Shape {
                op: "stage_batches",
                detail: format!(
                    "{} inputs and {} labels for batches of {rows:?} rows of {dim} inputs",
                    x.len(),
                    y.len()
                ),
            });
        }
        // Full batches fill their slots, so the packed data is slot after slot.
        self.ws.x.upload_slots(gpu, x)?;
        self.ws.y.upload_slots(gpu, y)?;
        self.staged = rows.to_vec();
        Ok(())
    }

    /// Submits the staged steps of `phase` in one command buffer, with the
    /// weight rate `lr` and score rate `score_lr`; `global` is the step
    /// number of the first (recorded for a fault). Returns the steps taken.
    /// Training steps advance the step counter; nothing is read back; the
    /// host stays at most `MAX_IN_FLIGHT` steps (one more run) ahead.
    pub fn run_staged(&mut self, gpu: &Gpu, phase: Phase, lr: f32, score_lr: f32, global: u64) -> Result<usize> {
        if self.staged.is_empty() {
            return Err(Error::InvalidArgument("run_staged: no batches staged".into()));
        }
        // Kept staged until submitted: a refused rate loses nothing.
        let rows = self.staged.clone();
        self.prepare(gpu, phase, lr, score_lr)?;
        let first = self.step;
        // Only training steps advance the counter.
        let step_of = |j: usize| first + if phase == Phase::Train { j as u64 } else { 0 };
        let blocks: Vec<StepBlock> = (0..rows.len())
            .map(|j| self.block_at(step_of(j), phase, rows[j], lr, score_lr, global + j as u64))
            .collect();
        let index = self.plan(gpu, phase)?.run_chunk(gpu, &blocks)?;
        self.staged.clear();
        if phase == Phase::Train {
            self.step = first + rows.len() as u64;
        }
        self.submitted(gpu, index, rows.len())?;
        Ok(rows.len())
    }
}
