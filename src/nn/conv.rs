//! 2-D convolution over NHWC activations, W stored [out, kh, kw, in] so
//! that an output channel (the unit of pruning) is a row. Its prunable
//! units are its output channels, so its cost on kept channels is
//! ρ_in·ρ_out of dense.
//!
//! One matrix product per pass over the whole batch (NHWC makes the batch
//! times the pixels the rows, as an MLP's batch is):
//!   forward      cols = im2col(X);  Y = cols·Wᵀ (+ bias, + ReLU fused)
//!   weight grad  dW += dYᵀ·cols     (scattered into the full-size gradient)
//!   input grad   dcols = dY·W;  dX = col2im(dcols)  (gated by a ReLU'd X)
//! A 1×1 convolution with stride 1 and no padding reads X as its columns.
//! Where the device reads convolutions in place (`Gpu::implicit_convs`,
//! see `Conv2d::implicit`), the forward and weight-gradient products read
//! cols from X themselves and the input gradient gathers dY inside its
//! product (an implicit convolution, matmul.wgsl's IMPLICIT): no im2col or
//! col2im pass. On kept channels, W's kept rows and, within each kernel
//! position, kept input channels are gathered first (gather.wgsl), as a
//! linear layer does. A sparse step's two mask samples run each product as
//! a pair (one launch) where no transient columns stand in the way
//! (`Conv2d::pairs_columns`).

use serde::{Deserialize, Serialize};

use super::layer::{
    Act, Channels, CpuIo, Ctx, Init, Layer, ParamSets, ParamSpec, ScratchSpec, Second, Shape, expect_inputs,
};
use crate::cpu;
use crate::device::gpu::Gpu;
use crate::device::tensor::Tensor;
use crate::error::{Error, Result};
use crate::ops::conv::{ConvGeom, Stored, col2im, im2col};
use crate::ops::gather::{
    KeptSet, Side, bias_grad_of, bias_partials_len, gather_weight_blocks, gather_weight_blocks_pair,
};
use crate::ops::matmul::{Dims, Implicit, Layout, Matmul, Scatter, Size};

fn one() -> usize {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv2d {
    /// Output channels.
    pub out: usize,
    /// Square kernel side.
    pub kernel: usize,
    #[serde(default = "one")]
    pub stride: usize,
    #[serde(default)]
    pub pad: usize,
    #[serde(default)]
    pub bias: bool,
    #[serde(default)]
    pub prunable: bool,
}

fn size(s: Side, blocks: usize) -> Size {
    match s {
        Side::Full => Size::Static,
        Side::Kept { count, .. } => Size::Kept { count, blocks },
    }
}

fn map_offset(s: Side) -> Option<usize> {
    match s {
        Side::Full => None,
        Side::Kept { map, .. } => Some(map),
    }
}

impl Conv2d {
    fn geom(&self, x: Shape) -> ConvGeom {
        ConvGeom { h: x.h, w: x.w, kh: self.kernel, kw: self.kernel, stride: self.stride, pad: self.pad }
    }

    /// Whether X is its own im2col.
    fn identity(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.pad == 0
    }

    fn positions(&self) -> usize {
        self.kernel * self.kernel
    }

    /// Whether the products read X as their im2col operand directly (an
    /// implicit convolution) rather than through materialised columns:
    /// where the device reads convolutions in place (`Gpu::implicit_convs`:
    /// by default where the matmul variant is `regtile`, chosen on CPU
    /// adapters, where writing and re-reading the columns cost a quarter of
    /// a sparse ResNet step) and the stored channels come in fours (every
    /// kept count does; all channels where their count does).
    fn implicit(&self, cx: &Ctx, in_side: Side, ci: usize) -> bool {
        !self.identity() && (in_side != Side::Full || ci.is_multiple_of(4)) && cx.rec.gpu().implicit_convs()
    }

    /// Whether it needs im2col's columns on `gpu`: not where X is its own
    /// columns, nor where every pass is implicit whatever the sides
    /// (channels in fours on both sides; kept counts always are). Then a
    /// VGG's first stage at batch 128 needs no 300 MB of columns.
    fn has_columns(&self, gpu: &Gpu, ci: usize) -> bool {
        let all_implicit = gpu.implicit_convs() && ci.is_multiple_of(4) && self.out.is_multiple_of(4);
        !self.identity() && !all_implicit
    }

    /// Where im2col's columns sit in `scratch` (after the compacted weight
    /// and bias of a pass on kept channels).
    fn columns_slot(&self, cx: &Ctx) -> usize {
        let compacted = cx.inputs[0].side != Side::Full || cx.output.side != Side::Full;
        if compacted { 2 } else { 0 }
    }

    /// Whether a pass's products read im2col's columns (else X itself).
    fn reads_columns(&self, cx: &Ctx) -> bool {
        let x = cx.inputs[0];
        !self.identity() && !self.implicit(cx, x.side, x.shape.c)
    }

    /// Whether both mask samples' products may run as pairs: they read no
    /// columns, or the same ones (a layer reading the graph's input, whose
    /// columns sample 0's pass left for sample 1's: `input_ready`). Other
    /// columns are transient scratch the two samples share.
    fn pairs_columns(&self, cx: &Ctx, second: &Second) -> bool {
        !self.reads_columns(cx) || second.input_ready
    }

    /// The columns of a pass that reads them and has not got them yet.
    fn columns<'a>(&self, cx: &Ctx<'a, '_>) -> Option<&'a Tensor> {
        self.reads_columns(cx).then(|| &cx.scratch[self.columns_slot(cx)])
    }

    /// What a pass's products are sized by and multiply (see `Pass`).
    fn pass<'a>(&self, cx: &Ctx<'a, '_>) -> Pass<'a> {
        let x = cx.inputs[0];
        let (in_side, out_side) = (x.side, cx.output.side);
        let (ci, kk) = (x.shape.c, self.positions());
        let dense = in_side == Side::Full && out_side == Side::Full;
        let (w, b) =
            if dense { (&cx.params[0], cx.params.get(1)) } else { (&cx.scratch[0], self.bias.then(|| &cx.scratch[1])) };
        Pass {
            x,
            sides: (in_side, out_side),
            stored: (out_side.max_len(self.out), kk * in_side.max_len(ci)),
            pixels: cx.output.shape.plane(),
            cap: cx.rows.max(),
            kept: cx.kept_or_unused(),
            dense,
            w,
            b,
            implicit: self.implicit(cx, in_side, ci),
        }
    }

    /// What the forward product needs first: the columns (where read and
    /// not ready) and the kept rows and columns of the weight and bias
    /// (where compacted; under lazy SGD brought up to date).
    fn forward_prep(&self, cx: &mut Ctx) -> Result<()> {
        self.columns_prep(cx)?;
        let p = self.pass(cx);
        if p.dense {
            return Ok(());
        }
        let (wc, bc) = (&cx.scratch[0], &cx.scratch[1]);
        match cx.lazy {
            Some(lz) => lz.gather(cx.rec, 0, self.bias.then_some(1), wc, bc),
            None => {
                let bias = self.bias.then(|| (bc, &cx.params[1]));
                let (sides, full) = ((p.sides.1, p.sides.0), (self.out, p.x.shape.c));
                gather_weight_blocks(cx.rec, (wc, &cx.params[0]), bias, p.kept, sides, full, self.positions())
            }
        }
    }

    /// A forward pass whose compact weight is (`gathered`) or is not yet
    /// gathered.
    fn forward_after(&self, cx: &mut Ctx, gathered: bool) -> Result<()> {
        if gathered {
            self.columns_prep(cx)?;
        } else {
            self.forward_prep(cx)?;
        }
        let (mm, (c, a, b), d) = self.forward_product(cx)?;
        mm.record(cx.rec, c, a, b, d)
    }

    /// im2col's columns, where the products read them and this pass has
    /// not got them yet (before the forward's products and the backward's).
    fn columns_prep(&self, cx: &mut Ctx) -> Result<()> {
        let Some(cols) = self.columns(cx).filter(|_| !cx.input_ready) else { return Ok(()) };
        let x = cx.inputs[0];
        let g = self.geom(x.shape);
        let stored = Stored { side: x.side, full: x.shape.c };
        im2col(cx.rec, cols, x.t, cx.kept_or_unused().dims, g, stored, cx.rows)
    }

    /// Y = cols·Wᵀ (+ bias, + ReLU where fused), on the compact weight
    /// where a side is kept.
    fn forward_product<'a>(&self, cx: &Ctx<'a, '_>) -> Result<Product<'a>> {
        let p = self.pass(cx);
        let ((in_side, out_side), (pr, pk)) = (p.sides, p.stored);
        let cols = self.columns(cx).unwrap_or(p.x.t);
        let rows = Size::Batch { per: p.pixels };
        let sizes = (size(out_side, 1), size(in_side, self.positions()));
        let mut mm = Matmul::new(Layout::NT).sizes(Some(p.kept.dims), rows, sizes.0, sizes.1);
        if p.implicit {
            mm = mm.implicit(Implicit::A(self.geom(p.x.shape)));
        }
        if let Some(b) = p.b {
            mm = mm.bias(b);
        }
        if cx.relu {
            mm = mm.relu();
        }
        Ok((mm, (cx.output.t, cols, p.w), Dims { m: p.cap * p.pixels, n: pr, k: pk }))
    }

    /// dW (+)= dYᵀ·cols into the full-size gradient, through the kept
    /// lists where compacted.
    fn weight_grad_product<'a>(&self, cx: &Ctx<'a, '_>) -> Result<Product<'a>> {
        let p = self.pass(cx);
        let ((in_side, out_side), (pr, pk), kk) = (p.sides, p.stored, self.positions());
        let cols = self.columns(cx).unwrap_or(p.x.t);
        let rows = Size::Batch { per: p.pixels };
        let mut mm =
            Matmul::new(Layout::TN).accumulate().sizes(Some(p.kept.dims), size(out_side, 1), size(in_side, kk), rows);
        if p.implicit {
            mm = mm.implicit(Implicit::B(self.geom(p.x.shape)));
        }
        if !p.dense {
            let ci = p.x.shape.c;
            let (rows, cols) = (map_offset(out_side), map_offset(in_side));
            let scatter = Scatter { maps: p.kept.maps, rows, cols, ldc: kk * ci, col_blocks: kk, col_block_full: ci };
            mm = mm.scatter(scatter);
        }
        Ok((mm, (&cx.grads[0], d_output(cx)?, cols), Dims { m: pr, n: pk, k: p.cap * p.pixels }))
    }

    /// The bias gradient, added into the full-size one.
    fn bias_grad(&self, cx: &mut Ctx) -> Result<()> {
        if !self.bias {
            return Ok(());
        }
        let p = self.pass(cx);
        let out_rows = cx.rows.per_sample(p.pixels);
        // The partial sums come after the columns in `scratch`.
        let has_columns = self.has_columns(cx.rec.gpu(), p.x.shape.c);
        let partials = cx.scratch.get(self.columns_slot(cx) + usize::from(has_columns));
        bias_grad_of(cx.rec, (&cx.grads[1], true), d_output(cx)?, p.kept, p.sides.1, self.out, out_rows, partials)
    }

    /// dcols = dY·W: the input gradient's columns, or a 1×1 convolution's
    /// input gradient itself.
    fn dcols_product<'a>(&self, p: &Pass<'a>) -> (Matmul<'a>, Dims) {
        let ((in_side, out_side), (pr, pk)) = (p.sides, p.stored);
        let rows = Size::Batch { per: p.pixels };
        let mm =
            Matmul::new(Layout::NN).sizes(Some(p.kept.dims), rows, size(in_side, self.positions()), size(out_side, 1));
        (mm, Dims { m: p.cap * p.pixels, n: pk, k: pr })
    }

    /// The input gradient as one product, dX (+)= dY·W for a 1×1
    /// convolution or gathering dY (implicit), gated where X is a ReLU
    /// output; None where there is none, or it goes through columns
    /// (`input_grad_columns`).
    fn input_grad_product<'a>(&self, cx: &Ctx<'a, '_>) -> Result<Option<Product<'a>>> {
        let Some(dx) = cx.d_inputs[0] else { return Ok(None) };
        let p = self.pass(cx);
        let ((in_side, out_side), pr) = (p.sides, p.stored.0);
        let g = self.geom(p.x.shape);
        let (mm, d) = if self.identity() {
            self.dcols_product(&p)
        } else if self.dx_implicit(cx) {
            // dX as one product gathering dY: no columns, no col2im.
            let (n, k) = (size(in_side, 1), size(out_side, self.positions()));
            let mm = Matmul::new(Layout::NN)
                .sizes(Some(p.kept.dims), Size::Batch { per: g.h * g.w }, n, k)
                .implicit(Implicit::Dx(g));
            (mm, Dims { m: p.cap * g.h * g.w, n: in_side.max_len(p.x.shape.c), k: self.positions() * pr })
        } else {
            return Ok(None);
        };
        let mm = if dx.accumulate { mm.accumulate() } else { mm };
        let mm = if dx.gate { mm.gate(p.x.t) } else { mm };
        Ok(Some((mm, (dx.t, d_output(cx)?, p.w), d)))
    }

    /// Whether the input gradient is one implicit product.
    fn dx_implicit(&self, cx: &Ctx) -> bool {
        let x = cx.inputs[0];
        self.implicit(cx, x.side, x.shape.c) && (cx.output.side != Side::Full || self.out.is_multiple_of(4))
    }

    /// The input gradient through columns, where it is not one product:
    /// dcols = dY·W into the (spent) columns, then dX (+)= col2im(dcols).
    fn input_grad_columns(&self, cx: &mut Ctx) -> Result<()> {
        let Some(dx) = cx.d_inputs[0] else { return Ok(()) };
        if self.identity() || self.dx_implicit(cx) {
            return Err(Error::InvalidArgument("conv2d: this input gradient is one product".into()));
        }
        let p = self.pass(cx);
        // The columns (spent, or never written by an implicit product) take
        // the input gradient's columns.
        let dcols = &cx.scratch[self.columns_slot(cx)];
        let (nn, d) = self.dcols_product(&p);
        nn.record(cx.rec, dcols, d_output(cx)?, p.w, d)?;
        let (g, stored) = (self.geom(p.x.shape), Stored { side: p.sides.0, full: p.x.shape.c });
        col2im(cx.rec, dx.t, dcols, dx.gate.then_some(p.x.t), p.kept.dims, g, stored, cx.rows, dx.accumulate)
    }
}

/// What every product of a convolution's pass starts from: X, the sides of
/// its input and output channels, W's stored rows and columns (output
/// channels; kernel positions × input channels) at the capacities, the
/// output pixels per sample and the rows' capacity, the kept sets, and the
/// weight and bias multiplied: the parameters on a dense pass, else their
/// compact copies in `scratch`.
struct Pass<'a> {
    x: Act<'a>,
    sides: (Side, Side),
    stored: (usize, usize),
    pixels: usize,
    cap: usize,
    kept: KeptSet<'a>,
    dense: bool,
    w: &'a Tensor,
    b: Option<&'a Tensor>,
    implicit: bool,
}

/// A product ready to record: the matmul, its (C, A, B) and static sizes.
type Product<'a> = (Matmul<'a>, (&'a Tensor, &'a Tensor, &'a Tensor), Dims);

fn d_output<'a>(cx: &Ctx<'a, '_>) -> Result<&'a Tensor> {
    cx.d_output.ok_or_else(|| Error::InvalidArgument("conv2d backward without d_output".into()))
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        expect_inputs("conv2d", inputs, 1)?;
        if self.out == 0 || inputs[0].is_empty() {
            return Err(Error::InvalidArgument(format!(
                "conv2d {} -> {}: sizes must be positive",
                inputs[0], self.out
            )));
        }
        let (h, w) = self.geom(inputs[0]).out()?;
        Ok(Shape { c: self.out, h, w })
    }

    fn params(&self, inputs: &[Shape]) -> Vec<ParamSpec> {
        let (k, ci) = (self.kernel, inputs[0].c);
        let mut p = vec![ParamSpec {
            name: "weight",
            shape: vec![self.out, k, k, ci],
            init: Init::Kaiming { fan_in: k * k * ci },
        }];
        if self.bias {
            p.push(ParamSpec { name: "bias", shape: vec![self.out], init: Init::Zeros });
        }
        p
    }

    fn channels(&self) -> Channels {
        Channels::New { prunable: self.prunable }
    }

    fn param_sets(&self, inputs: &[Shape]) -> Vec<ParamSets> {
        let ci = inputs[0].c;
        let w = ParamSets {
            rows: self.out,
            rows_follow: true,
            cols: ci,
            cols_follow: true,
            blocks: self.positions(),
            gathered: true,
        };
        let mut p = vec![w];
        if self.bias {
            p.push(ParamSets { gathered: true, ..ParamSets::per_output(self.out) });
        }
        p
    }

    fn scratch(
        &self,
        gpu: &Gpu,
        inputs: &[Shape],
        (in_sides, out_side): (&[Side], Side),
        out: Shape,
        cap: usize,
    ) -> Vec<ScratchSpec> {
        let (ci, kk) = (inputs[0].c, self.positions());
        let (pr, pc) = (out_side.max_len(self.out), in_sides[0].max_len(ci));
        let mut s = Vec::new();
        if in_sides[0] != Side::Full || out_side != Side::Full {
            s.push(ScratchSpec::kept("compact weight", pr * kk * pc));
            s.push(ScratchSpec::kept("compact bias", pr));
        }
        if self.has_columns(gpu, ci) {
            // im2col's columns; the backward reuses them for the input gradient.
            s.push(ScratchSpec::transient("columns", cap * out.plane() * kk * pc));
        }
        let partials = if self.bias { bias_partials_len(cap * out.plane(), out_side, self.out) } else { 0 };
        if partials > 0 {
            s.push(ScratchSpec::transient("bias partial sums", partials));
        }
        s
    }

    fn fuses_relu(&self) -> bool {
        true
    }

    fn gates_input_grads(&self) -> bool {
        true
    }

    fn forward(&self, cx: &mut Ctx) -> Result<()> {
        self.forward_after(cx, false)
    }

    fn backward(&self, cx: &mut Ctx) -> Result<()> {
        self.columns_prep(cx)?;
        let (mm, (c, a, b), d) = self.weight_grad_product(cx)?;
        mm.record(cx.rec, c, a, b, d)?;
        self.bias_grad(cx)?;
        match self.input_grad_product(cx)? {
            Some((mm, (c, a, b), d)) => mm.record(cx.rec, c, a, b, d),
            None => self.input_grad_columns(cx),
        }
    }

    /// Both samples' gathers (and columns), then their forward products as
    /// a pair: one launch where the two fit one (`Matmul::record_pair`).
    /// Under lazy SGD the gathers take one launch too where they can
    /// (`LazyPass::gather_pair`). The products run one after the other
    /// where they read im2col columns that the two samples' passes share
    /// (`pairs_columns`).
    fn forward_pair<'a>(&self, cx: &mut Ctx<'a, '_>, second: &mut Second<'a>) -> Result<()> {
        let compacts = cx.both(second, |c| Ok(self.pass(c).dense))? == (false, false);
        // The compact weight and bias: scratch 0 and 1 where a side is kept
        // (a dense pass's scratch may hold fewer).
        let compact =
            |c: &Ctx<'a, '_>, s: &Second<'a>| ([&c.scratch[0], &s.scratch[0]], [&c.scratch[1], &s.scratch[1]]);
        let gathered = match (cx.lazy, second.lazy) {
            (Some(l0), Some(l1)) if compacts => {
                let (wc, bc) = compact(cx, second);
                l0.gather_pair(cx.rec, &l1, (0, self.bias.then_some(1)), wc, bc)?;
                true
            }
            (None, None) if compacts && cx.rec.gpu().pairs() => {
                let (wc, bc) = compact(cx, second);
                let (p0, p1) = cx.both(second, |c| Ok(self.pass(c)))?;
                if !(p1.kept.dims.same_as(p0.kept.dims) && p1.kept.maps.same_as(p0.kept.maps)) {
                    false
                } else {
                    let bias = self.bias.then(|| (bc, &cx.params[1]));
                    let sides = [(p0.sides.1, p0.sides.0), (p1.sides.1, p1.sides.0)];
                    let full = (self.out, p0.x.shape.c);
                    gather_weight_blocks_pair(
                        cx.rec,
                        (wc, &cx.params[0]),
                        bias,
                        p0.kept,
                        sides,
                        full,
                        self.positions(),
                    )?;
                    true
                }
            }
            _ => false,
        };
        if !self.pairs_columns(cx, second) {
            return cx.each_sample(second, |c| self.forward_after(c, gathered));
        }
        cx.each_sample(second, |c| if gathered { self.columns_prep(c) } else { self.forward_prep(c) })?;
        let ((mm0, ops0, d), (mm1, ops1, _)) = cx.both(second, |c| self.forward_product(c))?;
        mm0.record_pair(cx.rec, ops0, &mm1, ops1, d)
    }

    /// Both samples' weight gradients as a pair (sample 0's part first),
    /// their bias gradients, then their input gradients as a pair where
    /// each is one product; one after the other where shared columns stand
    /// in the way, as in `forward_pair`.
    fn backward_pair<'a>(&self, cx: &mut Ctx<'a, '_>, second: &mut Second<'a>) -> Result<()> {
        if !self.pairs_columns(cx, second) {
            return cx.each_sample(second, |c| self.backward(c));
        }
        cx.each_sample(second, |c| self.columns_prep(c))?;
        let ((mm0, ops0, d), (mm1, ops1, _)) = cx.both(second, |c| self.weight_grad_product(c))?;
        mm0.record_pair(cx.rec, ops0, &mm1, ops1, d)?;
        cx.each_sample(second, |c| self.bias_grad(c))?;
        match cx.both(second, |c| self.input_grad_product(c))? {
            (Some((mm0, ops0, d)), Some((mm1, ops1, _))) => mm0.record_pair(cx.rec, ops0, &mm1, ops1, d),
            (None, None) => cx.each_sample(second, |c| self.input_grad_columns(c)),
            _ => Err(Error::InvalidArgument("conv2d: an input gradient for one mask sample only".into())),
        }
    }

    fn flops(&self, inputs: &[Shape], out: Shape, rho_in: f64, rho_out: f64) -> f64 {
        let (ci, kk) = (inputs[0].c as f64, self.positions() as f64);
        2.0 * out.plane() as f64 * kk * ci * rho_in * self.out as f64 * rho_out
    }

    fn cpu_forward(&self, io: &CpuIo, x: &[&[f64]]) -> Vec<f64> {
        let (xs, ci) = (io.in_shapes[0], io.in_shapes[0].c);
        cpu::conv::conv_forward(x[0], io.params[0], io.params.get(1).copied(), io.batch, (ci, self.out), self.geom(xs))
    }

    fn cpu_backward(&self, io: &CpuIo, x: &[&[f64]], _y: &[f64], dy: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let (xs, ci) = (io.in_shapes[0], io.in_shapes[0].c);
        let (dx, dw, db) = cpu::conv::conv_backward(x[0], io.params[0], dy, io.batch, (ci, self.out), self.geom(xs));
        let mut grads = vec![dw];
        if self.bias {
            grads.push(db);
        }
        (vec![dx], grads)
    }

    fn compacted(&self, _kept_in: &[Vec<usize>], kept_out: &[usize]) -> Box<dyn Layer> {
        Box::new(Conv2d { out: kept_out.len(), ..self.clone() })
    }

    fn compact_params(
        &self,
        inputs: &[Shape],
        kept_in: &[Vec<usize>],
        kept_out: &[usize],
        params: &[Vec<f32>],
    ) -> Vec<Vec<f32>> {
        let (ci, kk) = (inputs[0].c, self.positions());
        let w = &params[0];
        let weight: Vec<f32> = kept_out
            .iter()
            .flat_map(|&o| (0..kk).flat_map(move |p| kept_in[0].iter().map(move |&c| w[(o * kk + p) * ci + c])))
            .collect();
        let mut out = vec![weight];
        if self.bias {
            out.push(kept_out.iter().map(|&o| params[1][o]).collect());
        }
        out
    }
}
