//! Dense multilayer perceptron trained entirely on the device.
//!
//! Layer l maps [batch, in_l] to [batch, out_l] as y = x·Wᵀ + b, with W stored
//! [out, in] (a row per output unit, so that dropping a unit drops a row).
//! All weights and biases live in one flat parameter buffer cut by an offsets
//! table (`ParamLayout`), and so do the gradients and the optimizer state:
//! one optimizer dispatch updates the whole model.
//!
//! Backprop uses the three matmul layouts:
//!   forward      Y  = X·Wᵀ        (NT)
//!   input grad   dX = dY·W        (NN)
//!   weight grad  dW = dYᵀ·X       (TN)

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::matmul::{Dims, Layout, Matmul};
use crate::ops::optim::{AfterStep, GradScale, Sgd, sgd_step};
use crate::ops::reduce::Reducer;
use crate::ops::{accuracy, bias, relu, softmax_xent};
use crate::record::Recorder;
use crate::tensor::{DType, Tensor, aligned_len};

/// Where each layer's weight and bias start in the flat parameter buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    /// [in, hidden..., out].
    pub sizes: Vec<usize>,
    pub w: Vec<usize>,
    pub b: Vec<usize>,
    /// Elements in the flat buffer, alignment padding included.
    pub total: usize,
}

impl ParamLayout {
    pub fn new(sizes: &[usize]) -> Result<ParamLayout> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::InvalidArgument(format!(
                "an MLP needs at least an input and an output size, all non-zero; got {sizes:?}"
            )));
        }
        let (mut w, mut b, mut at) = (Vec::new(), Vec::new(), 0usize);
        for l in 0..sizes.len() - 1 {
            w.push(at);
            at += aligned_len(sizes[l] * sizes[l + 1]);
            b.push(at);
            at += aligned_len(sizes[l + 1]);
        }
        Ok(ParamLayout { sizes: sizes.to_vec(), w, b, total: at })
    }

    pub fn layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// (in, out) of layer l.
    pub fn dims(&self, l: usize) -> (usize, usize) {
        (self.sizes[l], self.sizes[l + 1])
    }

    /// Real parameters, padding excluded.
    pub fn count(&self) -> usize {
        (0..self.layers()).map(|l| self.sizes[l] * self.sizes[l + 1] + self.sizes[l + 1]).sum()
    }

    /// Kaiming-normal weights (fan-in, ReLU gain: std = sqrt(2 / in)), zero
    /// biases, zero padding; deterministic in `seed`.
    pub fn kaiming_init(&self, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut flat = vec![0.0f32; self.total];
        for l in 0..self.layers() {
            let (fan_in, out) = self.dims(l);
            let normal = Normal::new(0.0, (2.0 / fan_in as f64).sqrt()).expect("finite std");
            for v in &mut flat[self.w[l]..self.w[l] + fan_in * out] {
                *v = normal.sample(&mut rng) as f32;
            }
        }
        flat
    }
}

/// The model: parameters and their gradients, resident on the device.
pub struct Mlp {
    pub layout: ParamLayout,
    pub params: Tensor,
    pub grads: Tensor,
    w: Vec<Tensor>,
    b: Vec<Tensor>,
    dw: Vec<Tensor>,
    db: Vec<Tensor>,
}

impl Mlp {
    /// A model of `sizes` = [in, hidden..., out] with Kaiming-normal weights.
    pub fn new(gpu: &Gpu, sizes: &[usize], seed: u64) -> Result<Mlp> {
        let layout = ParamLayout::new(sizes)?;
        let init = layout.kaiming_init(seed);
        Mlp::from_flat(gpu, layout, &init)
    }

    /// A model with the given flat parameters (laid out as `layout`).
    pub fn from_flat(gpu: &Gpu, layout: ParamLayout, flat: &[f32]) -> Result<Mlp> {
        let params = Tensor::from_f32(gpu, "mlp params", &[layout.total], flat)?;
        let grads = Tensor::zeros(gpu, "mlp grads", &[layout.total], DType::F32)?;
        let (mut w, mut b, mut dw, mut db) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for l in 0..layout.layers() {
            let (i, o) = layout.dims(l);
            w.push(params.view(layout.w[l], &[o, i])?);
            b.push(params.view(layout.b[l], &[o])?);
            dw.push(grads.view(layout.w[l], &[o, i])?);
            db.push(grads.view(layout.b[l], &[o])?);
        }
        Ok(Mlp { layout, params, grads, w, b, dw, db })
    }

    /// Views of layer l's weight [out, in], bias [out], and their gradients.
    pub fn layer_views(&self, l: usize) -> (&Tensor, &Tensor, &Tensor, &Tensor) {
        (&self.w[l], &self.b[l], &self.dw[l], &self.db[l])
    }

    pub fn input_dim(&self) -> usize {
        self.layout.sizes[0]
    }

    pub fn classes(&self) -> usize {
        *self.layout.sizes.last().expect("at least two sizes")
    }

    /// Activations and scratch for batches of up to `capacity` rows.
    pub fn workspace(&self, gpu: &Gpu, capacity: usize) -> Result<Workspace> {
        if capacity == 0 {
            return Err(Error::InvalidArgument("batch capacity must be at least 1".into()));
        }
        let mut acts = Vec::new();
        let mut grads = Vec::new();
        for l in 0..self.layout.layers() {
            let o = self.layout.sizes[l + 1];
            acts.push(Tensor::zeros(gpu, &format!("layer {l} output"), &[capacity, o], DType::F32)?);
            grads.push(Tensor::zeros(gpu, &format!("layer {l} output grad"), &[capacity, o], DType::F32)?);
        }
        let c = self.classes();
        Ok(Workspace {
            capacity,
            acts,
            grads,
            probs: Tensor::zeros(gpu, "probs", &[capacity, c], DType::F32)?,
            loss_rows: Tensor::zeros(gpu, "loss rows", &[capacity], DType::F32)?,
            loss: Tensor::zeros(gpu, "loss", &[4], DType::F32)?,
            correct: Tensor::zeros(gpu, "correct", &[1], DType::U32)?,
            reducer: Reducer::new(gpu)?,
        })
    }

    fn check_batch(&self, ws: &Workspace, x: &Tensor, batch: usize) -> Result<()> {
        if batch == 0 || batch > ws.capacity {
            return Err(Error::InvalidArgument(format!(
                "batch of {batch} rows for a workspace of {} rows",
                ws.capacity
            )));
        }
        crate::ops::need("mlp", "x", x, batch * self.input_dim(), DType::F32)
    }

    /// Logits of `x` [batch, in] into `ws.logits()`.
    pub fn forward(&self, rec: &mut Recorder, ws: &Workspace, x: &Tensor, batch: usize) -> Result<()> {
        self.check_batch(ws, x, batch)?;
        let last = self.layout.layers() - 1;
        for l in 0..=last {
            let (i, o) = self.layout.dims(l);
            let input = if l == 0 { x } else { &ws.acts[l - 1] };
            let y = &ws.acts[l];
            Matmul::new(Layout::NT).record(rec, y, input, &self.w[l], Dims { m: batch, n: o, k: i })?;
            bias::bias_add(rec, y, &self.b[l], batch, o)?;
            if l < last {
                relu::relu_forward(rec, y, batch * o)?;
            }
        }
        Ok(())
    }

    /// Batch-mean cross-entropy of the last forward into `ws.loss()[slot]`,
    /// and the softmax kept for `backward`.
    pub fn loss(&self, rec: &mut Recorder, ws: &Workspace, labels: &Tensor, batch: usize, slot: usize) -> Result<()> {
        let c = self.classes();
        softmax_xent::forward(rec, &ws.probs, &ws.loss_rows, ws.logits(), labels, batch, c)?;
        ws.reducer.mean(rec, &ws.loss, slot, &ws.loss_rows, batch)
    }

    /// Adds the number of correct predictions of the last forward to `ws.correct()`.
    pub fn count_correct(&self, rec: &mut Recorder, ws: &Workspace, labels: &Tensor, batch: usize) -> Result<()> {
        accuracy::accuracy_count(rec, &ws.correct, ws.logits(), labels, batch, self.classes())
    }

    /// Gradients of the batch-mean loss (after `forward` and `loss`) into
    /// `self.grads`, overwriting them.
    pub fn backward(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        x: &Tensor,
        labels: &Tensor,
        batch: usize,
    ) -> Result<()> {
        self.check_batch(ws, x, batch)?;
        let last = self.layout.layers() - 1;
        let c = self.classes();
        softmax_xent::backward(rec, &ws.grads[last], &ws.probs, labels, 1.0 / batch as f32, batch, c)?;
        for l in (0..=last).rev() {
            let (i, o) = self.layout.dims(l);
            let dy = &ws.grads[l];
            let input = if l == 0 { x } else { &ws.acts[l - 1] };
            Matmul::new(Layout::TN).record(rec, &self.dw[l], dy, input, Dims { m: o, n: i, k: batch })?;
            bias::bias_grad(rec, &self.db[l], dy, false, batch, o)?;
            if l > 0 {
                let dx = &ws.grads[l - 1];
                Matmul::new(Layout::NN).record(rec, dx, dy, &self.w[l], Dims { m: batch, n: i, k: o })?;
                relu::relu_backward(rec, dx, &ws.acts[l - 1], batch * i)?;
            }
        }
        Ok(())
    }

    /// Downloads the flat parameters (counted as read-back).
    pub fn download_params(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.params.download_f32(gpu)
    }
}

/// Per-batch device memory of an `Mlp`.
pub struct Workspace {
    capacity: usize,
    acts: Vec<Tensor>,
    grads: Vec<Tensor>,
    probs: Tensor,
    loss_rows: Tensor,
    loss: Tensor,
    correct: Tensor,
    reducer: Reducer,
}

impl Workspace {
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// [capacity, classes]; the first `batch` rows hold the last forward's logits.
    pub fn logits(&self) -> &Tensor {
        self.acts.last().expect("at least one layer")
    }

    /// Loss slots written by `Mlp::loss`.
    pub fn loss(&self) -> &Tensor {
        &self.loss
    }

    /// Running count of correct predictions (u32); reset with `fill_u32`.
    pub fn correct(&self) -> &Tensor {
        &self.correct
    }
}

/// Plain dense training: SGD with momentum on the flat buffers.
pub struct DenseTrainer {
    pub mlp: Mlp,
    pub ws: Workspace,
    pub momentum: Tensor,
    pub sgd: Sgd,
    /// [update factor (1, or 0 to skip a non-finite step), steps skipped,
    /// first skipped step (u32 bits)].
    pub clip: Tensor,
    /// [squared gradient norm, loss] of the last step: what the check reads.
    sq: Tensor,
    /// Steps taken (recorded with non-finite faults).
    pub step: u64,
}

impl DenseTrainer {
    pub fn new(gpu: &Gpu, mlp: Mlp, batch_capacity: usize, sgd: Sgd) -> Result<DenseTrainer> {
        let ws = mlp.workspace(gpu, batch_capacity)?;
        let momentum = Tensor::zeros(gpu, "momentum", &[mlp.layout.total], DType::F32)?;
        let clip = Tensor::zeros(gpu, "update factor and fault record", &[4], DType::F32)?;
        let sq = Tensor::zeros(gpu, "gradient norm and loss", &[2], DType::F32)?;
        Ok(DenseTrainer { mlp, ws, momentum, sgd, clip, sq, step: 0 })
    }

    /// Records one step: forward, loss into `ws.loss()[0]` (and added into
    /// slot 1), correct predictions added into `ws.correct()`, backward, update.
    /// Nothing is read back.
    pub fn step(&mut self, rec: &mut Recorder, x: &Tensor, labels: &Tensor, batch: usize) -> Result<()> {
        self.mlp.forward(rec, &self.ws, x, batch)?;
        self.mlp.loss(rec, &self.ws, labels, batch, 0)?;
        // Running sums for the epoch log, kept on the device: slot 1 adds up
        // the batch losses, `correct` the training hits.
        self.ws.reducer.reduce(rec, &self.ws.loss, 1, &self.ws.loss, 1, 1.0, true)?;
        self.mlp.count_correct(rec, &self.ws, labels, batch)?;
        self.mlp.backward(rec, &self.ws, x, labels, batch)?;
        // No clipping in the dense baseline, but the same fault check as the
        // sparse step: the factor is 1 when the loss and the gradient norm
        // are finite and 0 (skip the update) otherwise. The gradient matters
        // on its own: ReLU's max(NaN, 0) is 0 on many devices, which can hide
        // a NaN input from the loss but not from the first layer's gradient.
        let n = self.mlp.layout.total;
        self.ws.reducer.sum_squares(rec, &self.sq, 0, &self.mlp.grads, n)?;
        self.ws.reducer.reduce(rec, &self.sq, 1, &self.ws.loss, 1, 1.0, false)?;
        self.ws.reducer.clip_factor(rec, &self.clip, 0, &self.sq, 2, f32::MAX, self.step as u32)?;
        self.step += 1;
        sgd_step(
            rec,
            &self.mlp.params,
            &self.momentum,
            &self.mlp.grads,
            GradScale::Buffer(&self.clip),
            self.sgd,
            AfterStep::KeepGrad,
            n,
        )
    }
}
