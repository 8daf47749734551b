//! BatchNorm of both mask samples of a sparse step (`nn::BatchNorm`'s
//! `forward_pair` and `backward_pair`): the launches that write nothing
//! per unit run once for both samples, the grid's z the sample
//! (shaders/batchnorm.wgsl's `sample`). These are the normalisation, the
//! input gradient and the split reductions' first level. The launches that
//! update running averages or add into dγ and dβ (a unit both samples keep
//! gets both) must give sample 0's update first: the split finals run both
//! samples in one workgroup, one after the other (`seq`), where the stored
//! channels are few enough (`SEQ_FINAL_MAX`); the unsplit reductions, and
//! finals over more channels, run a launch per sample. The results are
//! those of `forward` and `backward` of sample 0 then of sample 1, bit for
//! bit. Where the two samples' tensors do not lie in one buffer each, or
//! their channel layouts differ, the two run one after the other.

use super::Rows;
use super::batchnorm::{
    BnConfig, BnParams, BnTensors, FinalBinds, backward, check, elementwise, final_grid, forward, params, per_channel,
    record_final, splits,
};
use super::conv::Stored;
use crate::device::record::Recorder;
use crate::device::shader::Kernel;
use crate::device::tensor::Tensor;
use crate::error::Result;

/// The most stored channels whose split finals run both samples in one
/// workgroup (`seq`): four of the finals' channel groups per sample, which
/// the workgroup takes one after another. Past them each sample takes a
/// launch whose groups run side by side.
pub const SEQ_FINAL_MAX: usize = 128;

/// The two samples' operands as single bindings and sample 1's offsets.
struct Spans {
    x: Tensor,
    stats: Tensor,
    out: Tensor,
    dy: Option<Tensor>,
    strides: BnParams,
}

/// `p` with the pair's offsets; None where the samples cannot share a
/// launch: an operand pair not in one buffer (`Tensor::span_to`), other
/// per-unit tensors, kept sets in other tensors, or one sample's side kept
/// and the other's full.
fn spans(
    rec: &Recorder,
    ts: [BnTensors; 2],
    outs: [&Tensor; 2],
    dys: Option<[&Tensor; 2]>,
    chs: [Stored; 2],
    p: BnParams,
) -> Option<Spans> {
    let gpu = rec.gpu();
    let [a, b] = ts;
    let shared = a.running.same_as(b.running)
        && a.gamma.same_as(b.gamma)
        && a.beta.same_as(b.beta)
        && a.dims.same_as(b.dims)
        && a.maps.same_as(b.maps)
        && chs[0].full == chs[1].full
        && chs[0].max() == chs[1].max();
    if !shared {
        return None;
    }
    let u = |s: usize| u32::try_from(s).ok();
    let ((c0, m0), (c1, m1)) = (chs[0].side.indices().ok()?, chs[1].side.indices().ok()?);
    // Both full (NONE, NONE) or both kept, sample 1's entries at or after sample 0's.
    let (stride_dims, stride_map) = match (c0 == super::NONE, c1 == super::NONE) {
        (true, true) => (0, 0),
        (false, false) => (c1.checked_sub(c0)?, m1.checked_sub(m0)?),
        _ => return None,
    };
    let (x, sx) = a.x.span_to(b.x, gpu)?;
    let (stats, ss) = a.stats.span_to(b.stats, gpu)?;
    let (out, so) = outs[0].span_to(outs[1], gpu)?;
    // Each sample writes its own statistics and output.
    if ss < a.stats.len() || so < outs[0].len() {
        return None;
    }
    let (dy, sdy) = match dys {
        Some([d0, d1]) => {
            let (t, s) = d0.span_to(d1, gpu)?;
            (Some(t), s)
        }
        None => (None, 0),
    };
    let strides = BnParams {
        stride_x: u(sx)?,
        stride_y: u(so)?,
        stride_dy: u(sdy)?,
        stride_stats: u(ss)?,
        stride_dims,
        stride_map,
        ..p
    };
    Some(Spans { x, stats, out, dy, strides })
}

/// A pair's grid: `grid` for each sample, over z.
fn both(grid: glam::UVec3) -> glam::UVec3 {
    glam::UVec3::new(grid.x, grid.y, 2)
}

/// `forward` (training) of sample 0 on `ts[0]` into `ys[0]`, then of sample
/// 1, with the launches that can taking both samples at once.
#[allow(clippy::too_many_arguments)]
pub fn forward_pair(
    rec: &mut Recorder,
    ys: [&Tensor; 2],
    ts: [BnTensors; 2],
    rows: Rows,
    chs: [Stored; 2],
    cfg: BnConfig,
    relu: bool,
) -> Result<()> {
    let splits = splits(rec.gpu(), rows.max(), chs[0].max(), cfg);
    for ((t, ch), y) in ts.iter().zip(chs).zip(ys) {
        check(t, rows, ch, splits)?;
        super::need("batchnorm", "y", y, rows.max() * ch.max(), crate::device::tensor::DType::F32)?;
    }
    let p0 = BnParams { train: 1, ..params(rows, chs[0], cfg, splits)? };
    let Some(sp) = rec.gpu().pairs().then(|| spans(rec, ts, ys, None, chs, p0)).flatten() else {
        forward(rec, ys[0], ts[0], rows, chs[0], cfg, true, relu)?;
        return forward(rec, ys[1], ts[1], rows, chs[1], cfg, true, relu);
    };
    let wg = vec![("WG", f64::from(super::batchnorm::WG))];
    // Statistics: the split first level of both samples at once, then each
    // sample's sums (and running averages) in turn; unsplit, each in turn.
    let alone = |j: usize| -> Result<BnParams> { Ok(BnParams { train: 1, ..params(rows, chs[j], cfg, splits)? }) };
    let seq = splits > 1 && chs[0].max() <= SEQ_FINAL_MAX;
    if splits > 1 {
        let t = ts[0];
        let b = [(1, t.dims), (2, t.maps), (3, &sp.x), (4, &sp.stats), (5, t.running), (9, &sp.x)];
        rec.dispatch(Kernel::BnStats, &wg, (0, &sp.strides), &b, both(per_channel(chs[0], splits)?))?;
        if seq {
            let p = BnParams { seq: 2, ..sp.strides };
            let f = FinalBinds { t: BnTensors { x: &sp.x, stats: &sp.stats, ..t }, grads: (&sp.out, &sp.out) };
            record_final(rec, Kernel::BnStatsFinal, &p, f, glam::UVec3::ONE)?;
        }
    }
    for (j, t) in ts.iter().enumerate().filter(|_| !seq) {
        let p = alone(j)?;
        if splits > 1 {
            let f = FinalBinds { t: *t, grads: (ys[j], ys[j]) };
            record_final(rec, Kernel::BnStatsFinal, &p, f, final_grid(rec, chs[j])?)?;
        } else {
            let b = [(1, t.dims), (2, t.maps), (3, t.x), (4, t.stats), (5, t.running), (9, t.x)];
            rec.dispatch(Kernel::BnStats, &wg, (0, &p), &b, per_channel(chs[j], splits)?)?;
        }
    }
    let p = BnParams { relu: relu.into(), ..sp.strides };
    let t = ts[0];
    let b =
        [(1, t.dims), (2, t.maps), (3, &sp.x), (4, &sp.stats), (5, t.running), (6, t.gamma), (7, t.beta), (8, &sp.out)];
    rec.dispatch(Kernel::BnApply, &wg, (0, &p), &b, both(elementwise(rec, rows.max() * chs[0].max())?))
}

/// `backward` of sample 0 (dx `dxs[0]`, dy `dys[0]`), then of sample 1,
/// both adding into one dγ and dβ, with the launches that can taking both
/// samples at once.
#[allow(clippy::too_many_arguments)]
pub fn backward_pair(
    rec: &mut Recorder,
    (dxs, dys): ([&Tensor; 2], [&Tensor; 2]),
    (dgamma, dbeta): (&Tensor, &Tensor),
    ts: [BnTensors; 2],
    rows: Rows,
    chs: [Stored; 2],
    cfg: BnConfig,
    (accumulate, gate): (bool, bool),
) -> Result<()> {
    let splits = splits(rec.gpu(), rows.max(), chs[0].max(), cfg);
    let flags =
        BnParams { train: 1, accumulate: accumulate.into(), gate: gate.into(), ..params(rows, chs[0], cfg, splits)? };
    let Some(sp) = rec.gpu().pairs().then(|| spans(rec, ts, dxs, Some(dys), chs, flags)).flatten() else {
        for j in 0..2 {
            backward(rec, dxs[j], dys[j], (dgamma, dbeta), ts[j], rows, chs[j], cfg, (accumulate, gate))?;
        }
        return Ok(());
    };
    // The checks `backward` makes, for both samples.
    for j in 0..2 {
        check(&ts[j], rows, chs[j], splits)?;
        let n = rows.max() * chs[j].max();
        super::need("batchnorm", "dy", dys[j], n, crate::device::tensor::DType::F32)?;
        super::need("batchnorm", "dx", dxs[j], n, crate::device::tensor::DType::F32)?;
    }
    super::need("batchnorm", "dgamma", dgamma, chs[0].full, crate::device::tensor::DType::F32)?;
    super::need("batchnorm", "dbeta", dbeta, chs[0].full, crate::device::tensor::DType::F32)?;
    let wg = vec![("WG", f64::from(super::batchnorm::WG))];
    let dy = sp.dy.as_ref().expect("spans of dy asked for");
    let seq = splits > 1 && chs[0].max() <= SEQ_FINAL_MAX;
    if splits > 1 {
        let t = ts[0];
        let b = [(1, t.dims), (2, t.maps), (3, &sp.x), (4, &sp.stats), (9, dy), (10, dgamma), (11, dbeta)];
        rec.dispatch(Kernel::BnGradReduce, &wg, (0, &sp.strides), &b, both(per_channel(chs[0], splits)?))?;
        if seq {
            let p = BnParams { seq: 2, ..sp.strides };
            let f = FinalBinds { t: BnTensors { x: &sp.x, stats: &sp.stats, ..t }, grads: (dgamma, dbeta) };
            record_final(rec, Kernel::BnGradFinal, &p, f, glam::UVec3::ONE)?;
        }
    }
    for (j, t) in ts.iter().enumerate().filter(|_| !seq) {
        // Sample j alone: its own kept set, no offsets.
        let p =
            BnParams { train: 1, accumulate: flags.accumulate, gate: flags.gate, ..params(rows, chs[j], cfg, splits)? };
        if splits > 1 {
            let f = FinalBinds { t: *t, grads: (dgamma, dbeta) };
            record_final(rec, Kernel::BnGradFinal, &p, f, final_grid(rec, chs[j])?)?;
        } else {
            let b = [(1, t.dims), (2, t.maps), (3, t.x), (4, t.stats), (9, dys[j]), (10, dgamma), (11, dbeta)];
            rec.dispatch(Kernel::BnGradReduce, &wg, (0, &p), &b, per_channel(chs[j], splits)?)?;
        }
    }
    let t = ts[0];
    let b = [(1, t.dims), (2, t.maps), (3, &sp.x), (4, &sp.stats), (6, t.gamma), (8, &sp.out), (9, dy)];
    rec.dispatch(Kernel::BnGradApply, &wg, (0, &sp.strides), &b, both(elementwise(rec, rows.max() * chs[0].max())?))
}
