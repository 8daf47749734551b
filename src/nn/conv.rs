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
//! Where the matmul variant supports it (see `Conv2d::implicit`), the
//! forward and weight-gradient products read cols from X themselves and
//! the input gradient gathers dY inside its product (an implicit
//! convolution, matmul.wgsl's IMPLICIT): no im2col or col2im pass.
//! On kept channels, W's kept rows and, within each kernel position, kept
//! input channels are gathered first (gather.wgsl), as a linear layer does.

use serde::{Deserialize, Serialize};

use super::layer::{Channels, CpuIo, Ctx, Init, Layer, ParamSets, ParamSpec, ScratchSpec, Shape, expect_inputs};
use crate::cpu;
use crate::device::gpu::Gpu;
use crate::error::{Error, Result};
use crate::ops::conv::{ConvGeom, Stored, col2im, im2col};
use crate::ops::gather::{Side, bias_grad_of, bias_partials_len, gather_weight_blocks};
use crate::ops::matmul::{Dims, Implicit, Layout, Matmul, Scatter, Size, Variant};

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
    /// where the matmul variant walks kernel positions itself (`regtile`,
    /// chosen on CPU adapters, where writing and re-reading the columns cost
    /// a quarter of a sparse ResNet step) and the stored channels come in
    /// fours (every kept count does; all channels where their count does).
    fn implicit(&self, cx: &Ctx, in_side: Side, ci: usize) -> bool {
        !self.identity()
            && (in_side != Side::Full || ci.is_multiple_of(4))
            && cx.rec.gpu().matmul_variant() == Variant::RegTile
    }

    /// Whether it needs im2col's columns on `gpu`: not where X is its own
    /// columns, nor where every pass is implicit whatever the sides
    /// (channels in fours on both sides; kept counts always are). Then a
    /// VGG's first stage at batch 128 needs no 300 MB of columns.
    fn has_columns(&self, gpu: &Gpu, ci: usize) -> bool {
        let all_implicit =
            gpu.matmul_variant() == Variant::RegTile && ci.is_multiple_of(4) && self.out.is_multiple_of(4);
        !self.identity() && !all_implicit
    }

    /// Where im2col's columns sit in `scratch` (after the compacted weight
    /// and bias of a pass on kept channels).
    fn columns_slot(&self, cx: &Ctx) -> usize {
        let compacted = cx.inputs[0].side != Side::Full || cx.output.side != Side::Full;
        if compacted { 2 } else { 0 }
    }
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
        let x = cx.inputs[0];
        let (in_side, out_side) = (x.side, cx.output.side);
        let (ci, co, kk) = (x.shape.c, self.out, self.positions());
        let g = self.geom(x.shape);
        let pixels = cx.output.shape.plane();
        let cap = cx.rows.max();
        let kept = cx.kept_or_unused();
        let dense = in_side == Side::Full && out_side == Side::Full;
        let implicit = self.implicit(cx, in_side, ci);
        let cols = if self.identity() || implicit {
            x.t
        } else {
            let cols = &cx.scratch[self.columns_slot(cx)];
            if !cx.input_ready {
                im2col(cx.rec, cols, x.t, kept.dims, g, Stored { side: in_side, full: ci }, cx.rows)?;
            }
            cols
        };
        let rows = Size::Batch { per: pixels };
        let dims = Dims { m: cap * pixels, n: out_side.max_len(co), k: kk * in_side.max_len(ci) };
        let (w, b) = if dense {
            (&cx.params[0], cx.params.get(1))
        } else {
            let (wc, bc) = (&cx.scratch[0], &cx.scratch[1]);
            match cx.lazy {
                Some(lz) => lz.gather(cx.rec, 0, self.bias.then_some(1), wc, bc)?,
                None => {
                    let bias = self.bias.then(|| (bc, &cx.params[1]));
                    gather_weight_blocks(cx.rec, (wc, &cx.params[0]), bias, kept, (out_side, in_side), (co, ci), kk)?
                }
            }
            (wc, self.bias.then_some(bc))
        };
        let mut mm = Matmul::new(Layout::NT).sizes(Some(kept.dims), rows, size(out_side, 1), size(in_side, kk));
        if implicit {
            mm = mm.implicit(Implicit::A(g));
        }
        if let Some(b) = b {
            mm = mm.bias(b);
        }
        if cx.relu {
            mm = mm.relu();
        }
        mm.record(cx.rec, cx.output.t, cols, w, dims)
    }

    fn backward(&self, cx: &mut Ctx) -> Result<()> {
        let x = cx.inputs[0];
        let (in_side, out_side) = (x.side, cx.output.side);
        let (ci, co, kk) = (x.shape.c, self.out, self.positions());
        let g = self.geom(x.shape);
        let pixels = cx.output.shape.plane();
        let cap = cx.rows.max();
        let kept = cx.kept_or_unused();
        let dense = in_side == Side::Full && out_side == Side::Full;
        let dy = cx.d_output.ok_or_else(|| Error::InvalidArgument("conv2d backward without d_output".into()))?;
        let stored = Stored { side: in_side, full: ci };
        let implicit = self.implicit(cx, in_side, ci);
        let cols = if self.identity() || implicit {
            x.t
        } else {
            let cols = &cx.scratch[self.columns_slot(cx)];
            if !cx.input_ready {
                im2col(cx.rec, cols, x.t, kept.dims, g, stored, cx.rows)?;
            }
            cols
        };
        let rows = Size::Batch { per: pixels };
        let (pr, pk) = (out_side.max_len(co), kk * in_side.max_len(ci));
        let out_rows = cx.rows.per_sample(pixels);
        // dW (+)= dYᵀ·cols, and the bias gradient: into the full-size
        // gradients, through the kept lists where compacted.
        let mut mm =
            Matmul::new(Layout::TN).accumulate().sizes(Some(kept.dims), size(out_side, 1), size(in_side, kk), rows);
        if implicit {
            mm = mm.implicit(Implicit::B(g));
        }
        if !dense {
            mm = mm.scatter(Scatter {
                maps: kept.maps,
                rows: map_offset(out_side),
                cols: map_offset(in_side),
                ldc: kk * ci,
                col_blocks: kk,
                col_block_full: ci,
            });
        }
        mm.record(cx.rec, &cx.grads[0], dy, cols, Dims { m: pr, n: pk, k: cap * pixels })?;
        if self.bias {
            // The partial sums come after the columns in `scratch`.
            let partials = cx.scratch.get(self.columns_slot(cx) + usize::from(self.has_columns(cx.rec.gpu(), ci)));
            bias_grad_of(cx.rec, (&cx.grads[1], true), dy, kept, out_side, co, out_rows, partials)?;
        }
        let Some(dx) = cx.d_inputs[0] else { return Ok(()) };
        let w = if dense { &cx.params[0] } else { &cx.scratch[0] };
        let nn = Matmul::new(Layout::NN).sizes(Some(kept.dims), rows, size(in_side, kk), size(out_side, 1));
        if self.identity() {
            let mut nn = nn;
            if dx.accumulate {
                nn = nn.accumulate();
            }
            if dx.gate {
                nn = nn.gate(x.t);
            }
            return nn.record(cx.rec, dx.t, dy, w, Dims { m: cap * pixels, n: pk, k: pr });
        }
        if implicit && (out_side != Side::Full || co.is_multiple_of(4)) {
            // dX as one product gathering dY: no columns, no col2im.
            let mut nn = Matmul::new(Layout::NN)
                .sizes(Some(kept.dims), Size::Batch { per: g.h * g.w }, size(in_side, 1), size(out_side, kk))
                .implicit(Implicit::Dx(g));
            if dx.accumulate {
                nn = nn.accumulate();
            }
            if dx.gate {
                nn = nn.gate(x.t);
            }
            let d = Dims { m: cap * g.h * g.w, n: in_side.max_len(ci), k: kk * pr };
            return nn.record(cx.rec, dx.t, dy, w, d);
        }
        // The columns (spent, or never written by an implicit product) take
        // the input gradient's columns.
        let dcols = &cx.scratch[self.columns_slot(cx)];
        nn.record(cx.rec, dcols, dy, w, Dims { m: cap * pixels, n: pk, k: pr })?;
        col2im(cx.rec, dx.t, dcols, dx.gate.then_some(x.t), kept.dims, g, stored, cx.rows, dx.accumulate)
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
