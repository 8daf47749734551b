//! Reference of shaders/lazy.wgsl: what lazy SGD must equal, the eager
//! steps themselves, every weight every step.

use crate::ops::optim::Sgd;

/// One eager SGD step of every weight (the convention of optim.wgsl): a
/// factor of 0 (a non-finite step) changes nothing.
pub fn eager_step(w: &mut [f64], v: &mut [f64], g: &[f64], factor: f64, hp: Sgd) {
    if factor == 0.0 {
        return;
    }
    for i in 0..w.len() {
        let gi = factor * g[i] + hp.weight_decay as f64 * w[i];
        v[i] = hp.momentum as f64 * v[i] + gi;
        w[i] -= hp.lr as f64 * v[i];
    }
}

/// Σ g² over the elements a step's masks reach: the whole squared norm,
/// since the gradient is zero elsewhere.
pub fn norm_sq(g: &[f64]) -> f64 {
    g.iter().map(|x| x * x).sum()
}
