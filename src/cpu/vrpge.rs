//! Reference of shaders/vrpge.wgsl.

use crate::ops::vrpge::{Estimator, SCORE_EPS, ScoreFn};

/// sqrt(s (1 − s)) or s (1 − s), each factor guarded.
pub fn score_denom(s: f64, f: ScoreFn) -> f64 {
    // The kernel adds the guard in f32, where 1e-20 only matters at s = 0 or 1.
    let eps = SCORE_EPS as f64;
    let var = (s + eps) * (1.0 - s + eps);
    match f {
        ScoreFn::Fisher => var.sqrt(),
        ScoreFn::Exact => var,
    }
}

pub fn score_fn(m: u32, s: f64, f: ScoreFn) -> f64 {
    (m as f64 - s) / score_denom(s, f)
}

pub fn score_grad(losses: (f64, f64), scores: &[f64], m1: &[u32], m2: &[u32], est: (Estimator, ScoreFn)) -> Vec<f64> {
    let (l1, l2) = losses;
    (0..scores.len())
        .map(|i| {
            match est.0 {
                // g1 − g2 = (m1 − m2) / denom: exactly 0 where the masks agree.
                Estimator::VrPge => 0.5 * (l1 - l2) * (m1[i] as f64 - m2[i] as f64) / score_denom(scores[i], est.1),
                Estimator::Pge => {
                    0.5 * (l1 * score_fn(m1[i], scores[i], est.1) + l2 * score_fn(m2[i], scores[i], est.1))
                }
            }
        })
        .collect()
}
