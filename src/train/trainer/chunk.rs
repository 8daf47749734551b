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
//! which leave them cold after every step). Batches may also come as pixel
//! bytes (`stage_byte_batches`): a plan led by `decode_bytes` builds the
//! same inputs on the device from a quarter of the upload.

use super::{Phase, Trainer};
use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::device::step::{STEP_SLOTS, StepBlock};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};
use crate::nn::Workspace;
use crate::ops::Rows;
use crate::ops::decode::{decode_bytes, pack_bytes, words_for};

/// Batches taken as pixel bytes: their slots (a run's, like the inputs'),
/// the per-channel tables that make them floats, and the channels.
pub(super) struct ByteInputs {
    words: Tensor,
    table: Tensor,
    channels: usize,
}

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
        self.check_staged("stage_batches", (x.len(), y.len()), rows)?;
        // Full batches fill their slots, so the packed data is slot after slot.
        self.ws.x.upload_slots(gpu, x)?;
        self.ws.y.upload_slots(gpu, y)?;
        self.staged = rows.to_vec();
        self.staged_bytes = false;
        Ok(())
    }

    /// Makes this trainer take batches as pixel bytes too
    /// (`stage_byte_batches`), which the step turns into its inputs through
    /// `tables`, one per channel of the data's NHWC pixels (value i of a
    /// sample is of channel i % channels; a loader's `data::Norm::tables`,
    /// repeated for channels past them): a quarter of the upload per step,
    /// the same inputs bit for bit. Again with other tables of as many
    /// channels, it replaces them (steps already submitted keep theirs).
    pub fn enable_byte_inputs(&mut self, gpu: &Gpu, tables: &[[f32; 256]]) -> Result<()> {
        if !self.byte_inputs_fit(gpu) {
            return Err(Error::InvalidArgument(
                "byte inputs: runs of steps here bind the inputs with a dynamic offset, and the device allows \
                 one storage binding with a dynamic offset per pipeline where the decode needs two \
                 (stage floats instead)"
                    .into(),
            ));
        }
        let dim = self.net.graph.input().len();
        if tables.is_empty() || !dim.is_multiple_of(tables.len()) {
            return Err(Error::InvalidArgument(format!(
                "byte inputs: {} tables for inputs of {dim} values: one per channel of whole pixels",
                tables.len()
            )));
        }
        if tables.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(
                "byte inputs: a table holds a value that is not finite (a channel's standard deviation of 0?)".into(),
            ));
        }
        let flat: Vec<f32> = tables.iter().flatten().copied().collect();
        if let Some(b) = self.bytes.as_ref().filter(|b| b.channels == tables.len()) {
            return b.table.upload(gpu, &flat);
        }
        if self.staged_bytes {
            return Err(Error::InvalidArgument(
                "byte inputs: batches are staged as bytes of the old channels; run them before changing the tables"
                    .into(),
            ));
        }
        let words = words_for(self.capacity() * dim).max(1);
        // Slotted like the inputs: plain where runs are single steps.
        let slots = self.max_chunk();
        self.bytes = Some(ByteInputs {
            words: if slots > 1 {
                Tensor::slotted(gpu, "batch bytes", &[words], slots, DType::U32)?
            } else {
                Tensor::zeros(gpu, "batch bytes", &[words], DType::U32)?
            },
            table: Tensor::from_f32(gpu, "input tables", &[flat.len()], &flat)?,
            channels: tables.len(),
        });
        // Plans of byte batches bound the old tensors.
        for p in &mut self.plans[3..] {
            *p = None;
        }
        Ok(())
    }

    /// Whether this trainer can take byte batches on `gpu`: the decode of a
    /// run of several steps binds two slotted tensors (the bytes and the
    /// inputs) with dynamic offsets.
    pub fn byte_inputs_fit(&self, gpu: &Gpu) -> bool {
        self.max_chunk() <= 1 || gpu.limits().max_dynamic_storage_buffers_per_pipeline_layout >= 2
    }

    /// `stage_batches` with each value's pixel byte instead of its float
    /// (NHWC, as `data::append_batch_bytes` builds them), after
    /// `enable_byte_inputs`.
    pub fn stage_byte_batches(&mut self, gpu: &Gpu, x: &[u8], y: &[u32], rows: &[usize]) -> Result<()> {
        self.check_staged("stage_byte_batches", (x.len(), y.len()), rows)?;
        let Some(b) = &self.bytes else {
            return Err(Error::InvalidArgument("stage_byte_batches: call enable_byte_inputs first".into()));
        };
        // Each batch from the start of its slot (a full batch fills it).
        let dim = self.net.graph.input().len();
        let mut words = Vec::with_capacity(b.words.len() * rows.len());
        let mut at = 0;
        for &r in rows {
            pack_bytes(&x[at..at + r * dim], &mut words);
            at += r * dim;
        }
        b.words.upload_slots(gpu, &words)?;
        self.ws.y.upload_slots(gpu, y)?;
        self.staged = rows.to_vec();
        self.staged_bytes = true;
        Ok(())
    }

    /// The byte decode that leads a plan of byte batches: the step's rows
    /// of the inputs from the staged bytes.
    pub(super) fn record_decode(&self, rec: &mut Recorder) -> Result<()> {
        let b = self.bytes.as_ref().ok_or_else(|| Error::InvalidArgument("no byte inputs enabled".into()))?;
        let dim = self.net.graph.input().len();
        decode_bytes(rec, (&b.words, &b.table), &self.ws.x, Rows::Batch(self.capacity()), (dim, b.channels))
    }

    /// Checks a run of batches to stage: 1 to `max_chunk` of them, every
    /// one but the last full, `values` (inputs, labels) matching their rows.
    fn check_staged(&self, op: &'static str, (xs, ys): (usize, usize), rows: &[usize]) -> Result<()> {
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
        if ys != total || xs != total * dim {
            return Err(Error::Shape {
                op,
                detail: format!("{xs} inputs and {ys} labels for batches of {rows:?} rows of {dim} inputs"),
            });
        }
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
        self.prepare(gpu, phase, lr, score_lr, rows.len())?;
        let first = self.step;
        // Only training steps advance the counter.
        let step_of = |j: usize| first + if phase == Phase::Train { j as u64 } else { 0 };
        let blocks: Vec<StepBlock> = (0..rows.len())
            .map(|j| self.block_at(step_of(j), phase, rows[j], lr, score_lr, global + j as u64))
            .collect();
        let index = self.plan_for(gpu, phase, self.staged_bytes)?.run_chunk(gpu, &blocks)?;
        self.staged.clear();
        self.staged_bytes = false;
        if phase == Phase::Train {
            self.step = first + rows.len() as u64;
        }
        self.submitted(gpu, index, rows.len())?;
        Ok(rows.len())
    }
}
