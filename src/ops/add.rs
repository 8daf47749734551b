//! Launcher of shaders/add.wgsl: the residual sum of two NHWC activations
//! whose stored channels may be different kept sets, into their union, and
//! the gradient back to each input; both mask samples of a sparse step in
//! one launch where their tensors allow (`forward_pair`, `backward_pair`).

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
    /// A pair (`forward_pair`, `backward_pair`): sample 1's offsets.
    pub stride_a: u32,
    pub stride_b: u32,
    pub stride_out: u32,
    pub stride_dims: u32,
    pub stride_map: u32,
    pub _pad: [u32; 2],
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
        stride_a: 0,
        stride_b: 0,
        stride_out: 0,
        stride_dims: 0,
        stride_map: 0,
        _pad: [0; 2],
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

/// Sample 1's offsets after sample 0's into `p`: every operand pair
/// (`ops`: sample 0's and sample 1's a, b, out) as one binding each, the
/// kept sets one tensor, and each side kept in both samples at one distance
/// of counts and of lists (or full in both); None otherwise.
fn pair_params(
    rec: &Recorder,
    p: AddParams,
    ops: [[&Tensor; 2]; 3],
    kept: [KeptSet; 2],
    sides: [[Side; 3]; 2],
) -> Option<(AddParams, [Tensor; 3])> {
    let gpu = rec.gpu();
    let same = kept[0].dims.same_as(kept[1].dims)
        && kept[0].maps.same_as(kept[1].maps)
        && kept[0].ranks.same_as(kept[1].ranks);
    if !same {
        return None;
    }
    let mut stride: Option<(u32, u32)> = None;
    for (s0, s1) in sides[0].iter().zip(&sides[1]) {
        match (s0, s1) {
            (Side::Full, Side::Full) => {}
            (Side::Kept { count: c0, map: m0 }, Side::Kept { count: c1, map: m1 }) => {
                let d = (u32::try_from(c1.checked_sub(*c0)?).ok()?, u32::try_from(m1.checked_sub(*m0)?).ok()?);
                if stride.is_some_and(|s| s != d) {
                    return None;
                }
                stride = Some(d);
            }
            _ => return None,
        }
    }
    let [(a, sa), (b, sb), (out, so)] =
        [ops[0][0].span_to(ops[0][1], gpu)?, ops[1][0].span_to(ops[1][1], gpu)?, ops[2][0].span_to(ops[2][1], gpu)?];
    // Each sample writes its own out.
    if so < ops[2][0].len() {
        return None;
    }
    let u = |v: usize| u32::try_from(v).ok();
    let (stride_dims, stride_map) = stride.unwrap_or((0, 0));
    let p = AddParams { stride_a: u(sa)?, stride_b: u(sb)?, stride_out: u(so)?, stride_dims, stride_map, ..p };
    Some((p, [a, b, out]))
}

/// A pair's launch of `kernel`: `threads` for each sample, over the grid's z.
fn launch_pair(
    rec: &mut Recorder,
    kernel: Kernel,
    p: &AddParams,
    bind: &[(u32, &Tensor)],
    threads: usize,
) -> Result<()> {
    let t = u32_of("add", "threads", threads)?;
    if t == 0 {
        return Ok(());
    }
    let g = super::grid_for_capacity(rec.gpu(), t, WG);
    rec.dispatch(kernel, &vec![("WG", f64::from(WG))], (0, p), bind, glam::UVec3::new(g.x, g.y, 2))
}

/// `forward` of sample 0 then of sample 1 (each its out, inputs, kept sets
/// and sides), in one launch where `pair_params` allows.
#[allow(clippy::too_many_arguments)]
pub fn forward_pair(
    rec: &mut Recorder,
    outs: [&Tensor; 2],
    ins: [(&Tensor, &Tensor); 2],
    kept: [KeptSet; 2],
    sides: [[Side; 3]; 2],
    rows: Rows,
    c_full: usize,
    relu: bool,
) -> Result<()> {
    let ops = [[ins[0].0, ins[1].0], [ins[0].1, ins[1].1], outs];
    let p = AddParams { relu: relu.into(), ..params(rows, c_full, sides[0])? };
    let pair = rec.gpu().pairs().then(|| pair_params(rec, p, ops, kept, sides)).flatten();
    let Some((p, [a, b, out])) = pair else {
        for j in 0..2 {
            forward(rec, outs[j], ins[j], kept[j], sides[j], rows, c_full, (relu, false))?;
        }
        return Ok(());
    };
    for j in 0..2 {
        need("add", "out", outs[j], rows.max() * stored(sides[j][0], c_full, false), DType::F32)?;
        need("add", "a", ins[j].0, rows.max() * stored(sides[j][1], c_full, false), DType::F32)?;
        need("add", "b", ins[j].1, rows.max() * stored(sides[j][2], c_full, false), DType::F32)?;
    }
    let k = kept[0];
    let bind = [(1, k.dims), (2, k.maps), (3, k.ranks), (4, &a), (5, &b), (6, &out)];
    launch_pair(rec, Kernel::AddForward, &p, &bind, rows.max() * stored(sides[0][0], c_full, false))
}

/// `backward` into one input of sample 0 then of sample 1 (each its dx,
/// d_out, activation x, kept sets and (out, x) sides), in one launch where
/// `pair_params` allows.
#[allow(clippy::too_many_arguments)]
pub fn backward_pair(
    rec: &mut Recorder,
    (dxs, d_outs, xs): ([&Tensor; 2], [&Tensor; 2], [&Tensor; 2]),
    kept: [KeptSet; 2],
    sides: [(Side, Side); 2],
    rows: Rows,
    c_full: usize,
    (accumulate, gate): (bool, bool),
) -> Result<()> {
    let three = |(o, x): (Side, Side)| [o, x, Side::Full];
    let p = AddParams { accumulate: accumulate.into(), gate: gate.into(), ..params(rows, c_full, three(sides[0]))? };
    let pair = rec.gpu().pairs().then(|| pair_params(rec, p, [d_outs, xs, dxs], kept, sides.map(three))).flatten();
    let Some((p, [d_out, x, dx])) = pair else {
        for j in 0..2 {
            let flags = (accumulate, gate, false);
            backward(rec, dxs[j], d_outs[j], xs[j], kept[j], sides[j], rows, c_full, flags)?;
        }
        return Ok(());
    };
    for j in 0..2 {
        let max = rows.max() * stored(sides[j].1, c_full, false);
        need("add", "dx", dxs[j], max, DType::F32)?;
        need("add", "x", xs[j], max, DType::F32)?;
        need("add", "d_out", d_outs[j], rows.max() * stored(sides[j].0, c_full, false), DType::F32)?;
    }
    let k = kept[0];
    let bind = [(1, k.dims), (2, k.maps), (3, k.ranks), (4, &d_out), (5, &x), (6, &dx)];
    launch_pair(rec, Kernel::AddBackward, &p, &bind, rows.max() * sides[0].1.max_len(c_full))
}
