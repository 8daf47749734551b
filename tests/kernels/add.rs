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
        let (kept, ranks, counts) = union_sets(gpu, c, &mask, 1);
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

/// Both mask samples' residual sums and their gradients in pairs
/// (`forward_pair`, `backward_pair`): two samples keeping different
/// channels of each input (compacted on the device, each sample's sets at
/// its own offsets; one sample keeps nothing of B), and all channels, each
/// sample's tensors in shared buffers, against `forward` and `backward` of
/// sample 0 then sample 1 on copies: the same bits, in fewer launches; also
/// with one workgroup striding over everything.
#[test]
fn residual_sum_pairs_match_one_by_one() {
    // On one workgroup more columns than its 256 threads (the row walk).
    pairs_on_each_grid("residual_sum_pairs_match_one_by_one", |gpu, label| {
        add_pair_cases(gpu, label, if label.is_empty() { 13 } else { 263 })
    });
}

fn add_pair_cases(gpu: &sparsetrain::Gpu, label: &str, c: usize) {
    use sparsetrain::ops::add::{backward_pair, forward_pair};
    let (cap, n) = (5usize, 4usize);
    let mut r = rng(2500);
    // Sample s: units 0..c are A's layer, c..2c B's; its sets at 3s..3s+3.
    // Sample 1 keeps nothing of B (units 3c..4c).
    let keep = |u: usize| if u % (2 * c) < c { 0.5 } else { 0.3 };
    let mask: Vec<u32> =
        (0..4 * c).map(|u| if (3 * c..4 * c).contains(&u) { 0 } else { u32::from(r.random_bool(keep(u))) }).collect();
    let (kept, ranks, counts) = union_sets(gpu, c, &mask, 2);
    let ks = KeptSet { dims: &counts, maps: &kept, ranks: &ranks };
    let kept_sides = |s: usize| [2, 0, 1].map(|k| Side::Kept { count: 3 * s + k, map: (3 * s + k) * c });
    for (li, sides) in [[kept_sides(0), kept_sides(1)], [[Side::Full; 3]; 2]].into_iter().enumerate() {
        let big = cap * c.div_ceil(4) * 4;
        let (va, vb, vd, prior) = (
            rand_f32(&mut r, 2 * big, -1.0, 1.0),
            rand_f32(&mut r, 2 * big, -1.0, 1.0),
            rand_f32(&mut r, 2 * big, -1.0, 1.0),
            rand_f32(&mut r, 2 * big, -1.0, 1.0),
        );
        let nine = vec![9.0; 2 * big];
        let setup = || {
            (
                joint(gpu, "a", big, [&va[..big], &va[big..]]),
                joint(gpu, "b", big, [&vb[..big], &vb[big..]]),
                joint(gpu, "dout", big, [&vd[..big], &vd[big..]]),
                joint(gpu, "out", big, [&nine[..big], &nine[big..]]),
                joint(gpu, "da", big, [&prior[..big], &prior[big..]]),
                joint(gpu, "db", big, [&prior[..big], &prior[big..]]),
            )
        };
        let (p, q) = (setup(), setup());
        let rows = Rows::Batch(cap);
        // Gradients accumulated and gated, or neither.
        let flags = (li == 0, li == 0);
        let mut launches = [0usize; 2];
        run_with_batch(gpu, n, |rec| {
            let (a, b, d, o, da, db) = &p;
            forward_pair(rec, [&o[0], &o[1]], [(&a[0], &b[0]), (&a[1], &b[1])], [ks; 2], sides, rows, c, true).unwrap();
            for (i, (x, dx)) in [(a, da), (b, db)].into_iter().enumerate() {
                let s = sides.map(|s| (s[0], s[1 + i]));
                backward_pair(rec, ([&dx[0], &dx[1]], [&d[0], &d[1]], [&x[0], &x[1]]), [ks; 2], s, rows, c, flags)
                    .unwrap();
            }
            launches[0] = rec.dispatches();
            let (a, b, d, o, da, db) = &q;
            for j in 0..2 {
                forward(rec, &o[j], (&a[j], &b[j]), ks, sides[j], rows, c, (true, false)).unwrap();
            }
            for (i, (x, dx)) in [(a, da), (b, db)].into_iter().enumerate() {
                for j in 0..2 {
                    let s = (sides[j][0], sides[j][1 + i]);
                    backward(rec, &dx[j], &d[j], &x[j], ks, s, rows, c, (flags.0, flags.1, false)).unwrap();
                }
            }
            launches[1] = rec.dispatches() - launches[0];
        });
        let tag = format!("layout {li}{label}, flags {flags:?}");
        assert_eq!(launches, [3, 6], "{tag}: launches paired and one by one (a sum and two gradients)");
        let down = |t: &Tensor| t.download_f32(gpu).unwrap();
        for j in 0..2 {
            assert_same_bits(&format!("{tag}: sample {j} sum"), &down(&p.3[j]), &down(&q.3[j]));
            assert_same_bits(&format!("{tag}: sample {j} dA"), &down(&p.4[j]), &down(&q.4[j]));
            assert_same_bits(&format!("{tag}: sample {j} dB"), &down(&p.5[j]), &down(&q.5[j]));
        }
        assert!(down(&p.3[1]).iter().any(|&v| v != 9.0), "{tag}: sample 1's sum was not written");
    }
}

/// The kept lists, ranks and counts of `samples` masks (each 2c units: c
/// of A's layer, then c of B's) over three sets, A's, B's and their union
/// (each sample's at its own offsets), compacted on the device as training
/// does.
fn union_sets(gpu: &sparsetrain::Gpu, c: usize, mask: &[u32], samples: usize) -> (Tensor, Tensor, Tensor) {
    let sets = vec![
        SetDesc { slot: 0, len: c, members: vec![] },
        SetDesc { slot: c, len: c, members: vec![] },
        SetDesc { slot: 2 * c, len: c, members: vec![0, c] },
    ];
    let table = set_table(&sets).unwrap();
    let tm = Tensor::from_u32(gpu, "mask", &[mask.len()], mask).unwrap();
    let tt = Tensor::from_u32(gpu, "table", &[table.len()], &table).unwrap();
    let kept = Tensor::zeros(gpu, "kept", &[3 * c * samples], DType::U32).unwrap();
    let ranks = Tensor::zeros(gpu, "ranks", &[3 * c * samples], DType::U32).unwrap();
    let counts = Tensor::zeros(gpu, "counts", &[3 * samples], DType::U32).unwrap();
    let mut rec = Recorder::new(gpu);
    let out = Compacted { kept: &kept, counts: &counts, ranks: &ranks };
    compact_sets(&mut rec, out, &tm, &tt, 3, (2 * c, 3 * c), samples).unwrap();
    rec.finish().unwrap();
    (kept, ranks, counts)
}
