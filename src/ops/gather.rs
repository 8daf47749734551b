//! Launcher of shaders/gather.wgsl: compressing a layer's weights and bias
//! to its kept units, and scattering the bias gradient back.

use super::{KernelParams, NONE, Rows, launch_1d, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader};
use crate::device::tensor::{DType, Tensor};
use crate::error::Result;

/// Keep in sync with `GatherParams` in shaders/gather.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherParams {
    pub rows_full: u32,
    pub cols_full: u32,
    pub dyn_rows: u32,
    pub dyn_cols: u32,
    pub rows_map: u32,
    pub cols_map: u32,
    pub batch: u32,
    pub batch_code: u32,
    pub col_blocks: u32,
    pub chunk: u32,
    pub chunks: u32,
    pub bias: u32,
    /// A pair (`gather_weight_blocks_pair`): sample 1's offsets.
    pub stride_dst: u32,
    pub stride_bias: u32,
    pub stride_dims: u32,
    pub stride_maps: u32,
}

impl KernelParams for GatherParams {
    const SHADER: Shader = Shader::Gather;
    const WGSL_NAME: &'static str = "GatherParams";
}

const WG: u32 = 256;

/// Which units of one side of a layer are kept: all of them (`Full`), or
/// the `dims[count]` units listed in `maps` from element `map`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Full,
    Kept { count: usize, map: usize },
}

impl Side {
    /// (count index, map offset) as kernels take them; NONE for `Full`.
    pub(crate) fn indices(self) -> Result<(u32, u32)> {
        match self {
            Side::Full => Ok((NONE, NONE)),
            Side::Kept { count, map } => Ok((u32_of("gather", "count", count)?, u32_of("gather", "map", map)?)),
        }
    }

    /// Upper bound of the compacted size: full size, padded to 4 if compacted.
    pub fn max_len(self, full: usize) -> usize {
        stored_len(full, matches!(self, Side::Kept { .. }))
    }
}

/// Stored length of a side of `len` elements: padded to 4 where `kept`
/// (a kept set's count, known only on the device; common.wgsl's side_len).
pub fn stored_len(len: usize, kept: bool) -> usize {
    if kept { len.div_ceil(4) * 4 } else { len }
}

/// Where kept counts and lists live on the device.
#[derive(Clone, Copy, Debug)]
pub struct KeptSet<'a> {
    pub dims: &'a Tensor,
    pub maps: &'a Tensor,
    /// Each channel's position in its set's list (at the same offsets as the
    /// lists), or u32::MAX: how a residual sum finds a channel in each input.
    pub ranks: &'a Tensor,
}

fn params(rows: Side, cols: Side, rows_full: usize, cols_full: usize, batch: Rows) -> Result<GatherParams> {
    let (dyn_rows, rows_map) = rows.indices()?;
    let (dyn_cols, cols_map) = cols.indices()?;
    Ok(GatherParams {
        rows_full: u32_of("gather", "rows", rows_full)?,
        cols_full: u32_of("gather", "cols", cols_full)?,
        dyn_rows,
        dyn_cols,
        rows_map,
        cols_map,
        batch: u32_of("gather", "batch", batch.max())?,
        batch_code: batch.code(),
        col_blocks: 1,
        chunk: 0,
        chunks: 0,
        bias: 0,
        stride_dst: 0,
        stride_bias: 0,
        stride_dims: 0,
        stride_maps: 0,
    })
}

fn run(
    rec: &mut Recorder,
    kernel: Kernel,
    p: &GatherParams,
    k: KeptSet,
    src: &Tensor,
    dst: &Tensor,
    threads: usize,
) -> Result<()> {
    need("gather", "dims", k.dims, 1, DType::U32)?;
    need("gather", "maps", k.maps, 1, DType::U32)?;
    launch_1d(rec, kernel, ("gather", WG), p, &[(1, k.dims), (2, k.maps), (3, src), (4, dst)], threads)
}

/// wc = W[kept rows, kept cols] (padded with zeros), W: [rows_full, cols_full];
/// with `bias` = (bc, b), also bc = b[kept rows] (padded), b: [rows_full],
/// in the same launch.
#[allow(clippy::too_many_arguments)]
pub fn gather_weights(
    rec: &mut Recorder,
    wc: &Tensor,
    w: &Tensor,
    bias: Option<(&Tensor, &Tensor)>,
    kept: KeptSet,
    rows: Side,
    cols: Side,
    full: (usize, usize),
) -> Result<()> {
    gather_weight_blocks(rec, (wc, w), bias, kept, (rows, cols), full, 1)
}

/// `gather_weights` of W [rows_full, blocks × cols_full] whose columns are
/// `blocks` blocks of `cols_full` (a convolution's kernel positions × input
/// channels): wc is [kept rows, blocks × kept cols], each block compacted.
pub fn gather_weight_blocks(
    rec: &mut Recorder,
    (wc, w): (&Tensor, &Tensor),
    bias: Option<(&Tensor, &Tensor)>,
    kept: KeptSet,
    (rows, cols): (Side, Side),
    full: (usize, usize),
    blocks: usize,
) -> Result<()> {
    const OP: &str = "gather_weights";
    let max = rows.max_len(full.0) * cols.max_len(full.1) * blocks;
    need(OP, "wc", wc, max, DType::F32)?;
    need(OP, "w", w, full.0 * full.1 * blocks, DType::F32)?;
    let mut p = params(rows, cols, full.0, full.1, Rows::Fixed(0))?;
    p.col_blocks = u32_of("gather", "blocks", blocks.max(1))?;
    // Without a bias the kernel never touches its bindings: W and Wc stand
    // in (a shared dummy cannot be both read and written by one launch).
    let (bc, b) = match bias {
        Some((bc, b)) => {
            need(OP, "bc", bc, rows.max_len(full.0), DType::F32)?;
            need(OP, "b", b, full.0, DType::F32)?;
            p.bias = 1;
            (bc, b)
        }
        None => (wc, w),
    };
    need("gather", "dims", kept.dims, 1, DType::U32)?;
    need("gather", "maps", kept.maps, 1, DType::U32)?;
    let bind = [(1, kept.dims), (2, kept.maps), (3, w), (4, wc), (5, b), (6, bc)];
    // Every padded bias row has a thread too (a weightless layer, 0 columns).
    let threads = max.max(if bias.is_some() { rows.max_len(full.0) } else { 0 });
    launch_1d(rec, Kernel::GatherWeights, ("gather", WG), &p, &bind, threads)
}

/// `gather_weight_blocks` of both mask samples of a sparse step into
/// `wc[0]`, `wc[1]` (and `bc`), each with its own sides: one launch, the
/// grid's z the sample, where each pair of outputs lies in one buffer
/// (sample 1's after sample 0's) and sample 1's kept sets sit the same
/// distance after sample 0's on both sides; else one launch per sample.
/// The same values either way (the launches only read W and b).
#[allow(clippy::too_many_arguments)]
pub fn gather_weight_blocks_pair(
    rec: &mut Recorder,
    (wc, w): ([&Tensor; 2], &Tensor),
    bias: Option<([&Tensor; 2], &Tensor)>,
    kept: KeptSet,
    sides: [(Side, Side); 2],
    full: (usize, usize),
    blocks: usize,
) -> Result<()> {
    let one_by_one = |rec: &mut Recorder| -> Result<()> {
        for j in 0..2 {
            gather_weight_blocks(rec, (wc[j], w), bias.map(|(bc, b)| (bc[j], b)), kept, sides[j], full, blocks)?;
        }
        Ok(())
    };
    let gpu = rec.gpu();
    let span = |t: [&Tensor; 2]| t[0].span_to(t[1], gpu).filter(|&(_, s)| s >= t[0].len());
    // Sample 1's (count, list) index minus sample 0's, the same on both
    // sides (None: a side that follows no set).
    let shift = |a: Side, b: Side| -> Option<Option<(u32, u32)>> {
        let ((c0, m0), (c1, m1)) = (a.indices().ok()?, b.indices().ok()?);
        match (c0 == NONE, c1 == NONE) {
            (true, true) => Some(None),
            (false, false) => Some(Some((c1.checked_sub(c0)?, m1.checked_sub(m0)?))),
            _ => None,
        }
    };
    let shifts = (shift(sides[0].0, sides[1].0), shift(sides[0].1, sides[1].1));
    let strides = match shifts {
        (Some(r), Some(c)) if r.is_none() || c.is_none() || r == c => r.or(c).unwrap_or((0, 0)),
        _ => return one_by_one(rec),
    };
    let Some((wcs, swc)) = span(wc) else { return one_by_one(rec) };
    let bcs = match bias {
        Some((bc, _)) => match span(bc) {
            Some(b) => Some(b),
            None => return one_by_one(rec),
        },
        None => None,
    };
    // The checks of each sample's launch, then one launch with both.
    const OP: &str = "gather_weights";
    let (rows, cols) = sides[0];
    let max = rows.max_len(full.0) * cols.max_len(full.1) * blocks;
    for (j, (r, c)) in sides.iter().enumerate() {
        need(OP, "wc", wc[j], r.max_len(full.0) * c.max_len(full.1) * blocks, DType::F32)?;
        if let Some((bc, _)) = bias {
            need(OP, "bc", bc[j], r.max_len(full.0), DType::F32)?;
        }
    }
    need(OP, "w", w, full.0 * full.1 * blocks, DType::F32)?;
    let mut p = params(rows, cols, full.0, full.1, Rows::Fixed(0))?;
    p.col_blocks = u32_of("gather", "blocks", blocks.max(1))?;
    (p.stride_dims, p.stride_maps) = strides;
    p.stride_dst = u32_of(OP, "stride", swc)?;
    let (bc, b) = match (bias, &bcs) {
        (Some((_, b)), Some((bc, s))) => {
            need(OP, "b", b, full.0, DType::F32)?;
            p.bias = 1;
            p.stride_bias = u32_of(OP, "stride", *s)?;
            (bc, b)
        }
        _ => (&wcs, w),
    };
    need("gather", "dims", kept.dims, 1, DType::U32)?;
    need("gather", "maps", kept.maps, 1, DType::U32)?;
    let bind = [(1, kept.dims), (2, kept.maps), (3, w), (4, &wcs), (5, b), (6, bc)];
    let threads = max.max(if bias.is_some() { rows.max_len(full.0) } else { 0 });
    let t = u32_of(OP, "threads", threads)?.max(1);
    let grid = super::grid_for_capacity(gpu, t, WG);
    let wg = vec![("WG", f64::from(WG))];
    rec.dispatch(Kernel::GatherWeights, &wg, (0, &p), &bind, glam::UVec3::new(grid.x, grid.y, 2))
}

/// db[kept rows[j]] += Σ_r dy[r, j]; dy: [batch, padded kept rows].
pub fn scatter_bias_grad(
    rec: &mut Recorder,
    db: &Tensor,
    dy: &Tensor,
    kept: KeptSet,
    rows: Side,
    rows_full: usize,
    batch: impl Into<Rows>,
) -> Result<()> {
    let batch = batch.into();
    let max = rows.max_len(rows_full);
    need("scatter_bias_grad", "db", db, rows_full, DType::F32)?;
    need("scatter_bias_grad", "dy", dy, batch.max() * max, DType::F32)?;
    let p = params(rows, Side::Full, rows_full, 1, batch)?;
    run(rec, Kernel::ScatterBiasGrad, &p, kept, dy, db, max)
}

/// Most rows a bias gradient sums in one level (one thread per column).
const DIRECT_ROWS: usize = 256;

/// Rows per chunk and the number of chunks of a two-level column sum over
/// up to `rows` rows: about √rows serial additions per thread in each level
/// instead of `rows`. None where one level is enough.
pub fn column_chunks(rows: usize) -> Option<(usize, usize)> {
    if rows <= DIRECT_ROWS {
        return None;
    }
    let chunk = ((rows as f64).sqrt().ceil() as usize).max(64);
    Some((chunk, rows.div_ceil(chunk)))
}

/// The first level of a column sum: P[c, j] = Σ dy[r, j] over the rows r of
/// chunk c (`chunk` rows each, `chunks` chunks, zero past the step's batch);
/// dy is [batch, side's stored columns], P [chunks, the same].
#[allow(clippy::too_many_arguments)]
pub fn column_partials(
    rec: &mut Recorder,
    partials: &Tensor,
    dy: &Tensor,
    kept: KeptSet,
    side: Side,
    full: usize,
    batch: impl Into<Rows>,
    (chunk, chunks): (usize, usize),
) -> Result<()> {
    let batch = batch.into();
    let max = side.max_len(full);
    need("column_partials", "partials", partials, chunks * max, DType::F32)?;
    need("column_partials", "dy", dy, batch.max() * max, DType::F32)?;
    if chunk * chunks < batch.max() {
        return Err(crate::error::Error::InvalidArgument(format!(
            "column_partials: {chunks} chunks of {chunk} rows do not cover {} rows",
            batch.max()
        )));
    }
    let mut p = params(side, Side::Full, full, 1, batch)?;
    p.chunk = u32_of("column_partials", "chunk", chunk)?;
    p.chunks = u32_of("column_partials", "chunks", chunks)?;
    run(rec, Kernel::ColumnPartials, &p, kept, dy, partials, chunks * max)
}

/// The bias gradient: db += Σ_r dy[r, ·] (db = … where `db.1` is false: a
/// full side only), through the kept list of `side` where compacted
/// (`kept` then holds it), in two levels through `partials` (sized by
/// `bias_partials_len`) where the rows are many.
#[allow(clippy::too_many_arguments)]
pub fn bias_grad_of(
    rec: &mut Recorder,
    (db, add): (&Tensor, bool),
    dy: &Tensor,
    kept: KeptSet,
    side: Side,
    full: usize,
    rows: Rows,
    partials: Option<&Tensor>,
) -> Result<()> {
    if !add && side != Side::Full {
        return Err(crate::error::Error::InvalidArgument(
            "the bias gradient of kept units is added, never assigned".into(),
        ));
    }
    let (src, rows) = match (column_chunks(rows.max()), partials) {
        (Some(chunks), Some(p)) => {
            column_partials(rec, p, dy, kept, side, full, rows, chunks)?;
            (p, Rows::Fixed(chunks.1))
        }
        (Some(_), None) => {
            return Err(crate::error::Error::InvalidArgument(format!(
                "bias gradient over {} rows without its partial sums' buffer",
                rows.max()
            )));
        }
        (None, _) => (dy, rows),
    };
    match side {
        Side::Full => super::bias::bias_grad(rec, db, src, add, rows, full),
        _ => scatter_bias_grad(rec, db, src, kept, side, full, rows),
    }
}

/// Floats of the partial sums `bias_grad_of` needs for up to `rows` rows
/// (0: none).
pub fn bias_partials_len(rows: usize, side: Side, full: usize) -> usize {
    column_chunks(rows).map_or(0, |(_, chunks)| chunks * side.max_len(full))
}
