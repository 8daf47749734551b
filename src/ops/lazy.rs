//! Launcher of shaders/lazy.wgsl: the gradient norm and the SGD update of a
//! sparse step over the weights its two masks can reach, with exact lazy
//! catch-up of the others (see the shader's header for why it is exact).
//! A layer that gathers its kept weights for a pass (`LazyPass::gather`)
//! brings them up to date in the same launch; `Lazy::refresh` does the rest.
//! On CPU adapters by default (`defer_rule` in src/train/trainer/lazy.rs)
//! a step's own update waits for the next such launch too (deferred:
//! `Lazy::update` then only notes the step's clip factor), and
//! `Lazy::settle` applies what waits before the ring of factors runs out.

use std::sync::Mutex;

use glam::UVec3;

use super::optim::Sgd;
use super::{KernelParams, NONE, launch_1d, need, u32_of};
use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, capped_grid};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// Keep in sync with `LazyParams` in shaders/lazy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LazyParams {
    pub slots: u32,
    pub groups: u32,
    pub sets: u32,
    pub entries: u32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub n: u32,
    pub kept_at: u32,
    pub ranks_at: u32,
    pub counts_at: u32,
    pub sample: u32,
    pub gather_slot: u32,
    pub gather_bias: u32,
    pub defer: u32,
    pub ring_at: u32,
    pub ring_len: u32,
    /// lazy_gather of both samples (`LazyPass::gather_pair`): 1, and sample
    /// 1's offsets in the bound Wc and bc.
    pub pair: u32,
    pub stride_wc: u32,
    pub stride_bc: u32,
    pub _pad: u32,
}

impl KernelParams for LazyParams {
    const SHADER: Shader = Shader::Lazy;
    const WGSL_NAME: &'static str = "LazyParams";
}

const WG: u32 = 64;
/// Words per slot in the slot table (lazy.wgsl's `Slot`).
const SLOT_WORDS: usize = 8;
/// The most workgroups per (slot, sample) on GPUs (see `Lazy::new`).
const GPU_GROUPS: u32 = 1024;
/// lazy.wgsl's PEND: the bit of a weight's clock that says its last
/// update is deferred.
pub const PEND: u32 = 0x8000_0000;
/// Where the ring of deferred updates' clip factors starts in the clip
/// record (after shaders/shared/clip.wgsl's fields), and its length: the
/// most steps a deferred update may wait before `Lazy::settle`.
pub const RING_AT: usize = 8;
pub const RING: usize = 1024;
/// The clip record's length under lazy SGD with deferred updates.
pub const CLIP_LEN: usize = RING_AT + RING;
/// Workgroups per (slot, sample) of `lazy_finish`: it walks the weights
/// only on a non-finite step, and returns at once on the others.
const FINISH_GROUPS: u32 = 8;

/// A side of a parameter: all `len` elements, or those of channel set `set`
/// (whose lists start at `slot` within a sample).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotSide {
    pub len: usize,
    pub set: Option<(usize, usize)>,
}

/// One parameter as [rows, blocks × cols] at `offset` in the flat buffers.
/// `gathered`: its layer reads it in a sparse step only through
/// `LazyPass::gather`, once per mask sample, which brings it up to date;
/// `Lazy::refresh` leaves it alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LazySlot {
    pub offset: usize,
    pub rows: SlotSide,
    pub cols: SlotSide,
    pub blocks: usize,
    pub gathered: bool,
}

impl LazySlot {
    pub fn len(&self) -> usize {
        self.rows.len * self.blocks * self.cols.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a mask set's kept lists, ranks and counts are (`sparse::MaskSet`):
/// one buffer, the three offsets in it, sets per sample and list entries
/// per sample.
#[derive(Clone, Copy, Debug)]
pub struct SetsRef<'a> {
    pub all: &'a Tensor,
    pub offsets: [usize; 3],
    pub sets: usize,
    pub entries: usize,
}

/// The SGD state a lazy update reads and writes.
#[derive(Clone, Copy, Debug)]
pub struct LazyState<'a> {
    pub w: &'a Tensor,
    pub momentum: &'a Tensor,
    /// The gradient: where updates are deferred, a weight's waits here
    /// until it is next brought up to date.
    pub g: &'a Tensor,
    /// u32: the clock at which each weight was last brought up to date
    /// (with `PEND` where its last update is deferred).
    pub last: &'a Tensor,
    /// [factor, _, _, clock (u32 bits), …]: the clip record
    /// (shaders/shared/clip.wgsl), decided by `optim::adam_clip_step` in a
    /// sparse step; where updates are deferred, `CLIP_LEN` long (the ring
    /// of factors at `RING_AT`).
    pub clip: &'a Tensor,
}

/// The recorded pieces of lazy SGD for one graph's parameter slots.
pub struct Lazy {
    slots: Vec<LazySlot>,
    table: Tensor,
    /// The slots `refresh` covers (not gathered), and their count.
    refresh_table: Tensor,
    refreshed: u32,
    groups: u32,
    /// Per-thread partial sums of the norm: [2 · slots · groups · WG].
    pub partials: Tensor,
    total: usize,
    /// Whether a step's update waits for the weight's next refresh or
    /// gather (lazy_finish) instead of its own pass (lazy_sgd).
    defer: bool,
    /// Which gathered slots a step's recording gathered, per sample:
    /// `check_gathered` makes sure none was missed.
    /// (A mutex, not a cell: a trainer stays `Sync` for embedders.)
    seen: Mutex<Vec<[bool; 2]>>,
}

/// What a layer's gather needs to bring its weights up to date: lazy SGD,
/// its state, the step's mask sets, the sample of this pass and the slot
/// of the layer's first parameter.
#[derive(Clone, Copy)]
pub struct LazyPass<'a> {
    pub op: &'a Lazy,
    pub st: LazyState<'a>,
    pub sets: SetsRef<'a>,
    pub hp: Sgd,
    pub sample: usize,
    pub first_slot: usize,
}

impl LazyPass<'_> {
    /// Wc = W[kept rows, blocks × kept cols] and (with a bias) bc = b[kept
    /// rows] of this pass's sample, as `gather::gather_weight_blocks` writes
    /// them, every weight read brought up to date first. `param` and
    /// `bias` are the layer's parameter indices.
    pub fn gather(
        &self,
        rec: &mut Recorder,
        param: usize,
        bias: Option<usize>,
        wc: &Tensor,
        bc: &Tensor,
    ) -> Result<()> {
        self.op.gather(rec, *self, self.first_slot + param, bias.map(|b| self.first_slot + b), (wc, bc))
    }

    /// `gather` of this pass (sample 0's) into `wc[0]`, `bc[0]` and of
    /// `second` (sample 1's pass of the same step) into `wc[1]`, `bc[1]`:
    /// one launch where each pair of outputs lies in one buffer, sample 1's
    /// after sample 0's (a weight both samples read is brought up to date
    /// once and written into both); else one after the other. The same
    /// bits either way.
    pub fn gather_pair(
        &self,
        rec: &mut Recorder,
        second: &LazyPass,
        (param, bias): (usize, Option<usize>),
        wc: [&Tensor; 2],
        bc: [&Tensor; 2],
    ) -> Result<()> {
        // One step's two passes: the same lazy SGD, state and rate; one
        // launch uses sample 0's.
        let same = std::ptr::eq(self.op, second.op)
            && self.st.w.same_as(second.st.w)
            && self.st.last.same_as(second.st.last)
            && self.hp == second.hp
            && self.first_slot == second.first_slot
            && (self.sample, second.sample) == (0, 1)
            && self.sets.all.same_as(second.sets.all)
            && self.sets.offsets == second.sets.offsets;
        let slots = (self.first_slot + param, bias.map(|b| self.first_slot + b));
        if same && rec.gpu().pairs() && self.op.gather_pair(rec, *self, slots, wc, bc)? {
            return Ok(());
        }
        self.gather(rec, param, bias, wc[0], bc[0])?;
        second.gather(rec, param, bias, wc[1], bc[1])
    }
}

impl Lazy {
    /// For `slots` covering `total` weights, deferring each step's update
    /// where `defer`; allocates the slot table and the norm's partial sums.
    pub fn new(gpu: &Gpu, slots: Vec<LazySlot>, total: usize, defer: bool) -> Result<Lazy> {
        let mut table = Vec::with_capacity(SLOT_WORDS * slots.len());
        let mut refresh = Vec::new();
        for s in &slots {
            if s.offset + s.len() > total {
                return Err(Error::InvalidArgument(format!("lazy slot {s:?} lies past the {total} weights")));
            }
            let side = |x: SlotSide| -> Result<[u32; 3]> {
                let (set, slot) = x.set.map_or((NONE, NONE), |(k, sl)| (k as u32, sl as u32));
                Ok([u32_of("lazy", "side", x.len)?, set, slot])
            };
            let [rows, row_set, row_slot] = side(s.rows)?;
            let [cols, col_set, col_slot] = side(s.cols)?;
            table.extend([u32_of("lazy", "offset", s.offset)?, rows, row_set, row_slot, cols, col_set, col_slot]);
            table.push(u32_of("lazy", "blocks", s.blocks.max(1))?);
            if !s.gathered {
                refresh.extend_from_slice(&table[table.len() - SLOT_WORDS..]);
            }
        }
        let refreshed = (refresh.len() / SLOT_WORDS) as u32;
        let rows = 2 * slots.len().max(1) as u32;
        // Workgroups take whole rows (lazy.wgsl). Lavapipe pays per
        // workgroup: share the cap among the slots. GPUs: a workgroup per
        // row of the tallest parameter, up to GPU_GROUPS: the grid is
        // launched for every row although a step's masks keep a few (10% of
        // an 8192-row layer: 819 rows of work for 8192 workgroups per slot
        // and sample, each writing its partial sums of the norm), and the
        // workgroups loop over the kept rows beyond it.
        let tallest = slots.iter().map(|s| s.rows.len).max().unwrap_or(0) as u32;
        let most = GPU_GROUPS.min(gpu.limits().max_compute_workgroups_per_dimension);
        let groups =
            if gpu.grid_cap() == u32::MAX { tallest.clamp(1, most) } else { (gpu.grid_cap() / rows).clamp(1, most) };
        let n_partials = rows as usize * (groups * WG) as usize;
        Ok(Lazy {
            table: Tensor::from_u32(gpu, "lazy slot table", &[table.len().max(1)], &padded(table))?,
            refresh_table: Tensor::from_u32(gpu, "lazy refresh table", &[refresh.len().max(1)], &padded(refresh))?,
            refreshed,
            partials: Tensor::zeros(gpu, "lazy norm partials", &[n_partials], DType::F32)?,
            groups,
            seen: Mutex::new(vec![[false; 2]; slots.len()]),
            slots,
            total,
            defer,
        })
    }

    /// Whether each step's update is deferred (see `new`).
    pub fn defers(&self) -> bool {
        self.defer
    }

    fn params(&self, sets: SetsRef, hp: Sgd, n: usize) -> Result<LazyParams> {
        Ok(LazyParams {
            slots: u32_of("lazy", "slots", self.slots.len())?,
            groups: self.groups,
            sets: u32_of("lazy", "sets", sets.sets)?,
            entries: u32_of("lazy", "entries", sets.entries)?,
            momentum: hp.momentum,
            weight_decay: hp.weight_decay,
            n: u32_of("lazy", "n", n)?,
            kept_at: u32_of("lazy", "offset", sets.offsets[0])?,
            ranks_at: u32_of("lazy", "offset", sets.offsets[1])?,
            counts_at: u32_of("lazy", "offset", sets.offsets[2])?,
            sample: 0,
            gather_slot: NONE,
            gather_bias: NONE,
            defer: if self.defer { PEND } else { 0 },
            ring_at: RING_AT as u32,
            ring_len: RING as u32,
            pair: 0,
            stride_wc: 0,
            stride_bc: 0,
            _pad: 0,
        })
    }

    fn grid(&self) -> UVec3 {
        UVec3::new(self.groups, 2 * self.slots.len() as u32, 1)
    }

    /// Brings the weights either mask sample can reach up to date, before
    /// the step's passes read them (at the step block's rate), but those of
    /// gathered slots, which the passes' gathers bring up to date. Starts a
    /// step's recording (`check_gathered`).
    pub fn refresh(&self, rec: &mut Recorder, st: LazyState, sets: SetsRef, hp: Sgd) -> Result<()> {
        self.check(st, hp)?;
        self.seen_flags().iter_mut().for_each(|s| *s = [false; 2]);
        if self.refreshed == 0 {
            return Ok(());
        }
        let mut p = self.params(sets, hp, 0)?;
        p.slots = self.refreshed;
        let bind = [
            (1, &self.refresh_table),
            (2, sets.all),
            (3, st.g),
            (4, st.w),
            (5, st.momentum),
            (6, st.last),
            (7, st.clip),
        ];
        let grid = UVec3::new(self.groups, 2 * self.refreshed, 1);
        rec.dispatch(Kernel::LazyRefresh, &vec![("WG", WG.into())], (0, &p), &bind, grid)
    }

    /// The checks of a gather of `pass`'s sample into (wc, bc), its
    /// parameters and its threads; notes the slots as gathered.
    fn gather_params(
        &self,
        pass: LazyPass,
        slot: usize,
        bias: Option<usize>,
        (wc, bc): (&Tensor, &Tensor),
    ) -> Result<(LazyParams, usize)> {
        const OP: &str = "lazy_gather";
        self.check(pass.st, pass.hp)?;
        if pass.sample > 1 {
            return Err(Error::InvalidArgument(format!("{OP}: mask sample {} of 2", pass.sample)));
        }
        let stored = |x: SlotSide| super::gather::stored_len(x.len, x.set.is_some());
        // A slot `refresh` covers may be gathered too:
        // its weights are found up to date (stamped clock + 1) and copied.
        let slot_of = |i: usize| -> Result<LazySlot> {
            self.slots
                .get(i)
                .copied()
                .ok_or_else(|| Error::InvalidArgument(format!("{OP}: slot {i} of {}", self.slots.len())))
        };
        let w = slot_of(slot)?;
        let n = stored(w.rows) * w.blocks.max(1) * stored(w.cols);
        need(OP, "wc", wc, n, DType::F32)?;
        let mut threads = n;
        let mut p = self.params(pass.sets, pass.hp, 0)?;
        p.sample = pass.sample as u32;
        p.gather_slot = u32_of(OP, "slot", slot)?;
        if let Some(b) = bias {
            let bs = slot_of(b)?;
            if bs.rows != w.rows || bs.cols.len != 1 || bs.cols.set.is_some() || bs.blocks > 1 {
                return Err(Error::InvalidArgument(format!(
                    "{OP}: bias slot {bs:?} does not follow the rows of {w:?}"
                )));
            }
            need(OP, "bc", bc, stored(bs.rows), DType::F32)?;
            threads = threads.max(stored(bs.rows));
            p.gather_bias = u32_of(OP, "slot", b)?;
        }
        let mut seen = self.seen_flags();
        for i in std::iter::once(slot).chain(bias) {
            seen[i][pass.sample] = true;
        }
        Ok((p, threads))
    }

    fn gather(
        &self,
        rec: &mut Recorder,
        pass: LazyPass,
        slot: usize,
        bias: Option<usize>,
        (wc, bc): (&Tensor, &Tensor),
    ) -> Result<()> {
        let (p, threads) = self.gather_params(pass, slot, bias, (wc, bc))?;
        let bc = if bias.is_some() { bc } else { wc };
        self.launch_gather(rec, pass, &p, (wc, bc), threads)
    }

    /// Both samples' gathers in one launch (`pass` sample 0's): false,
    /// recording nothing, where an output pair does not lie in one buffer
    /// with sample 1's after sample 0's.
    fn gather_pair(
        &self,
        rec: &mut Recorder,
        pass: LazyPass,
        (slot, bias): (usize, Option<usize>),
        wc: [&Tensor; 2],
        bc: [&Tensor; 2],
    ) -> Result<bool> {
        let gpu = rec.gpu();
        let span = |t: [&Tensor; 2]| t[0].span_to(t[1], gpu).filter(|&(_, s)| s >= t[0].len());
        let (Some((wcs, swc)), Some((bcs, sbc))) = (span(wc), if bias.is_some() { span(bc) } else { span(wc) }) else {
            return Ok(false);
        };
        let (mut p, threads) = self.gather_params(pass, slot, bias, (wc[0], bc[0]))?;
        self.gather_params(LazyPass { sample: 1, ..pass }, slot, bias, (wc[1], bc[1]))?;
        p.pair = 1;
        p.stride_wc = u32_of("lazy_gather", "stride", swc)?;
        p.stride_bc = u32_of("lazy_gather", "stride", sbc)?;
        self.launch_gather(rec, pass, &p, (&wcs, &bcs), 2 * threads)?;
        Ok(true)
    }

    fn launch_gather(
        &self,
        rec: &mut Recorder,
        pass: LazyPass,
        p: &LazyParams,
        (wc, bc): (&Tensor, &Tensor),
        threads: usize,
    ) -> Result<()> {
        let st = pass.st;
        let bind = [
            (1, &self.table),
            (2, pass.sets.all),
            (3, st.g),
            (4, st.w),
            (5, st.momentum),
            (6, st.last),
            (7, st.clip),
            (9, wc),
            (10, bc),
        ];
        launch_1d(rec, Kernel::LazyGather, ("lazy_gather", WG), p, &bind, threads)
    }

    /// Whether some slot is left to the layers' gathers (`LazyPass::gather`).
    pub fn gathers(&self) -> bool {
        self.slots.iter().any(|s| s.gathered)
    }

    fn seen_flags(&self) -> std::sync::MutexGuard<'_, Vec<[bool; 2]>> {
        // The flags stay meaningful after a panic elsewhere: no poisoning.
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After a step's passes are recorded: an error where a gathered slot
    /// was not gathered for both samples since `refresh` (its weights would
    /// be read stale).
    pub fn check_gathered(&self) -> Result<()> {
        let seen = self.seen_flags();
        match self.slots.iter().zip(seen.iter()).position(|(s, g)| s.gathered && *g != [true; 2]) {
            Some(i) => Err(Error::InvalidArgument(format!(
                "lazy SGD: slot {i} ({:?}) was not gathered by both mask samples' passes",
                self.slots[i]
            ))),
            None => Ok(()),
        }
    }

    /// Partial sums of g² over the weights either mask sample can reach;
    /// their sum (`Reducer`) is the squared gradient norm.
    pub fn norm(&self, rec: &mut Recorder, g: &Tensor, sets: SetsRef) -> Result<()> {
        need("lazy_norm", "g", g, self.total, DType::F32)?;
        if self.slots.is_empty() {
            return Ok(());
        }
        let p = self.params(sets, Sgd { lr: 0.0, momentum: 0.0, weight_decay: 0.0 }, 0)?;
        let bind = [(1, &self.table), (2, sets.all), (3, g), (8, &self.partials)];
        rec.dispatch(Kernel::LazyNorm, &vec![("WG", WG.into())], (0, &p), &bind, self.grid())
    }

    /// The step's SGD update of the weights either sample can reach (each
    /// brought up to date by its refresh or gather), after the launch that
    /// decides the clip record. Deferred (`defers`): the factor noted for
    /// the weights' next refresh or gather, which applies the update
    /// (`lazy_finish`; on a non-finite step the gradient is dropped).
    /// Otherwise applied now, clearing the gradient (`lazy_sgd`). The rate
    /// is the step block's.
    pub fn update(&self, rec: &mut Recorder, st: LazyState, sets: SetsRef, hp: Sgd) -> Result<()> {
        self.check(st, hp)?;
        if self.slots.is_empty() {
            return Ok(());
        }
        let mut p = self.params(sets, hp, 0)?;
        let mut grid = self.grid();
        let (walk, state) =
            ([(1, &self.table), (2, sets.all), (3, st.g), (6, st.last), (7, st.clip)], [st.w, st.momentum]);
        if self.defer {
            // lazy_finish: the weights and momentum wait for the next gather.
            p.groups = self.groups.min(FINISH_GROUPS);
            grid.x = p.groups;
            return rec.dispatch(Kernel::LazyFinish, &vec![("WG", WG.into())], (0, &p), &walk, grid);
        }
        let bind: Vec<(u32, &Tensor)> = walk.into_iter().chain([(4, state[0]), (5, state[1])]).collect();
        rec.dispatch(Kernel::LazySgd, &vec![("WG", WG.into())], (0, &p), &bind, grid)
    }

    fn check(&self, st: LazyState, hp: Sgd) -> Result<()> {
        for (name, t) in [("w", st.w), ("momentum", st.momentum)] {
            need("lazy", name, t, self.total, DType::F32)?;
        }
        need("lazy", "g", st.g, self.total, DType::F32)?;
        need("lazy", "last", st.last, self.total, DType::U32)?;
        need("lazy", "clip", st.clip, if self.defer { CLIP_LEN } else { 4 }, DType::F32)?;
        if !(hp.momentum.is_finite() && hp.weight_decay.is_finite()) {
            return Err(Error::InvalidArgument(format!("non-finite SGD hyper-parameters {hp:?}")));
        }
        Ok(())
    }

    /// Brings every weight up to date (a deferred update, then the skipped
    /// ones, at the step block's rate); clears the gradient.
    pub fn catch_up(&self, rec: &mut Recorder, st: LazyState, hp: Sgd) -> Result<()> {
        self.every_weight(rec, Kernel::LazyCatchUp, st, hp)
    }

    /// Applies every deferred update (at the step block's rate), nothing
    /// more: the weights as `update` without deferring would have left
    /// them, to the bit, and the gradient cleared. What comes later is the
    /// same with or without it, so it may run at any point between steps:
    /// before the ring of factors could wrap (`RING` steps), and before a
    /// checkpoint (which then holds no deferred update). Nothing to do
    /// where updates are not deferred.
    pub fn settle(&self, rec: &mut Recorder, st: LazyState, hp: Sgd) -> Result<()> {
        if !self.defer {
            return Ok(());
        }
        self.every_weight(rec, Kernel::LazySettle, st, hp)
    }

    /// Sets every weight's clock to the clock, the weights untouched: for
    /// weights all up to date whose clocks lag (after eager steps).
    pub fn stamp(&self, rec: &mut Recorder, st: LazyState, hp: Sgd) -> Result<()> {
        self.every_weight(rec, Kernel::LazyStamp, st, hp)
    }

    fn every_weight(&self, rec: &mut Recorder, kernel: Kernel, st: LazyState, hp: Sgd) -> Result<()> {
        self.check(st, hp)?;
        let n = u32_of("lazy", "n", self.total)?;
        if n == 0 {
            return Ok(());
        }
        let empty = SetsRef { all: st.last, offsets: [0; 3], sets: 0, entries: 0 };
        let p = self.params(empty, hp, self.total)?;
        let gpu = rec.gpu();
        let groups = capped_grid(n.div_ceil(WG), gpu.grid_cap(), gpu.limits().max_compute_workgroups_per_dimension);
        let bind: &[(u32, &Tensor)] = match kernel {
            Kernel::LazyStamp => &[(6, st.last), (7, st.clip)],
            _ => &[(3, st.g), (4, st.w), (5, st.momentum), (6, st.last), (7, st.clip)],
        };
        rec.dispatch(kernel, &vec![("WG", WG.into())], (0, &p), bind, groups)
    }
}

fn padded(mut v: Vec<u32>) -> Vec<u32> {
    if v.is_empty() {
        v.push(0);
    }
    v
}
