//! Launcher of shaders/add.wgsl: the residual sum of two NHWC activations
//! whose stored channels may be different kept sets, into their union, and
//! the gradient back to each input.

use super::gather::Side;
use super::{KernelParams, Rows, launch_1d, need, u32_of};
use crate::device::record::Recorder;
use crate::device::shader::{Kernel, Shader};
use crate::device::tensor::{DType, Tensor};
use crate::error::Result;
use crate::ops::gather::KeptSet;

/// Keep in sync with `AddParams` in shaders/add.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AddParams {
    pub rows: u32,
    pub rows_code: u32,
    pub c_full: u32,
    pub relu: u32,
    pub out_count: u32,
    pub out_map: u32,
    pub a_count: u32,
    pub a_map: u32,
    pub b_count: u32,
    pub b_map: u32,
    pub accumulate: u32,
    pub gate: u32,
    /// Kept sides store exactly their count (fixed sets of a compacted
    /// network), not a multiple of 4.
    pub exact: u32,
    pub _pad: [u32; 3],
}

impl KernelParams for AddParams {
    const SHADER: Shader = Shader::Add;
    const WGSL_NAME: &'static str = "AddParams";
}

const WG: u32 = 256;

fn launch(rec: &mut Recorder, kernel: Kernel, p: &AddParams, bind: &[(u32, &Tensor)], threads: usize) -> Result<()> {
    launch_1d(rec, kernel, ("add", WG), p, bind, threads)
}

fn params(rows: Rows, c_full: usize, sides: [Side; 3]) -> Result<AddParams> {
    let [(oc, om), (ac, am), (bc, bm)] = [sides[0].indices()?, sides[1].indices()?, sides[2].indices()?];
    Ok(AddParams {
        rows: u32_of("add", "rows", rows.max())?,
        rows_code: rows.code(),
        c_full: u32_of("add", "channels", c_full)?,
        relu: 0,
        out_count: oc,
        out_map: om,
        a_count: ac,
        a_map: am,
        b_count: bc,
        b_map: bm,
        accumulate: 0,
        gate: 0,
        exact: 0,
        _pad: [0; 3],
    })
}

/// Most columns a side stores. An exact kept side's count is in a fixed
/// set its layer checked against the shapes; 1 stands for it here.
fn stored(side: Side, c_full: usize, exact: bool) -> usize {
    match side {
        Side::Kept { .. } if exact => 1,
        s => s.max_len(c_full),
    }
}

/// out = a + b (ReLU'd when `relu`), each [rows, stored channels of its
/// side]; `sides` are (out, a, b). `kept` holds the sets' counts, lists and
/// ranks; `exact`: kept sides store exactly their count (else padded to 4).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    rec: &mut Recorder,
    out: &Tensor,
    (a, b): (&Tensor, &Tensor),
    kept: KeptSet,
    sides: [Side; 3],
    rows: Rows,
    c_full: usize,
    (relu, exact): (bool, bool),
) -> Result<()> {
    let mut p = params(rows, c_full, sides)?;
    p.relu = relu.into();
    p.exact = exact.into();
    let max = rows.max() * stored(sides[0], c_full, exact);
    need("add", "out", out, max, DType::F32)?;
    need("add", "a", a, rows.max() * stored(sides[1], c_full, exact), DType::F32)?;
    need("add", "b", b, rows.max() * stored(sides[2], c_full, exact), DType::F32)?;
    let bind = [(1, kept.dims), (2, kept.maps), (3, kept.ranks), (4, a), (5, b), (6, out)];
    launch(rec, Kernel::AddForward, &p, &bind, max)
}

/// dx (+)= the part of d_out that flows to an input of side `x_side`
/// (activation `x`, for the gate); `out_side` is the sum's side.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    rec: &mut Recorder,
    dx: &Tensor,
    d_out: &Tensor,
    x: &Tensor,
    kept: KeptSet,
    (out_side, x_side): (Side, Side),
    rows: Rows,
    c_full: usize,
    (accumulate, gate, exact): (bool, bool, bool),
) -> Result<()> {
    let mut p = params(rows, c_full, [out_side, x_side, Side::Full])?;
    p.accumulate = accumulate.into();
    p.gate = gate.into();
    p.exact = exact.into();
    let max = rows.max() * stored(x_side, c_full, exact);
    need("add", "dx", dx, max, DType::F32)?;
    need("add", "x", x, max, DType::F32)?;
    need("add", "d_out", d_out, rows.max() * stored(out_side, c_full, exact), DType::F32)?;
    let bind = [(1, kept.dims), (2, kept.maps), (3, kept.ranks), (4, d_out), (5, x), (6, dx)];
    // An exact side has at most the sum's channels.
    launch(rec, Kernel::AddBackward, &p, &bind, rows.max() * x_side.max_len(c_full))
}
