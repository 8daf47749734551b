//! Timing recorded GPU work on the host clock: medians of several runs,
//! each one submission and wait (the autotunes' probes, `bench matmul`).

use std::time::Instant;

use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::error::Result;

/// Median of a non-empty sample (NaN for an empty one).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { 0.5 * (v[mid - 1] + v[mid]) }
}

/// How many times to run a timed measurement.
#[derive(Clone, Copy, Debug)]
pub struct Runs {
    pub min: usize,
    pub max: usize,
    /// Stop adding runs (beyond `min`) once this many seconds are spent.
    pub budget_s: f64,
    /// Matmuls recorded into one submission per run; raises the work per
    /// submission on fast devices so that launch overhead does not dominate.
    pub inner: usize,
}

/// Seconds per recording of `f` over several timed runs of `runs.inner`
/// recordings each (one submission and wait per run), after one warm-up
/// run, which also compiles the pipelines.
pub fn time_recorded(gpu: &Gpu, runs: Runs, f: impl Fn(&mut Recorder) -> Result<()>) -> Result<Vec<f64>> {
    let inner = runs.inner.max(1);
    let run = |count: usize| -> Result<f64> {
        let t0 = Instant::now();
        let mut rec = Recorder::new(gpu);
        for _ in 0..count {
            f(&mut rec)?;
        }
        rec.finish()?;
        Ok(t0.elapsed().as_secs_f64() / count as f64)
    };
    run(1)?;
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < runs.min.max(1) || (out.len() < runs.max && start.elapsed().as_secs_f64() < runs.budget_s) {
        out.push(run(inner)?);
    }
    Ok(out)
}
