//! Settings of the sparse method (method.md): the budget, the estimator, the
//! score optimizer, clipping, the mask generator's seed and the projection.

use crate::error::{Error, Result};
use crate::ops::optim::Adam;
use crate::ops::vrpge::{Estimator, ScoreFn};

/// Settings of the sparse method.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SparseConfig {
    /// Fraction of prunable units kept: the budget is K = keep · units.
    pub keep: f32,
    pub estimator: Estimator,
    pub score_fn: ScoreFn,
    /// Adam on the scores (no weight decay). The default rate is 0.05:
    /// method.md gives 1e-2 for the reference code's CIFAR runs of hundreds of
    /// epochs; on MLPs trained for a few epochs the scores then barely leave
    /// the budget (measured on MNIST: 1 epoch drove 85% of them to 0/1 at
    /// 0.05, far fewer at 0.01).
    pub score_adam: Adam,
    /// Joint gradient-norm clipping of weights and scores.
    pub clip_norm: f32,
    /// Seed of the mask generator.
    pub seed: u64,
    /// Projection bisection settings (tolerance on Σ s − K, steps).
    pub projection_tol: f32,
    pub projection_iters: u32,
    /// How SGD treats the weights no mask of a step reaches (`ops::lazy`).
    #[serde(default)]
    pub updates: Updates,
}

/// Eager SGD updates every weight every step, in O(dense); lazy SGD updates
/// (and takes the gradient norm over) the weights a step's masks reach and
/// catches the others up exactly when next reached: the same result. Lazy
/// costs more per weight it visits, so it pays where few are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Updates {
    /// Lazy at `keep` ≤ `LAZY_MAX_KEEP`, eager above.
    #[default]
    Auto,
    Lazy,
    Eager,
}

/// Largest keep at which `Updates::Auto` is lazy. Measured on lavapipe
/// (784-1024-1024-10 and 784-4096-4096-10, batch 256): lazy is about even
/// with eager at keep 0.1 on the smaller model, 2× and 5× cheaper at 0.1 and
/// 0.05 on the larger, and dearer at 0.25 on both (two masks reach about
/// (2k)² of a hidden layer's weights).
pub const LAZY_MAX_KEEP: f32 = 0.12;

impl Updates {
    /// Whether SGD runs lazily at `keep`.
    pub fn lazy_at(self, keep: f32) -> bool {
        match self {
            Updates::Auto => keep <= LAZY_MAX_KEEP,
            Updates::Lazy => true,
            Updates::Eager => false,
        }
    }
}

impl Default for SparseConfig {
    fn default() -> Self {
        SparseConfig {
            keep: 0.1,
            estimator: Estimator::VrPge,
            score_fn: ScoreFn::Fisher,
            score_adam: Adam { lr: 0.05, ..Adam::default() },
            clip_norm: 3.0,
            seed: 1,
            projection_tol: 1e-3,
            projection_iters: 30,
            updates: Updates::Auto,
        }
    }
}

impl SparseConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.keep > 0.0 && self.keep <= 1.0) {
            return Err(Error::InvalidArgument(format!("keep must be in (0, 1], got {}", self.keep)));
        }
        if !(self.clip_norm.is_finite() && self.clip_norm > 0.0) {
            return Err(Error::InvalidArgument(format!("clip norm must be positive, got {}", self.clip_norm)));
        }
        if !(self.score_adam.lr.is_finite() && self.score_adam.lr >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "score learning rate must be finite, got {}",
                self.score_adam.lr
            )));
        }
        Ok(())
    }
}
