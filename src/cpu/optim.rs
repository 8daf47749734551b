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

/// Reference of `adam_clip`: the clip record decided from the squared
/// norms `norms` (plus g² with `own_squares`) and the loss, then Adam step
/// `t` with the gradient scaled by its factor (none where it is 0).
#[allow(clippy::too_many_arguments)]
pub fn adam_clip_step(
    w: &mut [f64],
    m: &mut [f64],
    v: &mut [f64],
    g: &[f64],
    hp: Adam,
    t: u64,
    (norms, own_squares, loss): (&[f64], bool, f64),
    record: super::reduce::ClipRecord,
    (max_norm, tag, growth): (f64, u32, Option<u32>),
) -> super::reduce::ClipRecord {
    let own: f64 = if own_squares { g.iter().map(|x| x * x).sum() } else { 0.0 };
    let next = super::reduce::clip_next(record, norms.iter().sum::<f64>() + own, loss, max_norm, tag, growth);
    if next.factor != 0.0 {
        adam_step(w, m, v, g, next.factor, hp, t);
    }
    next
}
