//! Pooling over NHWC activations: max or average over non-overlapping
//! windows, and global average pooling (a window of the whole image, before
//! a classifier). Channel c of the output is channel c of the input, so the
//! kept channels pass through.

use serde::{Deserialize, Serialize};

use super::layer::{CpuIo, Ctx, Layer, Shape, expect_inputs};
use crate::cpu;
use crate::error::{Error, Result};
use crate::ops::conv::Stored;
use crate::ops::pool::{PoolGeom, PoolMode, backward, forward};

/// Max or average pooling with square windows of `kernel`, every `stride`
/// (at least the kernel: windows do not overlap).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool2d {
    pub mode: PoolMode,
    pub kernel: usize,
    pub stride: usize,
}

/// Average over every pixel of each channel: [h, w, c] to [1, 1, c].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GlobalAvgPool {}

fn window(x: Shape, k: (usize, usize), s: (usize, usize)) -> PoolGeom {
    PoolGeom { h: x.h, w: x.w, kh: k.0, kw: k.1, sh: s.0, sw: s.1 }
}

fn pool_forward(cx: &mut Ctx, g: PoolGeom, mode: PoolMode) -> Result<()> {
    let x = cx.inputs[0];
    let dims = cx.kept_or_unused().dims;
    forward(cx.rec, cx.output.t, x.t, dims, g, Stored { side: x.side, full: x.shape.c }, cx.rows, mode)
}

fn pool_backward(cx: &mut Ctx, g: PoolGeom, mode: PoolMode) -> Result<()> {
    let x = cx.inputs[0];
    let dims = cx.kept_or_unused().dims;
    let dy = cx.d_output.ok_or_else(|| Error::InvalidArgument("pooling backward without d_output".into()))?;
    let Some(dx) = cx.d_inputs[0] else { return Ok(()) };
    let stored = Stored { side: x.side, full: x.shape.c };
    backward(cx.rec, dx.t, dy, x.t, dims, g, stored, cx.rows, mode, (dx.accumulate, dx.gate))
}

impl Pool2d {
    fn geom(&self, x: Shape) -> PoolGeom {
        window(x, (self.kernel, self.kernel), (self.stride, self.stride))
    }
}

impl Layer for Pool2d {
    fn kind(&self) -> &'static str {
        "pool2d"
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        expect_inputs("pool2d", inputs, 1)?;
        let (h, w) = self.geom(inputs[0]).out()?;
        Ok(Shape { c: inputs[0].c, h, w })
    }

    fn gates_input_grads(&self) -> bool {
        true
    }

    fn forward(&self, cx: &mut Ctx) -> Result<()> {
        pool_forward(cx, self.geom(cx.inputs[0].shape), self.mode)
    }

    fn backward(&self, cx: &mut Ctx) -> Result<()> {
        pool_backward(cx, self.geom(cx.inputs[0].shape), self.mode)
    }

    fn cpu_forward(&self, io: &CpuIo, x: &[&[f64]]) -> Vec<f64> {
        let s = io.in_shapes[0];
        cpu::pool::forward(x[0], io.batch, s.c, self.geom(s), self.mode)
    }

    fn cpu_backward(&self, io: &CpuIo, x: &[&[f64]], _y: &[f64], dy: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let s = io.in_shapes[0];
        (vec![cpu::pool::backward(x[0], dy, io.batch, s.c, self.geom(s), self.mode)], Vec::new())
    }

    fn compacted(&self, _kept_in: &[Vec<usize>], _kept_out: &[usize]) -> Box<dyn Layer> {
        Box::new(self.clone())
    }
}

impl Layer for GlobalAvgPool {
    fn kind(&self) -> &'static str {
        "global_avg_pool"
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({})
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        expect_inputs("global_avg_pool", inputs, 1)?;
        Ok(Shape::flat(inputs[0].c))
    }

    fn gates_input_grads(&self) -> bool {
        true
    }

    fn forward(&self, cx: &mut Ctx) -> Result<()> {
        let s = cx.inputs[0].shape;
        pool_forward(cx, window(s, (s.h, s.w), (s.h, s.w)), PoolMode::Avg)
    }

    fn backward(&self, cx: &mut Ctx) -> Result<()> {
        let s = cx.inputs[0].shape;
        pool_backward(cx, window(s, (s.h, s.w), (s.h, s.w)), PoolMode::Avg)
    }

    fn cpu_forward(&self, io: &CpuIo, x: &[&[f64]]) -> Vec<f64> {
        let s = io.in_shapes[0];
        cpu::pool::forward(x[0], io.batch, s.c, window(s, (s.h, s.w), (s.h, s.w)), PoolMode::Avg)
    }

    fn cpu_backward(&self, io: &CpuIo, x: &[&[f64]], _y: &[f64], dy: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let s = io.in_shapes[0];
        (
            vec![cpu::pool::backward(x[0], dy, io.batch, s.c, window(s, (s.h, s.w), (s.h, s.w)), PoolMode::Avg)],
            Vec::new(),
        )
    }

    fn compacted(&self, _kept_in: &[Vec<usize>], _kept_out: &[usize]) -> Box<dyn Layer> {
        Box::new(self.clone())
    }
}
