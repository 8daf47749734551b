//! Pairs: the same product of a sparse step's two mask samples in one
//! launch (`Matmul::record_pair`). Each sample has its own operands, kept
//! counts and bias; the kernel runs over the tiles of sample 0, then of
//! sample 1, each with its sizes and operands (`load_sample` in
//! shaders/shared/matmul_core.wgsl). A small kept product fills twice the
//! workgroups of one, and the step launches once instead of twice. Where
//! a launch cannot take both (split K, scatter, implicit operands, `coop`
//! staged or tiled, operands in different buffers), the two run one after
//! the other: the results are the same bit for bit. `coop` from f16 packs
//! packs both samples in one launch (each into its own part of the
//! device's packs) and multiplies them in another.

use glam::UVec3;

use super::{Matmul, MatmulParams, Size};
use crate::device::record::Recorder;
use crate::device::shader::{Constants, Kernel, capped_grid};
use crate::device::tensor::Tensor;
use crate::error::Result;
use crate::ops::matmul_desc::Dims;
use crate::ops::matmul_pack::record_pack_into;

/// The second sample's product and operands (C, A, B).
pub(super) struct Pair<'p> {
    pub second: &'p Matmul<'p>,
    pub ops: (&'p Tensor, &'p Tensor, &'p Tensor),
    /// Entries of `dims` between the two samples' kept counts.
    stride_dims: u32,
}

impl<'a> Matmul<'a> {
    /// Records this product on sample 0's operands `ops` (C, A, B) and
    /// `second` on sample 1's `ops1`, in one launch where it can. `second`
    /// must be this product but for its bias and gate tensors and its kept
    /// counts (each sample's, the same distance apart in the same dims
    /// tensor); each operand of sample 1 must lie in the same buffer as
    /// sample 0's, at or after it (`Tensor::span_to`). Otherwise, and
    /// where the product is split along K, scatters, reads implicit
    /// operands, runs `coop` staged or tiled, or the device was opened
    /// without pairs (`GpuOptions::pairs`), the two are recorded one after
    /// the other, with the same results.
    pub fn record_pair(
        &self,
        rec: &mut Recorder,
        ops: (&Tensor, &Tensor, &Tensor),
        second: &Matmul,
        ops1: (&Tensor, &Tensor, &Tensor),
        d: Dims,
    ) -> Result<()> {
        let Some(stride_dims) = self.pair_stride(second).filter(|_| rec.gpu().pairs()) else {
            self.record(rec, ops.0, ops.1, ops.2, d)?;
            return second.record(rec, ops1.0, ops1.1, ops1.2, d);
        };
        let pair = Pair { second, ops: ops1, stride_dims };
        self.record_with(rec, ops, d, Some(&pair))
    }

    /// The distance between the two products' kept-count entries where
    /// `o` is this product but for its operands and kept counts, else None.
    fn pair_stride(&self, o: &Matmul) -> Option<u32> {
        let same = self.layout == o.layout
            && self.alpha.to_bits() == o.alpha.to_bits()
            && self.beta.to_bits() == o.beta.to_bits()
            && self.variant == o.variant
            && self.bias.is_some() == o.bias.is_some()
            && self.relu == o.relu
            && self.gate.is_some() == o.gate.is_some()
            && self.scatter.is_none()
            && o.scatter.is_none()
            && self.implicit.is_none()
            && o.implicit.is_none()
            && self.split == o.split
            && self.split_within == o.split_within
            && self.wide_bk == o.wide_bk
            && self.wide_tile == o.wide_tile
            && self.coop_mode == o.coop_mode
            && self.wide_pad == o.wide_pad
            && self.coop_shape == o.coop_shape
            && self.coop_unroll == o.coop_unroll
            && self.wide_kpack == o.wide_kpack;
        if !same {
            return None;
        }
        match (self.dims, o.dims) {
            (None, None) => {}
            (Some(x), Some(y)) if x.same_as(y) => {}
            _ => return None,
        }
        let mut stride = None;
        for (x, y) in self.sizes.iter().zip(&o.sizes) {
            match (*x, *y) {
                (Size::Static, Size::Static) => {}
                (Size::Batch { per: p }, Size::Batch { per: q }) if p == q => {}
                (Size::Kept { count: c0, blocks: b0 }, Size::Kept { count: c1, blocks: b1 }) if b0 == b1 => {
                    let s = c1.checked_sub(c0)?;
                    if stride.is_some_and(|t| t != s) {
                        return None;
                    }
                    stride = Some(s);
                }
                _ => return None,
            }
        }
        u32::try_from(stride.unwrap_or(0)).ok()
    }
}

impl Pair<'_> {
    /// The two products one after the other.
    pub(super) fn one_by_one(
        &self,
        rec: &mut Recorder,
        first: &Matmul,
        (c, a, b): (&Tensor, &Tensor, &Tensor),
        d: Dims,
    ) -> Result<()> {
        first.record(rec, c, a, b, d)?;
        self.second.record(rec, self.ops.0, self.ops.1, self.ops.2, d)
    }

    /// The pair in one launch of `kernel` (unsplit) with the first
    /// product's constants and parameters, over both samples' `tiles` each
    /// (at most `cap` workgroups, `limit` per grid dimension); for
    /// `matmul_coop_direct`, after one launch of `matmul_pack` writing both
    /// samples' f16 packs (`packs`: one sample's lengths in u32) into the
    /// device's packs, one after the other. One by one where an operand
    /// pair does not share a buffer or two samples' packs exceed a binding.
    pub(super) fn record(
        &self,
        rec: &mut Recorder,
        first: &Matmul,
        (c, a, b): (&Tensor, &Tensor, &Tensor),
        (kernel, constants, params): (Kernel, &Constants, MatmulParams),
        (tiles, cap, limit): (UVec3, u32, u32),
        packs: Option<(usize, usize)>,
    ) -> Result<()> {
        let gpu = rec.gpu();
        // The pair's own pipelines (a single product's never loop over samples).
        let mut constants = constants.clone();
        constants.push(("PAIR", 1.0));
        let span = |x: &Tensor, y: &Tensor| x.span_to(y, gpu).filter(|(t, _)| u32::try_from(t.len()).is_ok());
        let spans = (span(c, self.ops.0), span(a, self.ops.1), span(b, self.ops.2));
        // The two samples' C apart (written by both at once, they would
        // race; one after the other, the second would see the first).
        let (Some((cs, sc)), Some((as_, sa)), Some((bs, sb))) = spans else {
            return self.one_by_one(rec, first, (c, a, b), d_of(params));
        };
        if sc < c.len() {
            return self.one_by_one(rec, first, (c, a, b), d_of(params));
        }
        let opt = |x: Option<&Tensor>, y: Option<&Tensor>| match (x, y) {
            (Some(x), Some(y)) => span(x, y).map(Some),
            _ => Some(None),
        };
        let (Some(bias), Some(gate)) = (opt(first.bias, self.second.bias), opt(first.gate, self.second.gate)) else {
            return self.one_by_one(rec, first, (c, a, b), d_of(params));
        };
        let u = |s: usize| u32::try_from(s).unwrap_or(u32::MAX);
        let params = MatmulParams {
            samples: 2,
            stride_a: u(sa),
            stride_b: u(sb),
            stride_c: u(sc),
            stride_bias: bias.as_ref().map_or(0, |(_, s)| u(*s)),
            stride_gate: gate.as_ref().map_or(0, |(_, s)| u(*s)),
            stride_dims: self.stride_dims,
            ..params
        };
        let (one, zero_u32) = (Tensor::one(gpu), Tensor::zero_u32(gpu));
        let bias_t = bias.as_ref().map_or(&one, |(t, _)| t);
        let gate_t = gate.as_ref().map_or(&one, |(t, _)| t);
        let dims = first.dims.unwrap_or(&zero_u32);
        let mut bind = vec![(1, &as_), (2, &bs), (3, &cs), (4, bias_t), (5, gate_t), (6, dims), (7, &zero_u32)];
        let pack_tensors = match packs {
            Some(lens) => {
                let Some((strides, total)) = pack_strides(lens, gpu.limits().max_storage_buffer_binding_size) else {
                    return self.one_by_one(rec, first, (c, a, b), d_of(params));
                };
                let params = MatmulParams { stride_pack_a: strides.0, stride_pack_b: strides.1, ..params };
                let pa = Tensor::coop_pack(gpu, 0, total.0)?;
                let pb = Tensor::coop_pack(gpu, 1, total.1)?;
                record_pack_into(rec, (&constants, &params), (&as_, &bs, dims), [(&pa, lens.0), (&pb, lens.1)])?;
                Some((pa, pb, params))
            }
            None => None,
        };
        let params = pack_tensors.as_ref().map_or(params, |(_, _, p)| *p);
        if let Some((pa, pb, _)) = &pack_tensors {
            bind.extend([(9, pa), (10, pb)]);
        }
        let groups = capped_grid(tiles.x.saturating_mul(tiles.y).saturating_mul(2), cap, limit);
        rec.dispatch(kernel, &constants, (0, &params), &bind, groups)
    }
}

/// Where sample 1's f16 packs start after sample 0's, in halves (A, B),
/// and the two samples' packs' lengths in u32, for one sample's `lens` in
/// u32 (`pack_lens`): each sample's at a multiple of 64 u32 (so a pack's
/// quads stay whole), both within one binding of `max_bytes`.
fn pack_strides((la, lb): (usize, usize), max_bytes: u64) -> Option<((u32, u32), (usize, usize))> {
    let stride = |l: usize| l.div_ceil(64) * 64;
    let (sa, sb) = (stride(la), stride(lb));
    let fits = |s: usize| (2 * s as u64) * 4 <= max_bytes;
    if !fits(sa) || !fits(sb) {
        return None;
    }
    let halves = |s: usize| u32::try_from(2 * s).ok();
    Some(((halves(sa)?, halves(sb)?), (2 * sa, 2 * sb)))
}

/// The static sizes of a product's parameters.
fn d_of(p: MatmulParams) -> Dims {
    Dims { m: p.m as usize, n: p.n as usize, k: p.k as usize }
}
