//! Lazy SGD in the trainer (`ops::lazy`): its state, when the deferred
//! updates are applied to every weight (`catch_up`), and the clocks stamped
//! after eager steps. What a sparse step records of it is in
//! `record_sparse_step`.

use super::{Phase, Trainer};
use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::device::step::StepBlock;
use crate::device::tensor::{DType, Tensor};
use crate::error::Result;
use crate::nn::graph::Graph;
use crate::ops::lazy::{Lazy, LazySlot, LazyState, SetsRef};
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
}

/// `SPARSETRAIN_LAZY_GATHER`: whether the layers' gathers bring the weights
/// they read up to date under lazy SGD (`auto`, the default), or
/// `lazy_refresh` does it for every parameter first (`off`, as before the
/// fifteenth session: one more pass over them, for comparison).
pub fn lazy_gather_env() -> Result<bool> {
    crate::device::variant::auto_or_off("SPARSETRAIN_LAZY_GATHER")
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
    /// For `graph`'s parameters; `gathers` as `lazy_gather_env` says.
    pub(super) fn new(gpu: &Gpu, graph: &Graph, gathers: bool) -> Result<LazySgd> {
        Ok(LazySgd {
            op: Lazy::new(gpu, lazy_slots(graph, gathers)?, graph.param_total)?,
            last: Tensor::zeros(gpu, "lazy clocks", &[graph.param_total], DType::U32)?,
            pending: None,
            clocks_lag: false,
        })
    }
}

impl Trainer {
    /// Brings lazily updated weights up to date where `phase` needs them,
    /// at rate `lr` for training: the lazy part of `prepare`.
    pub(super) fn prepare_lazy(&mut self, gpu: &Gpu, phase: Phase, lr: f32) -> Result<()> {
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
            if let Some(lz) = &mut self.lazy {
                lz.pending = Some(lr);
            }
        }
        Ok(())
    }

    /// Brings every weight up to date with the updates lazy SGD deferred
    /// (nothing to do for eager trainers or when none are pending). Done
    /// before any phase but training, before an export, and when the rate
    /// changes; checkpoints keep the deferred state instead (bit-exact
    /// resume).
    pub fn catch_up(&mut self, gpu: &Gpu) -> Result<()> {
        let Some(lz) = &mut self.lazy else { return Ok(()) };
        let Some(lr) = lz.pending.take() else { return Ok(()) };
        let mut rec = Recorder::with_step(gpu, &self.step_buf);
        let st = LazyState { w: &self.net.params, momentum: &self.momentum, last: &lz.last, clip: &self.clip };
        lz.op.catch_up(&mut rec, st, self.sgd)?;
        let block = StepBlock { lr, ..StepBlock::default() };
        let index = rec.into_plan().run(gpu, Some(&block))?;
        self.in_flight.push_back((index, 0));
        Ok(())
    }

    /// Sets every weight's clock to the update count, all weights being up
    /// to date (`LazySgd::clocks_lag`).
    fn stamp_clocks(&mut self, gpu: &Gpu) -> Result<()> {
        let Some(lz) = &mut self.lazy else { return Ok(()) };
        let mut rec = Recorder::with_step(gpu, &self.step_buf);
        let st = LazyState { w: &self.net.params, momentum: &self.momentum, last: &lz.last, clip: &self.clip };
        lz.op.stamp(&mut rec, st, self.sgd)?;
        let index = rec.into_plan().run(gpu, Some(&StepBlock::default()))?;
        self.in_flight.push_back((index, 0));
        lz.clocks_lag = false;
        Ok(())
    }
}
