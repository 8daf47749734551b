//! Linear (fully connected) layer: y = x·Wᵀ + b, W stored [out, in] so that
//! a unit (output neuron) is a row. Its prunable units are its outputs.
//!
//! Dense, it runs on W directly; on kept units it first gathers the kept
//! rows and columns into compact, zero-padded operands (gather.wgsl) and
//! runs the matmuls on them with sizes read on the device. Backprop uses
//! the three matmul layouts:
//!   forward      Y  = X·Wᵀ        (NT, + bias, + ReLU when fused)
//!   input grad   dX = dY·W        (NN, gated when X is a ReLU output)
//!   weight grad  dW += dYᵀ·X      (TN, scattered into the full-size gradient;
//!                                  dW = dYᵀ·X on a dense pass that assigns)

use serde::{Deserialize, Serialize};

use super::layer::{
    Act, Channels, CpuIo, Ctx, Init, Layer, ParamSets, ParamSpec, ScratchSpec, Second, Shape, expect_inputs,
};
use crate::cpu;
use crate::device::gpu::Gpu;
use crate::device::tensor::Tensor;
use crate::error::{Error, Result};
use crate::ops::Rows;
use crate::ops::gather::{Side, bias_grad_of, bias_partials_len, gather_weight_blocks, gather_weight_blocks_pair};
use crate::ops::matmul::{Dims, Layout, Matmul, Scatter, Size};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    /// Output features.
    pub out: usize,
    /// Whether its outputs are prunable units (hidden layers: yes; the
    /// classifier: no).
    #[serde(default)]
    pub prunable: bool,
}

impl Linear {
    pub fn new(out: usize, prunable: bool) -> Linear {
        Linear { out, prunable }
    }
}

/// A product ready to record: the matmul, its (C, A, B) and static sizes.
type Product<'a> = (Matmul<'a>, (&'a Tensor, &'a Tensor, &'a Tensor), Dims);

impl Linear {
    /// Whether a side of the weight is a kept set (its products read the
    /// compact copy `gather` writes).
    fn compacts(&self, cx: &Ctx) -> bool {
        columns(&cx.inputs[0]).0 != Side::Full || cx.output.side != Side::Full
    }

    /// The weight's (rows, columns) sides, its column blocks (pixels of a
    /// flattened input) and the input's channels.
    fn gather_shape(&self, cx: &Ctx) -> ((Side, Side), usize, usize) {
        let (cols, plane, c) = columns(&cx.inputs[0]);
        ((cx.output.side, cols), plane, c)
    }

    /// Both samples' `gather` without lazy SGD: one launch where it can
    /// (`gather_weight_blocks_pair`).
    fn gather_both<'a>(&self, cx: &mut Ctx<'a, '_>, second: &mut Second<'a>) -> Result<()> {
        let k0 = cx.kept("linear")?;
        if !second.kept.is_some_and(|k| k.dims.same_as(k0.dims) && k.maps.same_as(k0.maps)) {
            return cx.each_sample(second, |c| self.gather(c));
        }
        let ((s0, plane, c), (s1, _, _)) = cx.both(second, |c| Ok(self.gather_shape(c)))?;
        let (wc, bc) = ([&cx.scratch[0], &second.scratch[0]], [&cx.scratch[1], &second.scratch[1]]);
        let (w, b) = (&cx.params[0], &cx.params[1]);
        gather_weight_blocks_pair(cx.rec, (wc, w), Some((bc, b)), k0, [s0, s1], (self.out, c), plane)
    }

    /// The kept rows and columns of the weight and bias into the compact
    /// scratch (where a side is compacted), brought up to date under lazy
    /// SGD.
    fn gather(&self, cx: &mut Ctx) -> Result<()> {
        if !self.compacts(cx) {
            return Ok(());
        }
        let ((rows, cols), plane, c) = self.gather_shape(cx);
        let kept = cx.kept("linear")?;
        let (wc, bc) = (&cx.scratch[0], &cx.scratch[1]);
        match cx.lazy {
            Some(lz) => lz.gather(cx.rec, 0, Some(1), wc, bc),
            None => {
                let (w, b) = (&cx.params[0], &cx.params[1]);
                gather_weight_blocks(cx.rec, (wc, w), Some((bc, b)), kept, (rows, cols), (self.out, c), plane)
            }
        }
    }

    /// The forward product Y = X·Wᵀ + b (after `gather`), ReLU fused where
    /// the graph fused it.
    fn forward_product<'a>(&self, cx: &Ctx<'a, '_>) -> Result<Product<'a>> {
        let x = cx.inputs[0];
        let ((cols, plane, c), rows) = (columns(&x), cx.output.side);
        let (i, o) = (fan_in(&[x.shape]), self.out);
        let cap = cx.rows.max();
        let (w, b): (&'a Tensor, &'a Tensor) = (&cx.params[0], &cx.params[1]);
        if cols == Side::Full && rows == Side::Full {
            let mut mm = Matmul::new(Layout::NT).bias(b).batch_m();
            if cx.relu {
                mm = mm.relu();
            }
            return Ok((mm, (cx.output.t, x.t, w), Dims { m: cap, n: o, k: i }));
        }
        let kept = cx.kept("linear")?;
        let (wc, bc): (&'a Tensor, &'a Tensor) = (&cx.scratch[0], &cx.scratch[1]);
        let mut mm = Matmul::new(Layout::NT).bias(bc).sizes(
            Some(kept.dims),
            Size::Batch { per: 1 },
            size(rows, 1),
            size(cols, plane),
        );
        if cx.relu {
            mm = mm.relu();
        }
        Ok((mm, (cx.output.t, x.t, wc), Dims { m: cap, n: rows.max_len(o), k: cols.max_len(c) * plane }))
    }

    /// The weight and bias gradients, added into the full-size gradients
    /// (two mask samples add up; the optimizer clears them after each step),
    /// or assigned on a dense pass with `cx.assign_grads`.
    fn param_grads(&self, cx: &mut Ctx) -> Result<()> {
        let (mm, (c, a, b), d) = self.weight_grad_product(cx)?;
        mm.record(cx.rec, c, a, b, d)?;
        self.bias_grad(cx)
    }

    /// The weight gradient's product dW += dYᵀ·X (dW = … with
    /// `cx.assign_grads`), scattered through the kept lists where compacted.
    fn weight_grad_product<'a>(&self, cx: &Ctx<'a, '_>) -> Result<Product<'a>> {
        let x = cx.inputs[0];
        let ((cols, plane, c), rows) = (columns(&x), cx.output.side);
        let (i, o) = (fan_in(&[x.shape]), self.out);
        let cap = cx.rows.max();
        let dy = cx.d_output.ok_or_else(|| Error::InvalidArgument("linear backward without d_output".into()))?;
        let dw: &'a Tensor = &cx.grads[0];
        if cols == Side::Full && rows == Side::Full {
            let mm = Matmul::new(Layout::TN).batch_k();
            let mm = if cx.assign_grads { mm } else { mm.accumulate() };
            return Ok((mm, (dw, dy, x.t), Dims { m: o, n: i, k: cap }));
        }
        if cx.assign_grads {
            return Err(Error::InvalidArgument("linear: gradients of kept units are added, never assigned".into()));
        }
        let kept = cx.kept("linear")?;
        let scatter = Scatter {
            maps: kept.maps,
            rows: map_offset(rows),
            cols: map_offset(cols),
            ldc: i,
            col_blocks: plane,
            col_block_full: c,
        };
        let mm = Matmul::new(Layout::TN)
            .accumulate()
            .sizes(Some(kept.dims), size(rows, 1), size(cols, plane), Size::Batch { per: 1 })
            .scatter(scatter);
        Ok((mm, (dw, dy, x.t), Dims { m: rows.max_len(o), n: cols.max_len(c) * plane, k: cap }))
    }

    /// The bias gradient, added into the full-size one.
    fn bias_grad(&self, cx: &mut Ctx) -> Result<()> {
        let x = cx.inputs[0];
        let rows = cx.output.side;
        let dense = columns(&x).0 == Side::Full && rows == Side::Full;
        let dy = cx.d_output.ok_or_else(|| Error::InvalidArgument("linear backward without d_output".into()))?;
        let partials = cx.scratch.get(if dense { 0 } else { 2 });
        let rows_at = Rows::Batch(cx.rows.max());
        let (db, add) = (&cx.grads[1], !cx.assign_grads);
        bias_grad_of(cx.rec, (db, add), dy, cx.kept_or_unused(), rows, self.out, rows_at, partials)
    }

    /// The input gradient's product dX (+)= dY·W, gated where X is a ReLU
    /// output; None where no input gradient is needed.
    fn input_grad_product<'a>(&self, cx: &Ctx<'a, '_>) -> Result<Option<Product<'a>>> {
        let Some(dx) = cx.d_inputs[0] else { return Ok(None) };
        let x = cx.inputs[0];
        let ((cols, plane, c), rows) = (columns(&x), cx.output.side);
        let (i, o) = (fan_in(&[x.shape]), self.out);
        let cap = cx.rows.max();
        let dy = cx.d_output.ok_or_else(|| Error::InvalidArgument("linear backward without d_output".into()))?;
        let mut mm = Matmul::new(Layout::NN).batch_m();
        if dx.accumulate {
            mm = mm.accumulate();
        }
        if dx.gate {
            mm = mm.gate(x.t);
        }
        if cols == Side::Full && rows == Side::Full {
            return Ok(Some((mm, (dx.t, dy, &cx.params[0]), Dims { m: cap, n: i, k: o })));
        }
        let kept = cx.kept("linear")?;
        let (pr, pc) = (rows.max_len(o), cols.max_len(c) * plane);
        let mm = mm.sizes(Some(kept.dims), Size::Batch { per: 1 }, size(cols, plane), size(rows, 1));
        Ok(Some((mm, (dx.t, dy, &cx.scratch[0]), Dims { m: cap, n: pc, k: pr })))
    }
}

/// Input features of a linear layer: the whole sample, flattened.
fn fan_in(inputs: &[Shape]) -> usize {
    inputs[0].len()
}

/// The map offset of a compacted side, if any.
fn map_offset(s: Side) -> Option<usize> {
    match s {
        Side::Full => None,
        Side::Kept { map, .. } => Some(map),
    }
}

/// A matmul size for a side of `blocks` blocks of channels.
fn size(s: Side, blocks: usize) -> Size {
    match s {
        Side::Full => Size::Static,
        Side::Kept { count, .. } => Size::Kept { count, blocks },
    }
}

/// The input as columns of W: the image flattened pixel-major (NHWC), so a
/// compacted input is `plane` blocks of its kept channels (one per pixel).
fn columns(x: &Act) -> (Side, usize, usize) {
    (x.side, x.shape.plane(), x.shape.c)
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        expect_inputs("linear", inputs, 1)?;
        if self.out == 0 || inputs[0].is_empty() {
            return Err(Error::InvalidArgument(format!(
                "linear {} -> {}: sizes must be positive",
                inputs[0], self.out
            )));
        }
        Ok(Shape::flat(self.out))
    }

    fn params(&self, inputs: &[Shape]) -> Vec<ParamSpec> {
        let i = fan_in(inputs);
        vec![
            ParamSpec { name: "weight", shape: vec![self.out, i], init: Init::Kaiming { fan_in: i } },
            ParamSpec { name: "bias", shape: vec![self.out], init: Init::Zeros },
        ]
    }

    fn channels(&self) -> Channels {
        Channels::New { prunable: self.prunable }
    }

    fn param_sets(&self, inputs: &[Shape]) -> Vec<ParamSets> {
        let x = inputs[0];
        let w = ParamSets {
            rows: self.out,
            rows_follow: true,
            cols: x.c,
            cols_follow: true,
            blocks: x.plane(),
            gathered: true,
        };
        vec![w, ParamSets { gathered: true, ..ParamSets::per_output(self.out) }]
    }

    fn scratch(
        &self,
        _gpu: &Gpu,
        inputs: &[Shape],
        (in_sides, out_side): (&[Side], Side),
        _out: Shape,
        cap: usize,
    ) -> Vec<ScratchSpec> {
        let cols = in_sides[0];
        let mut s = Vec::new();
        if cols != Side::Full || out_side != Side::Full {
            let (pr, pc) = (out_side.max_len(self.out), cols.max_len(inputs[0].c) * inputs[0].plane());
            s = vec![ScratchSpec::kept("compact weight", pr * pc), ScratchSpec::kept("compact bias", pr)];
        }
        let partials = bias_partials_len(cap, out_side, self.out);
        if partials > 0 {
            s.push(ScratchSpec::transient("bias partial sums", partials));
        }
        s
    }

    fn fuses_relu(&self) -> bool {
        true
    }

    /// On a dense pass its weight gradient is one product and its bias
    /// gradient one sum, each of which can assign.
    fn assigns_grads(&self) -> bool {
        true
    }

    fn gates_input_grads(&self) -> bool {
        true
    }

    fn forward(&self, cx: &mut Ctx) -> Result<()> {
        self.gather(cx)?;
        let (mm, (c, a, b), d) = self.forward_product(cx)?;
        mm.record(cx.rec, c, a, b, d)
    }

    fn backward(&self, cx: &mut Ctx) -> Result<()> {
        self.param_grads(cx)?;
        match self.input_grad_product(cx)? {
            Some((mm, (c, a, b), d)) => mm.record(cx.rec, c, a, b, d),
            None => Ok(()),
        }
    }

    /// Both samples' gathers, then their forward products as a pair: one
    /// launch where the two fit one (`Matmul::record_pair`).
    fn forward_pair<'a>(&self, cx: &mut Ctx<'a, '_>, second: &mut Second<'a>) -> Result<()> {
        // Both samples' gathers in one launch where they can.
        let compacts = cx.both(second, |c| Ok(self.compacts(c)))? == (true, true);
        match (cx.lazy, second.lazy) {
            (Some(l0), Some(l1)) if compacts => {
                let (wc, bc) = ([&cx.scratch[0], &second.scratch[0]], [&cx.scratch[1], &second.scratch[1]]);
                l0.gather_pair(cx.rec, &l1, (0, Some(1)), wc, bc)?
            }
            (None, None) if compacts && cx.rec.gpu().pairs() => self.gather_both(cx, second)?,
            _ => cx.each_sample(second, |c| self.gather(c))?,
        }
        let ((mm0, ops0, d), (mm1, ops1, _)) = cx.both(second, |c| self.forward_product(c))?;
        mm0.record_pair(cx.rec, ops0, &mm1, ops1, d)
    }

    /// Both samples' weight gradients as a pair (one gradient both add
    /// into, sample 0's part first: one launch of both samples' partials
    /// where K splits, else one by one), their bias gradients, then their
    /// input gradients as a pair.
    fn backward_pair<'a>(&self, cx: &mut Ctx<'a, '_>, second: &mut Second<'a>) -> Result<()> {
        let ((mm0, ops0, d), (mm1, ops1, _)) = cx.both(second, |c| self.weight_grad_product(c))?;
        mm0.record_pair(cx.rec, ops0, &mm1, ops1, d)?;
        cx.each_sample(second, |c| self.bias_grad(c))?;
        match cx.both(second, |c| self.input_grad_product(c))? {
            (Some((mm0, ops0, d)), Some((mm1, ops1, _))) => mm0.record_pair(cx.rec, ops0, &mm1, ops1, d),
            (None, None) => Ok(()),
            _ => Err(Error::InvalidArgument("linear: an input gradient for one mask sample only".into())),
        }
    }

    fn flops(&self, inputs: &[Shape], _out: Shape, rho_in: f64, rho_out: f64) -> f64 {
        // A compacted input keeps rho_in of every pixel's channels.
        2.0 * fan_in(inputs) as f64 * rho_in * self.out as f64 * rho_out
    }

    fn cpu_forward(&self, io: &CpuIo, x: &[&[f64]]) -> Vec<f64> {
        let (i, o, n) = (io.in_shapes[0].len(), self.out, io.batch);
        let mut y = vec![0.0; n * o];
        cpu::matmul::matmul(&mut y, x[0], io.params[0], Layout::NT, 1.0, 0.0, Dims { m: n, n: o, k: i });
        cpu::bias::bias_add(&mut y, io.params[1], n, o);
        y
    }

    fn cpu_backward(&self, io: &CpuIo, x: &[&[f64]], _y: &[f64], dy: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let (i, o, n) = (io.in_shapes[0].len(), self.out, io.batch);
        let mut dw = vec![0.0; o * i];
        cpu::matmul::matmul(&mut dw, dy, x[0], Layout::TN, 1.0, 0.0, Dims { m: o, n: i, k: n });
        let mut db = vec![0.0; o];
        cpu::bias::bias_grad(&mut db, dy, false, n, o);
        let mut dx = vec![0.0; n * i];
        cpu::matmul::matmul(&mut dx, dy, io.params[0], Layout::NN, 1.0, 0.0, Dims { m: n, n: i, k: o });
        (vec![dx], vec![dw, db])
    }

    fn compacted(&self, _kept_in: &[Vec<usize>], kept_out: &[usize]) -> Box<dyn Layer> {
        Box::new(Linear { out: kept_out.len(), prunable: self.prunable })
    }

    fn compact_params(
        &self,
        inputs: &[Shape],
        kept_in: &[Vec<usize>],
        kept_out: &[usize],
        params: &[Vec<f32>],
    ) -> Vec<Vec<f32>> {
        let shape = inputs[0];
        let i = shape.len();
        // Input features of the kept channels, pixel by pixel (NHWC).
        let cols: Vec<usize> =
            (0..shape.plane()).flat_map(|p| kept_in[0].iter().map(move |&c| p * shape.c + c)).collect();
        let (w, b) = (&params[0], &params[1]);
        let weight: Vec<f32> = kept_out.iter().flat_map(|&r| cols.iter().map(move |&c| w[r * i + c])).collect();
        let bias: Vec<f32> = kept_out.iter().map(|&r| b[r]).collect();
        vec![weight, bias]
    }
}
