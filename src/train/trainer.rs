//! The trainer: a net with its optimizer state, dense or by the sparse
//! method, and the schedules of its steps recorded once as plans. A step is
//! one replay: the host writes the batch and the step block (batch size,
//! step counter, learning rates) and submits; nothing is read back. A run of
//! steps whose batches are at hand goes in one submission (`chunk`); lazy
//! SGD's state and its catch-up of every weight are in `lazy`.
//!
//! The sparse step (`record_sparse_step`) is the method of Zhou et al.
//! (NeurIPS 2021), top to bottom, whatever the layers: draw two masks,
//! two compressed passes, VR-PGE, Adam on the scores deciding the joint
//! clipping, SGD on the weights, projection.

use crate::device::gpu::Gpu;
use crate::device::record::{Plan, Recorder};
use crate::device::step::{StepBlock, StepBuffer};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};
use crate::nn::{Net, Workspace};
use crate::ops::Rows;
use crate::ops::lazy::LazyPass;
use crate::ops::mask::{KeyStep, MaskKey};
use crate::ops::optim::{
    Adam, AfterStep, ClipDecision, GradScale, Rate, Sgd, adam_clip_step, adam_corrections, sgd_step,
};
use crate::ops::project::{Projection, project_scores};
use crate::ops::reduce::{ClipInputs, FaultTag, Reducer, SINGLE_PASS_MAX};
use crate::ops::vrpge::{Losses, score_grad};
use crate::sparse::{MaskSet, SparseConfig};

mod chunk;
mod lazy;

pub use chunk::MAX_CHUNK;
use lazy::sets_of;
pub use lazy::{LazySgd, defer_rule, lazy_defer_env, lazy_gather_env};

/// Slots of `Trainer::loss`: the two samples' losses and the running sum of
/// step losses since the counters were reset (the epoch log).
pub const LOSS_1: usize = 0;
pub const LOSS_2: usize = 1;
pub const LOSS_SUM: usize = 2;
/// Under loss scaling, the step's S, copied here by the score gradient for
/// the score optimizer, which decides the clip record (and so rewrites S).
pub const LOSS_SCALE_COPY: usize = 3;

/// Dynamic loss scaling of mixed-precision training, as PyTorch's
/// GradScaler does it: the loss gradient is multiplied by S, a step whose
/// gradients overflow (in the f16 operands) is skipped and halves S, and
/// `growth` finite steps in a row double it. S lives on the device (slot
/// `LOSS_SCALE_SLOT` of the clip record); nothing is read back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScaling {
    /// The first S: a power of two, at least 1. Growth stops at 2^24; a
    /// larger start (the tests use 2^120 to force overflows) only halves.
    pub init: f32,
    pub growth: u32,
}

impl Default for LossScaling {
    /// GradScaler's defaults.
    fn default() -> Self {
        LossScaling { init: 65536.0, growth: 2000 }
    }
}

/// Most steps the host submits ahead of the device (see `Trainer::run`):
/// one full chunk (`MAX_CHUNK`) queued while the host encodes the next.
pub const MAX_IN_FLIGHT: usize = 16;

/// The sparse method's state: scores, their gradient and Adam moments, the
/// two masks of a step and the fixed mask of evaluation and fine-tuning.
pub struct SparseState {
    pub cfg: SparseConfig,
    pub scores: Tensor,
    pub score_grad: Tensor,
    pub score_m: Tensor,
    pub score_v: Tensor,
    pub samples: MaskSet,
    pub fixed: MaskSet,
    /// The last projection's shift (for inspection).
    pub shift: Tensor,
}

impl SparseState {
    pub fn units(&self) -> usize {
        self.samples.units
    }

    /// The budget K = keep · units.
    pub fn budget(&self) -> f32 {
        self.cfg.keep * self.units() as f32
    }

    fn project(&self, rec: &mut Recorder) -> Result<()> {
        let pr = Projection { budget: self.budget(), iters: self.cfg.projection_iters, tol: self.cfg.projection_tol };
        project_scores(rec, &self.scores, &self.shift, pr, self.units())
    }
}

/// The schedules a trainer replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// A training step: the sparse method, or a dense step.
    Train,
    /// A fine-tuning step with the fixed mask (sparse only).
    Finetune,
    /// A forward pass counting correct predictions (fixed mask, or dense).
    Eval,
}

/// See the module header.
pub struct Trainer {
    pub net: Net,
    pub ws: Workspace,
    pub momentum: Tensor,
    /// Momentum and weight decay of the weights; the rate is per step.
    pub sgd: Sgd,
    pub sparse: Option<SparseState>,
    /// Present for sparse trainers whose `SparseConfig::updates` are lazy.
    pub lazy: Option<LazySgd>,
    /// [loss 1, loss 2, running sum of step losses, copy of the loss scale]
    /// (`LOSS_1`, `LOSS_2`, `LOSS_SUM`, `LOSS_SCALE_COPY`).
    pub loss: Tensor,
    /// Running count of correct predictions (u32).
    pub correct: Tensor,
    /// [update factor of the last step (the clipping factor; 0 skips a
    /// non-finite step), steps skipped so far, first such step (u32 bits),
    /// updates applied so far (u32 bits: the clock of lazy SGD), loss scale
    /// S, finite steps since S last changed, _, _].
    pub clip: Tensor,
    /// Dynamic loss scaling; on under mixed precision.
    pub loss_scaling: Option<LossScaling>,
    sq: Tensor,
    reducer: Reducer,
    step_buf: StepBuffer,
    /// Per phase, then per phase led by the byte decode (`chunk`).
    plans: [Option<Plan>; 6],
    /// Batches taken as pixel bytes (`enable_byte_inputs`).
    bytes: Option<chunk::ByteInputs>,
    /// Whether the staged batches are bytes.
    staged_bytes: bool,
    /// Submissions not known to be finished, oldest first, with their steps.
    in_flight: std::collections::VecDeque<(wgpu::SubmissionIndex, usize)>,
    /// Rows of the batches staged for `run_staged`, one per step.
    staged: Vec<usize>,
    /// Steps taken by the training phase: the mask generator's position and
    /// Adam's t.
    pub step: u64,
}

impl Trainer {
    /// Fails, naming the buffer and the device limit, unless a trainer of
    /// `graph` for `capacity` rows fits the device; allocates nothing.
    pub fn check_fits(gpu: &Gpu, graph: &crate::nn::Graph, capacity: usize, sparse: bool) -> Result<()> {
        Net::check_fits(gpu, graph, capacity, sparse)?;
        if sparse {
            Tensor::check_fits(gpu, "masks", &[2, graph.units()])?;
        }
        Ok(())
    }

    /// Wraps `net` for batches of up to `capacity` rows, dense when `sparse`
    /// is None. Scores start at 0.5 and are projected at once, so the budget
    /// holds from the first step.
    pub fn new(gpu: &Gpu, net: Net, capacity: usize, sgd: Sgd, sparse: Option<SparseConfig>) -> Result<Trainer> {
        crate::ops::autotune::ensure(gpu)?;
        let sparse = match sparse {
            None => None,
            Some(cfg) => {
                cfg.validate()?;
                let units = net.graph.units();
                if units == 0 {
                    return Err(Error::InvalidArgument(
                        "sparse training needs at least one prunable layer (or use --dense)".into(),
                    ));
                }
                Some(SparseState {
                    cfg,
                    scores: Tensor::from_f32(gpu, "scores", &[units], &vec![0.5; units])?,
                    score_grad: Tensor::zeros(gpu, "score grad", &[units], DType::F32)?,
                    score_m: Tensor::zeros(gpu, "score adam m", &[units], DType::F32)?,
                    score_v: Tensor::zeros(gpu, "score adam v", &[units], DType::F32)?,
                    samples: MaskSet::new(gpu, &net.graph, 2, "step")?,
                    fixed: MaskSet::new(gpu, &net.graph, 1, "fixed")?,
                    shift: Tensor::zeros(gpu, "projection shift", &[1], DType::F32)?,
                })
            }
        };
        let mut ws = net.workspace(gpu, capacity, sparse.is_some())?;
        chunk::slot_inputs(gpu, &mut ws, chunk::chunk_for(gpu, capacity, net.graph.input().len()))?;
        // Read whatever the updates, so that a bad value is refused by every run.
        let gathers = lazy_gather_env()?;
        let defer = lazy_defer_env()?.unwrap_or_else(|| lazy::defer_rule(gpu.report().device_type));
        let lazy = match &sparse {
            Some(sp) if sp.cfg.updates.lazy_at(sp.cfg.keep) => Some(LazySgd::new(gpu, &net.graph, gathers, defer)?),
            _ => None,
        };
        // The clip record, and lazy SGD's ring of deferred updates' factors.
        let mut clip_init = vec![0.0; crate::ops::lazy::CLIP_LEN];
        clip_init[crate::ops::LOSS_SCALE_SLOT] = 1.0;
        let mut t = Trainer {
            momentum: Tensor::zeros(gpu, "momentum", &[net.graph.param_total], DType::F32)?,
            ws,
            net,
            sgd,
            sparse,
            lazy,
            loss: Tensor::zeros(gpu, "losses", &[4], DType::F32)?,
            correct: Tensor::zeros(gpu, "correct", &[1], DType::U32)?,
            clip: Tensor::from_f32(
                gpu,
                "clip factor, fault record, loss scale, lazy SGD's factors",
                &[clip_init.len()],
                &clip_init,
            )?,
            loss_scaling: None,
            sq: Tensor::zeros(gpu, "squared norms", &[2], DType::F32)?,
            reducer: Reducer::new(gpu)?,
            step_buf: StepBuffer::new(gpu),
            plans: Default::default(),
            bytes: None,
            staged_bytes: false,
            in_flight: std::collections::VecDeque::new(),
            staged: Vec::new(),
            step: 0,
        };
        if let Some(sp) = &t.sparse {
            let mut rec = Recorder::new(gpu);
            sp.project(&mut rec)?;
            rec.submit()?;
        }
        if gpu.precision() == crate::device::gpu::Precision::Mixed {
            t.set_loss_scaling(gpu, Some(LossScaling::default()))?;
        }
        Ok(t)
    }

    /// Turns dynamic loss scaling on (starting from `init`) or off. On by
    /// default where the device's precision was mixed when the trainer was
    /// built; in f32 it changes nothing but the arithmetic's exponent (S is
    /// a power of two), which the tests use.
    pub fn set_loss_scaling(&mut self, gpu: &Gpu, ls: Option<LossScaling>) -> Result<()> {
        if let Some(l) = ls
            && !(l.init >= 1.0 && l.init.is_finite() && l.init.log2().fract() == 0.0 && l.growth >= 1)
        {
            return Err(Error::InvalidArgument(format!(
                "the loss scale must start at a power of two >= 1 and grow after at least one step, got {l:?}"
            )));
        }
        let init = ls.map_or(1.0, |l| l.init);
        self.clip.upload_at(gpu, crate::ops::LOSS_SCALE_SLOT, &[init, 0.0])?;
        self.net.loss_scale = ls.map(|_| self.clip.clone());
        self.loss_scaling = ls;
        self.plans = Default::default();
        Ok(())
    }

    /// The loss scale now and the finite steps since it last changed (read
    /// back, counted), or None without loss scaling.
    pub fn loss_scale(&self, gpu: &Gpu) -> Result<Option<(f32, f32)>> {
        if self.loss_scaling.is_none() {
            return Ok(None);
        }
        let at = crate::ops::LOSS_SCALE_SLOT;
        let v = self.clip_record(gpu)?;
        Ok(Some((v[at], v[at + 1])))
    }

    /// Restores a loss scale saved by `loss_scale` (checkpoints).
    pub fn restore_loss_scale(&self, gpu: &Gpu, scale: f32, good: f32) -> Result<()> {
        if self.loss_scaling.is_none() {
            return Ok(());
        }
        if !(scale >= 1.0 && scale.is_finite() && good >= 0.0) {
            return Err(Error::InvalidArgument(format!("invalid saved loss scale {scale} ({good} steps)")));
        }
        self.clip.upload_at(gpu, crate::ops::LOSS_SCALE_SLOT, &[scale, good])
    }

    pub fn capacity(&self) -> usize {
        self.ws.capacity()
    }

    /// The sparse state, or an error naming `what` for dense trainers.
    pub fn sparse(&self, what: &str) -> Result<&SparseState> {
        self.sparse.as_ref().ok_or_else(|| Error::InvalidArgument(format!("{what} needs a sparse trainer")))
    }

    /// Records the sparse method's step: see the module header.
    fn record_sparse_step(&self, rec: &mut Recorder, sp: &SparseState) -> Result<()> {
        let (net, ws) = (&self.net, &self.ws);
        let units = sp.units();
        // 1. Two masks m ~ Bernoulli(s), keyed by (seed, this step, sample),
        //    compacted into kept lists per prunable layer.
        let key = MaskKey { seed: sp.cfg.seed, step: 0, sample: 0 };
        sp.samples.draw(rec, &sp.scores, key, KeyStep::Block)?;
        // Lazy SGD: the weights these masks reach that no gather of the
        // passes brings up to date (`Lazy::refresh`), before they are read.
        if let Some(lz) = &self.lazy {
            lz.op.refresh(rec, self.lazy_state(lz), sets_of(&sp.samples), self.sgd)?;
        }
        // 2. Forward and backward of L_j / 2 on the kept units of each mask,
        //    same batch, each sample in its own buffers, layer by layer
        //    (sample 0's pass of a layer, then sample 1's); the weight
        //    gradients of the two passes add up, sample 0's first.
        //    The loss head writes each pass's per-row losses apart (part j),
        //    its gradient, and the first pass's accuracy count.
        //    Under lazy SGD, the layers' gathers of their kept weights bring
        //    those up to date.
        let masks = [sp.samples.sample(0), sp.samples.sample(1)];
        let lazy = [0, 1].map(|j| {
            self.lazy.as_ref().filter(|lz| lz.op.gathers()).map(|lz| LazyPass {
                op: &lz.op,
                st: self.lazy_state(lz),
                sets: sets_of(&sp.samples),
                hp: self.sgd,
                sample: j,
                first_slot: 0,
            })
        });
        net.forward_samples(rec, ws, masks, lazy)?;
        for j in 0..2 {
            net.train_head(rec, ws, (0.5, j), (j == 0).then_some(&self.correct))?;
        }
        net.backward_samples(rec, ws, masks)?;
        if let Some(lz) = &self.lazy {
            lz.op.check_gathered()?;
        }
        // 3. The VR-PGE score gradient from the two masks and the two losses,
        //    the batch means of the two parts, which it reduces itself (and
        //    stores in LOSS_1, LOSS_2, adding the step's loss, their mean,
        //    to the logged sum).
        let est = (sp.cfg.estimator, sp.cfg.score_fn);
        let masks = [(&sp.samples.mask, 0), (&sp.samples.mask, units)];
        let slots = ((LOSS_1, LOSS_2), Some(LOSS_SUM));
        let (t, starts) = net.loss_rows(ws);
        let from = Losses::Rows { t, starts, rows: Rows::Batch(ws.capacity()) };
        let loss_scale = self.loss_scaling.map(|_| (&self.clip, Some(LOSS_SCALE_COPY)));
        score_grad(rec, &sp.score_grad, &self.loss, slots, from, &sp.scores, masks, est, units, loss_scale)?;
        // 4. Joint gradient-norm clipping of weights and scores; a non-finite
        //    norm makes the factor 0 and the step is skipped and counted.
        //    Under loss scaling the factor also unscales both gradients, and
        //    an f16 overflow halves the scale instead of counting a fault.
        //    The score optimizer (5) decides it, every workgroup from the
        //    weights' squared norms, the scores' own gradient and the two
        //    losses: no launch of its own. Longer vectors are reduced first.
        let total = self.net.graph.param_total;
        let units_fit = units <= SINGLE_PASS_MAX;
        let weights = match &self.lazy {
            Some(lz) => {
                lz.op.norm(rec, &self.net.grads, sets_of(&sp.samples))?;
                let parts = &lz.op.partials;
                if units_fit && parts.len() <= SINGLE_PASS_MAX {
                    Some((parts, parts.len()))
                } else {
                    self.reducer.reduce(rec, &self.sq, 0, parts, parts.len(), 1.0, false)?;
                    None
                }
            }
            None if units_fit => Some(self.reducer.square_partials(rec, &self.net.grads, total)?),
            None => {
                self.reducer.sum_squares(rec, &self.sq, 0, &self.net.grads, total)?;
                None
            }
        };
        let norms = match (weights, units_fit) {
            (Some(w), _) => w,
            (None, true) => (&self.sq, 1),
            (None, false) => {
                self.reducer.sum_squares(rec, &self.sq, 1, &sp.score_grad, units)?;
                (&self.sq, 2)
            }
        };
        // 5. Adam on the scores (deciding the clip record), then SGD on the
        //    weights, which reads the factor (and clears their gradient).
        let clip = ClipDecision {
            record: &self.clip,
            norms,
            own_squares: units_fit,
            loss: (&self.loss, LOSS_1, 2),
            max_norm: sp.cfg.clip_norm,
            tag: FaultTag::Step,
            loss_scale: self.loss_scaling.map(|l| (l.growth, LOSS_SCALE_COPY)),
        };
        let (scores, m, v, g) = (&sp.scores, &sp.score_m, &sp.score_v, &sp.score_grad);
        adam_clip_step(rec, scores, m, v, g, sp.cfg.score_adam, Rate::FromStep, 1, units, clip)?;
        let (w, m, g) = (&self.net.params, &self.momentum, &self.net.grads);
        match &self.lazy {
            Some(lz) => lz.op.update(rec, self.lazy_state(lz), sets_of(&sp.samples), self.sgd)?,
            None => {
                let scale = GradScale::Buffer(&self.clip);
                sgd_step(rec, w, m, g, scale, self.sgd, Rate::FromStep, AfterStep::ZeroGrad, total)?
            }
        }
        // 6. Project s onto {0 ≤ s ≤ 1, Σ s ≤ K}.
        sp.project(rec)
    }

    /// Records one plain step: a dense step (`fixed` None) or a fine-tuning
    /// step with the fixed mask. The same fault check as the sparse step:
    /// a non-finite loss or gradient norm skips the update. The gradient
    /// matters on its own: ReLU's max(NaN, 0) is 0 on many devices, which
    /// can hide a NaN input from the loss but not from the gradient.
    fn record_plain_step(&self, rec: &mut Recorder, fixed: Option<&MaskSet>) -> Result<()> {
        let (net, ws) = (&self.net, &self.ws);
        let mask = fixed.map(|f| f.sample(0));
        net.forward(rec, ws, mask, true)?;
        net.train_head(rec, ws, (1.0, 0), Some(&self.correct))?;
        net.loss_mean(rec, ws, 0, &self.loss, (LOSS_1, Some(LOSS_SUM)))?;
        // A dense step's backward writes the gradients outright where every
        // layer can (MLPs): then the update need not clear them, nor the
        // weight-gradient products read them. Fine-tuning adds the kept
        // units' gradients into cleared ones.
        let assign = mask.is_none() && net.can_assign_grads();
        if assign {
            net.backward_assigning(rec, ws)?;
        } else {
            net.backward_layers(rec, ws, mask)?;
        }
        let total = net.graph.param_total;
        // The clip factor's launch sums the gradient's partial norms itself.
        let norms = self.reducer.square_partials(rec, &net.grads, total)?;
        let growth = self.loss_scaling.map(|l| l.growth);
        let inputs = ClipInputs { norms, squares: None, loss: Some((&self.loss, LOSS_1, 1)) };
        self.reducer.clip_factor(rec, &self.clip, 0, inputs, f32::MAX, FaultTag::Step, growth)?;
        let (w, m, g) = (&net.params, &self.momentum, &net.grads);
        let after = if assign { AfterStep::KeepGrad } else { AfterStep::ZeroGrad };
        sgd_step(rec, w, m, g, GradScale::Buffer(&self.clip), self.sgd, Rate::FromStep, after, total)
    }

    /// The plan of `phase`, led by the byte decode where `decode`.
    fn record(&self, gpu: &Gpu, phase: Phase, decode: bool) -> Result<Plan> {
        let mut rec = Recorder::with_step(gpu, &self.step_buf);
        if decode {
            self.record_decode(&mut rec)?;
        }
        match (phase, &self.sparse) {
            (Phase::Train, Some(sp)) => self.record_sparse_step(&mut rec, sp)?,
            (Phase::Train, None) => self.record_plain_step(&mut rec, None)?,
            (Phase::Finetune, Some(sp)) => self.record_plain_step(&mut rec, Some(&sp.fixed))?,
            (Phase::Finetune, None) => {
                return Err(Error::InvalidArgument("fine-tuning needs a sparse trainer".into()));
            }
            (Phase::Eval, sp) => {
                let mask = sp.as_ref().map(|s| s.fixed.sample(0));
                self.net.forward(&mut rec, &self.ws, mask, false)?;
                self.net.count_correct(&mut rec, &self.ws, &self.correct)?;
            }
        }
        Ok(rec.into_plan())
    }

    /// The plan of `phase`, recorded on first use.
    pub fn plan(&mut self, gpu: &Gpu, phase: Phase) -> Result<&Plan> {
        self.plan_for(gpu, phase, false)
    }

    /// The plan `run_staged` replays for batches of `phase` staged as
    /// floats, or as bytes (`decode`: led by the byte decode); recorded on
    /// first use.
    pub fn plan_for(&mut self, gpu: &Gpu, phase: Phase, decode: bool) -> Result<&Plan> {
        let i = phase as usize + if decode { 3 } else { 0 };
        if self.plans[i].is_none() {
            self.plans[i] = Some(self.record(gpu, phase, decode)?);
        }
        Ok(self.plans[i].as_ref().expect("recorded above"))
    }

    /// The step block of the next step of `phase` over `rows` rows.
    pub fn step_block(&self, phase: Phase, rows: usize, lr: f32, score_lr: f32, global: u64) -> StepBlock {
        self.block_at(self.step, phase, rows, lr, score_lr, global)
    }

    /// The step block of training step `step` (or of any other phase).
    fn block_at(&self, step: u64, phase: Phase, rows: usize, lr: f32, score_lr: f32, global: u64) -> StepBlock {
        let adam = self.sparse.as_ref().map_or(Adam::default(), |s| s.cfg.score_adam);
        let (c1, c2) = adam_corrections(&adam, step + 1);
        StepBlock {
            batch: rows as u32,
            // The counter wraps after 2^32 steps, far beyond any run.
            step: step as u32,
            lr: if phase == Phase::Eval { 0.0 } else { lr },
            score_lr,
            adam_c1: c1,
            adam_c2: c2,
            global: global as u32,
            _pad: 0,
        }
    }

    /// Queues a batch: `x` holds `rows` samples, `y` their labels. It takes
    /// the place of the first staged batch, so whatever was staged and not
    /// run is dropped.
    pub fn set_batch(&mut self, gpu: &Gpu, x: &[f32], y: &[u32]) -> Result<usize> {
        let rows = y.len();
        let dim = self.net.graph.input().len();
        if rows == 0 || rows > self.capacity() || x.len() != rows * dim {
            return Err(Error::Shape {
                op: "set_batch",
                detail: format!(
                    "{} inputs and {rows} labels for batches of up to {} rows of {dim} inputs",
                    x.len(),
                    self.capacity()
                ),
            });
        }
        self.ws.x.view(0, &[rows * dim])?.upload(gpu, x)?;
        self.ws.y.view(0, &[rows])?.upload(gpu, y)?;
        self.staged.clear();
        self.staged_bytes = false;
        Ok(rows)
    }

    /// Submits one replay of `phase` on the last batch set (`rows` rows),
    /// with the weight rate `lr` and score rate `score_lr`; `global` is the
    /// step number recorded for a fault. Training steps advance the step
    /// counter. Nothing is read back. The host runs at most `MAX_IN_FLIGHT`
    /// steps ahead of the device: past that, it waits for the oldest one,
    /// which bounds the memory of queued batch uploads while the device
    /// always has work queued.
    pub fn run(&mut self, gpu: &Gpu, phase: Phase, rows: usize, lr: f32, score_lr: f32, global: u64) -> Result<()> {
        self.check_rows(rows)?;
        self.prepare(gpu, phase, lr, score_lr, 1)?;
        let block = self.step_block(phase, rows, lr, score_lr, global);
        let index = self.plan(gpu, phase)?.run(gpu, Some(&block))?;
        if phase == Phase::Train {
            self.step += 1;
        }
        self.submitted(gpu, index, 1)
    }

    fn check_rows(&self, rows: usize) -> Result<()> {
        if rows == 0 || rows > self.capacity() {
            return Err(Error::InvalidArgument(format!("batch of {rows} rows for capacity {}", self.capacity())));
        }
        Ok(())
    }

    /// Checks the rates and brings lazily updated weights up to date where
    /// `phase` needs them: before the steps of `run` and `run_staged`.
    fn prepare(&mut self, gpu: &Gpu, phase: Phase, lr: f32, score_lr: f32, steps: usize) -> Result<()> {
        for (name, v) in [("learning rate", lr), ("score learning rate", score_lr)] {
            if !v.is_finite() {
                return Err(Error::InvalidArgument(format!("{name} {v} is not finite")));
            }
        }
        self.prepare_lazy(gpu, phase, lr, steps)
    }

    /// Notes a submission of `steps` steps; past `MAX_IN_FLIGHT` steps
    /// ahead of the device, waits for the oldest submissions.
    fn submitted(&mut self, gpu: &Gpu, index: wgpu::SubmissionIndex, steps: usize) -> Result<()> {
        self.in_flight.push_back((index, steps));
        while self.in_flight.iter().map(|f| f.1).sum::<usize>() > MAX_IN_FLIGHT && self.in_flight.len() > 1 {
            if let Some((oldest, _)) = self.in_flight.pop_front() {
                gpu.wait_for(oldest)?;
            }
        }
        Ok(())
    }

    /// Records clearing the running loss sum and correct count.
    pub fn reset_counters(&self, rec: &mut Recorder) -> Result<()> {
        crate::ops::fill::fill_f32(rec, &self.loss, 0.0)?;
        crate::ops::fill::fill_u32(rec, &self.correct, 0)
    }

    /// Non-finite steps so far, as counted on the device (a small read-back).
    pub fn faults(&self, gpu: &Gpu) -> Result<super::stats::Faults> {
        let v = self.clip_record(gpu)?;
        let skipped = v[1] as u64;
        Ok(super::stats::Faults { skipped, first_step: (skipped > 0).then(|| v[2].to_bits()) })
    }

    /// The clip record's fields (shaders/shared/clip.wgsl), read back
    /// (counted) without lazy SGD's ring of factors after them.
    pub fn clip_record(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.clip.view(0, &[crate::ops::lazy::RING_AT])?.download_f32(gpu)
    }

    /// Draws the fixed mask from the scores with `key` (evaluation, selection).
    pub fn draw_fixed(&self, gpu: &Gpu, key: MaskKey) -> Result<()> {
        let sp = self.sparse("a fixed mask")?;
        let mut rec = Recorder::new(gpu);
        sp.fixed.draw(&mut rec, &sp.scores, key, KeyStep::Fixed)?;
        rec.submit()
    }
}
