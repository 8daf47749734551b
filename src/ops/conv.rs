//! Launcher of shaders/conv.wgsl: im2col (a convolution's input as the rows
//! of a matrix product) and col2im (its input gradient back from them), over
//! NHWC activations whose stored channels may be a kept set.

use super::gather::Side;
use super::{KernelParams, Rows, launch_1d, launch_1d_with, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// Keep in sync with `ConvParams` in shaders/conv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvParams {
    pub h: u32,
    pub w: u32,
    pub oh: u32,
    pub ow: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad: u32,
    pub c_full: u32,
    pub c_code: u32,
    pub batch: u32,
    pub batch_code: u32,
    pub accumulate: u32,
    pub gate: u32,
    pub _pad: [u32; 2],
}

impl KernelParams for ConvParams {
    const SHADER: Shader = Shader::Conv;
    const WGSL_NAME: &'static str = "ConvParams";
}

const WG: u32 = 256;

/// Most kernel positions (kh · kw) of a convolution: `MAX_TAPS` in conv.wgsl.
pub const MAX_TAPS: usize = 49;

/// A convolution's geometry: input h × w, a kh × kw kernel, stride, zero
/// padding on every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    /// Output height and width, or an error if the kernel does not fit.
    pub fn out(&self) -> Result<(usize, usize)> {
        let (ph, pw) = (self.h + 2 * self.pad, self.w + 2 * self.pad);
        if self.kh * self.kw > MAX_TAPS {
            return Err(Error::InvalidArgument(format!(
                "a {}x{} kernel: convolutions take at most {MAX_TAPS} kernel positions (7x7)",
                self.kh, self.kw
            )));
        }
        if self.stride == 0 || self.kh == 0 || self.kw == 0 || self.kh > ph || self.kw > pw {
            return Err(Error::InvalidArgument(format!(
                "a {}x{} kernel with stride {} and padding {} does not fit a {}x{} input",
                self.kh, self.kw, self.stride, self.pad, self.h, self.w
            )));
        }
        Ok(((ph - self.kh) / self.stride + 1, (pw - self.kw) / self.stride + 1))
    }
}

/// The stored channels of an activation: all `full`, or a kept set's count
/// (padded to 4) per `side`.
#[derive(Clone, Copy, Debug)]
pub struct Stored {
    pub side: Side,
    pub full: usize,
}

impl Stored {
    pub fn max(&self) -> usize {
        self.side.max_len(self.full)
    }
}

fn params(g: ConvGeom, ch: Stored, batch: Rows) -> Result<ConvParams> {
    const OP: &str = "conv";
    let (oh, ow) = g.out()?;
    let u = |what: &str, v: usize| u32_of(OP, what, v);
    let (c_code, _) = ch.side.indices()?;
    Ok(ConvParams {
        h: u("h", g.h)?,
        w: u("w", g.w)?,
        oh: u("oh", oh)?,
        ow: u("ow", ow)?,
        kh: u("kh", g.kh)?,
        kw: u("kw", g.kw)?,
        stride: u("stride", g.stride)?,
        pad: u("pad", g.pad)?,
        c_full: u("channels", ch.full)?,
        c_code,
        batch: u("batch", batch.max())?,
        batch_code: batch.code(),
        accumulate: 0,
        gate: 0,
        _pad: [0; 2],
    })
}

fn launch(rec: &mut Recorder, kernel: Kernel, p: &ConvParams, bind: &[(u32, &Tensor)], threads: usize) -> Result<()> {
    launch_1d(rec, kernel, ("conv", WG), p, bind, threads)
}

/// cols [batch · oh · ow, kh · kw · C] from x [batch, h, w, C] (C the
/// stored channels; `dims` holds a kept set's count). A thread per (row,
/// kernel position) on GPUs, per row on CPU adapters (conv.wgsl says why).
#[allow(clippy::too_many_arguments)]
pub fn im2col(
    rec: &mut Recorder,
    cols: &Tensor,
    x: &Tensor,
    dims: &Tensor,
    g: ConvGeom,
    ch: Stored,
    batch: Rows,
) -> Result<()> {
    let per_row = rec.gpu().report().device_type == wgpu::DeviceType::Cpu;
    im2col_as(rec, cols, x, dims, g, ch, batch, per_row)
}

/// `im2col` with the thread layout chosen: one per row (`per_row`) or one
/// per (row, kernel position).
#[allow(clippy::too_many_arguments)]
pub fn im2col_as(
    rec: &mut Recorder,
    cols: &Tensor,
    x: &Tensor,
    dims: &Tensor,
    g: ConvGeom,
    ch: Stored,
    batch: Rows,
    per_row: bool,
) -> Result<()> {
    let p = params(g, ch, batch)?;
    let rows = batch.max() * (p.oh * p.ow) as usize;
    let row_len = g.kh * g.kw * ch.max();
    need("im2col", "cols", cols, rows * row_len, DType::F32)?;
    need("im2col", "x", x, batch.max() * g.h * g.w * ch.max(), DType::F32)?;
    need("im2col", "dims", dims, 1, DType::U32)?;
    let threads = if per_row { rows } else { rows * g.kh * g.kw };
    let constants = [("PER_ROW", f64::from(u8::from(per_row)))];
    launch_1d_with(rec, Kernel::Im2col, ("im2col", WG), &constants, &p, &[(1, dims), (2, x), (3, cols)], threads)
}

/// dx [batch, h, w, C] (+)= col2im(dcols); zero where `gate` (x) is not
/// positive.
#[allow(clippy::too_many_arguments)]
pub fn col2im(
    rec: &mut Recorder,
    dx: &Tensor,
    dcols: &Tensor,
    gate: Option<&Tensor>,
    dims: &Tensor,
    g: ConvGeom,
    ch: Stored,
    batch: Rows,
    accumulate: bool,
) -> Result<()> {
    let mut p = params(g, ch, batch)?;
    p.accumulate = accumulate.into();
    p.gate = gate.is_some().into();
    let len = batch.max() * g.h * g.w * ch.max();
    need("col2im", "dx", dx, len, DType::F32)?;
    need("col2im", "dcols", dcols, batch.max() * (p.oh * p.ow) as usize * g.kh * g.kw * ch.max(), DType::F32)?;
    need("col2im", "dims", dims, 1, DType::U32)?;
    // Unused, the gate is bound to a dummy: dx itself would be bound twice.
    let one = Tensor::one(rec.gpu());
    let gate = match gate {
        Some(g) => {
            need("col2im", "gate", g, len, DType::F32)?;
            g
        }
        None => &one,
    };
    // A thread per input pixel.
    launch(rec, Kernel::Col2im, &p, &[(1, dims), (2, dcols), (3, dx), (4, gate)], batch.max() * g.h * g.w)
}
