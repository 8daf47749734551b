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
    pub splits: u32,
    /// A pair (`forward_pair`, `backward_pair`): sample 1's offsets.
    pub stride_x: u32,
    pub stride_y: u32,
    pub stride_dy: u32,
    pub stride_stats: u32,
    pub stride_dims: u32,
    pub stride_map: u32,
    /// The split finals: 2 runs a pair's both samples in one workgroup, one
    /// after the other (`batchnorm_pair`); else the sample is the grid's z.
    pub seq: u32,
    pub _pad: u32,
}

impl KernelParams for BnParams {
    const SHADER: Shader = Shader::Batchnorm;
    const WGSL_NAME: &'static str = "BnParams";
}

pub(super) const WG: u32 = 256;

/// BatchNorm's constants (PyTorch's defaults), and how its reductions
/// split their rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnConfig {
    pub eps: f32,
    pub momentum: f32,
    /// Rows per workgroup of a reduction; 0 lets the device decide (see
    /// `splits`). Tests set it to exercise the split reductions anywhere.
    pub split_rows: usize,
}

impl Default for BnConfig {
    fn default() -> Self {
        BnConfig { eps: 1e-5, momentum: 0.1, split_rows: 0 }
    }
}

/// Most row chunks of one channel's reduction.
const MAX_SPLITS: usize = 256;
/// Values per chunk of a channel group on GPUs; the fewest rows per chunk
/// on CPU adapters.
const AUTO_SPLIT_ROWS: usize = 4096;
/// Chunks on CPU adapters (at most): a few per core.
const CPU_SPLITS: usize = 8;

/// Row chunks of the statistics and backward sums over `rows` rows of
/// `channels` stored channels (at most). A chunk's workgroup sums whole rows
/// of up to 256 channels (`lanes` in batchnorm.wgsl). On GPUs a chunk holds
/// about 4096 values of its channel group (`cfg.split_rows` rows when set),
/// so that each thread adds about 16 and the grid fills the GPU. On adapters
/// that cap their grids (software rasterisers) up to 8 chunks of at least
/// 4096 rows: a few per core, each reading a contiguous vector per SIMD step
/// where a workgroup per channel gathers a column (on lavapipe this halved a
/// sparse ResNet-20 step's BatchNorm time). Fewer rows stay one workgroup per
/// channel, the exact two-pass statistics. The scratch of a BatchNorm holds
/// (4 + 2·splits) values per stored channel.
pub fn splits(gpu: &crate::Gpu, rows: usize, channels: usize, cfg: BnConfig) -> usize {
    let per = match cfg.split_rows {
        0 if gpu.grid_cap() < u32::MAX => rows.div_ceil(CPU_SPLITS).max(AUTO_SPLIT_ROWS),
        0 => (AUTO_SPLIT_ROWS / channels.clamp(1, WG as usize)).max(1),
        n => n,
    };
    rows.div_ceil(per).clamp(1, MAX_SPLITS)
}

/// The tensors of one BatchNorm: its input, its kept set (counts and
/// lists), scratch statistics [(4 + 2·splits) × stored channels], running statistics
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

pub(super) fn params(rows: Rows, ch: Stored, cfg: BnConfig, splits: usize) -> Result<BnParams> {
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
        splits: u32_of("batchnorm", "splits", splits)?,
        stride_x: 0,
        stride_y: 0,
        stride_dy: 0,
        stride_stats: 0,
        stride_dims: 0,
        stride_map: 0,
        seq: 0,
        _pad: 0,
    })
}

pub(super) fn check(t: &BnTensors, rows: Rows, ch: Stored, splits: usize) -> Result<()> {
    const OP: &str = "batchnorm";
    need(OP, "x", t.x, rows.max() * ch.max(), DType::F32)?;
    need(OP, "stats", t.stats, (4 + 2 * splits) * ch.max(), DType::F32)?;
    need(OP, "running", t.running, 2 * ch.full, DType::F32)?;
    need(OP, "gamma", t.gamma, ch.full, DType::F32)?;
    need(OP, "beta", t.beta, ch.full, DType::F32)?;
    need(OP, "dims", t.dims, 1, DType::U32)?;
    need(OP, "maps", t.maps, 1, DType::U32)
}

/// The grid of an elementwise pass over stored channels (a capacity: the
/// kernels loop over the rest).
pub(super) fn elementwise(rec: &Recorder, threads: usize) -> Result<glam::UVec3> {
    let t = u32_of("batchnorm", "threads", threads)?.max(1);
    Ok(super::grid_for_capacity(rec.gpu(), t, WG))
}

/// The grid of a reduction: a workgroup per channel, or with splits, per
/// (group of up to WG channels, split) (see `lanes` in batchnorm.wgsl).
pub(super) fn per_channel(ch: Stored, splits: usize) -> Result<glam::UVec3> {
    let c = u32_of("batchnorm", "channels", ch.max())?.max(1);
    if splits <= 1 {
        return Ok(glam::UVec3::new(c, 1, 1));
    }
    Ok(glam::UVec3::new(c.div_ceil(WG), u32_of("batchnorm", "splits", splits)?, 1))
}

/// Channels per workgroup of the split finals (batchnorm.wgsl's FINAL_W).
const FINAL_W: usize = 32;

/// The grid of one sample's split finals: a workgroup per group of up to
/// FINAL_W stored channels (capped: the kernel loops over the rest).
pub(super) fn final_grid(rec: &Recorder, ch: Stored) -> Result<glam::UVec3> {
    let groups = u32_of("batchnorm", "channel groups", ch.max().div_ceil(FINAL_W).max(1))?;
    let gpu = rec.gpu();
    Ok(capped_grid(groups, gpu.grid_cap(), gpu.limits().max_compute_workgroups_per_dimension))
}

/// What the split finals bind: the layer's tensors, and dγ, dβ (the
/// backward's) or a stand-in for both (the forward's y, which the
/// statistics' final never touches). The two kernels share the shader's
/// `finals`, so each binds what only the other reads or writes.
pub(super) struct FinalBinds<'a> {
    pub t: BnTensors<'a>,
    pub grads: (&'a Tensor, &'a Tensor),
}

/// A split final (`bn_stats_final` or `bn_grad_final`) over `grid`.
pub(super) fn record_final(
    rec: &mut Recorder,
    kernel: Kernel,
    p: &BnParams,
    f: FinalBinds,
    grid: glam::UVec3,
) -> Result<()> {
    let t = f.t;
    let b = [(1, t.dims), (2, t.maps), (3, t.x), (4, t.stats), (5, t.running), (10, f.grads.0), (11, f.grads.1)];
    rec.dispatch(kernel, &vec![("WG", f64::from(WG))], (0, p), &b, grid)
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
    let splits = splits(rec.gpu(), rows.max(), ch.max(), cfg);
    check(&t, rows, ch, splits)?;
    need("batchnorm", "y", y, rows.max() * ch.max(), DType::F32)?;
    let mut p = params(rows, ch, cfg, splits)?;
    let wg = vec![("WG", f64::from(WG))];
    let base = [(1, t.dims), (2, t.maps), (3, t.x), (4, t.stats), (5, t.running), (6, t.gamma), (7, t.beta), (8, y)];
    if train {
        p.train = 1;
        // bn_stats shares its split first level with bn_grad_reduce, whose
        // dy (binding 9) it never reads: x stands in.
        let stats = [(1, t.dims), (2, t.maps), (3, t.x), (4, t.stats), (5, t.running), (9, t.x)];
        rec.dispatch(Kernel::BnStats, &wg, (0, &p), &stats, per_channel(ch, splits)?)?;
        if splits > 1 {
            let f = FinalBinds { t, grads: (y, y) };
            record_final(rec, Kernel::BnStatsFinal, &p, f, final_grid(rec, ch)?)?;
        }
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
    cfg: BnConfig,
    (accumulate, gate): (bool, bool),
) -> Result<()> {
    let splits = splits(rec.gpu(), rows.max(), ch.max(), cfg);
    check(&t, rows, ch, splits)?;
    need("batchnorm", "dy", dy, rows.max() * ch.max(), DType::F32)?;
    need("batchnorm", "dx", dx, rows.max() * ch.max(), DType::F32)?;
    need("batchnorm", "dgamma", dgamma, ch.full, DType::F32)?;
    need("batchnorm", "dbeta", dbeta, ch.full, DType::F32)?;
    let mut p = params(rows, ch, cfg, splits)?;
    p.train = 1;
    p.accumulate = accumulate.into();
    p.gate = gate.into();
    let wg = vec![("WG", f64::from(WG))];
    let sums = [(1, t.dims), (2, t.maps), (3, t.x), (4, t.stats), (9, dy), (10, dgamma), (11, dbeta)];
    rec.dispatch(Kernel::BnGradReduce, &wg, (0, &p), &sums, per_channel(ch, splits)?)?;
    if splits > 1 {
        let f = FinalBinds { t, grads: (dgamma, dbeta) };
        record_final(rec, Kernel::BnGradFinal, &p, f, final_grid(rec, ch)?)?;
    }
    rec.dispatch(
        Kernel::BnGradApply,
        &wg,
        (0, &p),
        &[(1, t.dims), (2, t.maps), (3, t.x), (4, t.stats), (6, t.gamma), (8, dx), (9, dy)],
        elementwise(rec, rows.max() * ch.max())?,
    )
}
