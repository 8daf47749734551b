//! ReLU, y = max(x, 0), in place: its output is its input's storage. The
//! graph fuses it into the layer before it where that layer can apply it
//! at its store (`Layer::fuses_relu`), and its backward into the layers
//! after it, which gate the gradients they write (`GradOut::gate`); only
//! what cannot be fused records the kernels of relu.wgsl.

use serde::{Deserialize, Serialize};

use super::layer::{CpuIo, Ctx, Layer, Shape, expect_inputs};
use crate::cpu;
use crate::error::{Error, Result};
use crate::ops::relu;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Relu {}

impl Layer for Relu {
    fn kind(&self) -> &'static str {
        "relu"
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({})
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        expect_inputs("relu", inputs, 1)?;
        Ok(inputs[0])
    }

    fn is_relu(&self) -> bool {
        true
    }

    /// Called only when no producer fused it: max(·, 0) in place over the
    /// stored channels (compacted ones are zero-padded, and stay zero).
    fn forward(&self, cx: &mut Ctx) -> Result<()> {
        let y = cx.output;
        let cols = y.side.max_len(y.shape.c) * y.shape.plane();
        relu::relu_forward(cx.rec, y.t, cx.rows, cols)
    }

    /// Called only when the layers after it did not gate the gradient.
    fn backward(&self, cx: &mut Ctx) -> Result<()> {
        let y = cx.output;
        let dy = cx.d_output.ok_or_else(|| Error::InvalidArgument("relu backward without d_output".into()))?;
        let cols = y.side.max_len(y.shape.c) * y.shape.plane();
        relu::relu_backward(cx.rec, dy, y.t, cx.rows, cols)
    }

    fn cpu_forward(&self, _io: &CpuIo, x: &[&[f64]]) -> Vec<f64> {
        let mut y = x[0].to_vec();
        cpu::relu::relu_forward(&mut y);
        y
    }

    fn cpu_backward(&self, _io: &CpuIo, _x: &[&[f64]], y: &[f64], dy: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let mut dx = dy.to_vec();
        cpu::relu::relu_backward(&mut dx, y);
        (vec![dx], Vec::new())
    }

    fn compacted(&self, _kept_in: &[Vec<usize>], _kept_out: &[usize]) -> Box<dyn Layer> {
        Box::new(Relu {})
    }
}
