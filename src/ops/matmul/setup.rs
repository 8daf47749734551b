//! What a product needs before a variant is chosen: its operands checked
//! against the sizes (lengths, types, implicit convolution geometry) and
//! the override constants and parameters that follow from its layout,
//! alignment, epilogues, dynamic sizes and scatter.

use super::{Dims, Implicit, Layout, Matmul, MatmulParams, NONE, Size, need, opt_index, u32_of};
use crate::device::shader::Constants;
use crate::device::tensor::{DType, Tensor};
use crate::device::variant::implicit_quads_env;
use crate::error::{Error, Result};
use crate::ops::conv::ConvGeom;

impl Matmul<'_> {
    /// The override constants and parameters of this product that do not
    /// depend on the variant: layout, alignment, epilogues, implicit
    /// operand, dynamic sizes, scatter (checked).
    pub(super) fn operand_setup(&self, c: &Tensor, (m, n, k): (u32, u32, u32)) -> Result<(Constants, MatmulParams)> {
        const OP: &str = "matmul";
        let layout = self.layout;
        let [sm, sn, sk] = self.sizes;
        let vec4_a = if layout.trans_a() { sm.aligned(m) } else { sk.aligned(k) };
        let vec4_b = if layout.trans_b() { sk.aligned(k) } else { sn.aligned(n) };
        let flag = |b: bool| f64::from(u8::from(b));
        let mut constants: Constants = vec![
            ("TRANS_A", flag(layout.trans_a())),
            ("TRANS_B", flag(layout.trans_b())),
            ("VEC4_A", flag(vec4_a)),
            ("VEC4_B", flag(vec4_b)),
            ("VEC4_C", flag(sn.aligned(n))),
            ("BIAS", flag(self.bias.is_some())),
            ("RELU", flag(self.relu)),
            ("GATE", flag(self.gate.is_some())),
            ("SCATTER", flag(self.scatter.is_some())),
            (
                "IMPLICIT",
                match self.implicit {
                    None => 0.0,
                    Some(Implicit::A(_)) => 1.0,
                    Some(Implicit::B(_)) => 2.0,
                    Some(Implicit::Dx(_)) => 3.0,
                },
            ),
        ];
        if let Some(imp @ (Implicit::A(g) | Implicit::B(g) | Implicit::Dx(g))) = self.implicit {
            constants.push(("IM_POW2", flag(g.stride.is_power_of_two())));
            // Whether the implicit operand's channels per kernel position
            // (kept counts are padded to 4), or W's rows, come in fours:
            // the loaders then read four values at once.
            let taps = u32::try_from(g.kh * g.kw).unwrap_or(u32::MAX).max(1);
            let fours = |size: Size, fixed: u32| match size {
                Size::Kept { .. } => true,
                _ => fixed.is_multiple_of(taps) && (fixed / taps).is_multiple_of(4),
            };
            let (quads_a, quads_b) = match imp {
                Implicit::A(_) => (fours(sk, k), false),
                Implicit::B(_) => (false, fours(sn, n)),
                Implicit::Dx(_) => (fours(sk, k), sn.aligned(n)),
            };
            let on = implicit_quads_env()?;
            constants.push(("IM_QUADS_A", flag(quads_a && on)));
            constants.push(("IM_QUADS_B", flag(quads_b && on)));
        }
        let mut params = MatmulParams {
            m,
            n,
            k,
            beta: self.beta,
            alpha: self.alpha,
            dyn_m: sm.code()?,
            dyn_n: sn.code()?,
            dyn_k: sk.code()?,
            ldc: n,
            rows_map: NONE,
            cols_map: NONE,
            col_blocks: 1,
            col_block_full: n,
            im_h: 0,
            im_w: 0,
            im_oh: 0,
            im_ow: 0,
            im_kh: 1,
            im_kw: 1,
            im_stride: 1,
            im_pad: 0,
            splits: 1,
            split_room: 0,
            samples: 1,
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
            stride_bias: 0,
            stride_gate: 0,
            stride_dims: 0,
            stride_pack_a: 0,
            stride_pack_b: 0,
        };
        if let Some(Implicit::A(g) | Implicit::B(g) | Implicit::Dx(g)) = self.implicit {
            let (oh, ow) = g.out()?;
            let u = |what: &str, v: usize| u32_of(OP, what, v);
            (params.im_h, params.im_w, params.im_oh, params.im_ow) =
                (u("h", g.h)?, u("w", g.w)?, u("oh", oh)?, u("ow", ow)?);
            (params.im_kh, params.im_kw) = (u("kh", g.kh)?, u("kw", g.kw)?);
            (params.im_stride, params.im_pad) = (u("stride", g.stride)?, u("pad", g.pad)?);
        }
        if self.sizes.iter().any(|s| matches!(s, Size::Kept { .. })) {
            let Some(dims) = self.dims else {
                return Err(Error::InvalidArgument("matmul: kept sizes without a dims tensor".into()));
            };
            need(OP, "dims", dims, 1, DType::U32)?;
        }
        if let Some(sc) = &self.scatter {
            need(OP, "maps", sc.maps, 1, DType::U32)?;
            need(OP, "C", c, 1, DType::F32)?;
            params.ldc = u32_of(OP, "ldc", sc.ldc)?;
            params.rows_map = opt_index(OP, "rows map", sc.rows)?;
            params.cols_map = opt_index(OP, "cols map", sc.cols)?;
            params.col_blocks = u32_of(OP, "column blocks", sc.col_blocks.max(1))?;
            params.col_block_full = u32_of(OP, "column block width", sc.col_block_full)?;
        }
        Ok((constants, params))
    }

    /// The operands' lengths that `record` needs for `d`, checked against
    /// the tensors (C, A, B, bias, gate).
    pub(super) fn check_operands(&self, c: &Tensor, a: &Tensor, b: &Tensor, d: Dims) -> Result<(usize, usize)> {
        const OP: &str = "matmul";
        if self.scatter.is_none() {
            need(OP, "C", c, d.m * d.n, DType::F32)?;
        }
        let x_len = |g: ConvGeom, rows: usize, cols: usize| -> Result<usize> {
            let (oh, ow) = g.out()?;
            let taps = g.kh * g.kw;
            if !cols.is_multiple_of(4 * taps) {
                return Err(Error::InvalidArgument(format!(
                    "matmul: an implicit convolution operand needs a multiple of 4 channels per kernel position, got {cols} columns over {taps} positions"
                )));
            }
            Ok(rows.div_ceil(oh * ow) * g.h * g.w * (cols / taps))
        };
        let (a_len, b_len) = match self.implicit {
            None => (d.m * d.k, d.k * d.n),
            Some(Implicit::A(g)) if !self.layout.trans_a() => (x_len(g, d.m, d.k)?, d.k * d.n),
            Some(Implicit::B(g)) if !self.layout.trans_b() => (d.m * d.k, x_len(g, d.k, d.n)?),
            Some(Implicit::Dx(g)) if self.layout == Layout::NN => {
                let (oh, ow) = g.out()?;
                if !d.n.is_multiple_of(4) {
                    return Err(Error::InvalidArgument(format!(
                        "matmul: an implicit input gradient needs a multiple of 4 input channels, got {}",
                        d.n
                    )));
                }
                // dY: the samples' output pixels × K / positions channels
                // (x_len's check of K, then the count over dY's pixels).
                x_len(g, d.m, d.k)?;
                let samples = d.m.div_ceil(g.h * g.w);
                (samples * oh * ow * (d.k / (g.kh * g.kw)), d.k * d.n)
            }
            Some(_) => {
                return Err(Error::InvalidArgument(format!(
                    "matmul: an implicit convolution operand cannot be transposed (layout {})",
                    self.layout.name()
                )));
            }
        };
        need(OP, "A", a, a_len, DType::F32)?;
        need(OP, "B", b, b_len, DType::F32)?;
        if let Some(bias) = self.bias {
            need(OP, "bias", bias, d.n, DType::F32)?;
        }
        if let Some(gate) = self.gate {
            need(OP, "gate", gate, d.m * d.n, DType::F32)?;
        }
        Ok((a_len, b_len))
    }
}
