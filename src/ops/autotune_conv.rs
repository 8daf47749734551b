//! How convolutions run on an adapter: through im2col's columns (the
//! matmul variant multiplies them; col2im takes the input gradient back),
//! or on implicit operands that read X and dY in place (no columns, and a
//! sparse step's convolutions launch as pairs). Which is faster depends on
//! the adapter and the variant: `regtile` has implicit kernels of its own
//! (the CPU adapters' choice), `shared` and `wide` read implicit operands
//! through their loaders. On GPUs that autotune, `autotune::ensure` times a
//! convolution's three products both ways once (`probe`, here) and
//! `Gpu::implicit_convs` follows the faster, cached per adapter with the
//! matmul variant; `SPARSETRAIN_IMPLICIT=on|off` overrides it.

use super::Rows;
use super::conv::{ConvGeom, Stored, col2im, im2col};
use super::gather::Side;
use super::matmul::{Dims, Implicit, Layout, Matmul};
use super::timing::{Runs, median, time_recorded};
use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::device::tensor::{DType, Tensor};
use crate::error::Result;

/// Seconds per convolution step (forward, weight-gradient and
/// input-gradient products) summed over the probe's shapes, each way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvTiming {
    pub columns_s: f64,
    pub implicit_s: f64,
}

/// How much slower implicit operands may time and still be chosen: they
/// also pair a sparse step's convolutions (half the launches) and spare
/// the columns' memory, which the probe does not see.
pub const IMPLICIT_MARGIN: f64 = 1.1;

impl ConvTiming {
    pub fn prefers_implicit(&self) -> bool {
        self.implicit_s <= IMPLICIT_MARGIN * self.columns_s
    }
}

/// The probe's 3×3 convolutions (height = width, channels in = out) and
/// batch: a CIFAR ResNet's three stages on GPUs, small ones on CPU adapters.
fn shapes(ty: wgpu::DeviceType) -> (&'static [(usize, usize)], usize) {
    if ty == wgpu::DeviceType::Cpu { (&[(6, 4), (4, 8)], 2) } else { (&[(32, 16), (16, 32), (8, 64)], 64) }
}

/// One convolution's operands, holding seeded random values.
struct Operands {
    g: ConvGeom,
    c: usize,
    batch: usize,
    x: Tensor,
    w: Tensor,
    dy: Tensor,
    y: Tensor,
    dw: Tensor,
    dx: Tensor,
    cols: Tensor,
    dims: Tensor,
}

impl Operands {
    fn new(gpu: &Gpu, (hw, c): (usize, usize), batch: usize) -> Result<Operands> {
        let g = ConvGeom { h: hw, w: hw, kh: 3, kw: 3, stride: 1, pad: 1 };
        let (oh, ow) = g.out()?;
        let (rows, k) = (batch * oh * ow, 9 * c);
        let t = |name: &str, n: usize, seed: u64| -> Result<Tensor> {
            // A cheap seeded sequence: the values only need to be ordinary.
            let v: Vec<f32> =
                (0..n).map(|i| (((i as u64 * 2654435761 + seed) % 2001) as f32 - 1000.0) / 1000.0).collect();
            Tensor::from_f32(gpu, name, &[n], &v)
        };
        Ok(Operands {
            g,
            c,
            batch,
            x: t("probe x", batch * hw * hw * c, 1)?,
            w: t("probe w", c * k, 2)?,
            dy: t("probe dy", rows * c, 3)?,
            y: Tensor::zeros(gpu, "probe y", &[rows * c], DType::F32)?,
            dw: Tensor::zeros(gpu, "probe dw", &[c * k], DType::F32)?,
            dx: Tensor::zeros(gpu, "probe dx", &[batch * hw * hw * c], DType::F32)?,
            cols: Tensor::zeros(gpu, "probe columns", &[rows * k], DType::F32)?,
            dims: Tensor::zeros(gpu, "probe dims", &[1], DType::U32)?,
        })
    }

    fn dims(&self) -> Result<(Dims, Dims, Dims)> {
        let (oh, ow) = self.g.out()?;
        let (rows, k, c) = (self.batch * oh * ow, 9 * self.c, self.c);
        let input_rows = self.batch * self.g.h * self.g.w;
        Ok((Dims { m: rows, n: c, k }, Dims { m: c, n: k, k: rows }, Dims { m: input_rows, n: c, k }))
    }

    /// The three products through columns, as `nn::Conv2d` records them.
    fn columns(&self, rec: &mut Recorder) -> Result<()> {
        let (fwd, wgrad, _) = self.dims()?;
        let (stored, batch) = (Stored { side: Side::Full, full: self.c }, Rows::Fixed(self.batch));
        im2col(rec, &self.cols, &self.x, &self.dims, self.g, stored, batch)?;
        Matmul::new(Layout::NT).record(rec, &self.y, &self.cols, &self.w, fwd)?;
        Matmul::new(Layout::TN).record(rec, &self.dw, &self.dy, &self.cols, wgrad)?;
        // dcols = dY·W into the spent columns, then col2im.
        let dcols = Dims { m: fwd.m, n: fwd.k, k: fwd.n };
        Matmul::new(Layout::NN).record(rec, &self.cols, &self.dy, &self.w, dcols)?;
        col2im(rec, &self.dx, &self.cols, None, &self.dims, self.g, stored, batch, false)
    }

    /// The three products on implicit operands.
    fn implicit(&self, rec: &mut Recorder) -> Result<()> {
        let (fwd, wgrad, dx) = self.dims()?;
        let g = self.g;
        Matmul::new(Layout::NT).implicit(Implicit::A(g)).record(rec, &self.y, &self.x, &self.w, fwd)?;
        Matmul::new(Layout::TN).implicit(Implicit::B(g)).record(rec, &self.dw, &self.dy, &self.x, wgrad)?;
        Matmul::new(Layout::NN).implicit(Implicit::Dx(g)).record(rec, &self.dx, &self.dy, &self.w, dx)
    }
}

/// Times a convolution's three products through columns and on implicit
/// operands, with the device's matmul variant, over `shapes`' convolutions.
pub fn probe(gpu: &Gpu, runs: Runs) -> Result<ConvTiming> {
    let (shapes, batch) = shapes(gpu.report().device_type);
    let mut t = ConvTiming { columns_s: 0.0, implicit_s: 0.0 };
    for &shape in shapes {
        let ops = Operands::new(gpu, shape, batch)?;
        t.columns_s += median(&time_recorded(gpu, runs, |rec| ops.columns(rec))?);
        t.implicit_s += median(&time_recorded(gpu, runs, |rec| ops.implicit(rec))?);
    }
    Ok(t)
}

/// The largest difference between the two ways' results (Y, dW, dX) on
/// the probe's first shape, relative to the largest magnitude: that both
/// time the same products.
pub fn paths_disagree(gpu: &Gpu) -> Result<f64> {
    let (shapes, batch) = shapes(gpu.report().device_type);
    let ops = Operands::new(gpu, shapes[0], batch)?;
    let mut results = Vec::new();
    for implicit in [false, true] {
        let mut rec = Recorder::new(gpu);
        if implicit {
            ops.implicit(&mut rec)?
        } else {
            ops.columns(&mut rec)?
        }
        rec.finish()?;
        let mut all = Vec::new();
        for t in [&ops.y, &ops.dw, &ops.dx] {
            all.extend(t.download_f32(gpu)?);
        }
        results.push(all);
    }
    let scale = results[0].iter().fold(0.0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
    let diff = results[0].iter().zip(&results[1]).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    Ok(f64::from(diff / scale))
}

#[cfg(test)]
mod tests {
    use super::ConvTiming;

    #[test]
    fn implicit_operands_win_within_the_margin() {
        let t = |columns_s, implicit_s| ConvTiming { columns_s, implicit_s }.prefers_implicit();
        assert!(t(1.0, 0.5));
        assert!(t(1.0, 1.0));
        assert!(t(1.0, 1.09));
        assert!(!t(1.0, 1.2));
        assert!(!t(0.1, 1.0));
    }
}
