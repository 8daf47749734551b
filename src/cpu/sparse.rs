//! Reference of one `sparse::SparseTrainer::step`, in f64, from the
//! dense-masked definition (method.md): two masked passes on the same batch,
//! weight gradients averaged, VR-PGE score gradient, joint clipping, SGD,
//! Adam, projection.

use super::{mlp, optim, project, vrpge};
use crate::mlp::ParamLayout;
use crate::ops::optim::{Adam, Sgd};
use crate::ops::project::Projection;
use crate::ops::vrpge::{Estimator, ScoreFn};

pub struct StepState {
    pub params: Vec<f64>,
    pub momentum: Vec<f64>,
    pub scores: Vec<f64>,
    pub adam_m: Vec<f64>,
    pub adam_v: Vec<f64>,
}

pub struct StepResult {
    pub losses: (f64, f64),
    pub clip: f64,
}

/// `masks[j]` is sample j's mask over all units; `unit_off` cuts it by layer.
#[allow(clippy::too_many_arguments)]
pub fn step(
    st: &mut StepState,
    layout: &ParamLayout,
    unit_off: &[usize],
    x: &[f64],
    labels: &[u32],
    batch: usize,
    masks: [&[u32]; 2],
    hp: (Sgd, Adam, f64, (Estimator, ScoreFn), Projection),
    t: u64,
) -> StepResult {
    let (sgd, adam, clip_norm, est, proj) = hp;
    let per_layer = |m: &[u32]| -> Vec<Vec<u32>> { unit_off.windows(2).map(|w| m[w[0]..w[1]].to_vec()).collect() };
    let r1 = mlp::forward_backward_masked(layout, &st.params, x, labels, batch, Some(&per_layer(masks[0])));
    let r2 = mlp::forward_backward_masked(layout, &st.params, x, labels, batch, Some(&per_layer(masks[1])));
    let grads: Vec<f64> = r1.grads.iter().zip(&r2.grads).map(|(a, b)| 0.5 * (a + b)).collect();
    let delta = vrpge::score_grad((r1.loss, r2.loss), &st.scores, masks[0], masks[1], est);
    let sq: f64 = grads.iter().map(|g| g * g).sum::<f64>() + delta.iter().map(|g| g * g).sum::<f64>();
    let clip = (clip_norm / (sq.sqrt() + 1e-6)).min(1.0);
    optim::sgd_step(&mut st.params, &mut st.momentum, &grads, clip, sgd);
    optim::adam_step(&mut st.scores, &mut st.adam_m, &mut st.adam_v, &delta, clip, adam, t);
    project::project_scores(&mut st.scores, proj);
    StepResult { losses: (r1.loss, r2.loss), clip }
}
