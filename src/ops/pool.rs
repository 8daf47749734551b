//! Launcher of shaders/pool.wgsl: max and average pooling over NHWC
//! activations with non-overlapping windows (global average pooling is a
//! window of the whole image), forward and backward.

use super::conv::Stored;
use super::{KernelParams, Rows, launch_1d_with, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// Keep in sync with `PoolParams` in shaders/pool.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PoolParams {
    pub h: u32,
    pub w: u32,
    pub oh: u32,
    pub ow: u32,
    pub kh: u32,
    pub kw: u32,
    pub sh: u32,
    pub sw: u32,
    pub c_full: u32,
    pub c_code: u32,
    pub batch: u32,
    pub batch_code: u32,
    pub mode: u32,
    pub accumulate: u32,
    pub gate: u32,
    pub _pad: u32,
}

impl KernelParams for PoolParams {
    const SHADER: Shader = Shader::Pool;
    const WGSL_NAME: &'static str = "PoolParams";
}

const WG: u32 = 256;

/// What a window computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    Max,
    Avg,
}

/// A pooling's geometry: input h × w, windows kh × kw every sh, sw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
}

impl PoolGeom {
    /// Output size; windows must fit and must not overlap.
    pub fn out(&self) -> Result<(usize, usize)> {
        if self.kh == 0 || self.kw == 0 || self.kh > self.h || self.kw > self.w {
            return Err(Error::InvalidArgument(format!(
                "a {}x{} window does not fit a {}x{} input",
                self.kh, self.kw, self.h, self.w
            )));
        }
        if self.sh < self.kh || self.sw < self.kw {
            return Err(Error::InvalidArgument(format!(
                "pooling windows of {}x{} with strides {}x{} overlap; only non-overlapping windows are supported",
                self.kh, self.kw, self.sh, self.sw
            )));
        }
        Ok(((self.h - self.kh) / self.sh + 1, (self.w - self.kw) / self.sw + 1))
    }
}

fn params(g: PoolGeom, ch: Stored, batch: Rows, mode: PoolMode) -> Result<PoolParams> {
    let (oh, ow) = g.out()?;
    let u = |what: &str, v: usize| u32_of("pool", what, v);
    let (c_code, _) = ch.side.indices()?;
    Ok(PoolParams {
        h: u("h", g.h)?,
        w: u("w", g.w)?,
        oh: u("oh", oh)?,
        ow: u("ow", ow)?,
        kh: u("kh", g.kh)?,
        kw: u("kw", g.kw)?,
        sh: u("sh", g.sh)?,
        sw: u("sw", g.sw)?,
        c_full: u("channels", ch.full)?,
        c_code,
        batch: u("batch", batch.max())?,
        batch_code: batch.code(),
        mode: u32::from(mode == PoolMode::Avg),
        accumulate: 0,
        gate: 0,
        _pad: 0,
    })
}

/// A launch over `pixels` pixels of `channels` values: a thread per pixel
/// (`per_pixel`) or per value (pool.wgsl's PER_PIXEL says why).
fn launch(
    rec: &mut Recorder,
    kernel: Kernel,
    p: &PoolParams,
    bind: &[(u32, &Tensor)],
    (pixels, channels): (usize, usize),
    per_pixel: bool,
) -> Result<()> {
    let threads = if per_pixel { pixels } else { pixels * channels };
    launch_1d_with(rec, kernel, ("pool", WG), &[("PER_PIXEL", f64::from(u8::from(per_pixel)))], p, bind, threads)
}

/// The layout `forward` and `backward` take on `rec`'s device: a thread per
/// pixel on CPU adapters.
fn per_pixel(rec: &Recorder) -> bool {
    rec.gpu().report().device_type == wgpu::DeviceType::Cpu
}

/// y [batch, oh, ow, C] = pooled x [batch, h, w, C].
#[allow(clippy::too_many_arguments)]
pub fn forward(
    rec: &mut Recorder,
    y: &Tensor,
    x: &Tensor,
    dims: &Tensor,
    g: PoolGeom,
    ch: Stored,
    batch: Rows,
    mode: PoolMode,
) -> Result<()> {
    let per_pixel = per_pixel(rec);
    forward_as(rec, (y, x, dims), g, ch, batch, mode, per_pixel)
}

/// `forward` with the thread layout chosen: a thread per pixel or per value.
pub fn forward_as(
    rec: &mut Recorder,
    (y, x, dims): (&Tensor, &Tensor, &Tensor),
    g: PoolGeom,
    ch: Stored,
    batch: Rows,
    mode: PoolMode,
    per_pixel: bool,
) -> Result<()> {
    let p = params(g, ch, batch, mode)?;
    let pixels = batch.max() * (p.oh * p.ow) as usize;
    need("pool", "y", y, pixels * ch.max(), DType::F32)?;
    need("pool", "x", x, batch.max() * g.h * g.w * ch.max(), DType::F32)?;
    need("pool", "dims", dims, 1, DType::U32)?;
    launch(rec, Kernel::PoolForward, &p, &[(1, dims), (2, x), (3, y)], (pixels, ch.max()), per_pixel)
}

/// dx (+)= the gradient of the pooling of x from dy; zero where x is not
/// positive when `gate`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    rec: &mut Recorder,
    dx: &Tensor,
    dy: &Tensor,
    x: &Tensor,
    dims: &Tensor,
    g: PoolGeom,
    ch: Stored,
    batch: Rows,
    mode: PoolMode,
    flags: (bool, bool),
) -> Result<()> {
    let per_pixel = per_pixel(rec);
    backward_as(rec, (dx, dy, x, dims), g, ch, batch, mode, flags, per_pixel)
}

/// `backward` with the thread layout chosen: a thread per pixel or per value.
#[allow(clippy::too_many_arguments)]
pub fn backward_as(
    rec: &mut Recorder,
    (dx, dy, x, dims): (&Tensor, &Tensor, &Tensor, &Tensor),
    g: PoolGeom,
    ch: Stored,
    batch: Rows,
    mode: PoolMode,
    (accumulate, gate): (bool, bool),
    per_pixel: bool,
) -> Result<()> {
    let mut p = params(g, ch, batch, mode)?;
    p.accumulate = accumulate.into();
    p.gate = gate.into();
    let pixels = batch.max() * g.h * g.w;
    let len = pixels * ch.max();
    need("pool", "dx", dx, len, DType::F32)?;
    need("pool", "x", x, len, DType::F32)?;
    need("pool", "dy", dy, batch.max() * (p.oh * p.ow) as usize * ch.max(), DType::F32)?;
    let bind = [(1, dims), (2, x), (3, dx), (4, dy)];
    launch(rec, Kernel::PoolBackward, &p, &bind, (pixels, ch.max()), per_pixel)
}
