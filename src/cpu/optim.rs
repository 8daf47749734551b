//! Reference of shaders/optim.wgsl.

use crate::ops::optim::{Adam, Sgd};

pub fn sgd_step(w: &mut [f64], v: &mut [f64], g: &[f64], scale: f64, hp: Sgd) {
    for i in 0..w.len() {
        let gi = scale * g[i] + hp.weight_decay as f64 * w[i];
        v[i] = hp.momentum as f64 * v[i] + gi;
        w[i] -= hp.lr as f64 * v[i];
    }
}

/// Step `t` is 1-based.
pub fn adam_step(w: &mut [f64], m: &mut [f64], v: &mut [f64], g: &[f64], scale: f64, hp: Adam, t: u64) {
    let (b1, b2) = (hp.beta1 as f64, hp.beta2 as f64);
    let bc1 = 1.0 - b1.powi(t as i32);
    let bc2 = 1.0 - b2.powi(t as i32);
    for i in 0..w.len() {
        let gi = scale * g[i] + hp.weight_decay as f64 * w[i];
        m[i] = b1 * m[i] + (1.0 - b1) * gi;
        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
        w[i] -= hp.lr as f64 * (m[i] / bc1) / ((v[i] / bc2).sqrt() + hp.eps as f64);
    }
}
