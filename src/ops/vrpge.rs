//! Launcher of shaders/vrpge.wgsl: the score gradient of the policy-gradient
//! estimator from two mask samples and their losses, all on the device.

use super::{KernelParams, NONE, Rows, need, u32_of};
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
    pub scale_copy: u32,
    pub rows: u32,
    pub rows_code: u32,
    pub rows1: u32,
    pub rows2: u32,
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

/// Where the score gradient takes its two losses from.
#[derive(Clone, Copy)]
pub enum Losses<'a> {
    /// losses[l1], losses[l2], written before.
    Slots,
    /// The batch means of the per-row losses of each pass: `t[starts.0..]`
    /// and `t[starts.1..]`, `rows` rows each; they are also stored in
    /// losses[l1] and losses[l2] (one launch instead of two reductions and
    /// this one).
    Rows { t: &'a Tensor, starts: (usize, usize), rows: Rows },
}

/// grad[i] = δ_i for i < n, from the two losses (`from`) and the two masks,
/// each given with the element where it starts; with `sum_slot`, also
/// losses[sum_slot] += (L1 + L2) / 2 (the step's loss, for the log).
/// With `loss_scale` = (record, copy) (mixed precision), δ is multiplied by
/// the loss scale in the record's `LOSS_SCALE_SLOT`, as the weight gradients
/// are; with a `copy` slot, S is also copied to losses[copy] (for
/// `optim::adam_clip_step`, which rewrites the record's S).
#[allow(clippy::too_many_arguments)]
pub fn score_grad(
    rec: &mut Recorder,
    grad: &Tensor,
    losses: &Tensor,
    (loss_slots, sum_slot): ((usize, usize), Option<usize>),
    from: Losses,
    scores: &Tensor,
    masks: [(&Tensor, usize); 2],
    est: (Estimator, ScoreFn),
    n: usize,
    loss_scale: Option<(&Tensor, Option<usize>)>,
) -> Result<()> {
    const OP: &str = "score_grad";
    if let Some((t, _)) = loss_scale {
        need(OP, "loss scale", t, super::LOSS_SCALE_SLOT + 1, DType::F32)?;
    }
    let copy = loss_scale.and_then(|(_, c)| c);
    need(OP, "grad", grad, n, DType::F32)?;
    let last = loss_slots.0.max(loss_slots.1).max(sum_slot.unwrap_or(0)).max(copy.unwrap_or(0));
    need(OP, "losses", losses, last + 1, DType::F32)?;
    if copy.is_some_and(|c| c == loss_slots.0 || c == loss_slots.1 || Some(c) == sum_slot) {
        return Err(Error::InvalidArgument("the loss scale's copy needs a slot of its own".into()));
    }
    need(OP, "scores", scores, n, DType::F32)?;
    need(OP, "mask1", masks[0].0, masks[0].1 + n, DType::U32)?;
    need(OP, "mask2", masks[1].0, masks[1].1 + n, DType::U32)?;
    if loss_slots.0 == loss_slots.1 || sum_slot.is_some_and(|s| s == loss_slots.0 || s == loss_slots.1) {
        return Err(Error::InvalidArgument("the two samples and their sum need distinct loss slots".into()));
    }
    let n32 = u32_of(OP, "n", n)?;
    let (rows_t, rows, rows_code, starts) = match from {
        Losses::Slots => (None, 0, 0, (0, 0)),
        Losses::Rows { t, starts, rows } => {
            let max = rows.max();
            if max == 0 {
                return Err(Error::InvalidArgument("the batch mean of zero rows".into()));
            }
            need(OP, "loss rows", t, starts.0.max(starts.1) + max, DType::F32)?;
            // Read here while `losses` and `grad` are written.
            if t.buffer() == losses.buffer() || t.buffer() == grad.buffer() {
                return Err(Error::InvalidArgument(
                    "the loss rows must lie apart from the losses and the gradient".into(),
                ));
            }
            u32_of(OP, "loss rows", starts.0.max(starts.1) + max)?;
            (Some(t), max as u32, rows.code(), (starts.0 as u32, starts.1 as u32))
        }
    };
    if n32 == 0 && sum_slot.is_none() && rows_t.is_none() && copy.is_none() {
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
        scale_copy: match copy {
            Some(c) => u32_of(OP, "scale copy slot", c)?,
            None => NONE,
        },
        rows,
        rows_code,
        rows1: starts.0,
        rows2: starts.1,
    };
    let flag = |b: bool| f64::from(u8::from(b));
    let constants = vec![
        ("WG", f64::from(WG)),
        ("FISHER", flag(est.1 == ScoreFn::Fisher)),
        ("BASELINE", flag(est.0 == Estimator::VrPge)),
        ("LOSS_SCALE", flag(loss_scale.is_some())),
        ("MEAN_ROWS", flag(rows_t.is_some())),
    ];
    let one = Tensor::one(rec.gpu());
    let groups = grid_1d(n32.max(1), WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(
        Kernel::ScoreGrad,
        &constants,
        (0, &params),
        &[
            (1, losses),
            (2, scores),
            (3, masks[0].0),
            (4, masks[1].0),
            (5, grad),
            (6, loss_scale.map_or(&one, |(t, _)| t)),
            (7, rows_t.unwrap_or(&one)),
        ],
        groups,
    )
}
