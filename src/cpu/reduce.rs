//! Reference of shaders/reduce.wgsl and of the clip record's rule
//! (shaders/shared/clip.wgsl).

pub fn sum(x: &[f64]) -> f64 {
    x.iter().sum()
}

pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() { 0.0 } else { sum(x) / x.len() as f64 }
}

/// The clip record of shaders/shared/clip.wgsl: what a training step's
/// gradient norm and loss leave behind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipRecord {
    /// Multiplies every gradient; 0 skips the update.
    pub factor: f64,
    pub faults: u32,
    /// The first fault's step number.
    pub first: u32,
    /// Updates applied (the clock of lazy updates).
    pub clock: u32,
    /// Loss scaling: S and the finite steps in a row.
    pub scale: f64,
    pub good: u32,
}

/// The record after a step whose squared gradient norm is `total` (of the
/// S-scaled gradients with `growth` = Some: loss scaling) and whose loss is
/// `loss`, clipping to `max_norm`; a first fault records `tag`. The
/// squared norm counts as non-finite beyond f32's range, as in the kernel.
pub fn clip_next(old: ClipRecord, total: f64, loss: f64, max_norm: f64, tag: u32, growth: Option<u32>) -> ClipRecord {
    let bad_total = !(total.is_finite() && total <= f32::MAX as f64);
    let fault = |mut r: ClipRecord| {
        if r.faults == 0 {
            r.first = tag;
        }
        r.faults += 1;
        r.factor = 0.0;
        r
    };
    let mut r = old;
    let Some(growth) = growth else {
        if bad_total || !loss.is_finite() {
            return fault(r);
        }
        r.factor = (max_norm / (total.sqrt() + 1e-6)).min(1.0);
        r.clock += 1;
        return r;
    };
    let s = old.scale;
    if !loss.is_finite() || (bad_total && s <= 1.0) {
        r = fault(r);
        r.good = 0;
        return r;
    }
    if bad_total {
        r.scale = (s * 0.5).max(1.0);
        r.factor = 0.0;
        r.good = 0;
        return r;
    }
    r.good += 1;
    if r.good >= growth {
        r.scale = (s * 2.0).min(16777216.0);
        r.good = 0;
    }
    r.clock += 1;
    r.factor = (max_norm / (total.sqrt() / s + 1e-6)).min(1.0) / s;
    r
}
