//! Reference of one sparse training step (`train::Trainer`'s, phase Train),
//! in f64, from the dense-masked definition (method.md): two masked passes
//! on the same batch, weight gradients averaged, VR-PGE score gradient,
//! joint clipping, SGD, Adam, projection.

use super::{optim, project, vrpge};
use crate::nn::Graph;
use crate::nn::reference::forward_backward;
use crate::ops::optim::{Adam, Sgd};
use crate::ops::project::Projection;
use crate::ops::vrpge::{Estimator, ScoreFn};

pub struct StepState {
    pub params: Vec<f64>,
    /// Running statistics: each of the two passes updates them in turn.
    pub state: Vec<f64>,
    pub momentum: Vec<f64>,
    pub scores: Vec<f64>,
    pub adam_m: Vec<f64>,
    pub adam_v: Vec<f64>,
}

pub struct StepResult {
    pub losses: (f64, f64),
    pub clip: f64,
    pub score_grad: Vec<f64>,
}

/// `masks[j]` is sample j's mask over all units; the graph's `unit_off`
/// cuts it by prunable layer. `t` is Adam's step (1-based).
#[allow(clippy::too_many_arguments)]
pub fn step(
    st: &mut StepState,
    graph: &Graph,
    x: &[f64],
    labels: &[u32],
    batch: usize,
    masks: [&[u32]; 2],
    hp: (Sgd, Adam, f64, (Estimator, ScoreFn), Projection),
    t: u64,
) -> StepResult {
    let (sgd, adam, clip_norm, est, proj) = hp;
    let per_layer =
        |m: &[u32]| -> Vec<Vec<u32>> { graph.unit_off.windows(2).map(|w| m[w[0]..w[1]].to_vec()).collect() };
    let r1 = forward_backward(graph, &st.params, &st.state, x, labels, batch, Some(&per_layer(masks[0])), 0.5);
    let r2 = forward_backward(graph, &st.params, &r1.state, x, labels, batch, Some(&per_layer(masks[1])), 0.5);
    st.state = r2.state;
    let grads: Vec<f64> = r1.grads.iter().zip(&r2.grads).map(|(a, b)| a + b).collect();
    let delta = vrpge::score_grad((r1.loss, r2.loss), &st.scores, masks[0], masks[1], est);
    let sq: f64 = grads.iter().map(|g| g * g).sum::<f64>() + delta.iter().map(|g| g * g).sum::<f64>();
    let clip = (clip_norm / (sq.sqrt() + 1e-6)).min(1.0);
    optim::sgd_step(&mut st.params, &mut st.momentum, &grads, clip, sgd);
    optim::adam_step(&mut st.scores, &mut st.adam_m, &mut st.adam_v, &delta, clip, adam, t);
    project::project_scores(&mut st.scores, proj);
    StepResult { losses: (r1.loss, r2.loss), clip, score_grad: delta }
}
