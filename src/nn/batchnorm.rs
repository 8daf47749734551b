//! BatchNorm over the channels of NHWC activations: batch statistics and
//! running averages (its state) in training, running averages in
//! evaluation; γ and β trained. On kept channels it normalises the kept
//! channels only, and a removed channel stays exactly 0 after it (and after
//! the ReLU fused into it) — a deliberate difference from the reference
//! code, where BatchNorm runs after the masked convolution and a removed
//! channel still passes its shift β. A sparse step's two mask samples share
//! the launches that write nothing per unit (`ops::batchnorm_pair`).

use serde::{Deserialize, Serialize};

use super::layer::{CpuIo, Ctx, GradOut, Init, Layer, ParamSets, ParamSpec, ScratchSpec, Second, Shape, expect_inputs};
use crate::cpu;
use crate::device::gpu::Gpu;
use crate::device::tensor::Tensor;
use crate::error::{Error, Result};
use crate::ops::Rows;
use crate::ops::batchnorm::{BnConfig, BnTensors, backward, forward};
use crate::ops::batchnorm_pair::{backward_pair, forward_pair};
use crate::ops::conv::Stored;
use crate::ops::gather::Side;

fn eps() -> f32 {
    1e-5
}

fn momentum() -> f32 {
    0.1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm2d {
    #[serde(default = "eps")]
    pub eps: f32,
    #[serde(default = "momentum")]
    pub momentum: f32,
}

impl Default for BatchNorm2d {
    fn default() -> Self {
        BatchNorm2d { eps: eps(), momentum: momentum() }
    }
}

impl BatchNorm2d {
    fn cfg(&self) -> BnConfig {
        BnConfig { eps: self.eps, momentum: self.momentum, ..BnConfig::default() }
    }

    /// The kept channels' (γ, β, running mean, running variance) of a layer
    /// of `c` channels, and the channel indices, for the references.
    fn kept_values(&self, io: &CpuIo, kept: &[usize]) -> [Vec<f64>; 4] {
        let c = io.in_shapes[0].c;
        let run = io.state[0];
        [
            kept.iter().map(|&j| io.params[0][j]).collect(),
            kept.iter().map(|&j| io.params[1][j]).collect(),
            kept.iter().map(|&j| run[j]).collect(),
            kept.iter().map(|&j| run[c + j]).collect(),
        ]
    }
}

impl BatchNorm2d {
    /// The tensors of a pass, its rows per sample and its stored channels.
    fn tensors<'a>(&self, cx: &Ctx<'a, '_>) -> (BnTensors<'a>, Rows, Stored) {
        let x = cx.inputs[0];
        let kept = cx.kept_or_unused();
        let t = BnTensors {
            x: x.t,
            dims: kept.dims,
            maps: kept.maps,
            stats: &cx.scratch[0],
            running: &cx.state[0],
            gamma: &cx.params[0],
            beta: &cx.params[1],
        };
        (t, cx.rows.per_sample(x.shape.plane()), Stored { side: x.side, full: x.shape.c })
    }
}

/// A backward pass's input gradient and output gradient.
fn grads<'a>(cx: &Ctx<'a, '_>) -> Result<(GradOut<'a>, &'a Tensor)> {
    let dy = cx.d_output.ok_or_else(|| Error::InvalidArgument("batchnorm2d backward without d_output".into()))?;
    let dx = cx.d_inputs[0].ok_or_else(|| Error::InvalidArgument("batchnorm2d on the graph's input".into()))?;
    Ok((dx, dy))
}

impl Layer for BatchNorm2d {
    fn kind(&self) -> &'static str {
        "batchnorm2d"
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        expect_inputs("batchnorm2d", inputs, 1)?;
        if !(self.eps > 0.0 && self.eps.is_finite() && (0.0..=1.0).contains(&self.momentum)) {
            return Err(Error::InvalidArgument(format!(
                "batchnorm2d: eps {} and momentum {} are not valid",
                self.eps, self.momentum
            )));
        }
        Ok(inputs[0])
    }

    fn params(&self, inputs: &[Shape]) -> Vec<ParamSpec> {
        let c = inputs[0].c;
        vec![
            ParamSpec { name: "weight", shape: vec![c], init: Init::Ones },
            ParamSpec { name: "bias", shape: vec![c], init: Init::Zeros },
        ]
    }

    fn param_sets(&self, inputs: &[Shape]) -> Vec<ParamSets> {
        vec![ParamSets::per_output(inputs[0].c); 2]
    }

    fn state(&self, inputs: &[Shape]) -> Vec<ParamSpec> {
        vec![ParamSpec { name: "running", shape: vec![2, inputs[0].c], init: Init::Running }]
    }

    fn scratch(
        &self,
        gpu: &Gpu,
        inputs: &[Shape],
        (in_sides, _): (&[Side], Side),
        _out: Shape,
        cap: usize,
    ) -> Vec<ScratchSpec> {
        // Mean, 1/σ, Σdy, Σdy·x̂ per stored channel, from forward to
        // backward, and the partial sums of split reductions.
        let stored = in_sides[0].max_len(inputs[0].c);
        let splits = crate::ops::batchnorm::splits(gpu, cap * inputs[0].plane(), stored, self.cfg());
        vec![ScratchSpec::kept("statistics", (4 + 2 * splits) * stored)]
    }

    fn fuses_relu(&self) -> bool {
        true
    }

    fn gates_input_grads(&self) -> bool {
        true
    }

    fn forward(&self, cx: &mut Ctx) -> Result<()> {
        let (t, rows, stored) = self.tensors(cx);
        forward(cx.rec, cx.output.t, t, rows, stored, self.cfg(), cx.train, cx.relu)
    }

    fn backward(&self, cx: &mut Ctx) -> Result<()> {
        let (t, rows, stored) = self.tensors(cx);
        let (dx, dy) = grads(cx)?;
        let flags = (dx.accumulate, dx.gate);
        backward(cx.rec, dx.t, dy, (&cx.grads[0], &cx.grads[1]), t, rows, stored, self.cfg(), flags)
    }

    /// Both mask samples' training forwards, the launches that write
    /// nothing per unit once for both (`ops::batchnorm_pair`).
    fn forward_pair<'a>(&self, cx: &mut Ctx<'a, '_>, second: &mut Second<'a>) -> Result<()> {
        if !cx.train {
            return cx.each_sample(second, |c| self.forward(c));
        }
        let ((t0, rows, s0), (t1, _, s1)) = cx.both(second, |c| Ok(self.tensors(c)))?;
        let (y0, y1) = cx.both(second, |c| Ok(c.output.t))?;
        forward_pair(cx.rec, [y0, y1], [t0, t1], rows, [s0, s1], self.cfg(), cx.relu)
    }

    /// Both samples' backwards likewise, sample 0's part of dγ and dβ first.
    fn backward_pair<'a>(&self, cx: &mut Ctx<'a, '_>, second: &mut Second<'a>) -> Result<()> {
        let ((t0, rows, s0), (t1, _, s1)) = cx.both(second, |c| Ok(self.tensors(c)))?;
        let ((dx0, dy0), (dx1, dy1)) = cx.both(second, grads)?;
        if (dx0.accumulate, dx0.gate) != (dx1.accumulate, dx1.gate) {
            return cx.each_sample(second, |c| self.backward(c));
        }
        let (dg, flags) = ((&cx.grads[0], &cx.grads[1]), (dx0.accumulate, dx0.gate));
        let (ts, chs) = ([t0, t1], [s0, s1]);
        backward_pair(cx.rec, ([dx0.t, dx1.t], [dy0, dy1]), dg, ts, rows, chs, self.cfg(), flags)
    }

    fn cpu_forward(&self, io: &CpuIo, x: &[&[f64]]) -> Vec<f64> {
        let s = io.in_shapes[0];
        let all: Vec<usize> = (0..s.c).collect();
        let [g, b, rm, rv] = self.kept_values(io, &all);
        let rows = io.batch * s.plane();
        if io.train {
            cpu::batchnorm::forward_train(x[0], rows, s.c, &g, &b, self.eps as f64).0
        } else {
            cpu::batchnorm::forward_eval(x[0], rows, s.c, &g, &b, &rm, &rv, self.eps as f64)
        }
    }

    /// Running statistics of the channels `kept` keeps (all when None),
    /// from the batch statistics of x.
    fn cpu_state_update(&self, io: &CpuIo, x: &[&[f64]], kept: Option<&[u32]>) -> Vec<Vec<f64>> {
        let s = io.in_shapes[0];
        let rows = io.batch * s.plane();
        let ones = vec![1.0; s.c];
        let (_, mean, var) = cpu::batchnorm::forward_train(x[0], rows, s.c, &ones, &vec![0.0; s.c], self.eps as f64);
        let mut run = io.state[0].to_vec();
        let (mut rm, mut rv) = (run[..s.c].to_vec(), run[s.c..].to_vec());
        cpu::batchnorm::update_running(&mut rm, &mut rv, &mean, &var, rows, self.momentum as f64);
        for j in 0..s.c {
            if kept.is_none_or(|k| k[j] != 0) {
                run[j] = rm[j];
                run[s.c + j] = rv[j];
            }
        }
        vec![run]
    }

    fn cpu_backward(&self, io: &CpuIo, x: &[&[f64]], _y: &[f64], dy: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let s = io.in_shapes[0];
        let (dx, dg, db) = cpu::batchnorm::backward(x[0], dy, io.batch * s.plane(), s.c, io.params[0], self.eps as f64);
        (vec![dx], vec![dg, db])
    }

    fn compacted(&self, _kept_in: &[Vec<usize>], _kept_out: &[usize]) -> Box<dyn Layer> {
        Box::new(self.clone())
    }

    fn compact_params(
        &self,
        inputs: &[Shape],
        _kept_in: &[Vec<usize>],
        kept_out: &[usize],
        params: &[Vec<f32>],
    ) -> Vec<Vec<f32>> {
        let c = inputs[0].c;
        let pick = |v: &[f32], off: usize| kept_out.iter().map(|&j| v[off + j]).collect::<Vec<f32>>();
        let mut running = pick(&params[2], 0);
        running.extend(pick(&params[2], c));
        vec![pick(&params[0], 0), pick(&params[1], 0), running]
    }
}
