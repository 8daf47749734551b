//! Launcher of shaders/batchnorm.wgsl: BatchNorm over the channels of NHWC
//! activations (rows = batch × pixels) whose stored channels may be a kept
//! set: batch statistics and running averages, normalisation (training or
//! evaluation), and the two passes of its backward.

use super::conv::Stored;
use super::{KernelParams, Rows, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, capped_grid};
use crate::device::tensor::{DType, Tensor};
use crate::error::Result;

/// Keep in sync with `BnParams` in shaders/batchnorm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BnParams {
    pub rows: u32,
    pub rows_code: u32,
    pub c_full: u32,
    pub c_code: u32,
    pub map: u32,
    pub eps: f32,
    pub momentum: f32,
    pub train: u32,
    pub relu: u32,
    pub accumulate: u32,
    pub gate: u32,
    pub _pad: u32,
}

impl KernelParams for BnParams {
    const SHADER: Shader = Shader::Batchnorm;
    const WGSL_NAME: &'static str = "BnParams";
}

const WG: u32 = 256;

/// BatchNorm's constants (PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnConfig {
    pub eps: f32,
    pub momentum: f32,
}

impl Default for BnConfig {
    fn default() -> Self {
        BnConfig { eps: 1e-5, momentum: 0.1 }
    }
}

/// The tensors of one BatchNorm: its input, its kept set (counts and
/// lists), scratch statistics [4 × stored channels], running statistics
/// [2 × full channels], γ and β [full channels].
#[derive(Clone, Copy)]
pub struct BnTensors<'a> {
    pub x: &'a Tensor,
    pub dims: &'a Tensor,
    pub maps: &'a Tensor,
    pub stats: &'a Tensor,
    pub running: &'a Tensor,
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
}

fn params(rows: Rows, ch: Stored, cfg: BnConfig) -> Result<BnParams> {
    let (c_code, map) = ch.side.indices()?;
    Ok(BnParams {
        rows: u32_of("batchnorm", "rows", rows.max())?,
        rows_code: rows.code(),
        c_full: u32_of("batchnorm", "channels", ch.full)?,
        c_code,
        map,
        eps: cfg.eps,
        momentum: cfg.momentum,
        train: 0,
        relu: 0,
        accumulate: 0,
        gate: 0,
        _pad: 0,
    })
}

fn check(t: &BnTensors, rows: Rows, ch: Stored) -> Result<()> {
    const OP: &str = "batchnorm";
    need(OP, "x", t.x, rows.max() * ch.max(), DType::F32)?;
    need(OP, "stats", t.stats, 4 * ch.max(), DType::F32)?;
    need(OP, "running", t.running, 2 * ch.full, DType::F32)?;
    need(OP, "gamma", t.gamma, ch.full, DType::F32)?;
    need(OP, "beta", t.beta, ch.full, DType::F32)?;
    need(OP, "dims", t.dims, 1, DType::U32)?;
    need(OP, "maps", t.maps, 1, DType::U32)
}

fn elementwise(rec: &Recorder, threads: usize) -> Result<glam::UVec3> {
    let t = u32_of("batchnorm", "threads", threads)?.max(1);
    let gpu = rec.gpu();
    Ok(capped_grid(t.div_ceil(WG), gpu.grid_cap(), gpu.limits().max_compute_workgroups_per_dimension))
}

fn per_channel(ch: Stored) -> Result<glam::UVec3> {
    Ok(glam::UVec3::new(u32_of("batchnorm", "channels", ch.max())?.max(1), 1, 1))
}

/// Forward: in training, batch statistics into `stats` and the running
/// averages updated; then y = normalised x (ReLU'd when `relu`).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    rec: &mut Recorder,
    y: &Tensor,
    t: BnTensors,
    rows: Rows,
    ch: Stored,
    cfg: BnConfig,
    train: bool,
    relu: bool,
) -> Result<()> {
    check(&t, rows, ch)?;
    need("batchnorm", "y", y, rows.max() * ch.max(), DType::F32)?;
    let mut p = params(rows, ch, cfg)?;
    let wg = vec![("WG", f64::from(WG))];
    let base = [(1, t.dims), (2, t.maps), (3, t.x), (4, t.stats), (5, t.running), (6, t.gamma), (7, t.beta), (8, y)];
    if train {
        p.train = 1;
        rec.dispatch(Kernel::BnStats, &wg, (0, &p), &base, per_channel(ch)?)?;
    }
    p.relu = relu.into();
    rec.dispatch(Kernel::BnApply, &wg, (0, &p), &base, elementwise(rec, rows.max() * ch.max())?)
}

/// Backward (after a training forward of the same batch): dγ and dβ added
/// into `dgamma`, `dbeta` (full-size), then dx (+)= the input gradient,
/// zero where x is not positive when `gate`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    rec: &mut Recorder,
    dx: &Tensor,
    dy: &Tensor,
    (dgamma, dbeta): (&Tensor, &Tensor),
    t: BnTensors,
    rows: Rows,
    ch: Stored,
    (accumulate, gate): (bool, bool),
) -> Result<()> {
    check(&t, rows, ch)?;
    need("batchnorm", "dy", dy, rows.max() * ch.max(), DType::F32)?;
    need("batchnorm", "dx", dx, rows.max() * ch.max(), DType::F32)?;
    need("batchnorm", "dgamma", dgamma, ch.full, DType::F32)?;
    need("batchnorm", "dbeta", dbeta, ch.full, DType::F32)?;
    let mut p = params(rows, ch, BnConfig::default())?;
    p.train = 1;
    p.accumulate = accumulate.into();
    p.gate = gate.into();
    let wg = vec![("WG", f64::from(WG))];
    rec.dispatch(
        Kernel::BnGradReduce,
        &wg,
        (0, &p),
        &[(1, t.dims), (2, t.maps), (3, t.x), (4, t.stats), (9, dy), (10, dgamma), (11, dbeta)],
        per_channel(ch)?,
    )?;
    rec.dispatch(
        Kernel::BnGradApply,
        &wg,
        (0, &p),
        &[(1, t.dims), (2, t.maps), (3, t.x), (4, t.stats), (6, t.gamma), (8, dx), (9, dy)],
        elementwise(rec, rows.max() * ch.max())?,
    )
}
