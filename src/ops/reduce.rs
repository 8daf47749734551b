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
    clip: bool,
    /// Dynamic loss scaling: the growth interval (0: off).
    growth: u32,
    /// The step recorded for a non-finite total (NONE: the step block's).
    tag: u32,
    /// Divide by the rows (a mean).
    mean: bool,
}

impl Mode {
    const SUM: Mode = Mode { square: false, clip: false, growth: 0, tag: 0, mean: false };
}

/// The step number a clipping factor records for a non-finite gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTag {
    /// This number.
    Fixed(u32),
    /// The step block's `global` at run time (plans replayed every step).
    Step,
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

    /// out[out_index] = min(1, max_norm / (sqrt(Σ sq[0..n]) + 1e-6)), where `sq`
    /// holds squared norms: the joint gradient-clipping factor. A non-finite
    /// sum gives 0 (the optimizers skip the step), counts one more skipped
    /// step in out[out_index + 1], and the first one records `step` (as u32
    /// bits) in out[out_index + 2]; `out` needs those three slots.
    ///
    /// With `loss_scale` = Some(growth interval) (mixed precision): dynamic
    /// loss scaling. `sq` is then [squared norms of gradients scaled by the
    /// loss scale S in out[out_index + LOSS_SCALE_SLOT] ..., the step's
    /// loss] (the loss only tells an overflow from a fault); the factor
    /// also divides by S, an overflow halves S and skips the step without
    /// counting a fault, and `growth` finite steps in a row double S (see
    /// shaders/reduce.wgsl).
    #[allow(clippy::too_many_arguments)]
    pub fn clip_factor(
        &self,
        rec: &mut Recorder,
        out: &Tensor,
        out_index: usize,
        sq: &Tensor,
        n: usize,
        max_norm: f32,
        step: FaultTag,
        loss_scale: Option<u32>,
    ) -> Result<()> {
        need("clip_factor", "out", out, out_index + 4, DType::F32)?;
        if let Some(growth) = loss_scale {
            need("clip_factor", "out", out, out_index + super::LOSS_SCALE_SLOT + 2, DType::F32)?;
            // The final pass reads sq itself (one launch): see the kernel.
            if !(2..=SINGLE_PASS_MAX).contains(&n) || growth == 0 || sq.buffer() == out.buffer() {
                return Err(crate::Error::InvalidArgument(format!(
                    "loss scaling needs a squared norm and the loss, apart from the clip record, and a growth interval of at least 1; got {n} values and {growth}"
                )));
            }
        }
        if !(max_norm.is_finite() && max_norm > 0.0) {
            return Err(crate::Error::InvalidArgument(format!(
                "clip norm must be finite and positive, got {max_norm}"
            )));
        }
        let tag = match step {
            FaultTag::Fixed(t) if t != NONE => t,
            FaultTag::Fixed(_) => {
                return Err(crate::Error::InvalidArgument("step number u32::MAX is reserved".into()));
            }
            FaultTag::Step => NONE,
        };
        let mode = Mode { clip: true, tag, growth: loss_scale.unwrap_or(0), ..Mode::SUM };
        self.run(rec, out, out_index, sq, n.into(), mode, max_norm, false)
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
            tag: mode.tag,
            n_code: rows.code(),
            mean_rows: if mode.mean { n32 } else { 0 },
            count_code,
            growth: mode.growth,
            _pad: [0; 3],
        };
        // One launch cannot both read and write a buffer: a reduction into
        // the buffer it reads (the two losses into their sum) keeps both.
        if n <= SINGLE_PASS_MAX && x.buffer() != out.buffer() {
            let consts = vec![
                ("WG", f64::from(WG)),
                ("SQUARE", flag(mode.square)),
                ("CLIP", flag(mode.clip)),
                ("LOSS_SCALE", flag(mode.growth > 0)),
            ];
            let only = final_params(n32, rows.code());
            return rec.dispatch(Kernel::ReduceFinal, &consts, (0, &only), &[(1, x), (2, out)], glam::UVec3::ONE);
        }
        // Fewer, longer-running workgroups where the device caps grids: each
        // first-pass workgroup ends in a barrier-heavy tree.
        let groups = n32.div_ceil(WG).clamp(1, (MAX_PARTIALS as u32).min(rec.gpu().grid_cap()));
        let max = rec.gpu().limits().max_compute_workgroups_per_dimension;
        let first_consts = vec![("WG", f64::from(WG)), ("SQUARE", flag(mode.square))];
        let final_consts =
            vec![("WG", f64::from(WG)), ("CLIP", flag(mode.clip)), ("LOSS_SCALE", flag(mode.growth > 0))];
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
            _pad: [0; 3],
        };
        rec.dispatch(
            Kernel::ReducePartial,
            &first_consts,
            (0, &first),
            &[(1, x), (2, &self.partials)],
            grid_1d(groups * WG, WG, max),
        )?;
        let second = final_params(groups, NONE);
        rec.dispatch(
            Kernel::ReduceFinal,
            &final_consts,
            (0, &second),
            &[(1, &self.partials), (2, out)],
            glam::UVec3::ONE,
        )
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
}
