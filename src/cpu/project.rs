//! Reference of shaders/project.wgsl: the same bisection in f64.

use crate::ops::project::Projection;

/// Projects `s` in place and returns the shift v.
pub fn project_scores(s: &mut [f64], pr: Projection) -> f64 {
    let budget = pr.budget as f64;
    let f = |s: &[f64], v: f64| s.iter().map(|x| (x - v).clamp(0.0, 1.0)).sum::<f64>() - budget;
    let mut v = 0.0;
    if f(s, 0.0) > 0.0 {
        let (mut lo, mut hi) = (0.0, s.iter().cloned().fold(0.0, f64::max));
        for _ in 0..pr.iters {
            v = 0.5 * (lo + hi);
            let fv = f(s, v);
            if fv.abs() < pr.tol as f64 {
                break;
            }
            if fv > 0.0 { lo = v } else { hi = v }
        }
    }
    for x in s.iter_mut() {
        *x = (*x - v).clamp(0.0, 1.0);
    }
    v
}
