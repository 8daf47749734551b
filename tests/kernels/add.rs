use rand::Rng;
use sparsetrain::ops::Rows;
use sparsetrain::ops::add::{backward, forward};
use sparsetrain::ops::compact::{Compacted, SetDesc, compact_sets, set_table};
use sparsetrain::ops::gather::{KeptSet, Side};
use sparsetrain::{DType, Recorder, Tensor, cpu};

use crate::common::*;

/// The residual sum of two inputs with different kept channel sets, into
/// their union (compacted on the device as training does), and with one
/// input (or both) holding all channels; the backward to each input, gated
/// and accumulated. Checked against the dense-masked sum; again with one
/// workgroup striding over many rows.
#[test]
fn residual_sum_over_channel_sets_matches_reference() {
    with_single_workgroup("residual_sum_over_channel_sets_matches_reference", run_cases);
}

fn run_cases(gpu: &sparsetrain::Gpu, label: &str) {
    // Channels and rows of the buffers and of the step: on one workgroup,
    // more of both than its 256 threads cover (a thread per column, then
    // the walk over all elements past 256 columns).
    let (c, cap, n) = if label.is_empty() { (13usize, 5usize, 4usize) } else { (263, 60, 53) };
    for (case, (pa, pb)) in [(0.5, 0.3), (1.0, 0.0), (0.0, 0.0), (0.2, 0.9)].into_iter().enumerate() {
        let mut r = rng(2400 + case as u64);
        // Units 0..c are A's layer, c..2c are B's; set 2 is their union.
        let mask: Vec<u32> = (0..2 * c).map(|u| u32::from(r.random_bool(if u < c { pa } else { pb }))).collect();
        let sets = vec![
            SetDesc { slot: 0, len: c, members: vec![] },
            SetDesc { slot: c, len: c, members: vec![] },
            SetDesc { slot: 2 * c, len: c, members: vec![0, c] },
        ];
        let table = set_table(&sets).unwrap();
        let tm = Tensor::from_u32(gpu, "mask", &[2 * c], &mask).unwrap();
        let tt = Tensor::from_u32(gpu, "table", &[table.len()], &table).unwrap();
        let (kept, ranks) = (
            Tensor::zeros(gpu, "kept", &[3 * c], DType::U32).unwrap(),
            Tensor::zeros(gpu, "ranks", &[3 * c], DType::U32).unwrap(),
        );
        let counts = Tensor::zeros(gpu, "counts", &[3], DType::U32).unwrap();
        let mut rec = Recorder::new(gpu);
        compact_sets(
            &mut rec,
            Compacted { kept: &kept, counts: &counts, ranks: &ranks },
            &tm,
            &tt,
            3,
            (2 * c, 3 * c),
            1,
        )
        .unwrap();
        rec.finish().unwrap();
        let ks = KeptSet { dims: &counts, maps: &kept, ranks: &ranks };
        let (sa, sb, su) =
            (Side::Kept { count: 0, map: 0 }, Side::Kept { count: 1, map: c }, Side::Kept { count: 2, map: 2 * c });
        let in_a: Vec<usize> = (0..c).filter(|&u| mask[u] != 0).collect();
        let in_b: Vec<usize> = (0..c).filter(|&u| mask[c + u] != 0).collect();
        let union: Vec<usize> = (0..c).filter(|u| in_a.contains(u) || in_b.contains(u)).collect();
        // Three layouts: both kept (sum = union), A kept and B full (sum = full), both full.
        let layouts = [
            (sa, sb, su, &in_a, &in_b, &union),
            (sa, Side::Full, Side::Full, &in_a, &(0..c).collect(), &(0..c).collect()),
            (Side::Full, Side::Full, Side::Full, &(0..c).collect(), &(0..c).collect(), &(0..c).collect()),
        ];
        for (li, (a_side, b_side, o_side, la, lb, lo)) in layouts.into_iter().enumerate() {
            let width = |l: &Vec<usize>, s: Side| if s == Side::Full { c } else { l.len().div_ceil(4) * 4 };
            let (ca, cb, co) = (width(la, a_side), width(lb, b_side), width(lo, o_side));
            // Dense-masked values: channel u of row rr, zero where a side lacks it.
            let va: Vec<f32> = rand_f32(&mut r, cap * c, -1.0, 1.0);
            let vb: Vec<f32> = rand_f32(&mut r, cap * c, -1.0, 1.0);
            // Buffers hold the largest layout (all channels, padded to 4).
            let big = cap * c.div_ceil(4) * 4;
            let pack = |v: &[f32], l: &Vec<usize>, w: usize| -> Vec<f32> {
                let mut out = vec![0.0; big];
                for rr in 0..cap {
                    for (j, &u) in l.iter().enumerate() {
                        out[rr * w + j] = v[rr * c + u];
                    }
                }
                out
            };
            let (pa_, pb_) = (pack(&va, la, ca), pack(&vb, lb, cb));
            let ta = Tensor::from_f32(gpu, "a", &[pa_.len()], &pa_).unwrap();
            let tb = Tensor::from_f32(gpu, "b", &[pb_.len()], &pb_).unwrap();
            let out = Tensor::from_f32(gpu, "out", &[big], &vec![9.0; big]).unwrap();
            let dout_h = rand_f32(&mut r, big, -1.0, 1.0);
            let dout = Tensor::from_f32(gpu, "dout", &[dout_h.len()], &dout_h).unwrap();
            let prior = rand_f32(&mut r, pa_.len(), -1.0, 1.0);
            let da = Tensor::from_f32(gpu, "da", &[prior.len()], &prior).unwrap();
            run_with_batch(gpu, n, |rec| {
                forward(rec, &out, (&ta, &tb), ks, [o_side, a_side, b_side], Rows::Batch(cap), c, (true, false))
                    .unwrap();
                backward(rec, &da, &dout, &ta, ks, (o_side, a_side), Rows::Batch(cap), c, (true, true, false)).unwrap();
            });
            let tag = format!("case {case}{label} layout {li}: |A| {} |B| {} |sum| {}", la.len(), lb.len(), lo.len());
            let got = out.download_f32(gpu).unwrap();
            let sides = [(&lo[..], co), (&la[..], ca), (&lb[..], cb)];
            let want = cpu::add::add_forward(&to_f64(&pa_), &to_f64(&pb_), sides, n, true);
            assert_close(&format!("{tag} sum"), &got[..n * co], &want, 1e-6, 1e-6);
            assert!(got[n * co..].iter().all(|&v| v == 9.0), "{tag}: rows past the step were written");
            let got = da.download_f32(gpu).unwrap();
            let sides = ((&lo[..], co), (&la[..], ca));
            let want = cpu::add::add_backward(&to_f64(&dout_h), &to_f64(&pa_), &to_f64(&prior), sides, n, true);
            assert_close(&format!("{tag} dA"), &got[..n * ca], &want, 1e-6, 1e-6);
        }
    }
}
