//! Reference of shaders/vrpge.wgsl.

use crate::ops::vrpge::{Estimator, SCORE_EPS, ScoreFn};

pub fn score_fn(m: u32, s: f64, f: ScoreFn) -> f64 {
    // The kernel adds the guard in f32, where 1e-20 only matters at s = 0 or 1.
    let eps = SCORE_EPS as f64;
    let var = (s + eps) * (1.0 - s + eps);
    let denom = match f {
        ScoreFn::Fisher => var.sqrt(),
        ScoreFn::Exact => var,
    };
    (m as f64 - s) / denom
}

pub fn score_grad(losses: (f64, f64), scores: &[f64], m1: &[u32], m2: &[u32], est: (Estimator, ScoreFn)) -> Vec<f64> {
    let (l1, l2) = losses;
    (0..scores.len())
        .map(|i| {
            let g1 = score_fn(m1[i], scores[i], est.1);
            let g2 = score_fn(m2[i], scores[i], est.1);
            match est.0 {
                Estimator::VrPge => 0.5 * (l1 - l2) * (g1 - g2),
                Estimator::Pge => 0.5 * (l1 * g1 + l2 * g2),
            }
        })
        .collect()
}
