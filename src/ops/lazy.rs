//! Launcher of shaders/lazy.wgsl: the gradient norm and the SGD update of a
//! sparse step over the weights its two masks can reach, with exact lazy
//! catch-up of the others (see the shader's header for why it is exact).

use glam::UVec3;

use super::optim::Sgd;
use super::{KernelParams, NONE, need, u32_of};
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
    pub _pad: [u32; 2],
}

impl KernelParams for LazyParams {
    const SHADER: Shader = Shader::Lazy;
    const WGSL_NAME: &'static str = "LazyParams";
}

const WG: u32 = 64;
/// The most workgroups per (slot, sample) on GPUs (see `Lazy::new`).
const GPU_GROUPS: u32 = 1024;

/// A side of a parameter: all `len` elements, or those of channel set `set`
/// (whose lists start at `slot` within a sample).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotSide {
    pub len: usize,
    pub set: Option<(usize, usize)>,
}

/// One parameter as [rows, blocks × cols] at `offset` in the flat buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LazySlot {
    pub offset: usize,
    pub rows: SlotSide,
    pub cols: SlotSide,
    pub blocks: usize,
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
    /// u32: the clock at which each weight was last brought up to date.
    pub last: &'a Tensor,
    /// [factor, _, _, clock (u32 bits)]: the clip record (shaders/shared/clip.wgsl),
    /// decided by `optim::adam_clip_step` in a sparse step.
    pub clip: &'a Tensor,
}

/// The recorded pieces of lazy SGD for one graph's parameter slots.
pub struct Lazy {
    slots: Vec<LazySlot>,
    table: Tensor,
    groups: u32,
    /// Per-thread partial sums of the norm: [2 · slots · groups · WG].
    pub partials: Tensor,
    total: usize,
}

impl Lazy {
    /// For `slots` covering `total` weights; allocates the slot table and
    /// the norm's partial sums.
    pub fn new(gpu: &Gpu, slots: Vec<LazySlot>, total: usize) -> Result<Lazy> {
        let mut table = Vec::with_capacity(8 * slots.len());
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
        }
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
            partials: Tensor::zeros(gpu, "lazy norm partials", &[n_partials], DType::F32)?,
            groups,
            slots,
            total,
        })
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
            _pad: [0; 2],
        })
    }

    fn grid(&self) -> UVec3 {
        UVec3::new(self.groups, 2 * self.slots.len() as u32, 1)
    }

    /// Brings the weights either mask sample can reach up to date, before
    /// the step's passes read them (at the step block's rate).
    pub fn refresh(&self, rec: &mut Recorder, st: LazyState, sets: SetsRef, hp: Sgd) -> Result<()> {
        self.check(st, hp)?;
        if self.slots.is_empty() {
            return Ok(());
        }
        let p = self.params(sets, hp, 0)?;
        let bind = [(1, &self.table), (2, sets.all), (4, st.w), (5, st.momentum), (6, st.last), (7, st.clip)];
        rec.dispatch(Kernel::LazyRefresh, &vec![("WG", WG.into())], (0, &p), &bind, self.grid())
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

    /// The step's SGD update of the weights either sample can reach, each
    /// caught up first; clears their gradient. The rate is the step block's.
    pub fn sgd(&self, rec: &mut Recorder, st: LazyState, g: &Tensor, sets: SetsRef, hp: Sgd) -> Result<()> {
        self.check(st, hp)?;
        need("lazy_sgd", "g", g, self.total, DType::F32)?;
        if self.slots.is_empty() {
            return Ok(());
        }
        let p = self.params(sets, hp, 0)?;
        let bind = [(1, &self.table), (2, sets.all), (3, g), (4, st.w), (5, st.momentum), (6, st.last), (7, st.clip)];
        rec.dispatch(Kernel::LazySgd, &vec![("WG", WG.into())], (0, &p), &bind, self.grid())
    }

    fn check(&self, st: LazyState, hp: Sgd) -> Result<()> {
        for (name, t) in [("w", st.w), ("momentum", st.momentum)] {
            need("lazy", name, t, self.total, DType::F32)?;
        }
        need("lazy", "last", st.last, self.total, DType::U32)?;
        need("lazy", "clip", st.clip, 4, DType::F32)?;
        if !(hp.momentum.is_finite() && hp.weight_decay.is_finite()) {
            return Err(Error::InvalidArgument(format!("non-finite SGD hyper-parameters {hp:?}")));
        }
        Ok(())
    }

    /// Brings every weight up to date (the skipped updates at the step
    /// block's rate).
    pub fn catch_up(&self, rec: &mut Recorder, st: LazyState, hp: Sgd) -> Result<()> {
        self.check(st, hp)?;
        let n = u32_of("lazy_catch_up", "n", self.total)?;
        if n == 0 {
            return Ok(());
        }
        let empty = SetsRef { all: st.last, offsets: [0; 3], sets: 0, entries: 0 };
        let p = self.params(empty, hp, self.total)?;
        let gpu = rec.gpu();
        let groups = capped_grid(n.div_ceil(WG), gpu.grid_cap(), gpu.limits().max_compute_workgroups_per_dimension);
        let bind = [(4, st.w), (5, st.momentum), (6, st.last), (7, st.clip)];
        rec.dispatch(Kernel::LazyCatchUp, &vec![("WG", WG.into())], (0, &p), &bind, groups)
    }
}

fn padded(mut v: Vec<u32>) -> Vec<u32> {
    if v.is_empty() {
        v.push(0);
    }
    v
}
