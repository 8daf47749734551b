//! Launcher of shaders/reduce.wgsl: sum and mean of a vector into one slot
//! of an output buffer, in two passes (one for short vectors), without
//! leaving the device.

use super::{KernelParams, NONE, Rows, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader, grid_1d};
use crate::device::tensor::{DType, Tensor};
use crate::error::Result;

/// Keep in sync with `ReduceParams` in shaders/reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReduceParams {
    pub n: u32,
    pub out_index: u32,
    pub scale: f32,
    pub accumulate: u32,
    pub tag: u32,
    pub n_code: u32,
    pub mean_rows: u32,
    pub count_code: u32,
    pub growth: u32,
    pub n2: u32,
    pub loss_at: u32,
    pub loss_n: u32,
    pub also: u32,
    pub _pad: [u32; 3],
}

impl KernelParams for ReduceParams {
    const SHADER: Shader = Shader::Reduce;
    const WGSL_NAME: &'static str = "ReduceParams";
}

const WG: u32 = 256;
/// Upper bound on first-pass workgroups; also the length of the scratch
/// buffer that `Reducer` holds.
pub const MAX_PARTIALS: usize = 1024;
/// Vectors up to this long are summed by one workgroup in one launch (16
/// values per thread): a second launch, and the barrier between the two,
/// costs more than the first pass would save.
pub const SINGLE_PASS_MAX: usize = 16 * WG as usize;

#[derive(Clone, Copy)]
struct Mode {
    square: bool,
    /// Divide by the rows (a mean).
    mean: bool,
    /// Also add the result into this slot of `out` (NONE: no).
    also: u32,
}

impl Mode {
    const SUM: Mode = Mode { square: false, mean: false, also: NONE };
}

/// What the clipping factor is computed from (`Reducer::clip_factor`).
#[derive(Clone, Copy)]
pub struct ClipInputs<'a> {
    /// Squared norms, `t[0..n]`, summed as they are.
    pub norms: (&'a Tensor, usize),
    /// A gradient, `t[0..n]`, whose squared norm joins them: summed in the
    /// same launch (one workgroup) instead of a reduction of its own; for
    /// vectors up to about `SINGLE_PASS_MAX`, past which the two-pass
    /// reduction is faster on a GPU.
    pub squares: Option<(&'a Tensor, usize)>,
    /// The step's loss, the sum of `t[at..at + n]` (`(t, at, n)`): a
    /// non-finite loss is a fault too; loss scaling needs it to tell an
    /// overflow from a fault.
    pub loss: Option<(&'a Tensor, usize, usize)>,
}

/// The step number a clipping factor records for a non-finite gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTag {
    /// This number.
    Fixed(u32),
    /// The step block's `global` at run time (plans replayed every step).
    Step,
}

/// What every launch that decides the clip record (shaders/shared/clip.wgsl)
/// checks: a record of 4 slots at `out_index` (6 under loss scaling), a
/// finite positive clip norm, a step number other than `NONE`, a growth
/// interval of at least 1. Returns the tag (NONE: the step block's) and the
/// growth interval (0 without loss scaling) as the kernels take them.
pub(crate) fn clip_rule(
    out: &Tensor,
    out_index: usize,
    max_norm: f32,
    step: FaultTag,
    loss_scale: Option<u32>,
) -> Result<(u32, u32)> {
    let slots = if loss_scale.is_some() { super::LOSS_SCALE_SLOT + 2 } else { 4 };
    need("clip record", "out", out, out_index + slots, DType::F32)?;
    if loss_scale == Some(0) {
        return Err(crate::Error::InvalidArgument("loss scaling needs a growth interval of at least 1".into()));
    }
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(crate::Error::InvalidArgument(format!("clip norm must be finite and positive, got {max_norm}")));
    }
    let tag = match step {
        FaultTag::Fixed(t) if t != NONE => t,
        FaultTag::Fixed(_) => {
            return Err(crate::Error::InvalidArgument("step number u32::MAX is reserved".into()));
        }
        FaultTag::Step => NONE,
    };
    Ok((tag, loss_scale.unwrap_or(0)))
}

/// The scratch space of a reduction, allocated once and reused every step.
pub struct Reducer {
    partials: Tensor,
}

impl Reducer {
    pub fn new(gpu: &crate::Gpu) -> Result<Reducer> {
        Ok(Reducer { partials: Tensor::zeros(gpu, "reduce partials", &[MAX_PARTIALS], DType::F32)? })
    }

    /// out[out_index] (+)= scale · Σ x[0..n].
    #[allow(clippy::too_many_arguments)]
    pub fn reduce(
        &self,
        rec: &mut Recorder,
        out: &Tensor,
        out_index: usize,
        x: &Tensor,
        n: impl Into<Rows>,
        scale: f32,
        accumulate: bool,
    ) -> Result<()> {
        self.run(rec, out, out_index, x, n.into(), Mode::SUM, scale, accumulate)
    }

    /// out[out_index] = Σ x[0..n]².
    pub fn sum_squares(&self, rec: &mut Recorder, out: &Tensor, out_index: usize, x: &Tensor, n: usize) -> Result<()> {
        self.run(rec, out, out_index, x, n.into(), Mode { square: true, ..Mode::SUM }, 1.0, false)
    }

    /// out[out_index] = min(1, max_norm / (sqrt(total) + 1e-6)), where the
    /// total is the squared norms of `inputs.norms` plus the squared norm of
    /// `inputs.squares`: the joint gradient-clipping factor. A non-finite
    /// total or loss gives 0 (the optimizers skip the step), counts one more
    /// skipped step in out[out_index + 1], and the first one records `step`
    /// (as u32 bits) in out[out_index + 2], and a finite step advances the
    /// clock of lazy updates in out[out_index + 3]: `out` needs those four
    /// slots (six with loss scaling).
    ///
    /// With `loss_scale` = Some(growth interval) (mixed precision): dynamic
    /// loss scaling. The gradients are then scaled by the loss scale S in
    /// out[out_index + LOSS_SCALE_SLOT] and `inputs.loss` is needed (it
    /// tells an overflow from a fault); the factor also divides by S, an
    /// overflow halves S and skips the step without counting a fault, and
    /// `growth` finite steps in a row double S (shaders/shared/clip.wgsl has
    /// the rule, which `optim::adam_clip_step` shares).
    #[allow(clippy::too_many_arguments)]
    pub fn clip_factor(
        &self,
        rec: &mut Recorder,
        out: &Tensor,
        out_index: usize,
        inputs: ClipInputs,
        max_norm: f32,
        step: FaultTag,
        loss_scale: Option<u32>,
    ) -> Result<()> {
        const OP: &str = "clip_factor";
        let (sq, n) = inputs.norms;
        if n > SINGLE_PASS_MAX || n == 0 {
            return Err(crate::Error::InvalidArgument(format!(
                "the clipping factor sums 1 to {SINGLE_PASS_MAX} squared norms, got {n}"
            )));
        }
        let mut read = vec![sq];
        if let Some((t, n2)) = inputs.squares {
            need(OP, "squares", t, n2, DType::F32)?;
            u32_of(OP, "squares", n2)?;
            read.push(t);
        }
        if let Some((t, at, k)) = inputs.loss {
            need(OP, "loss", t, at + k, DType::F32)?;
            if k == 0 {
                return Err(crate::Error::InvalidArgument("the step's loss needs at least one value".into()));
            }
            read.push(t);
        }
        // One launch cannot both read and write a buffer.
        if read.iter().any(|t| t.buffer() == out.buffer()) {
            return Err(crate::Error::InvalidArgument(
                "the clipping factor's inputs must lie apart from the clip record".into(),
            ));
        }
        if loss_scale.is_some() && inputs.loss.is_none() {
            return Err(crate::Error::InvalidArgument("loss scaling needs the step's loss".into()));
        }
        let (tag, growth) = clip_rule(out, out_index, max_norm, step, loss_scale)?;
        let flag = |b: bool| f64::from(u8::from(b));
        let consts = vec![
            ("WG", f64::from(WG)),
            ("CLIP", 1.0),
            ("LOSS_SCALE", flag(growth > 0)),
            ("SQUARES", flag(inputs.squares.is_some())),
            ("LOSS", flag(inputs.loss.is_some())),
        ];
        let (loss_at, loss_n) = match inputs.loss {
            Some((_, at, k)) => (u32_of(OP, "loss offset", at)?, u32_of(OP, "loss values", k)?),
            None => (0, 0),
        };
        let params = ReduceParams {
            n: n as u32,
            out_index: u32_of(OP, "out index", out_index)?,
            scale: max_norm,
            accumulate: 0,
            tag,
            n_code: Rows::Fixed(n).code(),
            mean_rows: 0,
            count_code: Rows::Fixed(n).code(),
            growth,
            n2: inputs.squares.map_or(0, |(_, n2)| n2 as u32),
            loss_at,
            loss_n,
            also: NONE,
            _pad: [0; 3],
        };
        let one = Tensor::one(rec.gpu());
        let bind = [
            (1, sq),
            (2, out),
            (3, inputs.squares.map_or(&one, |(t, _)| t)),
            (4, inputs.loss.map_or(&one, |(t, _, _)| t)),
        ];
        rec.dispatch(Kernel::ReduceFinal, &consts, (0, &params), &bind, glam::UVec3::ONE)
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        rec: &mut Recorder,
        out: &Tensor,
        out_index: usize,
        x: &Tensor,
        rows: Rows,
        mode: Mode,
        scale: f32,
        accumulate: bool,
    ) -> Result<()> {
        const OP: &str = "reduce";
        let n = rows.max();
        need(OP, "out", out, out_index + 1, DType::F32)?;
        need(OP, "x", x, n, DType::F32)?;
        let n32 = u32_of(OP, "n", n)?;
        if mode.mean && n32 == 0 {
            return Err(crate::Error::InvalidArgument("mean of zero rows".into()));
        }
        let flag = |b: bool| f64::from(u8::from(b));
        // The final pass over `n` values (NONE: n partials; else the code
        // of x's length).
        let final_params = |n: u32, count_code: u32| ReduceParams {
            n,
            out_index: out_index as u32,
            scale,
            accumulate: accumulate.into(),
            tag: 0,
            n_code: rows.code(),
            mean_rows: if mode.mean { n32 } else { 0 },
            count_code,
            growth: 0,
            n2: 0,
            loss_at: 0,
            loss_n: 0,
            also: mode.also,
            _pad: [0; 3],
        };
        let one = Tensor::one(rec.gpu());
        // One launch cannot both read and write a buffer: a reduction into
        // the buffer it reads (the two losses into their sum) keeps both.
        if n <= SINGLE_PASS_MAX && x.buffer() != out.buffer() {
            let consts = vec![("WG", f64::from(WG)), ("SQUARE", flag(mode.square))];
            let only = final_params(n32, rows.code());
            let bind = [(1, x), (2, out), (3, &one), (4, &one)];
            return rec.dispatch(Kernel::ReduceFinal, &consts, (0, &only), &bind, glam::UVec3::ONE);
        }
        let groups = self.first_pass(rec, x, rows, mode.square)?;
        let final_consts = vec![("WG", f64::from(WG))];
        let second = final_params(groups, NONE);
        rec.dispatch(
            Kernel::ReduceFinal,
            &final_consts,
            (0, &second),
            &[(1, &self.partials), (2, out), (3, &one), (4, &one)],
            glam::UVec3::ONE,
        )
    }

    /// The first pass of Σ x[0..n]² alone: per-workgroup sums in this
    /// reducer's partials, returned with their count, for a launch that
    /// reads them itself (`ClipInputs::norms`: one launch fewer than
    /// `sum_squares` and then the clip factor).
    pub fn square_partials(&self, rec: &mut Recorder, x: &Tensor, n: usize) -> Result<(&Tensor, usize)> {
        need("reduce", "x", x, n, DType::F32)?;
        let groups = self.first_pass(rec, x, Rows::Fixed(n), true)?;
        Ok((&self.partials, groups as usize))
    }

    /// reduce_partial over x's `rows` values (squared with `square`) into
    /// this reducer's partials; returns how many it wrote.
    fn first_pass(&self, rec: &mut Recorder, x: &Tensor, rows: Rows, square: bool) -> Result<u32> {
        let n32 = u32_of("reduce", "n", rows.max())?;
        // Fewer, longer-running workgroups where the device caps grids: each
        // first-pass workgroup ends in a barrier-heavy tree.
        let groups = n32.div_ceil(WG).clamp(1, (MAX_PARTIALS as u32).min(rec.gpu().grid_cap()));
        let max = rec.gpu().limits().max_compute_workgroups_per_dimension;
        let first = ReduceParams {
            n: n32,
            out_index: 0,
            scale: 1.0,
            accumulate: 0,
            tag: 0,
            n_code: rows.code(),
            mean_rows: 0,
            count_code: NONE,
            growth: 0,
            n2: 0,
            loss_at: 0,
            loss_n: 0,
            also: NONE,
            _pad: [0; 3],
        };
        let consts = vec![("WG", f64::from(WG)), ("SQUARE", f64::from(u8::from(square)))];
        rec.dispatch(
            Kernel::ReducePartial,
            &consts,
            (0, &first),
            &[(1, x), (2, &self.partials)],
            grid_1d(groups * WG, WG, max),
        )?;
        Ok(groups)
    }

    /// out[out_index] = Σ x[0..n].
    pub fn sum(&self, rec: &mut Recorder, out: &Tensor, out_index: usize, x: &Tensor, n: usize) -> Result<()> {
        self.reduce(rec, out, out_index, x, n, 1.0, false)
    }

    /// out[out_index] = mean of x over `rows` (at least one row).
    pub fn mean(
        &self,
        rec: &mut Recorder,
        out: &Tensor,
        out_index: usize,
        x: &Tensor,
        rows: impl Into<Rows>,
    ) -> Result<()> {
        self.run(rec, out, out_index, x, rows.into(), Mode { mean: true, ..Mode::SUM }, 1.0, false)
    }

    /// `mean`, whose result is also added to out[sum_index] (a running sum
    /// of losses) in the same launch.
    pub fn mean_and_add(
        &self,
        rec: &mut Recorder,
        out: &Tensor,
        (out_index, sum_index): (usize, usize),
        x: &Tensor,
        rows: impl Into<Rows>,
    ) -> Result<()> {
        if sum_index == out_index {
            return Err(crate::Error::InvalidArgument("a mean added to its own slot".into()));
        }
        need("reduce", "out", out, sum_index + 1, DType::F32)?;
        let also = u32_of("reduce", "sum index", sum_index)?;
        self.run(rec, out, out_index, x, rows.into(), Mode { mean: true, also, ..Mode::SUM }, 1.0, false)
    }
}
