//! Launcher of shaders/compact.wgsl: the ordered list of kept channels of
//! every channel set (a prunable layer's units, or a union of such sets),
//! their counts and every channel's rank in its list, built on the device
//! from the masks, or from scores with the masks drawn in the same launch.

use super::mask::{KeyStep, MaskKey};
use super::{KernelParams, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader};
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};

/// Keep in sync with `CompactParams` in shaders/compact.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CompactParams {
    pub sets: u32,
    pub mask_stride: u32,
    pub slot_stride: u32,
    pub _pad: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub step: u32,
    pub sample: u32,
    pub step_from_block: u32,
    pub _pad1: [u32; 3],
}

impl KernelParams for CompactParams {
    const SHADER: Shader = Shader::Compact;
    const WGSL_NAME: &'static str = "CompactParams";
}

const WG: u32 = 256;

/// One channel set: where its slots start, how many channels it has, and,
/// for a union, the mask offsets of its member base sets (empty for a base
/// set, whose mask starts at `slot`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetDesc {
    pub slot: usize,
    pub len: usize,
    pub members: Vec<usize>,
}

/// The set table compact.wgsl reads: a 4-word record per set, then members.
pub fn set_table(sets: &[SetDesc]) -> Result<Vec<u32>> {
    let u = |v: usize| u32_of("compact", "set table", v);
    let mut table = Vec::with_capacity(4 * sets.len());
    let mut members = Vec::new();
    let head = 4 * sets.len();
    for s in sets {
        table.extend([u(s.slot)?, u(s.len)?, u(head + members.len())?, u(s.members.len())?]);
        for &m in &s.members {
            members.push(u(m)?);
        }
    }
    table.extend(members);
    Ok(table)
}

/// Consecutive base sets cut from the mask by `offsets` (sets + 1 entries).
pub fn base_sets(offsets: &[usize]) -> Vec<SetDesc> {
    offsets.windows(2).map(|w| SetDesc { slot: w[0], len: w[1] - w[0], members: Vec::new() }).collect()
}

/// Where a compaction writes: kept lists and ranks (`samples` × `slot_stride`)
/// and counts (`samples` × sets).
#[derive(Clone, Copy, Debug)]
pub struct Compacted<'a> {
    pub kept: &'a Tensor,
    pub counts: &'a Tensor,
    pub ranks: &'a Tensor,
}

/// Compacts `samples` masks (sample s at mask[s·mask_stride..]) into every
/// set of `table` (built by `set_table` for `sets` sets): one dispatch.
pub fn compact_sets(
    rec: &mut Recorder,
    out: Compacted,
    mask: &Tensor,
    table: &Tensor,
    sets: usize,
    strides: (usize, usize),
    samples: usize,
) -> Result<()> {
    compact(rec, out, mask, table, sets, strides, samples, None)
}

/// Draws `samples` masks from `scores` as `mask::mask_samples` does (the
/// same bits: sample s with key sample `key.sample + s`, over
/// `mask_stride` units) into `mask`, and compacts them as `compact_sets`:
/// one dispatch for both.
#[allow(clippy::too_many_arguments)]
pub fn draw_compact_sets(
    rec: &mut Recorder,
    out: Compacted,
    (mask, scores): (&Tensor, &Tensor),
    table: &Tensor,
    sets: usize,
    strides: (usize, usize),
    samples: usize,
    (key, step): (MaskKey, KeyStep),
) -> Result<()> {
    need("draw_compact", "scores", scores, strides.0, DType::F32)?;
    if scores.buffer() == mask.buffer() {
        return Err(Error::InvalidArgument("the scores must lie apart from the masks drawn from them".into()));
    }
    compact(rec, out, mask, table, sets, strides, samples, Some((scores, key, step)))
}

#[allow(clippy::too_many_arguments)]
fn compact(
    rec: &mut Recorder,
    out: Compacted,
    mask: &Tensor,
    table: &Tensor,
    sets: usize,
    (mask_stride, slot_stride): (usize, usize),
    samples: usize,
    draw: Option<(&Tensor, MaskKey, KeyStep)>,
) -> Result<()> {
    const OP: &str = "compact_kept";
    need(OP, "kept", out.kept, slot_stride * samples, DType::U32)?;
    need(OP, "ranks", out.ranks, slot_stride * samples, DType::U32)?;
    need(OP, "counts", out.counts, sets * samples, DType::U32)?;
    need(OP, "mask", mask, mask_stride * samples, DType::U32)?;
    need(OP, "table", table, 4 * sets, DType::U32)?;
    let (s32, n32) = (u32_of(OP, "sets", sets)?, u32_of(OP, "samples", samples)?);
    u32_of(OP, "masks", mask_stride * samples)?;
    if s32 == 0 || n32 == 0 {
        return Ok(());
    }
    if s32 > rec.gpu().limits().max_compute_workgroups_per_dimension {
        return Err(Error::InvalidArgument(format!("{sets} channel sets exceed one workgroup per set")));
    }
    let key = draw.map_or(MaskKey { seed: 0, step: 0, sample: 0 }, |d| d.1);
    let params = CompactParams {
        sets: s32,
        mask_stride: u32_of(OP, "mask stride", mask_stride)?,
        slot_stride: u32_of(OP, "slot stride", slot_stride)?,
        _pad: 0,
        seed_lo: key.seed as u32,
        seed_hi: (key.seed >> 32) as u32,
        step: key.step,
        sample: key.sample,
        step_from_block: u32::from(draw.is_some_and(|d| d.2 == KeyStep::Block)),
        _pad1: [0; 3],
    };
    let one = Tensor::one(rec.gpu());
    let consts = vec![("WG", WG.into()), ("DRAW", f64::from(u8::from(draw.is_some())))];
    rec.dispatch(
        Kernel::CompactKept,
        &consts,
        (0, &params),
        &[(1, mask), (2, table), (3, out.kept), (4, out.counts), (5, out.ranks), (6, draw.map_or(&one, |d| d.0))],
        glam::UVec3::new(s32, n32, 1),
    )
}
