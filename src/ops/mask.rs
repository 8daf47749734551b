//! Launcher of shaders/mask.wgsl: Bernoulli unit masks from scores with the
//! counter-based generator of shaders/shared/rng.wgsl.

use super::{KernelParams, need, u32_of};
use crate::error::Result;
use crate::record::Recorder;
use crate::shader::{Kernel, Shader, grid_1d};
use crate::tensor::{DType, Tensor};

/// Keep in sync with `MaskParams` in shaders/mask.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MaskParams {
    pub n: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub step: u32,
    pub sample: u32,
    pub _pad: [u32; 3],
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

/// mask[i] = 1 with probability scores[i] (u32 0/1), for i < n.
pub fn mask_sample(rec: &mut Recorder, mask: &Tensor, scores: &Tensor, key: MaskKey, n: usize) -> Result<()> {
    need("mask_sample", "mask", mask, n, DType::U32)?;
    need("mask_sample", "scores", scores, n, DType::F32)?;
    let n32 = u32_of("mask_sample", "n", n)?;
    if n32 == 0 {
        return Ok(());
    }
    let params = MaskParams {
        n: n32,
        seed_lo: key.seed as u32,
        seed_hi: (key.seed >> 32) as u32,
        step: key.step,
        sample: key.sample,
        _pad: [0; 3],
    };
    let groups = grid_1d(n32, WG, rec.gpu().limits().max_compute_workgroups_per_dimension);
    rec.dispatch(Kernel::MaskSample, &vec![("WG", WG.into())], (0, &params), &[(1, scores), (2, mask)], groups)
}
