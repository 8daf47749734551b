//! Launcher of shaders/vrpge.wgsl: the score gradient of the policy-gradient
//! estimator from two mask samples and their losses, all on the device.

use super::{KernelParams, NONE, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, grid_1d};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// Keep in sync with `ScoreGradParams` in shaders/vrpge.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ScoreGradParams {
    pub n: u32,
    pub l1: u32,
    pub l2: u32,
    pub eps: f32,
    pub m1_off: u32,
    pub m2_off: u32,
    pub sum: u32,
    pub _pad: u32,
}

impl KernelParams for ScoreGradParams {
    const SHADER: Shader = Shader::Vrpge;
    const WGSL_NAME: &'static str = "ScoreGradParams";
}

const WG: u32 = 256;

/// The form of the score function g(m, s) = (m − s) / denom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ScoreFn {
    /// denom = sqrt(s (1 − s)): unit second moment per coordinate (the
    /// reference code's default).
    Fisher,
    /// denom = s (1 − s): the exact score function ∇_s log p(m|s).
    Exact,
}

/// How the two samples combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Estimator {
    /// Leave-one-out baseline: ((L1 − L2)/2)(g1 − g2).
    VrPge,
    /// No baseline (ablation): (L1 g1 + L2 g2)/2.
    Pge,
}

/// The guard inside each factor of s (1 − s), as in the reference code.
pub const SCORE_EPS: f32 = 1e-20;

/// grad[i] = δ_i for i < n, from losses[l1], losses[l2] and the two masks,
/// each given with the element where it starts; with `sum_slot`, also
/// losses[sum_slot] += (L1 + L2) / 2 (the step's loss, for the log).
/// With `loss_scale` (mixed precision), δ is multiplied by the loss scale in
/// its `LOSS_SCALE_SLOT`, as the weight gradients are.
#[allow(clippy::too_many_arguments)]
pub fn score_grad(
    rec: &mut Recorder,
    grad: &Tensor,
    losses: &Tensor,
    (loss_slots, sum_slot): ((usize, usize), Option<usize>),
    scores: &Tensor,
    masks: [(&Tensor, usize); 2],
    est: (Estimator, ScoreFn),
    n: usize,
    loss_scale: Option<&Tensor>,
) -> Result<()> {
    const OP: &str = "score_grad";
    if let Some(t) = loss_scale {
        need(OP, "loss scale", t, super::LOSS_SCALE_SLOT + 1, DType::F32)?;
    }
    need(OP, "grad", grad, n, DType::F32)?;
    let last = loss_slots.0.max(loss_slots.1).max(sum_slot.unwrap_or(0));
    need(OP, "losses", losses, last + 1, DType::F32)?;
    need(OP, "scores", scores, n, DType::F32)?;
    need(OP, "mask1", masks[0].0, masks[0].1 + n, DType::U32)?;
    need(OP, "mask2", masks[1].0, masks[1].1 + n, DType::U32)?;
    if loss_slots.0 == loss_slots.1 || sum_slot.is_some_and(|s| s == loss_slots.0 || s == loss_slots.1) {
        return Err(Error::InvalidArgument("the two samples and their sum need distinct loss slots".into()));
    }
    let n32 = u32_of(OP, "n", n)?;
    if n32 == 0 && sum_slot.is_none() {
        return Ok(());
    }
    let params = ScoreGradParams {
        n: n32,
        l1: loss_slots.0 as u32,
        l2: loss_slots.1 as u32,
        eps: SCORE_EPS,
        m1_off: u32_of(OP, "mask1 offset", masks[0].1)?,
        m2_off: u32_of(OP, "mask2 offset", masks[1].1)?,
        sum: match sum_slot {
            Some(s) => u32_of(OP, "sum slot", s)?,
            None => NONE,
        },
        _pad: 0,
    };
    let flag = |b: bool| f64::from(u8::from(b));
    let constants = vec![
        ("WG", f64::from(WG)),
        ("FISHER", flag(est.1 == ScoreFn::Fisher)),
        ("BASELINE", flag(est.0 == Estimator::VrPge)),
        ("LOSS_SCALE", flag(loss_scale.is_some())),
    ];
    let one = Tensor::one(rec.gpu());
    let groups = grid_1d(n32.max(1), WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(
        Kernel::ScoreGrad,
        &constants,
        (0, &params),
        &[(1, losses), (2, scores), (3, masks[0].0), (4, masks[1].0), (5, grad), (6, loss_scale.unwrap_or(&one))],
        groups,
    )
}
