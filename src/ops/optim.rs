//! Launcher of shaders/optim.wgsl: SGD with momentum and weight decay, and
//! Adam, updating flat parameter buffers in place. Learning rates (and
//! Adam's bias corrections) are fixed when recorded or read from the step
//! block, so schedules need no re-recording and no read-back; the gradient
//! scale is a device buffer (clipping decided on the device).

use super::reduce::{FaultTag, SINGLE_PASS_MAX, clip_rule};
use super::{KernelParams, NONE, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, grid_1d};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// Keep in sync with `SgdParams` in shaders/optim.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SgdParams {
    pub n: u32,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub from_step: u32,
    pub _pad: [u32; 3],
}

impl KernelParams for SgdParams {
    const SHADER: Shader = Shader::Optim;
    const WGSL_NAME: &'static str = "SgdParams";
}

/// Keep in sync with `AdamParams` in shaders/optim.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamParams {
    pub n: u32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub bias_c1: f32,
    pub bias_c2: f32,
    pub weight_decay: f32,
    pub from_step: u32,
    pub _pad: [u32; 3],
}

impl KernelParams for AdamParams {
    const SHADER: Shader = Shader::Optim;
    const WGSL_NAME: &'static str = "AdamParams";
}

/// Keep in sync with `ClipParams` in shaders/optim.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ClipParams {
    pub n_norms: u32,
    pub loss_at: u32,
    pub loss_n: u32,
    pub scale_at: u32,
    pub tag: u32,
    pub growth: u32,
    pub max_norm: f32,
    pub _pad: u32,
}

impl KernelParams for ClipParams {
    const SHADER: Shader = Shader::Optim;
    const WGSL_NAME: &'static str = "ClipParams";
}

/// Keep in sync with `AdamClipParams` in shaders/optim.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamClipParams {
    pub adam: AdamParams,
    pub clip: ClipParams,
}

impl KernelParams for AdamClipParams {
    const SHADER: Shader = Shader::Optim;
    const WGSL_NAME: &'static str = "AdamClipParams";
}

const WG: u32 = 256;

/// SGD hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

/// What `sgd_step` leaves in the gradient buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterStep {
    KeepGrad,
    /// Clear it: the next step accumulates into zeros.
    ZeroGrad,
}

/// Adam hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// Where an update's learning rate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// The hyper-parameters given (Adam: at the step given).
    Fixed,
    /// The step block: `lr` for SGD; `score_lr`, `adam_c1`, `adam_c2` for Adam.
    FromStep,
}

/// Adam's bias corrections (1 − β1^t, 1 − β2^t) for step t (1-based).
pub fn adam_corrections(hp: &Adam, t: u64) -> (f32, f32) {
    let tt = t.clamp(1, i32::MAX as u64) as i32;
    (1.0 - hp.beta1.powi(tt), 1.0 - hp.beta2.powi(tt))
}

/// The factor applied to every gradient before the update.
pub enum GradScale<'a> {
    /// No scaling.
    One,
    /// Element 0 of this device tensor (e.g. a clipping factor).
    Buffer(&'a Tensor),
}

fn scale_tensor(rec: &Recorder, scale: GradScale) -> Result<Tensor> {
    match scale {
        GradScale::One => Ok(Tensor::one(rec.gpu())),
        GradScale::Buffer(t) => {
            need("optimizer", "gscale", t, 1, DType::F32)?;
            Ok(t.clone())
        }
    }
}

/// v = μ·v + (s·g + wd·w); w -= lr·v, over the first `n` elements.
#[allow(clippy::too_many_arguments)]
pub fn sgd_step(
    rec: &mut Recorder,
    w: &Tensor,
    v: &Tensor,
    g: &Tensor,
    scale: GradScale,
    hp: Sgd,
    rate: Rate,
    after: AfterStep,
    n: usize,
) -> Result<()> {
    const OP: &str = "sgd_step";
    for (name, t) in [("w", w), ("v", v), ("g", g)] {
        need(OP, name, t, n, DType::F32)?;
    }
    if !(hp.lr.is_finite() && hp.momentum.is_finite() && hp.weight_decay.is_finite()) {
        return Err(Error::InvalidArgument(format!("non-finite SGD hyper-parameters {hp:?}")));
    }
    let n32 = u32_of(OP, "n", n)?;
    if n32 == 0 {
        return Ok(());
    }
    let params = SgdParams {
        n: n32,
        lr: hp.lr,
        momentum: hp.momentum,
        weight_decay: hp.weight_decay,
        from_step: u32::from(rate == Rate::FromStep),
        _pad: [0; 3],
    };
    let groups = grid_1d(n32, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    let s = scale_tensor(rec, scale)?;
    let zero = f64::from(u8::from(after == AfterStep::ZeroGrad));
    let constants = vec![("WG", WG.into()), ("ZERO_GRAD", zero)];
    rec.dispatch(Kernel::SgdStep, &constants, (0, &params), &[(2, w), (3, g), (4, &s), (5, v)], groups)
}

/// How `adam_clip_step` decides the step's clip record: from the same inputs
/// as `Reducer::clip_factor` (see there and shaders/shared/clip.wgsl).
#[derive(Clone, Copy)]
pub struct ClipDecision<'a> {
    /// The clip record (element 0 on; 6 elements under loss scaling).
    pub record: &'a Tensor,
    /// Squared norms of the other parameter groups, `t[0..n]`, 1 to
    /// `SINGLE_PASS_MAX` of them.
    pub norms: (&'a Tensor, usize),
    /// Whether the squared norm of the optimized gradient joins them (at
    /// most `SINGLE_PASS_MAX` elements: every workgroup sums it).
    pub own_squares: bool,
    /// The step's loss, the sum of `t[at..at + n]`: a non-finite loss is a
    /// fault.
    pub loss: (&'a Tensor, usize, usize),
    pub max_norm: f32,
    pub tag: FaultTag,
    /// Loss scaling: the growth interval, and the slot of the loss tensor
    /// where this step's S was copied (`vrpge::score_grad`'s copy slot). The
    /// copy must be made earlier in the same step (nothing here can check
    /// it): every workgroup takes S from it, while the record's S is what the
    /// first one rewrites.
    pub loss_scale: Option<(u32, usize)>,
}

/// Adam over the first `n` elements that decides the step's gradient-norm
/// clipping itself: every workgroup sums the squared norms and reads the
/// loss, the first one writes the clip record (factor, fault record, clock
/// of lazy updates, loss scale), and the gradient is scaled by the factor
/// (0: no update). It takes the place of `Reducer::clip_factor`'s launch
/// where the scores are the step's first optimizer: later optimizers read
/// the factor from the record.
#[allow(clippy::too_many_arguments)]
pub fn adam_clip_step(
    rec: &mut Recorder,
    w: &Tensor,
    m: &Tensor,
    v: &Tensor,
    g: &Tensor,
    hp: Adam,
    rate: Rate,
    t: u64,
    n: usize,
    clip: ClipDecision,
) -> Result<()> {
    const OP: &str = "adam_clip_step";
    let (norms, n_norms) = clip.norms;
    let (losses, loss_at, loss_n) = clip.loss;
    need(OP, "norms", norms, n_norms, DType::F32)?;
    need(OP, "losses", losses, loss_at + loss_n, DType::F32)?;
    if n_norms == 0 || n_norms > SINGLE_PASS_MAX || loss_n == 0 {
        return Err(Error::InvalidArgument(format!(
            "the clip decision sums 1 to {SINGLE_PASS_MAX} squared norms and at least one loss, got {n_norms} and {loss_n}"
        )));
    }
    if clip.own_squares && n > SINGLE_PASS_MAX {
        return Err(Error::InvalidArgument(format!(
            "every workgroup sums the gradient's squares itself: at most {SINGLE_PASS_MAX} elements, got {n}"
        )));
    }
    if let Some((_, at)) = clip.loss_scale
        && (at >= losses.len() || (loss_at..loss_at + loss_n).contains(&at))
    {
        return Err(Error::InvalidArgument(format!(
            "the loss scale's copy must lie in the losses, apart from the step's loss; got slot {at}"
        )));
    }
    // Two writable bindings of one buffer pass wgpu (a buffer read and
    // written is refused by `Recorder::dispatch`), but the record's writes
    // would land in the optimizer's tensors.
    if [w, m, v, g].iter().any(|x| x.buffer() == clip.record.buffer()) {
        return Err(Error::InvalidArgument("the clip record must lie apart from the optimizer's tensors".into()));
    }
    let (tag, growth) = clip_rule(clip.record, 0, clip.max_norm, clip.tag, clip.loss_scale.map(|(g, _)| g))?;
    let adam = adam_params(OP, w, m, v, g, hp, rate, t, n)?;
    let params = ClipParams {
        n_norms: n_norms as u32,
        loss_at: u32_of(OP, "loss offset", loss_at)?,
        loss_n: u32_of(OP, "loss values", loss_n)?,
        scale_at: clip.loss_scale.map_or(Ok(NONE), |(_, at)| u32_of(OP, "scale copy", at))?,
        tag,
        growth,
        max_norm: clip.max_norm,
        _pad: 0,
    };
    let flag = |b: bool| f64::from(u8::from(b));
    let constants =
        vec![("WG", WG.into()), ("SQUARES", flag(clip.own_squares)), ("LOSS_SCALE", flag(clip.loss_scale.is_some()))];
    // One workgroup at least, even for no elements: it decides the record.
    let groups = grid_1d(adam.n.max(1), WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(
        Kernel::AdamClip,
        &constants,
        (10, &AdamClipParams { adam, clip: params }),
        &[(2, w), (3, g), (5, m), (6, v), (7, clip.record), (8, norms), (9, losses)],
        groups,
    )
}

/// Adam's checked parameters (for `adam_step` and `adam_clip_step`).
#[allow(clippy::too_many_arguments)]
fn adam_params(
    op: &'static str,
    w: &Tensor,
    m: &Tensor,
    v: &Tensor,
    g: &Tensor,
    hp: Adam,
    rate: Rate,
    t: u64,
    n: usize,
) -> Result<AdamParams> {
    for (name, x) in [("w", w), ("m", m), ("v", v), ("g", g)] {
        need(op, name, x, n, DType::F32)?;
    }
    if t == 0 && rate == Rate::Fixed {
        return Err(Error::InvalidArgument("Adam steps count from 1".into()));
    }
    let n32 = u32_of(op, "n", n)?;
    let (bias_c1, bias_c2) = adam_corrections(&hp, t);
    Ok(AdamParams {
        n: n32,
        lr: hp.lr,
        beta1: hp.beta1,
        beta2: hp.beta2,
        eps: hp.eps,
        bias_c1,
        bias_c2,
        weight_decay: hp.weight_decay,
        from_step: u32::from(rate == Rate::FromStep),
        _pad: [0; 3],
    })
}

/// One Adam step `t` (1-based) over the first `n` elements (with
/// `Rate::FromStep`, t is ignored: the step block holds the corrections).
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    rec: &mut Recorder,
    w: &Tensor,
    m: &Tensor,
    v: &Tensor,
    g: &Tensor,
    scale: GradScale,
    hp: Adam,
    rate: Rate,
    t: u64,
    n: usize,
) -> Result<()> {
    const OP: &str = "adam_step";
    let params = adam_params(OP, w, m, v, g, hp, rate, t, n)?;
    let n32 = params.n;
    if n32 == 0 {
        return Ok(());
    }
    let groups = grid_1d(n32, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    let s = scale_tensor(rec, scale)?;
    rec.dispatch(
        Kernel::AdamStep,
        &vec![("WG", WG.into())],
        (1, &params),
        &[(2, w), (3, g), (4, &s), (5, m), (6, v)],
        groups,
    )
}
