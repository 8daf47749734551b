//! The training loop behind `sparsetrain train`: shuffled mini-batches from
//! host memory, one submission per step, nothing read back between logging
//! points, and an evaluation pass per epoch.

use std::time::Instant;

use crate::data::{Dataset, epoch_permutation, gather_batch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::mlp::{DenseTrainer, Mlp};
use crate::ops::optim::Sgd;
use crate::record::Recorder;
use crate::tensor::Tensor;

/// Everything that defines a run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Hidden layer widths; input and output sizes come from the data.
    pub hidden: Vec<usize>,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// Cosine decay of the learning rate over the run, per epoch.
    pub cosine: bool,
    pub seed: u64,
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
        for (name, v) in [("learning rate", self.lr), ("momentum", self.momentum), ("weight decay", self.weight_decay)]
        {
            if !v.is_finite() || v < 0.0 {
                return bad(format!("{name} must be finite and non-negative, got {v}"));
            }
        }
        Ok(())
    }

    /// Learning rate in `epoch` (0-based): cosine from `lr` towards 0.
    pub fn lr_at(&self, epoch: usize) -> f32 {
        if !self.cosine {
            return self.lr;
        }
        let t = epoch as f64 / self.epochs as f64;
        (0.5 * self.lr as f64 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
    }
}

/// One epoch's summary, as printed and written to metrics files.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    pub epoch: usize,
    pub lr: f32,
    pub loss: f64,
    pub train_acc: f64,
    pub test_acc: f64,
    pub step_ms: f64,
    pub samples_per_s: f64,
}

/// A model with its optimizer, batch buffers and data, ready to train.
pub struct Session<'g> {
    gpu: &'g Gpu,
    pub cfg: TrainConfig,
    pub trainer: DenseTrainer,
    x: Tensor,
    y: Tensor,
    host_x: Vec<f32>,
    host_y: Vec<u32>,
}

impl<'g> Session<'g> {
    pub fn new(gpu: &'g Gpu, cfg: TrainConfig, input_dim: usize, classes: usize) -> Result<Session<'g>> {
        cfg.validate()?;
        let mut sizes = vec![input_dim];
        sizes.extend(&cfg.hidden);
        sizes.push(classes);
        let mlp = Mlp::new(gpu, &sizes, cfg.seed)?;
        let sgd = Sgd { lr: cfg.lr, momentum: cfg.momentum, weight_decay: cfg.weight_decay };
        let trainer = DenseTrainer::new(gpu, mlp, cfg.batch, sgd)?;
        let x = Tensor::zeros(gpu, "batch x", &[cfg.batch, input_dim], crate::DType::F32)?;
        let y = Tensor::zeros(gpu, "batch y", &[cfg.batch], crate::DType::U32)?;
        Ok(Session { gpu, cfg, trainer, x, y, host_x: Vec::new(), host_y: Vec::new() })
    }

    fn upload_batch(&mut self, ds: &Dataset, idx: &[u32]) -> Result<usize> {
        gather_batch(ds, idx, &mut self.host_x, &mut self.host_y);
        let n = idx.len();
        self.x.view(0, &[n, ds.dim])?.upload(self.gpu, &self.host_x)?;
        self.y.view(0, &[n])?.upload(self.gpu, &self.host_y)?;
        Ok(n)
    }

    /// Trains one epoch; `progress` is called after each step with the
    /// number of steps done. Reads back only at the end (loss and accuracy).
    pub fn train_epoch(
        &mut self,
        ds: &Dataset,
        epoch: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(f64, f64, f64)> {
        if ds.dim != self.trainer.mlp.input_dim() {
            return Err(Error::Shape {
                op: "train",
                detail: format!("data has {} inputs, model {}", ds.dim, self.trainer.mlp.input_dim()),
            });
        }
        self.trainer.sgd.lr = self.cfg.lr_at(epoch);
        let order = epoch_permutation(ds.len(), self.cfg.seed, epoch as u64);
        let steps = order.len().div_ceil(self.cfg.batch);
        {
            let mut rec = Recorder::new(self.gpu);
            self.trainer.ws.loss().fill_f32(&mut rec, 0.0)?;
            self.trainer.ws.correct().fill_u32(&mut rec, 0)?;
            rec.submit()?;
        }
        let start = Instant::now();
        for (s, idx) in order.chunks(self.cfg.batch).enumerate() {
            let n = self.upload_batch(ds, idx)?;
            let mut rec = Recorder::new(self.gpu);
            self.trainer.step(&mut rec, &self.x, &self.y, n)?;
            rec.submit()?;
            progress(s + 1, steps);
        }
        self.gpu.wait()?;
        let secs = start.elapsed().as_secs_f64();
        let loss = self.trainer.ws.loss().view(0, &[4])?.download_f32(self.gpu)?[1] as f64 / steps as f64;
        let correct = self.trainer.ws.correct().download_u32(self.gpu)?[0] as f64;
        Ok((loss, correct / ds.len() as f64, secs / steps as f64))
    }

    /// Fraction of `ds` classified correctly.
    pub fn evaluate(&mut self, ds: &Dataset) -> Result<f64> {
        if ds.is_empty() {
            return Ok(0.0);
        }
        let mlp = &self.trainer.mlp;
        let ws = &self.trainer.ws;
        {
            let mut rec = Recorder::new(self.gpu);
            ws.correct().fill_u32(&mut rec, 0)?;
            rec.submit()?;
        }
        let all: Vec<u32> = (0..ds.len() as u32).collect();
        for idx in all.chunks(self.cfg.batch) {
            gather_batch(ds, idx, &mut self.host_x, &mut self.host_y);
            let n = idx.len();
            self.x.view(0, &[n, ds.dim])?.upload(self.gpu, &self.host_x)?;
            self.y.view(0, &[n])?.upload(self.gpu, &self.host_y)?;
            let mut rec = Recorder::new(self.gpu);
            mlp.forward(&mut rec, ws, &self.x, n)?;
            mlp.count_correct(&mut rec, ws, &self.y, n)?;
            rec.submit()?;
        }
        Ok(ws.correct().download_u32(self.gpu)?[0] as f64 / ds.len() as f64)
    }
}
