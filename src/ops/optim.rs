//! Launcher of shaders/optim.wgsl: SGD with momentum and weight decay, and
//! Adam, updating flat parameter buffers in place. Learning rates (and
//! Adam's bias corrections) are fixed when recorded or read from the step
//! block, so schedules need no re-recording and no read-back; the gradient
//! scale is a device buffer (clipping decided on the device).

use super::{KernelParams, need, u32_of};
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
    for (name, x) in [("w", w), ("m", m), ("v", v), ("g", g)] {
        need(OP, name, x, n, DType::F32)?;
    }
    if t == 0 && rate == Rate::Fixed {
        return Err(Error::InvalidArgument("Adam steps count from 1".into()));
    }
    let n32 = u32_of(OP, "n", n)?;
    if n32 == 0 {
        return Ok(());
    }
    let (bias_c1, bias_c2) = adam_corrections(&hp, t);
    let params = AdamParams {
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
    };
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
