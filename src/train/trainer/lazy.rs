//! Lazy SGD in the trainer (`ops::lazy`): its state, when the deferred
//! updates are applied to every weight (`catch_up`, `settle`), and the
//! clocks stamped after eager steps. What a sparse step records of it is
//! in `record_sparse_step`.

use super::{Phase, Trainer};
use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::device::step::StepBlock;
use crate::device::tensor::{DType, Tensor};
use crate::error::Error;
use crate::error::Result;
use crate::nn::graph::Graph;
use crate::ops::lazy::{Lazy, LazySlot, LazyState, RING, SetsRef};
use crate::sparse::MaskSet;

/// Lazy SGD of the sparse step (`ops::lazy`).
pub struct LazySgd {
    pub op: Lazy,
    /// u32: the update count at which each weight was last brought up to date.
    pub last: Tensor,
    /// The rate of updates some weights have not had yet (a training phase
    /// in progress); None when every weight is up to date.
    pub pending: Option<f32>,
    /// Every weight is up to date but the clock may have run ahead of the
    /// clocks: eager steps (fine-tuning) advance it and leave them. The
    /// next training phase stamps them first (`Lazy::stamp`), or it would
    /// apply those steps' updates again.
    pub clocks_lag: bool,
    /// Steps submitted since every deferred update was last applied
    /// (`Trainer::settle`, `catch_up`), and the most before the next run
    /// settles them first: at most the ring of clip factors
    /// (`ops::lazy::RING`); tests lower it.
    pub since_settled: usize,
    pub settle_every: usize,
}

/// `SPARSETRAIN_LAZY_GATHER`: whether the layers' gathers bring the weights
/// they read up to date under lazy SGD (`auto`, the default), or
/// `lazy_refresh` does it for every parameter first (`off`, as before the
/// fifteenth session: one more pass over them, for comparison).
pub fn lazy_gather_env() -> Result<bool> {
    crate::device::variant::auto_or_off("SPARSETRAIN_LAZY_GATHER")
}

/// `SPARSETRAIN_LAZY_DEFER`: whether a sparse step's update of its weights
/// waits for their next refresh or gather (`on`: no pass of its own), or
/// runs as its own pass, `lazy_sgd` (`off`); `auto` (the default, None)
/// leaves it to `defer_rule`. The same arithmetic either way.
pub fn lazy_defer_env() -> Result<Option<bool>> {
    crate::device::variant::auto_on_off("SPARSETRAIN_LAZY_DEFER")
}

/// Whether `SPARSETRAIN_LAZY_DEFER=auto` defers the updates on a device of
/// type `ty`: on CPU adapters, where a pass costs its launch and its loop
/// whatever it does (lavapipe, 784-4096-4096-10 at keep 0.1: the lazy
/// passes 55.7 -> 38.8 ms of a 172 ms step), and not on GPUs, where the
/// gathers that apply the waiting update ran slower than `lazy_sgd` saves
/// (H100, 784-8192-8192-10 batch 2048 at keep 0.1: `lazy_gather` 0.48-0.51
/// ms deferred in six runs against `lazy_gather` 0.25 + `lazy_sgd` 0.13 ms;
/// BENCHMARKS.md, seventeenth session).
pub fn defer_rule(ty: wgpu::DeviceType) -> bool {
    ty == wgpu::DeviceType::Cpu
}

/// The graph's lazy SGD slots, none marked gathered unless `gathers`.
fn lazy_slots(graph: &Graph, gathers: bool) -> Result<Vec<LazySlot>> {
    Ok(graph.lazy_slots()?.into_iter().map(|s| LazySlot { gathered: s.gathered && gathers, ..s }).collect())
}

/// Where lazy SGD finds the kept sets of a step's two samples.
pub(super) fn sets_of(m: &MaskSet) -> SetsRef<'_> {
    SetsRef { all: &m.all, offsets: m.offsets, sets: m.sets, entries: m.slots }
}

impl LazySgd {
    /// For `graph`'s parameters; `gathers` and `defer` as `lazy_gather_env`
    /// and `lazy_defer_env` say.
    pub(super) fn new(gpu: &Gpu, graph: &Graph, gathers: bool, defer: bool) -> Result<LazySgd> {
        Ok(LazySgd {
            op: Lazy::new(gpu, lazy_slots(graph, gathers)?, graph.param_total, defer)?,
            last: Tensor::zeros(gpu, "lazy clocks", &[graph.param_total], DType::U32)?,
            pending: None,
            clocks_lag: false,
            since_settled: 0,
            settle_every: RING,
        })
    }
}

impl Trainer {
    /// Chooses whether lazy SGD defers each step's update to the weights'
    /// next gather or refresh (`defer`) or runs it as a pass of its own,
    /// whatever `SPARSETRAIN_LAZY_DEFER` and `defer_rule` chose: the same
    /// weights either way, at another speed. Between runs, at any point:
    /// the updates waiting are applied first (`settle`), and the clocks,
    /// the rate pending and the lag stay (an error on a trainer without
    /// lazy SGD).
    pub fn set_lazy_defer(&mut self, gpu: &Gpu, defer: bool) -> Result<()> {
        let Some(lz) = &self.lazy else {
            return Err(Error::InvalidArgument("this trainer has no lazy SGD to set deferred updates of".into()));
        };
        if lz.op.defers() == defer {
            return Ok(());
        }
        // No clock may keep the mark of a deferred update that an op not
        // deferring would not apply.
        self.settle(gpu)?;
        // The same slots: none gathered where the op gathers none.
        let slots = lazy_slots(&self.net.graph, lz.op.gathers())?;
        let op = Lazy::new(gpu, slots, self.net.graph.param_total, defer)?;
        if let Some(lz) = &mut self.lazy {
            lz.op = op;
            lz.since_settled = 0;
        }
        self.plans = Default::default();
        Ok(())
    }

    /// Brings lazily updated weights up to date where `phase` needs them,
    /// at rate `lr` for training, before `steps` steps are submitted: the
    /// lazy part of `prepare`.
    pub(super) fn prepare_lazy(&mut self, gpu: &Gpu, phase: Phase, lr: f32, steps: usize) -> Result<()> {
        if steps > RING && phase == Phase::Train && self.lazy.as_ref().is_some_and(|lz| lz.op.defers()) {
            return Err(Error::InvalidArgument(format!(
                "{steps} steps in one run: deferred lazy SGD updates may wait at most {RING}"
            )));
        }
        // Other phases read or update every weight: bring them up to date.
        if phase != Phase::Train {
            self.catch_up(gpu)?;
            if let Some(lz) = &mut self.lazy
                && phase == Phase::Finetune
            {
                lz.clocks_lag = true;
            }
        } else if let Some(lz) = &mut self.lazy {
            if lz.pending.is_some_and(|p| p != lr) {
                // The lazy map holds while the rate does.
                self.catch_up(gpu)?;
            }
            if self.lazy.as_ref().is_some_and(|lz| lz.clocks_lag && lz.pending.is_none()) {
                self.stamp_clocks(gpu)?;
            }
            let Some(lz) = &mut self.lazy else { return Ok(()) };
            lz.pending = Some(lr);
            if lz.op.defers() {
                // A deferred update finds its factor in the ring for RING
                // steps: apply every one before that.
                let every = lz.settle_every.clamp(1, RING).max(steps);
                let settle = lz.since_settled + steps > every;
                lz.since_settled = if settle { steps } else { lz.since_settled + steps };
                if settle && let Some(index) = self.settle_run(gpu)? {
                    self.in_flight.push_back((index, 0));
                }
            }
        }
        Ok(())
    }

    /// Applies every deferred update of lazy SGD (`Lazy::settle`), which
    /// changes nothing that follows: before a checkpoint (from `&self`, so
    /// the count of steps since is left as it is, which only brings the
    /// next settling forward) and before the ring of factors could wrap.
    pub fn settle(&self, gpu: &Gpu) -> Result<()> {
        self.settle_run(gpu).map(|_| ())
    }

    /// `settle`'s submission, if anything was deferred.
    fn settle_run(&self, gpu: &Gpu) -> Result<Option<wgpu::SubmissionIndex>> {
        let Some(lz) = &self.lazy else { return Ok(None) };
        let Some(lr) = lz.pending else { return Ok(None) };
        if !lz.op.defers() {
            return Ok(None);
        }
        let mut rec = Recorder::with_step(gpu, &self.step_buf);
        lz.op.settle(&mut rec, self.lazy_state(lz), self.sgd)?;
        let block = StepBlock { lr, ..StepBlock::default() };
        Ok(Some(rec.into_plan().run(gpu, Some(&block))?))
    }

    /// Lazy SGD's view of the trainer's tensors.
    pub(super) fn lazy_state<'a>(&'a self, lz: &'a LazySgd) -> LazyState<'a> {
        LazyState {
            w: &self.net.params,
            momentum: &self.momentum,
            g: &self.net.grads,
            last: &lz.last,
            clip: &self.clip,
        }
    }

    /// Brings every weight up to date with the updates lazy SGD skipped or
    /// deferred (nothing to do for eager trainers or when none are
    /// pending). Done before any phase but training, before an export, and
    /// when the rate changes; checkpoints keep the skipped ones skipped
    /// instead (bit-exact resume), having applied the deferred ones
    /// (`settle`).
    pub fn catch_up(&mut self, gpu: &Gpu) -> Result<()> {
        let Some(lz) = &mut self.lazy else { return Ok(()) };
        let Some(lr) = lz.pending.take() else { return Ok(()) };
        lz.since_settled = 0;
        let lz = self.lazy.as_ref().expect("lazy SGD checked above");
        let mut rec = Recorder::with_step(gpu, &self.step_buf);
        lz.op.catch_up(&mut rec, self.lazy_state(lz), self.sgd)?;
        let block = StepBlock { lr, ..StepBlock::default() };
        let index = rec.into_plan().run(gpu, Some(&block))?;
        self.in_flight.push_back((index, 0));
        Ok(())
    }

    /// Sets every weight's clock to the update count, all weights being up
    /// to date (`LazySgd::clocks_lag`).
    fn stamp_clocks(&mut self, gpu: &Gpu) -> Result<()> {
        let Some(lz) = &self.lazy else { return Ok(()) };
        let mut rec = Recorder::with_step(gpu, &self.step_buf);
        lz.op.stamp(&mut rec, self.lazy_state(lz), self.sgd)?;
        let index = rec.into_plan().run(gpu, Some(&StepBlock::default()))?;
        self.in_flight.push_back((index, 0));
        if let Some(lz) = &mut self.lazy {
            lz.clocks_lag = false;
        }
        Ok(())
    }
}
