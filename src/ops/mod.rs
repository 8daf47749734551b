//! Launchers: one module per kernel family, each with its `#[repr(C)]`
//! params struct (mirrored in the WGSL file of the same name) and functions
//! that check shapes and record dispatches. Arguments come outputs first,
//! sizes last.

pub mod accuracy;
pub mod add;
pub mod autotune;
pub mod autotune_conv;
pub mod batchnorm;
pub mod batchnorm_pair;
pub mod bias;
pub mod compact;
pub mod conv;
pub mod decode;
pub mod fill;
pub mod gather;
pub mod lazy;
pub mod mask;
pub mod matmul;
pub mod matmul_coop_shape;
mod matmul_desc;
mod matmul_kpack;
mod matmul_pack;
mod matmul_split;
pub mod matmul_thin;
pub mod matmul_tiles;
pub mod optim;
pub mod pool;
pub mod project;
pub mod reduce;
pub mod relu;
pub mod softmax_xent;
pub mod timing;
pub mod vrpge;

use crate::device::shader::Shader;
use crate::device::step::BATCH_ROWS;
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// "Not used" for optional indices in params structs (`NONE` in common.wgsl).
pub const NONE: u32 = u32::MAX;

/// Dynamic loss scaling (mixed precision): the loss scale S lives in this
/// slot of the trainer's clip record, the step count since S last changed
/// in the next. Keep in sync with LOSS_SCALE_SLOT in
/// shaders/shared/common.wgsl.
pub const LOSS_SCALE_SLOT: usize = 4;

/// The rows a kernel covers: a count fixed when it is recorded, or the
/// batch of each step, read from the step block, up to a capacity; a batch
/// of images may have several rows per sample (one per pixel, NHWC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    Fixed(usize),
    /// The step's batch, at most this many samples.
    Batch(usize),
    /// The step's batch times `per` rows per sample, at most `cap` samples.
    BatchOf {
        cap: usize,
        per: usize,
    },
}

impl Rows {
    /// The fixed count, or the capacity in rows: what buffers and grids are
    /// sized for.
    pub fn max(self) -> usize {
        match self {
            Rows::Fixed(n) | Rows::Batch(n) => n,
            Rows::BatchOf { cap, per } => cap * per,
        }
    }

    /// The size code kernels resolve with `rows_of` (step.wgsl).
    pub fn code(self) -> u32 {
        match self {
            Rows::Fixed(_) => NONE,
            Rows::Batch(_) => BATCH_ROWS | 1,
            // Rows per sample are at most the pixels of an image, far below 2^31.
            Rows::BatchOf { per, .. } => BATCH_ROWS | (per as u32 & !BATCH_ROWS),
        }
    }

    /// The same rows, `per` times as many per sample (a batch of images).
    pub fn per_sample(self, per: usize) -> Rows {
        match self {
            Rows::Fixed(n) => Rows::Fixed(n * per),
            Rows::Batch(cap) => Rows::BatchOf { cap, per },
            Rows::BatchOf { cap, per: p } => Rows::BatchOf { cap, per: p * per },
        }
    }
}

impl From<usize> for Rows {
    fn from(n: usize) -> Rows {
        Rows::Fixed(n)
    }
}

/// A params struct shared with WGSL. The naga test compares `size_of::<Self>()`
/// with naga's layout of the struct named `WGSL_NAME` in `SHADER`.
pub trait KernelParams: bytemuck::Pod {
    const SHADER: Shader;
    const WGSL_NAME: &'static str;
}

/// The most threads a `launch_1d` grid starts, whatever the adapter's
/// `grid_cap`: about four waves of a large GPU (an H100 holds 132 × 2048).
/// These kernels are launched for a capacity and loop over what the device
/// holds: at 10% of an 8192-wide MLP's units, gathering its compact hidden
/// weights (819² of 8192² capacity) started 262 144 workgroups of 256
/// threads, 1% of them with work, twice a step.
const MAX_1D_THREADS: u32 = 1 << 20;

/// The grid of a 1-D kernel launched for a capacity of `threads` threads
/// in workgroups of `wg` that loops over what the grid does not cover:
/// capped by `Gpu::grid_cap` and `MAX_1D_THREADS`.
pub(crate) fn grid_for_capacity(gpu: &crate::Gpu, threads: u32, wg: u32) -> glam::UVec3 {
    let cap = gpu.grid_cap().min((MAX_1D_THREADS / wg).max(1));
    crate::device::shader::capped_grid(threads.div_ceil(wg), cap, gpu.limits().max_compute_workgroups_per_dimension)
}

/// Records a 1-D kernel of `threads` threads in workgroups of `wg` on a
/// capped grid (`Gpu::grid_cap` and `MAX_1D_THREADS`; the kernel loops over
/// what the grid does not cover); nothing for 0 threads.
pub(crate) fn launch_1d<P: KernelParams>(
    rec: &mut crate::device::record::Recorder,
    kernel: crate::device::shader::Kernel,
    op_wg: (&'static str, u32),
    p: &P,
    bind: &[(u32, &Tensor)],
    threads: usize,
) -> Result<()> {
    launch_1d_with(rec, kernel, op_wg, &[], p, bind, threads)
}

/// `launch_1d` with override constants besides `WG`.
pub(crate) fn launch_1d_with<P: KernelParams>(
    rec: &mut crate::device::record::Recorder,
    kernel: crate::device::shader::Kernel,
    (op, wg): (&'static str, u32),
    constants: &[(&'static str, f64)],
    p: &P,
    bind: &[(u32, &Tensor)],
    threads: usize,
) -> Result<()> {
    let t = u32_of(op, "threads", threads)?;
    if t == 0 {
        return Ok(());
    }
    let groups = grid_for_capacity(rec.gpu(), t, wg);
    let mut all = vec![("WG", f64::from(wg))];
    all.extend_from_slice(constants);
    rec.dispatch(kernel, &all, (0, p), bind, groups)
}

/// (shader, WGSL struct name, Rust size) for every params struct.
pub fn params_layouts() -> Vec<(Shader, &'static str, usize)> {
    fn row<P: KernelParams>() -> (Shader, &'static str, usize) {
        (P::SHADER, P::WGSL_NAME, std::mem::size_of::<P>())
    }
    vec![
        row::<matmul::MatmulParams>(),
        row::<bias::BiasParams>(),
        row::<relu::ReluParams>(),
        row::<softmax_xent::SoftmaxXentParams>(),
        row::<reduce::ReduceParams>(),
        row::<accuracy::AccuracyParams>(),
        row::<optim::SgdParams>(),
        row::<optim::AdamParams>(),
        row::<optim::ClipParams>(),
        row::<optim::AdamClipParams>(),
        row::<fill::FillParams>(),
        row::<mask::MaskParams>(),
        row::<compact::CompactParams>(),
        row::<project::ProjectParams>(),
        row::<gather::GatherParams>(),
        row::<vrpge::ScoreGradParams>(),
        row::<conv::ConvParams>(),
        row::<batchnorm::BnParams>(),
        row::<pool::PoolParams>(),
        row::<add::AddParams>(),
        row::<lazy::LazyParams>(),
        row::<decode::DecodeParams>(),
    ]
}

/// Checks that `t` holds at least `len` elements of `dtype`.
pub(crate) fn need(op: &'static str, name: &str, t: &Tensor, len: usize, dtype: DType) -> Result<()> {
    if t.dtype() != dtype {
        return Err(Error::Shape { op, detail: format!("{name} must be {dtype:?}, is {:?}", t.dtype()) });
    }
    if t.len() < len {
        return Err(Error::Shape {
            op,
            detail: format!("{name} has {} elements (shape {:?}), needs {len}", t.len(), t.shape()),
        });
    }
    Ok(())
}

/// Sizes reach kernels as u32; larger ones are refused, not truncated.
pub(crate) fn u32_of(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Shape { op, detail: format!("{what} = {v} exceeds u32") })
}
