//! The figures a run reports: each epoch's summary (printed and written to
//! metrics files), the device's record of skipped steps, and the summary
//! of a finished sparse run.

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
    /// Kept units per prunable layer in the epoch's last mask (sparse only).
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
    /// The first such step, counted over the whole run.
    pub first_step: Option<u32>,
}

/// What a finished sparse run keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseSummary {
    /// Training accuracy of each candidate mask, and the chosen index.
    pub candidates: Vec<f64>,
    pub chosen: usize,
    /// Prunable layers where the chosen mask kept nothing and the
    /// highest-scoring unit was kept instead.
    pub revived: Vec<String>,
    /// Kept units per prunable layer, and each layer's name.
    pub kept: Vec<usize>,
    pub layers: Vec<String>,
    /// (kept network, dense network): parameters, and forward FLOPs per sample.
    pub params: (usize, usize),
    pub flops: (f64, f64),
    /// Final scores in 20 bins over [0, 1]: driven to 0/1 when training has
    /// settled the mask.
    pub score_hist: Vec<usize>,
}
