//! Launcher of shaders/matmul.wgsl and shaders/matmul_coop.wgsl:
//! C = alpha·op(A)·op(B) + beta·C in three layouts, in the f32 variants or
//! on cooperative matrices (`coop`, mixed precision, from f16 packs or
//! staged). The variant normally comes from the device's choice (see
//! `autotune`) and its precision; benchmarks and tests may force one, and
//! the other tuning knobs (`knobs`).

mod knobs;
mod pair;
mod setup;

pub use super::matmul_desc::{Dims, DynDims, Implicit, Layout, Scatter, Size, flops};
use super::{KernelParams, NONE, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, capped_grid, grid_2d};
use crate::device::tensor::Tensor;
use crate::error::{Error, Result};

/// Keep in sync with `MatmulParams` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub beta: f32,
    pub alpha: f32,
    pub dyn_m: u32,
    pub dyn_n: u32,
    pub dyn_k: u32,
    pub ldc: u32,
    pub rows_map: u32,
    pub cols_map: u32,
    pub col_blocks: u32,
    pub col_block_full: u32,
    pub im_h: u32,
    pub im_w: u32,
    pub im_oh: u32,
    pub im_ow: u32,
    pub im_kh: u32,
    pub im_kw: u32,
    pub im_stride: u32,
    pub im_pad: u32,
    pub splits: u32,
    /// 0: as many K splits as recorded; else the device's count for the
    /// room of this many floats of partials (`split_count` in
    /// shaders/shared/matmul_core.wgsl).
    pub split_room: u32,
    /// Products in the launch: 1, or 2 for a pair (`record_pair`), whose
    /// second sample's operands start these many floats (entries of dims)
    /// after the first's.
    pub samples: u32,
    pub stride_a: u32,
    pub stride_b: u32,
    pub stride_c: u32,
    pub stride_bias: u32,
    pub stride_gate: u32,
    pub stride_dims: u32,
    /// A pair from f16 packs: halves between the two samples' packs.
    pub stride_pack_a: u32,
    pub stride_pack_b: u32,
}

use super::matmul_kpack::record_kpacks;
pub use super::matmul_kpack::{kpack_lens, kpack_rule};
use super::matmul_pack::{pack_lens, record_packs, record_packs_alone};
use super::matmul_split::{Split, kept_splits, record_split};
pub use super::matmul_thin::{THIN_MAX, thin_blocks, thin_rule};
pub use super::matmul_tiles::{
    TileFit, auto_splits, coop_fits, coop_shape, coop_tiled_depth, coop_tiled_shape, regtile_tile, wide_workgroup,
};
use super::matmul_tiles::{block_shape, wide_depth, wide_pads};
pub use crate::device::shader::Variant;
pub use crate::device::variant::CoopMode;
use crate::device::variant::{
    check_wide_depth, coop_mode_env, coop_mode_rule, coop_unroll_env, kept_matmul_env, kept_splits_env, thin_env,
    wide_kpack_env, wide_pad_env,
};

impl KernelParams for MatmulParams {
    const SHADER: Shader = Shader::Matmul;
    const WGSL_NAME: &'static str = "MatmulParams";
}

/// One matmul: layout, scaling, epilogues, and optionally a forced variant.
#[derive(Clone, Copy, Debug)]
pub struct Matmul<'a> {
    pub layout: Layout,
    pub alpha: f32,
    /// 0 overwrites C; 1 accumulates into it.
    pub beta: f32,
    pub variant: Option<Variant>,
    /// + bias[col] at the store.
    pub bias: Option<&'a Tensor>,
    /// max(·, 0) at the store.
    pub relu: bool,
    /// Zero where gate[row, col] <= 0 (gate shaped like C).
    pub gate: Option<&'a Tensor>,
    pub scatter: Option<Scatter<'a>>,
    /// The tensor of kept counts, where a size is `Kept`.
    dims: Option<&'a Tensor>,
    /// Where M, N and K come from.
    sizes: [Size; 3],
    implicit: Option<Implicit>,
    /// Splits of K (None: the launcher's rules, `auto_splits` and
    /// `kept_splits`).
    split: Option<u32>,
    /// At most this many splits of K, as many as this many floats of
    /// partials hold, decided on the device (`split_k_within`).
    split_within: Option<(u32, usize)>,
    /// `matmul_wide`'s K slice depth (None: `wide_depth`'s default).
    wide_bk: Option<u32>,
    /// `matmul_wide`'s block tile, rows × columns (None: `wide_workgroup`'s rule).
    wide_tile: Option<(u32, u32)>,
    /// How `coop` reads its operands (None: SPARSETRAIN_COOP, else
    /// `coop_mode_rule`).
    coop_mode: Option<CoopMode>,
    /// Whether `wide` may pad its staged slices (None: SPARSETRAIN_WIDE_PAD).
    wide_pad: Option<bool>,
    /// The shape of `coop` from f16 packs, direct or tiled (None:
    /// SPARSETRAIN_COOP_SHAPE, else each kernel's rule).
    coop_shape: Option<(u32, u32, u32)>,
    /// Whether `matmul_coop_direct` takes two K pieces a pass (None: SPARSETRAIN_COOP_UNROLL).
    coop_unroll: Option<bool>,
    /// Whether `wide` reads operands stored along K from K-major packs
    /// (None: SPARSETRAIN_WIDE_KPACK, else `kpack_rule`).
    wide_kpack: Option<bool>,
}

/// The most workgroups a product sized by kept counts launches (they loop
/// over the tiles beyond it): eight for each of 256 multiprocessors.
const KEPT_GRID_CAP: u32 = 2048;

fn opt_index(op: &'static str, what: &str, v: Option<usize>) -> Result<u32> {
    v.map_or(Ok(NONE), |i| u32_of(op, what, i))
}

impl<'a> Matmul<'a> {
    pub fn new(layout: Layout) -> Matmul<'a> {
        Matmul {
            layout,
            alpha: 1.0,
            beta: 0.0,
            variant: None,
            bias: None,
            relu: false,
            gate: None,
            scatter: None,
            dims: None,
            sizes: [Size::Static; 3],
            implicit: None,
            split: None,
            split_within: None,
            wide_bk: None,
            wide_tile: None,
            coop_mode: None,
            wide_pad: None,
            coop_shape: None,
            coop_unroll: None,
            wide_kpack: None,
        }
    }

    /// Reads one operand as the im2col columns of X, bound in its place:
    /// X is NHWC with a multiple of 4 stored channels (the operand's column
    /// count over the kernel positions), and the operand is not transposed.
    pub fn implicit(mut self, i: Implicit) -> Matmul<'a> {
        self.implicit = Some(i);
        self
    }

    /// Adds into C instead of overwriting it.
    pub fn accumulate(mut self) -> Matmul<'a> {
        self.beta = 1.0;
        self
    }

    pub fn bias(mut self, b: &'a Tensor) -> Matmul<'a> {
        self.bias = Some(b);
        self
    }

    pub fn relu(mut self) -> Matmul<'a> {
        self.relu = true;
        self
    }

    pub fn gate(mut self, g: &'a Tensor) -> Matmul<'a> {
        self.gate = Some(g);
        self
    }

    pub fn scatter(mut self, s: Scatter<'a>) -> Matmul<'a> {
        self.scatter = Some(s);
        self
    }

    /// Sizes read from kept counts on the device (see `DynDims`).
    pub fn dynamic(mut self, d: DynDims<'a>) -> Matmul<'a> {
        self.dims = Some(d.dims);
        for (slot, v) in self.sizes.iter_mut().zip([d.m, d.n, d.k]) {
            if let Some(count) = v {
                *slot = Size::Kept { count, blocks: 1 };
            }
        }
        self
    }

    /// Where M, N and K come from; `dims` holds the kept counts of `Kept` sizes.
    pub fn sizes(mut self, dims: Option<&'a Tensor>, m: Size, n: Size, k: Size) -> Matmul<'a> {
        if dims.is_some() {
            self.dims = dims;
        }
        self.sizes = [m, n, k];
        self
    }

    /// M is the step's batch (the static `m` is its capacity).
    pub fn batch_m(mut self) -> Matmul<'a> {
        self.sizes[0] = Size::Batch { per: 1 };
        self
    }

    /// K is the step's batch (the static `k` is its capacity).
    pub fn batch_k(mut self) -> Matmul<'a> {
        self.sizes[2] = Size::Batch { per: 1 };
        self
    }

    fn is_dynamic(&self) -> bool {
        self.sizes.iter().any(|s| *s != Size::Static)
    }

    /// Records `matmul_pack` of this product's operands into two new
    /// tensors of u32 (A's, B's), each u32 a pair of f16 (low half first):
    /// the packs `matmul_coop_direct` would multiply on blocks of
    /// `tile_rows` × `tile_cols` (multiples of 8), with the product's
    /// layout, dynamic sizes and implicit operand. For tests and tools; the
    /// product itself packs into the device's shared buffers.
    pub fn record_packs(
        &self,
        rec: &mut Recorder,
        (c, a, b): (&Tensor, &Tensor, &Tensor),
        d: Dims,
        (tile_rows, tile_cols): (u32, u32),
    ) -> Result<(Tensor, Tensor)> {
        self.check_operands(c, a, b, d)?;
        let (m, n, k) = (u32_of("matmul", "m", d.m)?, u32_of("matmul", "n", d.n)?, u32_of("matmul", "k", d.k)?);
        let setup = self.operand_setup(c, (m, n, k))?;
        let zero = Tensor::zero_u32(rec.gpu());
        let dims = self.dims.unwrap_or(&zero);
        let tile = glam::UVec2::new(tile_cols, tile_rows);
        record_packs_alone(rec, (&setup.0, &setup.1), (a, b, dims), (m, n, k), tile)
    }

    /// Records C = alpha·op(A)·op(B) + beta·C (+ epilogues).
    /// c: [m, n]; a: [m, k] or [k, m] (TN); b: [k, n] or [n, k] (NT). With
    /// dynamic sizes, `d` gives their upper bounds (multiples of 4).
    pub fn record(&self, rec: &mut Recorder, c: &Tensor, a: &Tensor, b: &Tensor, d: Dims) -> Result<()> {
        self.record_with(rec, (c, a, b), d, None)
    }

    /// `record`, or with `pair` the pair of this product and `pair`'s in
    /// one launch where the variant and product allow (`pair::Pair`), else
    /// the two one after the other.
    fn record_with(
        &self,
        rec: &mut Recorder,
        (c, a, b): (&Tensor, &Tensor, &Tensor),
        d: Dims,
        pair: Option<&pair::Pair>,
    ) -> Result<()> {
        const OP: &str = "matmul";
        let (a_len, b_len) = self.check_operands(c, a, b, d)?;
        if let Some(pr) = pair {
            pr.second.check_operands(pr.ops.0, pr.ops.1, pr.ops.2, d)?;
        }
        if d.m == 0 || d.n == 0 {
            return Ok(());
        }
        let (m, n, k) = (u32_of(OP, "m", d.m)?, u32_of(OP, "n", d.n)?, u32_of(OP, "k", d.k)?);
        // Flat indices inside the kernel are u32 too.
        for (name, len) in [("A", a_len), ("B", b_len), ("C", d.m * d.n)] {
            u32_of(OP, name, len)?;
        }
        let plain = self.bias.is_none()
            && self.gate.is_none()
            && self.scatter.is_none()
            && !self.is_dynamic()
            && !self.relu
            && self.implicit.is_none();
        // Static sizes (`plain`) and an empty K: a pair runs as two.
        if let Some(pr) = pair.filter(|_| d.k == 0 && self.beta == 0.0 && plain) {
            return pr.one_by_one(rec, self, (c, a, b), d);
        }
        if d.k == 0 && self.beta == 0.0 && plain {
            // An empty sum: C = 0.
            return c.view(0, &[d.m * d.n]).and_then(|v| super::fill::fill_f32(rec, &v, 0.0));
        }
        let gpu = rec.gpu();
        // Implicit convolution operands were chosen for the device's variant
        // (the layer sized its scratch for it): keep it for them.
        // SPARSETRAIN_KEPT_MATMUL may name another f32 variant for products
        // a kept count sizes (an experiment: BENCHMARKS.md); not for
        // implicit operands (above).
        let kept_mn = self.sizes[..2].iter().any(|s| matches!(s, Size::Kept { .. }));
        // A kept count sets any size (M, N or K): the static sizes are only
        // capacities (`coop_mode_rule`, `kpack_rule` below).
        let kept = kept_mn || matches!(self.sizes[2], Size::Kept { .. });
        let plain_f32 = self.implicit.is_none() && gpu.matmul_variant() != Variant::Coop;
        let kept_variant = kept_matmul_env()?.filter(|_| kept_mn && plain_f32);
        let variant = self.variant.or(kept_variant).unwrap_or(if self.implicit.is_some() {
            gpu.matmul_variant()
        } else {
            gpu.matmul_variant_for(m, n)
        });
        // Products with a thin side on GPUs (`thin_rule`), where no variant
        // was asked for (nor named by SPARSETRAIN_MATMUL), mixed precision
        // included; SPARSETRAIN_THIN may turn it off, or on for every
        // product with such a side.
        let env_variant = gpu.matmul_choice().source == crate::device::shader::ChoiceSource::Env;
        let asked = self.variant.is_some() || kept_variant.is_some() || self.implicit.is_some() || env_variant;
        let thin = !asked
            && match thin_env()? {
                Some(false) => false,
                Some(true) => {
                    let f32_or_coop =
                        matches!(variant, Variant::RegTile | Variant::Shared | Variant::Wide | Variant::Coop);
                    f32_or_coop && m.min(n) <= THIN_MAX
                }
                None => thin_rule(gpu.report().device_type, variant, self.layout, (m, n, k)),
            };
        let variant = if thin { Variant::Thin } else { variant };
        // A pair runs in one launch only from its operands as stored
        // (implicit operands included) or from f16 packs (`coop` direct,
        // checked below); a scattering pair only where K splits (below).
        let mut fit = self.tile_fit()?;
        // `coop` multiplies f16 packs of the operands unless asked to stage
        // them, or a pack would not fit one binding; from the packs directly
        // or through workgroup tiles where those fit (asked for, or by
        // `coop_mode_rule`: on GPUs where no size is a kept count).
        let mut tiled_asked = false;
        if variant == Variant::Coop {
            let rule = || coop_mode_rule(gpu.report().device_type, kept);
            let mode = match self.coop_mode {
                Some(mode) => mode,
                None => coop_mode_env()?.unwrap_or_else(rule),
            };
            fit.coop_staged = mode == CoopMode::Staged;
            tiled_asked = mode == CoopMode::Tiled;
            // The tiled kernel's own rule where no shape was asked.
            if let (true, None, Ok(support)) = (tiled_asked, fit.coop_shape, gpu.coop()) {
                fit.coop_shape = Some(coop_tiled_shape(m, n, fit.kept, support, gpu.limits()));
            }
        }
        let mut blocks = block_shape(gpu, variant, m, n, fit)?;
        let packs = blocks
            .coop_direct
            .then(|| pack_lens((m, n, k), blocks.tile, gpu.limits().max_storage_buffer_binding_size))
            .flatten();
        if blocks.coop_direct && packs.is_none() {
            blocks = block_shape(gpu, variant, m, n, TileFit { coop_staged: true, ..fit })?;
        }
        // The tiled kernel's K slice depth, where it runs.
        let tiled_depth = match (blocks.coop, gpu.coop()) {
            (Some(shape), Ok(support)) if tiled_asked && blocks.coop_direct => {
                coop_tiled_depth(shape, support, gpu.limits().max_compute_workgroup_storage_size)
            }
            _ => None,
        };
        let tiled = tiled_depth.is_some();
        if let Some(pr) = pair.filter(|_| variant == Variant::Coop && (tiled || packs.is_none())) {
            return pr.one_by_one(rec, self, (c, a, b), d);
        }
        let wg = blocks.wg;
        let (mut constants, params) = self.operand_setup(c, (m, n, k))?;
        constants.extend([("WG_X", f64::from(wg.x)), ("WG_Y", f64::from(wg.y))]);
        if variant == Variant::Thin {
            // The side `thin_blocks` made thin.
            constants.push(("THIN_M", f64::from(u8::from(n > THIN_MAX))));
        }
        let ty = gpu.report().device_type;
        // `wide` reads operands stored along K from K-major packs, on
        // large products (implicit operands are read where they lie). Not
        // by default where a kept count sizes the product: its static sizes
        // are only capacities, and the steps of compressed layers are
        // already long in launches (BENCHMARKS.md).
        let kpacks = if variant == Variant::Wide && self.implicit.is_none() {
            let want = match self.wide_kpack {
                _ if pair.is_some() => false,
                Some(on) => on,
                None => wide_kpack_env()?.unwrap_or_else(|| !kept && kpack_rule(ty, (m, n, k))),
            };
            let trans = (self.layout.trans_a(), self.layout.trans_b());
            let max_bytes = gpu.limits().max_storage_buffer_binding_size;
            if want { kpack_lens((m, n, k), blocks.tile, trans, max_bytes) } else { (None, None) }
        } else {
            (None, None)
        };
        let packed = (kpacks.0.is_some(), kpacks.1.is_some());
        if variant == Variant::Wide {
            let bk = wide_depth(gpu, self.wide_bk, wg)?;
            let want = self.wide_pad.map_or_else(wide_pad_env, Ok)?;
            let wg_bytes = gpu.limits().max_compute_workgroup_storage_size;
            // A packed operand stages like Aᵀ·B's: nothing transposes.
            let trans = (self.layout.trans_a() || packed.0, self.layout.trans_b() && !packed.1);
            let (pad_a, pad_b) = wide_pads(wg_bytes, bk, wg, trans, want);
            constants.extend([
                ("WBK", f64::from(bk)),
                ("WIDE_PAD_A", f64::from(pad_a)),
                ("WIDE_PAD_B", f64::from(pad_b)),
            ]);
            if packed.0 || packed.1 {
                constants.extend([
                    ("KPACK_A", f64::from(u8::from(packed.0))),
                    ("KPACK_B", f64::from(u8::from(packed.1))),
                    ("PACK_BM", f64::from(blocks.tile.y)),
                    ("PACK_BN", f64::from(blocks.tile.x)),
                ]);
            }
        } else if let Some(bk) = self.wide_bk {
            // Asked for, so checked even where another variant runs.
            check_wide_depth(bk)?;
        }
        if let Some((tm, wm, wn)) = blocks.coop {
            constants.extend([("COOP_TM", f64::from(tm)), ("COOP_WM", f64::from(wm)), ("COOP_WN", f64::from(wn))]);
            if let Some(cbk) = tiled_depth {
                // Its staged B is as wide as its subgroups' tiles.
                constants.extend([("COOP_TN", f64::from(tm)), ("CBK", f64::from(cbk))]);
            }
        }
        if blocks.coop_direct {
            let unroll = self.coop_unroll.map_or_else(coop_unroll_env, Ok)?;
            constants.extend([
                ("PACK_BM", f64::from(blocks.tile.y)),
                ("PACK_BN", f64::from(blocks.tile.x)),
                ("COOP_UNROLL", f64::from(u8::from(unroll))),
            ]);
        }
        // One workgroup per output tile, except where the sizes are only
        // known on the device: there at most `grid_cap` workgroups loop over
        // the tiles, so that the tiles a small kept count leaves empty cost
        // nothing. Static sizes keep one workgroup per tile: on lavapipe the
        // looping grid measurably changed dense speeds (BENCHMARKS.md).
        // GPUs have no cap, but a product a kept count sizes is recorded for
        // its capacity: at 10% of an 8192-wide layer's units its weight
        // gradient has 169 tiles of 64 × 64 among 16384, and every empty one
        // is still launched; at most KEPT_GRID_CAP loop over them instead.
        let tiles = grid_2d(n, m, blocks.tile);
        let limit = gpu.limits().max_compute_workgroups_per_dimension;
        let cap = if fit.kept {
            gpu.grid_cap().min(KEPT_GRID_CAP)
        } else if self.is_dynamic() {
            gpu.grid_cap()
        } else {
            u32::MAX
        };
        let groups = capped_grid(tiles.x.saturating_mul(tiles.y), cap, limit);
        let kept_k = matches!(self.sizes[2], Size::Kept { .. });
        let max_floats = gpu.limits().max_storage_buffer_binding_size / 4;
        let splits = match self.split {
            Some(s) if s > 1 && !variant.splits_k() => {
                return Err(Error::InvalidArgument(format!("matmul: the {} variant does not split K", variant.name())));
            }
            Some(s) => s,
            None if self.split_within.is_some() => 1,
            None => auto_splits(ty, variant, tiles.x * tiles.y, k, fit.kept, kept_k),
        };
        // Left to the device where asked, or on GPUs for a kept-count
        // product the fixed rule leaves unsplit.
        let within = match (self.split, self.split_within) {
            (None, Some(w)) => Some(w),
            (None, None) if splits <= 1 => kept_splits(ty, variant, fit, (kept_k, k), kept_splits_env()?),
            _ => None,
        };
        let plan = if let Some((most, room)) = within.filter(|&(most, _)| most > 1) {
            if !variant.splits_k() {
                return Err(Error::InvalidArgument(format!("matmul: the {} variant does not split K", variant.name())));
            }
            // No more room than `most` full-size splits fill, nor than one
            // binding holds; at least two splits of one value.
            let full = u64::from(most) * u64::from(m) * u64::from(n);
            let room = u32::try_from((room as u64).min(full).min(max_floats)).unwrap_or(u32::MAX).max(2);
            Plan::Within(Split { splits: most, scratch_len: room as usize, groups, cap }, room)
        } else {
            // Partial products of [splits, m, n] must fit one binding.
            let splits = splits.min((max_floats / (u64::from(m) * u64::from(n))).clamp(1, u64::from(u32::MAX)) as u32);
            if splits <= 1 {
                Plan::Whole
            } else {
                Plan::Fixed(Split { splits, scratch_len: splits as usize * d.m * d.n, groups, cap })
            }
        };
        // A pair: in one launch unsplit (not scattering: both samples
        // would add into one C at once); split, its partials in one launch
        // (not `coop`'s, whose packs this path does not make) and each
        // sample's reduce after; else one by one.
        if let Some(pr) = pair {
            return match &plan {
                Plan::Whole if self.scatter.is_none() => {
                    let kernel = if blocks.coop_direct { Kernel::MatmulCoopDirect } else { variant.kernel() };
                    pr.record(rec, self, (c, a, b), (kernel, &constants, params), (tiles, cap, limit), packs)
                }
                Plan::Fixed(_) | Plan::Within(..) if variant != Variant::Coop => {
                    pr.record_split(rec, self, (c, a, b), (variant.kernel(), &constants, params), &plan, tiles)
                }
                _ => pr.one_by_one(rec, self, (c, a, b), d),
            };
        }
        let (one, zero_u32) = (Tensor::one(gpu), Tensor::zero_u32(gpu));
        let bias = self.bias.unwrap_or(&one);
        let gate = self.gate.unwrap_or(&one);
        let dims = self.dims.unwrap_or(&zero_u32);
        let maps = self.scatter.map_or(&zero_u32, |s| s.maps);
        let (kpack_a, kpack_b) = if packed.0 || packed.1 {
            record_kpacks(rec, (&constants, &params), (a, b, dims), kpacks, gpu.grid_cap())?
        } else {
            (None, None)
        };
        // The packs are bound in their operands' places.
        let (a, b) = (kpack_a.as_ref().unwrap_or(a), kpack_b.as_ref().unwrap_or(b));
        let mut bind = vec![(1, a), (2, b), (3, c), (4, bias), (5, gate), (6, dims), (7, maps)];
        let kernel = if tiled {
            Kernel::MatmulCoopTiled
        } else if blocks.coop_direct {
            Kernel::MatmulCoopDirect
        } else {
            variant.kernel()
        };
        let pack_tensors = match packs {
            Some(lens) => Some(record_packs(rec, &constants, &params, (a, b, dims), lens)?),
            None => None,
        };
        if let Some((pa, pb)) = &pack_tensors {
            // The tiled kernel reads them as 16-byte chunks.
            bind.extend(if tiled { [(12, pa), (13, pb)] } else { [(9, pa), (10, pb)] });
        }
        match plan {
            Plan::Within(split, room) => {
                let params = MatmulParams { split_room: room, ..params };
                // Unsplit, run where the device's count is below two; then
                // split in up to `most`, run where it is not.
                rec.dispatch(kernel, &constants, (0, &params), &bind, groups)?;
                let reduce = MatmulParams { splits: split.splits, ..params };
                record_split(rec, kernel, &constants, (&params, &reduce), &bind, split, (m, n))
            }
            Plan::Fixed(split) => {
                let reduce = MatmulParams { splits: split.splits, ..params };
                record_split(rec, kernel, &constants, (&params, &reduce), &bind, split, (m, n))
            }
            Plan::Whole => rec.dispatch(kernel, &constants, (0, &params), &bind, groups),
        }
    }
}

/// How a product splits K (`Matmul::record_with`): not at all, in a fixed
/// count, or in the device's count within `room` floats of partials (with
/// an unsplit launch for where the device decides against).
pub(super) enum Plan {
    Whole,
    Fixed(Split),
    Within(Split, u32),
}
