//! The residual sum of two activations of the same shape (a ResNet block's
//! output plus its shortcut). Each input keeps its own layer's channels, so
//! the sum keeps their union: a channel either branch keeps (`nn::graph`
//! makes the union a channel set of its own, compacted with the others).
//! A following ReLU fuses into it.

use serde::{Deserialize, Serialize};

use super::layer::{Channels, CpuIo, Ctx, Layer, Shape, expect_inputs};
use crate::error::{Error, Result};
use crate::ops::add::{backward, forward};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Add {}

impl Layer for Add {
    fn kind(&self) -> &'static str {
        "add"
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({})
    }

    fn arity(&self) -> usize {
        2
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        expect_inputs("add", inputs, 2)?;
        if inputs[0] != inputs[1] {
            return Err(Error::InvalidArgument(format!("add: the inputs are {} and {}", inputs[0], inputs[1])));
        }
        Ok(inputs[0])
    }

    fn channels(&self) -> Channels {
        Channels::Union
    }

    fn fuses_relu(&self) -> bool {
        true
    }

    fn gates_input_grads(&self) -> bool {
        true
    }

    fn forward(&self, cx: &mut Ctx) -> Result<()> {
        let (a, b) = (cx.inputs[0], cx.inputs[1]);
        let rows = cx.rows.per_sample(a.shape.plane());
        let sides = [cx.output.side, a.side, b.side];
        forward(cx.rec, cx.output.t, (a.t, b.t), cx.kept_or_unused(), sides, rows, a.shape.c, cx.relu)
    }

    fn backward(&self, cx: &mut Ctx) -> Result<()> {
        let dy = cx.d_output.ok_or_else(|| Error::InvalidArgument("add backward without d_output".into()))?;
        let kept = cx.kept_or_unused();
        for i in 0..2 {
            let x = cx.inputs[i];
            let Some(dx) = cx.d_inputs[i] else { continue };
            let rows = cx.rows.per_sample(x.shape.plane());
            let flags = (dx.accumulate, dx.gate);
            backward(cx.rec, dx.t, dy, x.t, kept, (cx.output.side, x.side), rows, x.shape.c, flags)?;
        }
        Ok(())
    }

    fn cpu_forward(&self, _io: &CpuIo, x: &[&[f64]]) -> Vec<f64> {
        x[0].iter().zip(x[1]).map(|(a, b)| a + b).collect()
    }

    fn cpu_backward(&self, _io: &CpuIo, _x: &[&[f64]], _y: &[f64], dy: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        (vec![dy.to_vec(), dy.to_vec()], Vec::new())
    }

    fn compacted(&self, _kept_out: usize) -> Box<dyn Layer> {
        Box::new(Add {})
    }
}
