//! The training loop behind `sparsetrain train`: shuffled mini-batches from
//! host memory, one submission per step, nothing read back between logging
//! points, an evaluation per epoch, and for sparse runs the method's ending:
//! pick the best of several masks drawn from the frozen scores, then
//! fine-tune the weights with that mask fixed.

use std::time::Instant;

use crate::checkpoint::{Checkpoint, DataId, Progress};
use crate::data::{Dataset, epoch_permutation, gather_batch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::mlp::{DenseTrainer, Mlp};
use crate::ops::mask::MaskKey;
use crate::ops::optim::Sgd;
use crate::record::Recorder;
use crate::sparse::{LOSS_SUM, SparseConfig, SparseTrainer, kept_cost};
use crate::tensor::{DType, Tensor};

/// Everything that defines a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Hidden layer widths; input and output sizes come from the data.
    pub hidden: Vec<usize>,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// Cosine decay of the learning rates over the run, per epoch.
    pub cosine: bool,
    pub seed: u64,
    /// None trains the dense baseline (one pass per step, no masks).
    pub sparse: Option<SparseConfig>,
    /// Masks drawn from the final scores to pick the best one from.
    pub select_draws: usize,
    /// Training images the candidate masks are scored on (0: all).
    pub select_on: usize,
    pub finetune_epochs: usize,
    pub finetune_lr: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: vec![256, 256],
            epochs: 3,
            batch: 128,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            cosine: true,
            seed: 1,
            sparse: Some(SparseConfig::default()),
            select_draws: 10,
            select_on: 0,
            finetune_epochs: 1,
            finetune_lr: 0.01,
        }
    }
}

impl TrainConfig {
    /// Rejects settings that cannot train, with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.batch == 0 {
            return bad("batch size must be at least 1".into());
        }
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.hidden.contains(&0) {
            return bad(format!("hidden layer widths must be positive, got {:?}", self.hidden));
        }
        for (name, v) in [
            ("learning rate", self.lr),
            ("momentum", self.momentum),
            ("weight decay", self.weight_decay),
            ("fine-tuning learning rate", self.finetune_lr),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(format!("{name} must be finite and non-negative, got {v}"));
            }
        }
        if let Some(s) = &self.sparse {
            s.validate()?;
            if self.hidden.is_empty() {
                return bad("sparse training needs at least one hidden layer (or use --dense)".into());
            }
            if self.select_draws == 0 {
                return bad("at least one mask must be drawn for selection".into());
            }
        }
        Ok(())
    }

    /// Cosine factor in `epoch` (0-based): from 1 towards 0 over the run.
    pub fn decay(&self, epoch: usize) -> f32 {
        if !self.cosine {
            return 1.0;
        }
        let t = epoch as f64 / self.epochs as f64;
        (0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
    }

    /// Weight learning rate in `epoch`.
    pub fn lr_at(&self, epoch: usize) -> f32 {
        self.lr * self.decay(epoch)
    }
}

/// One epoch's summary, as printed and written to metrics files (one JSON
/// object per line, read back by `plot::read_metrics`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EpochStats {
    pub phase: &'static str,
    pub epoch: usize,
    pub lr: f32,
    /// Mean training loss over the epoch's steps (NaN where steps were skipped).
    pub loss: f64,
    pub train_acc: f64,
    pub test_acc: f64,
    pub step_ms: f64,
    pub samples_per_s: f64,
    /// Kept units per hidden layer in the epoch's last mask (sparse only).
    pub kept: Vec<usize>,
    /// Fraction of scores within 0.05 of 0 or 1 (sparse only): how far the
    /// projection and the estimator have driven them to a deterministic mask.
    pub polarized: Option<f64>,
}

impl EpochStats {
    /// The metrics-file line (non-finite numbers become null).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Steps whose loss or gradient was not finite, as counted on the device:
/// each was skipped (no parameter changed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub skipped: u64,
    /// The first such step, in the trainer's step count.
    pub first_step: Option<u32>,
}

/// What a finished sparse run keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseSummary {
    /// Training accuracy of each candidate mask, and the chosen index.
    pub candidates: Vec<f64>,
    pub chosen: usize,
    pub kept: Vec<usize>,
    pub params: (usize, usize),
    pub flops: (usize, usize),
    /// Final scores in 20 bins over [0, 1]: driven to 0/1 when training has
    /// settled the mask.
    pub score_hist: Vec<usize>,
}

/// The trainer of a session. Boxed: one lives per session, and the sizes
/// of the two differ a lot.
pub enum Model {
    Dense(Box<DenseTrainer>),
    Sparse(Box<SparseTrainer>),
}

/// A model with its optimizer, batch buffers and data, ready to train.
pub struct Session<'g> {
    gpu: &'g Gpu,
    pub cfg: TrainConfig,
    pub model: Model,
    /// Steps taken in all phases since the run began (restored on resume).
    pub steps_taken: u64,
    x: Tensor,
    y: Tensor,
    host_x: Vec<f32>,
    host_y: Vec<u32>,
}

/// Mask keys outside the training steps' range, for evaluation and selection.
const EVAL_STEP: u32 = u32::MAX;
const SELECT_SAMPLE: u32 = 1000;

impl<'g> Session<'g> {
    pub fn new(gpu: &'g Gpu, cfg: TrainConfig, input_dim: usize, classes: usize) -> Result<Session<'g>> {
        cfg.validate()?;
        let mut sizes = vec![input_dim];
        sizes.extend(&cfg.hidden);
        sizes.push(classes);
        let mlp = Mlp::new(gpu, &sizes, cfg.seed)?;
        let sgd = Sgd { lr: cfg.lr, momentum: cfg.momentum, weight_decay: cfg.weight_decay };
        let model = match cfg.sparse {
            None => Model::Dense(Box::new(DenseTrainer::new(gpu, mlp, cfg.batch, sgd)?)),
            Some(sc) => Model::Sparse(Box::new(SparseTrainer::new(
                gpu,
                mlp,
                cfg.batch,
                sgd,
                SparseConfig { seed: cfg.seed, ..sc },
            )?)),
        };
        let x = Tensor::zeros(gpu, "batch x", &[cfg.batch, input_dim], DType::F32)?;
        let y = Tensor::zeros(gpu, "batch y", &[cfg.batch], DType::U32)?;
        Ok(Session { gpu, cfg, model, steps_taken: 0, x, y, host_x: Vec::new(), host_y: Vec::new() })
    }

    pub fn mlp(&self) -> &Mlp {
        match &self.model {
            Model::Dense(t) => &t.mlp,
            Model::Sparse(t) => &t.mlp,
        }
    }

    fn upload_batch(&mut self, ds: &Dataset, idx: &[u32]) -> Result<usize> {
        gather_batch(ds, idx, &mut self.host_x, &mut self.host_y);
        let n = idx.len();
        self.x.view(0, &[n, ds.dim])?.upload(self.gpu, &self.host_x)?;
        self.y.view(0, &[n])?.upload(self.gpu, &self.host_y)?;
        Ok(n)
    }

    fn check_data(&self, ds: &Dataset) -> Result<()> {
        if ds.dim != self.mlp().input_dim() || ds.is_empty() {
            return Err(Error::Shape {
                op: "train",
                detail: format!(
                    "data has {} images of {} inputs, model takes {}",
                    ds.len(),
                    ds.dim,
                    self.mlp().input_dim()
                ),
            });
        }
        Ok(())
    }

    fn reset_counters(&self) -> Result<()> {
        let mut rec = Recorder::new(self.gpu);
        let (loss, correct) = match &self.model {
            Model::Dense(t) => (t.ws.loss(), t.ws.correct()),
            Model::Sparse(t) => (&t.loss, &t.correct),
        };
        loss.fill_f32(&mut rec, 0.0)?;
        correct.fill_u32(&mut rec, 0)?;
        rec.submit()
    }

    /// (mean loss, accuracy) accumulated since `reset_counters`, over `steps`
    /// steps and `samples` samples: the logging read-back.
    fn read_counters(&self, steps: usize, samples: usize) -> Result<(f64, f64)> {
        let (loss, slot, correct) = match &self.model {
            Model::Dense(t) => (t.ws.loss(), 1, t.ws.correct()),
            Model::Sparse(t) => (&t.loss, LOSS_SUM, &t.correct),
        };
        let l = loss.download_f32(self.gpu)?[slot] as f64 / steps.max(1) as f64;
        let c = correct.download_u32(self.gpu)?[0] as f64 / samples.max(1) as f64;
        Ok((l, c))
    }

    /// Steps in one epoch of `ds`.
    pub fn epoch_steps(&self, ds: &Dataset) -> usize {
        ds.len().div_ceil(self.cfg.batch)
    }

    /// Weight learning rate of an epoch of a phase.
    fn phase_lr(&self, epoch: usize, finetune: bool) -> f32 {
        if finetune { self.cfg.finetune_lr } else { self.cfg.lr * self.cfg.decay(epoch) }
    }

    /// Takes the steps `steps` (indices within the epoch) of epoch `epoch`
    /// of a phase; the data order is a function of (seed, epoch, phase), so
    /// an epoch may be split into several calls, across a resume too. A
    /// range starting at 0 resets the epoch's loss and accuracy sums.
    /// Nothing is read back.
    pub fn run_steps(
        &mut self,
        ds: &Dataset,
        epoch: usize,
        finetune: bool,
        steps: std::ops::Range<usize>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<()> {
        self.check_data(ds)?;
        if steps.start == 0 {
            self.reset_counters()?;
        }
        let lr = self.phase_lr(epoch, finetune);
        let decay = self.cfg.decay(epoch);
        let order = epoch_permutation(ds.len(), self.cfg.seed, epoch as u64 + if finetune { 1 << 32 } else { 0 });
        let total = order.len().div_ceil(self.cfg.batch);
        let batch = self.cfg.batch;
        for s in steps.start..steps.end.min(total) {
            let idx = &order[s * batch..((s + 1) * batch).min(order.len())];
            let n = self.upload_batch(ds, idx)?;
            let mut rec = Recorder::new(self.gpu);
            match &mut self.model {
                Model::Dense(t) => {
                    t.sgd.lr = lr;
                    t.step(&mut rec, &self.x, &self.y, n)?;
                }
                Model::Sparse(t) if finetune => {
                    let sgd = Sgd { lr, ..t.sgd };
                    t.finetune_step(&mut rec, &self.x, &self.y, n, sgd)?;
                }
                Model::Sparse(t) => {
                    t.sgd.lr = lr;
                    let score_lr = t.cfg.score_adam.lr * decay;
                    t.step(&mut rec, &self.x, &self.y, n, score_lr)?;
                }
            }
            rec.submit()?;
            self.steps_taken += 1;
            progress(s + 1, total);
        }
        Ok(())
    }

    /// The epoch's summary from the sums kept on the device since its first
    /// step (`steps` steps and `samples` images): the logging read-back.
    pub fn end_epoch(
        &mut self,
        epoch: usize,
        finetune: bool,
        steps: usize,
        samples: usize,
        secs: f64,
    ) -> Result<EpochStats> {
        self.gpu.wait()?;
        // A non-finite loss here means skipped steps; `faults` reports them.
        let (loss, train_acc) = self.read_counters(steps, samples)?;
        let kept = match &self.model {
            Model::Sparse(t) if finetune => t.kept_counts(self.gpu, &t.fixed)?,
            Model::Sparse(t) => t.kept_counts(self.gpu, &t.samples[0])?,
            Model::Dense(_) => Vec::new(),
        };
        let polarized = match &self.model {
            Model::Sparse(t) => {
                let s = t.scores.download_f32(self.gpu)?;
                Some(s.iter().filter(|&&v| !(0.05..=0.95).contains(&v)).count() as f64 / s.len().max(1) as f64)
            }
            Model::Dense(_) => None,
        };
        let step_s = secs / steps.max(1) as f64;
        Ok(EpochStats {
            phase: if finetune { "finetune" } else { "train" },
            epoch: epoch + 1,
            lr: self.phase_lr(epoch, finetune),
            loss,
            train_acc,
            test_acc: f64::NAN,
            step_ms: 1e3 * step_s,
            samples_per_s: samples as f64 / secs.max(1e-12),
            kept,
            polarized,
        })
    }

    /// Trains one whole epoch (`finetune`: with the fixed mask, constant
    /// rate); `progress` is called after each step with (done, total).
    pub fn train_epoch(
        &mut self,
        ds: &Dataset,
        epoch: usize,
        finetune: bool,
        progress: impl FnMut(usize, usize),
    ) -> Result<EpochStats> {
        let steps = self.epoch_steps(ds);
        let start = Instant::now();
        self.run_steps(ds, epoch, finetune, 0..steps, progress)?;
        self.gpu.wait()?;
        self.end_epoch(epoch, finetune, steps, ds.len(), start.elapsed().as_secs_f64())
    }

    /// Non-finite steps so far (a small read-back, for logging points).
    pub fn faults(&self) -> Result<Faults> {
        let clip = match &self.model {
            Model::Dense(t) => &t.clip,
            Model::Sparse(t) => &t.clip,
        };
        let v = clip.download_f32(self.gpu)?;
        let skipped = v[1] as u64;
        Ok(Faults { skipped, first_step: (skipped > 0).then(|| v[2].to_bits()) })
    }

    /// Everything needed to continue this run exactly (a counted read-back).
    pub fn checkpoint(&self, progress: Progress, data: DataId) -> Result<Checkpoint> {
        let g = self.gpu;
        let (mut f32s, mut u32s) = (Vec::new(), Vec::new());
        let mut progress = progress;
        progress.global_step = self.steps_taken;
        match &self.model {
            Model::Dense(t) => {
                f32s.push(("params".into(), t.mlp.params.download_f32(g)?));
                f32s.push(("momentum".into(), t.momentum.download_f32(g)?));
                progress.mask_step = t.step;
            }
            Model::Sparse(t) => {
                f32s.push(("params".into(), t.mlp.params.download_f32(g)?));
                f32s.push(("momentum".into(), t.momentum.download_f32(g)?));
                f32s.push(("scores".into(), t.scores.download_f32(g)?));
                f32s.push(("score_m".into(), t.score_m.download_f32(g)?));
                f32s.push(("score_v".into(), t.score_v.download_f32(g)?));
                if progress.phase == "finetune" {
                    u32s.push(("fixed_mask".into(), t.fixed.mask.download_u32(g)?));
                }
                progress.mask_step = t.step;
            }
        }
        Ok(Checkpoint { config: self.cfg.clone(), sizes: self.mlp().layout.sizes.clone(), data, progress, f32s, u32s })
    }

    /// A session continuing `ck` (checked with `Checkpoint::check_compatible`
    /// by the caller).
    pub fn restore(gpu: &'g Gpu, ck: &Checkpoint) -> Result<Session<'g>> {
        let input = ck.sizes[0];
        let classes = *ck.sizes.last().unwrap_or(&0);
        let mut s = Session::new(gpu, ck.config.clone(), input, classes)?;
        let missing = |n: &str| Error::InvalidArgument(format!("checkpoint lacks {n}"));
        let f = |n: &str| ck.f32(n).ok_or_else(|| missing(n));
        match &mut s.model {
            Model::Dense(t) => {
                t.mlp.params.upload(gpu, f("params")?)?;
                t.momentum.upload(gpu, f("momentum")?)?;
                t.step = ck.progress.mask_step;
            }
            Model::Sparse(t) => {
                t.mlp.params.upload(gpu, f("params")?)?;
                t.momentum.upload(gpu, f("momentum")?)?;
                t.scores.upload(gpu, f("scores")?)?;
                t.score_m.upload(gpu, f("score_m")?)?;
                t.score_v.upload(gpu, f("score_v")?)?;
                t.step = ck.progress.mask_step;
                if let Some(m) = ck.u32("fixed_mask") {
                    t.fixed.mask.upload(gpu, m)?;
                    let mut rec = Recorder::new(gpu);
                    t.compact(&mut rec, &t.fixed)?;
                    rec.submit()?;
                }
            }
        }
        s.steps_taken = ck.progress.global_step;
        gpu.wait()?;
        Ok(s)
    }

    /// Fraction of `ds[..limit]` classified correctly. Sparse models use the
    /// fixed mask; `draw` first draws it from the current scores with `key`.
    pub fn evaluate(&mut self, ds: &Dataset, limit: usize, draw: Option<MaskKey>) -> Result<f64> {
        self.check_data(ds)?;
        let n_eval = if limit == 0 { ds.len() } else { limit.min(ds.len()) };
        {
            let mut rec = Recorder::new(self.gpu);
            match &self.model {
                Model::Dense(t) => t.ws.correct().fill_u32(&mut rec, 0)?,
                Model::Sparse(t) => {
                    t.correct.fill_u32(&mut rec, 0)?;
                    if let Some(key) = draw {
                        t.draw_mask(&mut rec, &t.fixed, key)?;
                    }
                }
            }
            rec.submit()?;
        }
        let all: Vec<u32> = (0..n_eval as u32).collect();
        for idx in all.chunks(self.cfg.batch) {
            let n = self.upload_batch(ds, idx)?;
            let mut rec = Recorder::new(self.gpu);
            match &self.model {
                Model::Dense(t) => {
                    t.mlp.forward(&mut rec, &t.ws, &self.x, n)?;
                    t.mlp.count_correct(&mut rec, &t.ws, &self.y, n)?;
                }
                Model::Sparse(t) => t.count_correct(&mut rec, &self.x, &self.y, n)?,
            }
            rec.submit()?;
        }
        let correct = match &self.model {
            Model::Dense(t) => t.ws.correct(),
            Model::Sparse(t) => &t.correct,
        };
        Ok(correct.download_u32(self.gpu)?[0] as f64 / n_eval as f64)
    }

    /// The network to export: the kept units of the fixed mask (after
    /// `select_mask`) for sparse models, the whole model for dense ones.
    pub fn export(&self) -> Result<crate::export::CompactMlp> {
        match &self.model {
            Model::Dense(t) => crate::export::CompactMlp::from_dense(self.gpu, &t.mlp),
            Model::Sparse(t) => crate::export::CompactMlp::from_sparse(self.gpu, t, &t.fixed),
        }
    }

    /// The key of the per-epoch evaluation mask.
    pub fn eval_key(&self, epoch: usize) -> Option<MaskKey> {
        match &self.model {
            Model::Sparse(t) => Some(MaskKey { seed: t.cfg.seed, step: EVAL_STEP, sample: epoch as u32 }),
            Model::Dense(_) => None,
        }
    }

    /// After training: draws `select_draws` masks from the frozen scores,
    /// scores each on the training set, and leaves the best one as the fixed
    /// mask. None for dense models.
    pub fn select_mask(&mut self, train: &Dataset) -> Result<Option<SparseSummary>> {
        let Model::Sparse(t) = &self.model else { return Ok(None) };
        let seed = t.cfg.seed;
        let key = |i: usize| MaskKey { seed, step: EVAL_STEP, sample: SELECT_SAMPLE + i as u32 };
        let mut candidates = Vec::new();
        for i in 0..self.cfg.select_draws {
            candidates.push(self.evaluate(train, self.cfg.select_on, Some(key(i)))?);
        }
        let chosen = candidates.iter().enumerate().fold(0, |best, (i, &a)| if a > candidates[best] { i } else { best });
        let Model::Sparse(t) = &self.model else { return Ok(None) };
        let mut rec = Recorder::new(self.gpu);
        t.draw_mask(&mut rec, &t.fixed, key(chosen))?;
        rec.submit()?;
        let summary = self.summarize_fixed()?;
        Ok(summary.map(|s| SparseSummary { candidates, chosen, ..s }))
    }

    /// Draws the fixed mask as the first candidate of `select_mask` would,
    /// without scoring it (for exports of checkpoints taken before selection).
    pub fn draw_first_candidate(&mut self) -> Result<()> {
        let Model::Sparse(t) = &self.model else { return Ok(()) };
        let key = MaskKey { seed: t.cfg.seed, step: EVAL_STEP, sample: SELECT_SAMPLE };
        let mut rec = Recorder::new(self.gpu);
        t.draw_mask(&mut rec, &t.fixed, key)?;
        rec.submit()
    }

    /// The kept units, size and score histogram of the fixed mask as it is
    /// (after `select_mask`, or restored from a checkpoint). None for dense
    /// models.
    pub fn summarize_fixed(&self) -> Result<Option<SparseSummary>> {
        let Model::Sparse(t) = &self.model else { return Ok(None) };
        let kept = t.kept_counts(self.gpu, &t.fixed)?;
        let (kept_cost, dense_cost) = kept_cost(&t.mlp.layout.sizes, &kept);
        let mut score_hist = vec![0usize; 20];
        for s in t.scores.download_f32(self.gpu)? {
            score_hist[((s.clamp(0.0, 1.0) * 20.0) as usize).min(19)] += 1;
        }
        Ok(Some(SparseSummary {
            candidates: Vec::new(),
            chosen: 0,
            kept,
            params: (kept_cost.0, dense_cost.0),
            flops: (kept_cost.1, dense_cost.1),
            score_hist,
        }))
    }
}
