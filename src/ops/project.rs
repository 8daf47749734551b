//! Launcher of shaders/project.wgsl: projection of the scores onto
//! { 0 <= s <= 1, Σ s <= K } by bisection, on the device.

use super::{KernelParams, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// Keep in sync with `ProjectParams` in shaders/project.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ProjectParams {
    pub n: u32,
    pub iters: u32,
    pub budget: f32,
    pub tol: f32,
}

impl KernelParams for ProjectParams {
    const SHADER: Shader = Shader::Project;
    const WGSL_NAME: &'static str = "ProjectParams";
}

const WG: u32 = 256;

/// Bisection settings (method.md: |f| < 1e-3 or 20+ steps).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Projection {
    pub budget: f32,
    pub iters: u32,
    pub tol: f32,
}

impl Projection {
    pub fn new(budget: f32) -> Projection {
        Projection { budget, iters: 30, tol: 1e-3 }
    }
}

/// Projects scores[0..n] in place; the shift v lands in shift[0].
pub fn project_scores(rec: &mut Recorder, scores: &Tensor, shift: &Tensor, pr: Projection, n: usize) -> Result<()> {
    need("project_scores", "scores", scores, n, DType::F32)?;
    need("project_scores", "shift", shift, 1, DType::F32)?;
    if !(pr.budget.is_finite() && pr.budget >= 0.0 && pr.tol.is_finite() && pr.tol > 0.0) {
        return Err(Error::InvalidArgument(format!("projection needs a finite budget >= 0 and tol > 0, got {pr:?}")));
    }
    let params =
        ProjectParams { n: u32_of("project_scores", "n", n)?, iters: pr.iters, budget: pr.budget, tol: pr.tol };
    rec.dispatch(
        Kernel::ProjectScores,
        &vec![("WG", WG.into())],
        (0, &params),
        &[(1, scores), (2, shift)],
        glam::UVec3::ONE,
    )
}
