//! The training loop behind `sparsetrain train`: shuffled mini-batches from
//! host memory, one replayed plan per step (runs of up to 16 steps staged
//! and submitted together, evaluation batches too), nothing read back between
//! logging points, an evaluation per epoch, and for sparse runs the
//! method's ending: pick the best of several masks drawn from the frozen
//! scores, then fine-tune the weights with that mask fixed.

use std::time::Instant;

use super::checkpoint::{Checkpoint, DataId, Progress};
use super::config::TrainConfig;
use super::stats::{EpochStats, Faults, SparseSummary};
use super::trainer::{LOSS_SUM, Phase, Trainer};
use crate::data::{
    Dataset, Norm, append_augmented, append_augmented_bytes, append_batch, append_batch_bytes, derive_seed,
    epoch_permutation, gather_batch,
};
use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::error::{Error, Result};
use crate::export::Exported;
use crate::nn::{Graph, Net, Shape};
use crate::ops::mask::MaskKey;
use crate::ops::optim::Sgd;
use crate::sparse::SparseConfig;

/// Mask keys outside the training steps' range, for evaluation and selection.
const EVAL_STEP: u32 = u32::MAX;
const SELECT_SAMPLE: u32 = 1000;

/// A trainer with its run's settings and data plumbing, ready to train.
pub struct Session<'g> {
    gpu: &'g Gpu,
    pub cfg: TrainConfig,
    pub trainer: Trainer,
    /// Steps taken in all phases since the run began (restored on resume).
    pub steps_taken: u64,
    /// The batches of a run of steps, packed (`run_batches`): as floats, or
    /// as pixel bytes where the trainer takes them.
    run_x: Vec<f32>,
    run_bytes: Vec<u8>,
    run_y: Vec<u32>,
    run_rows: Vec<usize>,
    /// Whether batches go up as bytes (`SPARSETRAIN_BYTE_INPUTS`), and the
    /// normalisation and channels the trainer's tables were made for.
    byte_inputs: bool,
    byte_norm: Option<(Norm, usize)>,
}

/// `SPARSETRAIN_BYTE_INPUTS`: whether training uploads its batches as pixel
/// bytes, built into the inputs on the device (`auto`, the default: a
/// quarter of the upload per step, the same inputs bit for bit), or as
/// floats (`off`, for comparison).
pub fn byte_inputs_env() -> Result<bool> {
    crate::device::variant::auto_or_off("SPARSETRAIN_BYTE_INPUTS")
}

impl<'g> Session<'g> {
    /// A new run of `cfg` on data of `input` shape and `classes` classes.
    pub fn new(gpu: &'g Gpu, cfg: TrainConfig, input: Shape, classes: usize) -> Result<Session<'g>> {
        cfg.validate()?;
        // Before anything is recorded: the matmuls' arithmetic, and with it
        // the trainer's loss scaling.
        gpu.set_precision(cfg.precision)?;
        let graph = Graph::from_spec(cfg.model.graph(input, classes)?)?;
        let net = Net::new(gpu, graph, cfg.seed)?;
        let sgd = Sgd { lr: cfg.lr, momentum: cfg.momentum, weight_decay: cfg.weight_decay };
        let sparse = cfg.sparse.map(|sc| SparseConfig { seed: cfg.seed, ..sc });
        let byte_inputs = byte_inputs_env()?;
        let trainer = Trainer::new(gpu, net, cfg.batch, sgd, sparse)?;
        Ok(Session {
            gpu,
            cfg,
            trainer,
            steps_taken: 0,
            run_x: Vec::new(),
            run_bytes: Vec::new(),
            run_y: Vec::new(),
            run_rows: Vec::new(),
            byte_inputs,
            byte_norm: None,
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.trainer.net.graph
    }

    fn check_data(&self, ds: &Dataset) -> Result<()> {
        let input = self.graph().input();
        if ds.dim() != input.len() || ds.is_empty() {
            return Err(Error::Shape {
                op: "train",
                detail: format!("data has {} images of shape {}, the model takes {input}", ds.len(), ds.shape),
            });
        }
        Ok(())
    }

    fn reset_counters(&self) -> Result<()> {
        let mut rec = Recorder::new(self.gpu);
        self.trainer.reset_counters(&mut rec)?;
        rec.submit()
    }

    /// (mean loss, accuracy) accumulated since `reset_counters`, over `steps`
    /// steps and `samples` samples: the logging read-back.
    fn read_counters(&self, steps: usize, samples: usize) -> Result<(f64, f64)> {
        let l = self.trainer.loss.download_f32(self.gpu)?[LOSS_SUM] as f64 / steps.max(1) as f64;
        let c = self.trainer.correct.download_u32(self.gpu)?[0] as f64 / samples.max(1) as f64;
        Ok((l, c))
    }

    /// Steps in one epoch of `ds`.
    pub fn epoch_steps(&self, ds: &Dataset) -> usize {
        ds.len().div_ceil(self.cfg.batch)
    }

    /// Weight learning rate of an epoch of a phase.
    fn phase_lr(&self, epoch: usize, finetune: bool) -> f32 {
        if finetune { self.cfg.finetune_lr_at(epoch) } else { self.cfg.lr * self.cfg.decay(epoch) }
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
        let score_lr = self.cfg.sparse.map_or(0.0, |s| s.score_adam.lr * self.cfg.decay(epoch));
        let phase = if finetune { Phase::Finetune } else { Phase::Train };
        let order = epoch_permutation(ds.len(), self.cfg.seed, epoch as u64 + if finetune { 1 << 32 } else { 0 });
        let total = order.len().div_ceil(self.cfg.batch);
        let batch = self.cfg.batch;
        let end = steps.end.min(total);
        let chunk = self.trainer.max_chunk();
        let mut s = steps.start;
        let mut run = Vec::with_capacity(chunk);
        while s < end {
            let n = chunk.min(end - s);
            run.clear();
            run.extend((s..s + n).map(|k| &order[k * batch..((k + 1) * batch).min(order.len())]));
            self.run_batches(ds, &run, phase, (lr, score_lr), true)?;
            for j in 0..n {
                self.steps_taken += 1;
                progress(s + j + 1, total);
            }
            s += n;
        }
        Ok(())
    }

    /// Gathers the batches `run` of `ds` (image indices; every batch full
    /// but the last), augmented when `training` (draws keyed by the step,
    /// so that a resumed run sees the images it would have seen), and takes
    /// them as one submission (`Trainer::stage_batches` + `run_staged`):
    /// the same steps as one submission each, at less host time per step.
    /// Does not advance `steps_taken`.
    fn run_batches(
        &mut self,
        ds: &Dataset,
        run: &[&[u32]],
        phase: Phase,
        (lr, score_lr): (f32, f32),
        training: bool,
    ) -> Result<()> {
        self.run_x.clear();
        self.run_bytes.clear();
        self.run_y.clear();
        self.run_rows.clear();
        let bytes = self.byte_tables_for(ds)?;
        for (j, idx) in run.iter().enumerate() {
            let y = &mut self.run_y;
            let seed = derive_seed(self.cfg.seed, self.steps_taken + j as u64);
            match (bytes, training) {
                (true, true) => append_augmented_bytes(ds, idx, self.cfg.augment, seed, &mut self.run_bytes, y),
                (true, false) => append_batch_bytes(ds, idx, &mut self.run_bytes, y),
                (false, true) => append_augmented(ds, idx, self.cfg.augment, seed, &mut self.run_x, y),
                (false, false) => append_batch(ds, idx, &mut self.run_x, y),
            }
            self.run_rows.push(idx.len());
        }
        if bytes {
            self.trainer.stage_byte_batches(self.gpu, &self.run_bytes, &self.run_y, &self.run_rows)?;
        } else {
            self.trainer.stage_batches(self.gpu, &self.run_x, &self.run_y, &self.run_rows)?;
        }
        self.trainer.run_staged(self.gpu, phase, lr, score_lr, self.steps_taken)?;
        Ok(())
    }

    /// Whether `ds`'s batches go up as bytes; if so, the trainer holds the
    /// tables of its normalisation, one per channel of its pixels.
    fn byte_tables_for(&mut self, ds: &Dataset) -> Result<bool> {
        if !self.byte_inputs || !self.trainer.byte_inputs_fit(self.gpu) {
            return Ok(false);
        }
        let want = (ds.norm.clone(), ds.shape.c);
        if self.byte_norm.as_ref() != Some(&want) {
            let tables = ds.norm.tables();
            if tables.is_empty() {
                return Err(Error::InvalidArgument(format!("dataset {}: no normalisation per channel", ds.name)));
            }
            let per_channel: Vec<[f32; 256]> = (0..ds.shape.c).map(|ch| tables[ch.min(tables.len() - 1)]).collect();
            self.trainer.enable_byte_inputs(self.gpu, &per_channel)?;
            self.byte_norm = Some(want);
        }
        Ok(true)
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
        let (kept, polarized) = match &self.trainer.sparse {
            Some(sp) => {
                let set = if finetune { &sp.fixed } else { &sp.samples };
                let s = sp.scores.download_f32(self.gpu)?;
                let pol = s.iter().filter(|&&v| !(0.05..=0.95).contains(&v)).count() as f64 / s.len().max(1) as f64;
                (set.kept_counts(self.gpu, 0)?, Some(pol))
            }
            None => (Vec::new(), None),
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

    /// Trains one whole epoch (`finetune`: with the fixed mask, at
    /// fine-tuning's rate); `progress` is called after each step with (done, total).
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
        self.trainer.faults(self.gpu)
    }

    /// Everything needed to continue this run exactly (a counted read-back).
    pub fn checkpoint(&self, progress: Progress, data: DataId) -> Result<Checkpoint> {
        let (g, t) = (self.gpu, &self.trainer);
        // Deferred updates of lazy SGD applied (to the bit as later): what
        // is saved holds none, and the run goes on the same.
        t.settle(g)?;
        let mut progress = progress;
        progress.global_step = self.steps_taken;
        progress.mask_step = t.step;
        let mut f32s = vec![
            ("params".to_string(), t.net.params.download_f32(g)?),
            ("momentum".to_string(), t.momentum.download_f32(g)?),
        ];
        if t.net.graph.state_total > 0 {
            f32s.push(("state".into(), t.net.download_state(g)?));
        }
        let mut u32s = Vec::new();
        if let Some(sp) = &t.sparse {
            f32s.push(("scores".into(), sp.scores.download_f32(g)?));
            f32s.push(("score_m".into(), sp.score_m.download_f32(g)?));
            f32s.push(("score_v".into(), sp.score_v.download_f32(g)?));
            if progress.phase == "finetune" {
                u32s.push(("fixed_mask".into(), sp.fixed.mask_of(g, 0)?));
            }
        }
        // The updates lazy SGD skipped stay skipped (settled above, none
        // waits in the gradient): the weights, each one's clock and the
        // pending rate continue exactly.
        if let Some(lz) = &t.lazy {
            let clock = t.clip_record(g)?[3].to_bits();
            u32s.push(("lazy_last".into(), lz.last.download_u32(g)?));
            u32s.push(("lazy_clock".into(), vec![clock, u32::from(lz.pending.is_some())]));
            f32s.push(("lazy_rate".into(), vec![lz.pending.unwrap_or(0.0)]));
        }
        // Mixed precision: the loss scale and its growth count continue.
        if let Some((scale, good)) = t.loss_scale(g)? {
            f32s.push(("loss_scale".into(), vec![scale, good]));
        }
        Ok(Checkpoint { config: self.cfg.clone(), graph: self.graph().spec.clone(), data, progress, f32s, u32s })
    }

    /// A session continuing `ck` (checked with `Checkpoint::check_compatible`
    /// by the caller).
    pub fn restore(gpu: &'g Gpu, ck: &Checkpoint) -> Result<Session<'g>> {
        // Sizes and values, lazy SGD's clocks among them (a clock past the
        // update count would apply updates that never were).
        ck.check_shapes().map_err(|e| Error::InvalidArgument(format!("checkpoint: {e}")))?;
        let s = Session::new(gpu, ck.config.clone(), ck.graph.input, ck.graph.classes)?;
        if s.graph().spec != ck.graph {
            return Err(Error::InvalidArgument("the checkpoint's graph is not the one its config builds".into()));
        }
        let mut s = s;
        let missing = |n: &str| Error::InvalidArgument(format!("checkpoint lacks {n}"));
        let f = |n: &str| ck.f32(n).ok_or_else(|| missing(n));
        let t = &mut s.trainer;
        t.net.params.upload(gpu, f("params")?)?;
        t.momentum.upload(gpu, f("momentum")?)?;
        if t.net.graph.state_total > 0 {
            t.net.state.view(0, &[t.net.graph.state_total])?.upload(gpu, f("state")?)?;
        }
        t.step = ck.progress.mask_step;
        if let (Some(lz), Some(last), Some(clock), Some(rate)) =
            (&mut t.lazy, ck.u32("lazy_last"), ck.u32("lazy_clock"), ck.f32("lazy_rate"))
        {
            if last.len() != t.net.graph.param_total || clock.len() != 2 || rate.len() != 1 {
                return Err(Error::InvalidArgument("checkpoint's lazy SGD state has the wrong size".into()));
            }
            lz.last.upload(gpu, last)?;
            t.clip.upload_at(gpu, 0, &[0.0, 0.0, 0.0, f32::from_bits(clock[0])])?;
            lz.pending = (clock[1] != 0).then_some(rate[0]);
            // Saved during fine-tuning, the clocks may lag an up-to-date
            // network (`LazySgd::clocks_lag`); stamping them is harmless
            // otherwise.
            lz.clocks_lag = lz.pending.is_none();
        }
        if t.loss_scaling.is_some() {
            match ck.f32("loss_scale") {
                Some([scale, good]) => t.restore_loss_scale(gpu, *scale, *good)?,
                Some(_) => return Err(Error::InvalidArgument("checkpoint's loss scale has the wrong size".into())),
                None => return Err(missing("loss_scale")),
            }
        }
        if let Some(sp) = &t.sparse {
            sp.scores.upload(gpu, f("scores")?)?;
            sp.score_m.upload(gpu, f("score_m")?)?;
            sp.score_v.upload(gpu, f("score_v")?)?;
            if let Some(m) = ck.u32("fixed_mask") {
                sp.fixed.mask.upload(gpu, m)?;
                let mut rec = Recorder::new(gpu);
                sp.fixed.compact(&mut rec)?;
                rec.submit()?;
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
        if let Some(key) = draw {
            self.trainer.draw_fixed(self.gpu, key)?;
        }
        {
            let mut rec = Recorder::new(self.gpu);
            crate::ops::fill::fill_u32(&mut rec, &self.trainer.correct, 0)?;
            rec.submit()?;
        }
        let all: Vec<u32> = (0..n_eval as u32).collect();
        let batches: Vec<&[u32]> = all.chunks(self.cfg.batch).collect();
        for run in batches.chunks(self.trainer.max_chunk()) {
            self.run_batches(ds, run, Phase::Eval, (0.0, 0.0), false)?;
        }
        Ok(self.trainer.correct.download_u32(self.gpu)?[0] as f64 / n_eval as f64)
    }

    /// The network to export: the kept units of the fixed mask (after
    /// `select_mask`) for sparse models, the whole model for dense ones.
    pub fn export(&mut self) -> Result<Exported> {
        self.trainer.catch_up(self.gpu)?;
        let g = self.graph();
        let kept = match &self.trainer.sparse {
            Some(sp) => sp.fixed.kept_lists(self.gpu, 0)?,
            None => g.unit_widths().iter().map(|&w| (0..w).collect()).collect(),
        };
        let flat = self.trainer.net.download_params(self.gpu)?;
        let state = self.trainer.net.download_state(self.gpu)?;
        Exported::from_graph(g, &kept, &flat, &state)
    }

    /// The key of the per-epoch evaluation mask.
    pub fn eval_key(&self, epoch: usize) -> Option<MaskKey> {
        let sp = self.trainer.sparse.as_ref()?;
        Some(MaskKey { seed: sp.cfg.seed, step: EVAL_STEP, sample: epoch as u32 })
    }

    /// After training: draws `select_draws` masks from the frozen scores,
    /// scores each on the training set, and leaves the best one as the fixed
    /// mask. None for dense models.
    pub fn select_mask(&mut self, train: &Dataset) -> Result<Option<SparseSummary>> {
        let Some(sp) = &self.trainer.sparse else { return Ok(None) };
        let seed = sp.cfg.seed;
        let key = |i: usize| MaskKey { seed, step: EVAL_STEP, sample: SELECT_SAMPLE + i as u32 };
        let mut candidates = Vec::new();
        for i in 0..self.cfg.select_draws {
            candidates.push(self.evaluate(train, self.cfg.select_on, Some(key(i)))?);
        }
        let chosen = candidates.iter().enumerate().fold(0, |best, (i, &a)| if a > candidates[best] { i } else { best });
        self.trainer.draw_fixed(self.gpu, key(chosen))?;
        let revived = self.keep_one_unit_per_layer()?;
        let summary = self.summarize_fixed()?;
        Ok(summary.map(|s| SparseSummary { candidates, chosen, revived, ..s }))
    }

    /// A network needs at least one unit in every layer: where the fixed
    /// mask keeps none of a prunable layer, its highest-scoring unit is kept.
    /// Returns the names of the layers so mended (a small read-back).
    pub fn keep_one_unit_per_layer(&mut self) -> Result<Vec<String>> {
        let Some(sp) = &self.trainer.sparse else { return Ok(Vec::new()) };
        let counts = sp.fixed.kept_counts(self.gpu, 0)?;
        if counts.iter().all(|&c| c > 0) {
            return Ok(Vec::new());
        }
        let g = &self.trainer.net.graph;
        let scores = sp.scores.download_f32(self.gpu)?;
        let mut mask = sp.fixed.mask_of(self.gpu, 0)?;
        let mut revived = Vec::new();
        for (p, _) in counts.iter().enumerate().filter(|(_, c)| **c == 0) {
            let (lo, hi) = (g.unit_off[p], g.unit_off[p + 1]);
            let best = (lo..hi).fold(lo, |b, u| if scores[u] > scores[b] { u } else { b });
            mask[best] = 1;
            revived.push(g.prunable_names()[p].to_string());
        }
        sp.fixed.mask.upload(self.gpu, &mask)?;
        let mut rec = Recorder::new(self.gpu);
        sp.fixed.compact(&mut rec)?;
        rec.submit()?;
        Ok(revived)
    }

    /// Draws the fixed mask as the first candidate of `select_mask` would,
    /// without scoring it (for exports of checkpoints taken before selection).
    pub fn draw_first_candidate(&mut self) -> Result<()> {
        let Some(sp) = &self.trainer.sparse else { return Ok(()) };
        let key = MaskKey { seed: sp.cfg.seed, step: EVAL_STEP, sample: SELECT_SAMPLE };
        self.trainer.draw_fixed(self.gpu, key)?;
        self.keep_one_unit_per_layer().map(|_| ())
    }

    /// The kept units, size and score histogram of the fixed mask as it is
    /// (after `select_mask`, or restored from a checkpoint). None for dense
    /// models.
    pub fn summarize_fixed(&self) -> Result<Option<SparseSummary>> {
        let Some(sp) = &self.trainer.sparse else { return Ok(None) };
        let g = self.graph();
        let lists = sp.fixed.kept_lists(self.gpu, 0)?;
        let kept: Vec<usize> = lists.iter().map(Vec::len).collect();
        let small = Graph::from_spec(g.compacted_spec(&lists)?)?;
        let mut score_hist = vec![0usize; 20];
        for s in sp.scores.download_f32(self.gpu)? {
            score_hist[((s.clamp(0.0, 1.0) * 20.0) as usize).min(19)] += 1;
        }
        Ok(Some(SparseSummary {
            candidates: Vec::new(),
            chosen: 0,
            revived: Vec::new(),
            layers: g.prunable_names().iter().map(|s| s.to_string()).collect(),
            params: (small.param_count(), g.param_count()),
            flops: (small.flops(None), g.flops(None)),
            kept,
            score_hist,
        }))
    }
}

/// Correct predictions of `net` (dense, no masks) on all of `ds`, in
/// batches of up to `batch` rows: one recorded plan replayed per batch.
pub fn evaluate_net(gpu: &Gpu, net: &Net, ds: &Dataset, batch: usize) -> Result<usize> {
    use crate::device::step::{StepBlock, StepBuffer};
    let input = net.graph.input();
    if ds.dim() != input.len() || ds.classes != net.graph.classes() {
        return Err(Error::Shape {
            op: "evaluate",
            detail: format!(
                "the network takes {input} inputs and {} classes; {} has {} and {}",
                net.graph.classes(),
                ds.name,
                ds.shape,
                ds.classes
            ),
        });
    }
    let ws = net.workspace(gpu, batch, false)?;
    let correct = crate::device::tensor::Tensor::zeros(gpu, "correct", &[1], crate::device::tensor::DType::U32)?;
    let step = StepBuffer::new(gpu);
    let mut rec = Recorder::with_step(gpu, &step);
    net.forward(&mut rec, &ws, None, false)?;
    net.count_correct(&mut rec, &ws, &correct)?;
    let plan = rec.into_plan();
    let (mut hx, mut hy) = (Vec::new(), Vec::new());
    let all: Vec<u32> = (0..ds.len() as u32).collect();
    for chunk in all.chunks(batch) {
        gather_batch(ds, chunk, &mut hx, &mut hy);
        ws.x.view(0, &[hx.len()])?.upload(gpu, &hx)?;
        ws.y.view(0, &[hy.len()])?.upload(gpu, &hy)?;
        plan.run(gpu, Some(&StepBlock { batch: chunk.len() as u32, ..StepBlock::default() }))?;
    }
    Ok(correct.download_u32(gpu)?[0] as usize)
}
