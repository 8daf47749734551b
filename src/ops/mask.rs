//! Launcher of shaders/mask.wgsl: Bernoulli unit masks from scores with the
//! counter-based generator of shaders/shared/rng.wgsl.

use super::{KernelParams, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, grid_1d};
use crate::device::tensor::{DType, Tensor};
use crate::error::Result;

/// Keep in sync with `MaskParams` in shaders/mask.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MaskParams {
    pub n: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub step: u32,
    pub sample: u32,
    pub samples: u32,
    pub step_from_block: u32,
    pub _pad: u32,
}

impl KernelParams for MaskParams {
    const SHADER: Shader = Shader::Mask;
    const WGSL_NAME: &'static str = "MaskParams";
}

const WG: u32 = 256;

/// The key of one mask draw. The same key gives the same mask on any device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaskKey {
    pub seed: u64,
    pub step: u32,
    pub sample: u32,
}

/// Where the step of a draw's key comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStep {
    /// `MaskKey::step`.
    Fixed,
    /// The step block's counter when the work runs: a plan replayed every
    /// step draws that step's masks.
    Block,
}

/// mask[i] = 1 with probability scores[i] (u32 0/1), for i < n.
pub fn mask_sample(rec: &mut Recorder, mask: &Tensor, scores: &Tensor, key: MaskKey, n: usize) -> Result<()> {
    mask_samples(rec, mask, scores, key, KeyStep::Fixed, n, 1)
}

/// `samples` masks in one dispatch: mask[s·n + i] for sample `key.sample + s`.
pub fn mask_samples(
    rec: &mut Recorder,
    mask: &Tensor,
    scores: &Tensor,
    key: MaskKey,
    step: KeyStep,
    n: usize,
    samples: usize,
) -> Result<()> {
    need("mask_sample", "mask", mask, n * samples, DType::U32)?;
    need("mask_sample", "scores", scores, n, DType::F32)?;
    let total = u32_of("mask_sample", "n * samples", n * samples)?;
    if total == 0 {
        return Ok(());
    }
    let params = MaskParams {
        n: n as u32,
        seed_lo: key.seed as u32,
        seed_hi: (key.seed >> 32) as u32,
        step: key.step,
        sample: key.sample,
        samples: samples as u32,
        step_from_block: u32::from(step == KeyStep::Block),
        _pad: 0,
    };
    let groups = grid_1d(total, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(Kernel::MaskSample, &vec![("WG", WG.into())], (0, &params), &[(1, scores), (2, mask)], groups)
}
