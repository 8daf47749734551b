//! Pairs: the same product of a sparse step's two mask samples in one
//! launch (`Matmul::record_pair`). Each sample has its own operands, kept
//! counts and bias; the kernel runs over the tiles of sample 0, then of
//! sample 1, each with its sizes and operands (`load_sample` in
//! shaders/shared/matmul_core.wgsl). A small kept product fills twice the
//! workgroups of one, and the step launches once instead of twice. `coop`
//! from f16 packs packs both samples in one launch (each into its own part
//! of the device's packs) and multiplies them in another. A product split
//! along K computes both samples' partials in one launch and reduces each
//! sample's in its own, sample 0's first: so a pair of weight gradients,
//! which both scatter-add into one gradient, pairs where it splits.
//! Implicit convolution operands pair too (each sample reads its own X or
//! dY; the geometry is one). Where a launch cannot take both (an unsplit
//! scatter, `coop` staged, tiled or split, operands in different buffers),
//! the two run one after the other. The results are the same bit for bit
//! either way.

use glam::UVec3;

use super::{Matmul, MatmulParams, Plan, Scatter, Size};
use crate::device::record::Recorder;
use crate::device::shader::{Constants, Kernel, capped_grid};
use crate::device::tensor::{Tensor, aligned_len};
use crate::error::Result;
use crate::ops::matmul_desc::Dims;
use crate::ops::matmul_pack::record_pack_into;
use crate::ops::matmul_split::{record_partials, record_reduce, with};

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
    /// sample 0's, at or after it (`Tensor::span_to`); a scatter may start
    /// its maps elsewhere. Otherwise, and where the product scatters
    /// unsplit, runs `coop` staged, tiled or split,
    /// or the device was opened without pairs (`GpuOptions::pairs`), the two
    /// are recorded one after the other, with the same results. Implicit
    /// operands pair where both products read the same geometry.
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
            && same_scatter(self.scatter.as_ref(), o.scatter.as_ref())
            && self.implicit == o.implicit
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
    /// A pair split along K (`plan`, fixed or the device's count): both
    /// samples' partial products in one launch, into two parts of the
    /// device's split scratch, then each sample's reduce through its own
    /// epilogues (a scatter through its own maps), sample 0's first; where
    /// the device decides, each sample's unsplit launch before its reduce.
    /// The additions into C come in the order of one by one (all of
    /// sample 0's before sample 1's), so both samples may add into one C
    /// (a weight gradient).
    /// One by one where the operands do not share a buffer or two parts of
    /// partials do not fit one binding.
    pub(super) fn record_split(
        &self,
        rec: &mut Recorder,
        first: &Matmul,
        (c, a, b): (&Tensor, &Tensor, &Tensor),
        (kernel, constants, params): (Kernel, &Constants, MatmulParams),
        plan: &Plan,
        tiles: UVec3,
    ) -> Result<()> {
        let gpu = rec.gpu();
        let d = d_of(params);
        let (split, room) = match plan {
            Plan::Fixed(s) => (s, 0),
            Plan::Within(s, room) => (s, *room),
            Plan::Whole => return self.one_by_one(rec, first, (c, a, b), d),
        };
        let (Some((as_, sa)), Some((bs, sb))) = (span(a, self.ops.1, gpu), span(b, self.ops.2, gpu)) else {
            return self.one_by_one(rec, first, (c, a, b), d);
        };
        let part = aligned_len(split.scratch_len);
        let max_floats = gpu.limits().max_storage_buffer_binding_size / 4;
        let Some(u32_part) = u32::try_from(part).ok().filter(|_| 2 * part as u64 <= max_floats) else {
            return self.one_by_one(rec, first, (c, a, b), d);
        };
        // Sample 1's own parameters: its kept counts and maps.
        let (_, params1) = self.second.operand_setup(self.ops.0, (params.m, params.n, params.k))?;
        let p0 = MatmulParams { split_room: room, ..params };
        let p1 = MatmulParams { split_room: room, ..params1 };
        let scratch = Tensor::split_scratch(gpu, 2 * part)?;
        let parts = [scratch.view(0, &[split.scratch_len])?, scratch.view(part, &[split.scratch_len])?];
        let stand = (Tensor::one(gpu), Tensor::zero_u32(gpu));
        let bind0 = bindings(first, (c, a, b), &stand);
        let bind1 = bindings(self.second, self.ops, &stand);
        let unsplit = matches!(plan, Plan::Within(..));
        if unsplit {
            rec.dispatch(kernel, constants, (0, &p0), &bind0, split.groups)?;
        }
        // Both samples' partials: the pair's pipeline, no epilogue.
        let mut pair_consts = constants.clone();
        pair_consts.push(("PAIR", 1.0));
        let both = MatmulParams {
            samples: 2,
            stride_a: u32::try_from(sa).unwrap_or(u32::MAX),
            stride_b: u32::try_from(sb).unwrap_or(u32::MAX),
            stride_c: u32_part,
            stride_dims: self.stride_dims,
            ..p0
        };
        let whole = scratch.view(0, &[part + split.scratch_len])?;
        let bind = [(1, &as_), (2, &bs), (3, &whole), (4, &stand.0), (5, &stand.0), (6, bind0[5].1), (7, &stand.1)];
        let pair_tiles = tiles.x.saturating_mul(tiles.y).saturating_mul(2);
        let grid = capped_grid(pair_tiles, split.cap, gpu.limits().max_compute_workgroups_per_dimension);
        record_partials(rec, kernel, &pair_consts, &both, &bind, UVec3::new(grid.x, grid.y, split.splits))?;
        let (m, n) = (params.m, params.n);
        let reduce0 = MatmulParams { splits: split.splits, ..p0 };
        record_reduce(rec, constants, &reduce0, &with(&bind0, 1, &parts[0]), split.cap, (m, n))?;
        if unsplit {
            rec.dispatch(kernel, constants, (0, &p1), &bind1, split.groups)?;
        }
        let reduce1 = MatmulParams { splits: split.splits, ..p1 };
        record_reduce(rec, constants, &reduce1, &with(&bind1, 1, &parts[1]), split.cap, (m, n))
    }

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
        let d = d_of(params);
        // The pair's own pipelines (a single product's never loop over samples).
        let mut constants = constants.clone();
        constants.push(("PAIR", 1.0));
        let spans = (span(c, self.ops.0, gpu), span(a, self.ops.1, gpu), span(b, self.ops.2, gpu));
        // The two samples' C apart (written by both at once, they would
        // race; one after the other, the second would see the first).
        let (Some((cs, sc)), Some((as_, sa)), Some((bs, sb))) = spans else {
            return self.one_by_one(rec, first, (c, a, b), d);
        };
        if sc < c.len() {
            return self.one_by_one(rec, first, (c, a, b), d);
        }
        let opt = |x: Option<&Tensor>, y: Option<&Tensor>| match (x, y) {
            (Some(x), Some(y)) => span(x, y, gpu).map(Some),
            _ => Some(None),
        };
        let (Some(bias), Some(gate)) = (opt(first.bias, self.second.bias), opt(first.gate, self.second.gate)) else {
            return self.one_by_one(rec, first, (c, a, b), d);
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
                    return self.one_by_one(rec, first, (c, a, b), d);
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

/// Whether two scatters differ at most in where their maps start (each
/// sample's kept lists).
fn same_scatter(x: Option<&Scatter>, y: Option<&Scatter>) -> bool {
    match (x, y) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            x.maps.same_as(y.maps)
                && x.rows.is_some() == y.rows.is_some()
                && x.cols.is_some() == y.cols.is_some()
                && (x.ldc, x.col_blocks, x.col_block_full) == (y.ldc, y.col_blocks, y.col_block_full)
        }
        _ => false,
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

/// Each sample's bindings of its product (C, A, B at 3, 1, 2; bias, gate,
/// dims and maps or stand-ins).
fn bindings<'t>(
    mm: &Matmul<'t>,
    (c, a, b): (&'t Tensor, &'t Tensor, &'t Tensor),
    stand: &'t (Tensor, Tensor),
) -> Vec<(u32, &'t Tensor)> {
    let (one, zero) = (&stand.0, &stand.1);
    vec![
        (1, a),
        (2, b),
        (3, c),
        (4, mm.bias.unwrap_or(one)),
        (5, mm.gate.unwrap_or(one)),
        (6, mm.dims.unwrap_or(zero)),
        (7, mm.scatter.map_or(zero, |s| s.maps)),
    ]
}

/// Both samples' operand as one binding and sample 1's distance from
/// sample 0's (`Tensor::span_to`), where its flat indices fit u32.
fn span(x: &Tensor, y: &Tensor, gpu: &crate::device::gpu::Gpu) -> Option<(Tensor, usize)> {
    x.span_to(y, gpu).filter(|(t, _)| u32::try_from(t.len()).is_ok())
}

/// The static sizes of a product's parameters.
fn d_of(p: MatmulParams) -> Dims {
    Dims { m: p.m as usize, n: p.n as usize, k: p.k as usize }
}
