use rand::Rng;
use sparsetrain::ops::Rows;
use sparsetrain::ops::batchnorm::{BnConfig, BnTensors, backward, forward};
use sparsetrain::ops::conv::Stored;
use sparsetrain::ops::gather::Side;
use sparsetrain::{Tensor, cpu};

use crate::common::*;

/// BatchNorm on all channels and on a kept subset (γ, β and running
/// statistics addressed through the kept list, padding channels exactly 0),
/// training and evaluation forward, the backward's dγ, dβ added into the
/// full-size gradients and dx (gated, accumulated), rows from the step;
/// also with one workgroup striding over many rows of awkward widths.
#[test]
fn batchnorm_matches_reference() {
    with_single_workgroup("batchnorm_matches_reference", run_cases);
}

fn run_cases(gpu: &sparsetrain::Gpu, label: &str) {
    // The device's own choice (one workgroup per channel on lavapipe), then
    // reductions split into chunks of 16 rows (GPUs split by 4096).
    run_split_cases(gpu, label, 0);
    run_split_cases(gpu, &format!("{label} (rows split by 16)"), 16);
    // A chunk per row, up to 256: more chunks than a final's lanes per
    // channel, in groups of FINAL_W channels.
    run_split_cases(gpu, &format!("{label} (a chunk per row)"), 1);
}

fn run_split_cases(gpu: &sparsetrain::Gpu, label: &str, split_rows: usize) {
    let cfg = BnConfig { split_rows, ..BnConfig::default() };
    for (case, (full, kept_units, per, cap, n)) in [
        (7usize, None, 5usize, 3usize, 3usize),
        (9, Some(vec![0usize, 3, 4, 7, 8]), 4, 4, 2),
        (13, Some(vec![5]), 1, 2, 2),
        (6, Some(vec![]), 9, 2, 1),
        (300, None, 1, 1, 1),
        // Two channel groups (256 + 44) over several chunks.
        (300, None, 7, 4, 3),
        // Enough rows that CPU adapters split them too.
        (5, None, 100, 90, 83),
        (7, None, 23, 9, 7),
        (11, Some(vec![0usize, 2, 3, 5, 6, 9]), 31, 5, 5),
        (5, None, 100, 8, 5),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = rng(2200 + case as u64);
        let (count, c) = match &kept_units {
            None => (full, full),
            Some(k) => (k.len(), k.len().div_ceil(4) * 4),
        };
        let units: Vec<usize> = kept_units.clone().unwrap_or_else(|| (0..full).collect());
        let side = if kept_units.is_some() { Side::Kept { count: 0, map: 0 } } else { Side::Full };
        let st = Stored { side, full };
        let (rows_cap, rows) = (cap * per, n * per);
        let max = st.max();
        let mut x = rand_f32(&mut r, rows_cap * max, -2.0, 3.0);
        for (i, v) in x.iter_mut().enumerate() {
            if c == 0 || i % c >= count {
                *v = 0.0;
            }
        }
        let gamma = rand_f32(&mut r, full, 0.5, 1.5);
        let beta = rand_f32(&mut r, full, -0.5, 0.5);
        let running: Vec<f32> = (0..2 * full)
            .map(|i| if i < full { r.random_range(-0.2..0.2) } else { r.random_range(0.5..1.5) })
            .collect();
        let dy = rand_f32(&mut r, rows_cap * max, -1.0, 1.0);
        let prior_g = rand_f32(&mut r, full, -1.0, 1.0);
        let prior_dx = rand_f32(&mut r, rows_cap * max, -1.0, 1.0);
        let t = |name: &str, v: &[f32]| {
            Tensor::from_f32(gpu, name, &[v.len().max(1)], if v.is_empty() { &[0.0] } else { v }).unwrap()
        };
        let (tx, tg, tb, trun, tdy) =
            (t("x", &x), t("gamma", &gamma), t("beta", &beta), t("running", &running), t("dy", &dy));
        let maps: Vec<u32> = if units.is_empty() { vec![0] } else { units.iter().map(|&u| u as u32).collect() };
        let tmaps = Tensor::from_u32(gpu, "maps", &[maps.len()], &maps).unwrap();
        let tdims = Tensor::from_u32(gpu, "dims", &[1], &[count as u32]).unwrap();
        let splits = sparsetrain::ops::batchnorm::splits(gpu, rows_cap, max, cfg);
        let stats = t("stats", &vec![0.0; (4 + 2 * splits) * max]);
        let (y, y_eval) = (t("y", &vec![9.0; rows_cap * max]), t("y eval", &vec![9.0; rows_cap * max]));
        let (dg, db, dx) = (t("dgamma", &prior_g), t("dbeta", &prior_g), t("dx", &prior_dx));
        let bt = BnTensors { x: &tx, dims: &tdims, maps: &tmaps, stats: &stats, running: &trun, gamma: &tg, beta: &tb };
        let rows_of = Rows::BatchOf { cap, per };
        run_with_batch(gpu, n, |rec| {
            // Evaluation first, with the running statistics as given.
            forward(rec, &y_eval, bt, rows_of, st, cfg, false, false).unwrap();
            forward(rec, &y, bt, rows_of, st, cfg, true, false).unwrap();
            backward(rec, &dx, &tdy, (&dg, &db), bt, rows_of, st, cfg, (true, true)).unwrap();
        });
        let tag = format!("case {case}{label}: {rows} rows, {count} of {full} channels, {splits} splits");
        // The kept channels of the first `rows` rows, as dense [rows, count] data.
        let dense = |v: &[f32]| -> Vec<f64> {
            (0..rows).flat_map(|r| (0..count).map(move |j| (r, j))).map(|(r, j)| v[r * c + j] as f64).collect()
        };
        let pick = |v: &[f32], off: usize| -> Vec<f64> { units.iter().map(|&u| v[off + u] as f64).collect() };
        let (x64, dy64) = (dense(&x), dense(&dy));
        let (g64, b64) = (pick(&gamma, 0), pick(&beta, 0));
        let (want_y, mean, var) = cpu::batchnorm::forward_train(&x64, rows, count, &g64, &b64, cfg.eps as f64);
        let want_eval = cpu::batchnorm::forward_eval(
            &x64,
            rows,
            count,
            &g64,
            &b64,
            &pick(&running, 0),
            &pick(&running, full),
            cfg.eps as f64,
        );
        let (ydev, yev) = (y.download_f32(gpu).unwrap(), y_eval.download_f32(gpu).unwrap());
        assert_close(&format!("{tag} y (train)"), &dense_f32(&ydev, rows, c, count), &want_y, 1e-5, 1e-4);
        assert_close(&format!("{tag} y (eval)"), &dense_f32(&yev, rows, c, count), &want_eval, 1e-5, 1e-4);
        for rr in 0..rows {
            for j in count..c {
                assert_eq!(ydev[rr * c + j], 0.0, "{tag}: padding channel {j} of row {rr} is not exactly 0");
            }
        }
        assert!(ydev[rows * c..].iter().all(|&v| v == 9.0), "{tag}: rows past the step were written");
        // Running statistics: kept units updated, the others untouched.
        let mut rm = to_f64(&running[..full]);
        let mut rv = to_f64(&running[full..]);
        let (mut km, mut kv) = (pick(&running, 0), pick(&running, full));
        cpu::batchnorm::update_running(&mut km, &mut kv, &mean, &var, rows, cfg.momentum as f64);
        for (i, &u) in units.iter().enumerate() {
            rm[u] = km[i];
            rv[u] = kv[i];
        }
        let got_run = trun.download_f32(gpu).unwrap();
        assert_close(&format!("{tag} running mean"), &got_run[..full], &rm, 1e-6, 1e-5);
        assert_close(&format!("{tag} running var"), &got_run[full..], &rv, 1e-6, 1e-5);
        // Backward.
        let (want_dx, want_dg, want_db) = cpu::batchnorm::backward(&x64, &dy64, rows, count, &g64, cfg.eps as f64);
        let mut full_dg = to_f64(&prior_g);
        let mut full_db = to_f64(&prior_g);
        for (i, &u) in units.iter().enumerate() {
            full_dg[u] += want_dg[i];
            full_db[u] += want_db[i];
        }
        assert_close(&format!("{tag} dgamma"), &dg.download_f32(gpu).unwrap(), &full_dg, 1e-4, 1e-4);
        assert_close(&format!("{tag} dbeta"), &db.download_f32(gpu).unwrap(), &full_db, 1e-4, 1e-4);
        let got_dx = dx.download_f32(gpu).unwrap();
        let want: Vec<f64> = (0..rows * count)
            .map(|k| {
                let (rr, j) = (k / count, k % count);
                let g = if x[rr * c + j] > 0.0 { want_dx[k] } else { 0.0 };
                prior_dx[rr * c + j] as f64 + g
            })
            .collect();
        assert_close(&format!("{tag} dx (gated, accumulated)"), &dense_f32(&got_dx, rows, c, count), &want, 1e-4, 1e-4);
    }
}

/// [rows, count] of a [rows, c] buffer, as f32.
fn dense_f32(v: &[f32], rows: usize, c: usize, count: usize) -> Vec<f32> {
    (0..rows).flat_map(|r| (0..count).map(move |j| (r, j))).map(|(r, j)| v[r * c + j]).collect()
}

/// Both mask samples' BatchNorm in pairs (`ops::batchnorm_pair`): the
/// training forward and the backward of two samples that keep different
/// channels of one layer (one none, one all; or all channels stored), their
/// x, y, dy, dx and statistics in shared buffers, against `forward` and
/// `backward` of sample 0 then sample 1 on copies: the same bits in every
/// output, running statistic and dγ, dβ (units both samples keep get both
/// parts, sample 0's first), in fewer launches; unsplit and split.
#[test]
fn batchnorm_pairs_match_one_by_one() {
    // Also on one workgroup striding over every row and channel (the
    // applies' row walk).
    pairs_on_each_grid("batchnorm_pairs_match_one_by_one", bn_pair_cases);
}

fn bn_pair_cases(gpu: &sparsetrain::Gpu, label: &str) {
    use sparsetrain::ops::batchnorm_pair::{backward_pair, forward_pair};
    // (channels, each sample's kept units or all stored, pixels, capacity, batch).
    let cases: [PairCase; 7] = [
        (9, Some([vec![0, 3, 4, 7, 8], vec![1, 3, 8]]), 6, 4, 3),
        (6, Some([vec![], (0..6).collect()]), 9, 3, 2),
        (7, None, 23, 9, 7),
        (300, Some([(0..300).filter(|u| u % 3 != 0).collect(), (0..300).filter(|u| u % 5 != 1).collect()]), 3, 3, 2),
        // Two channel groups over several chunks of rows.
        (300, None, 7, 4, 3),
        // Split finals of a pair in one workgroup, four channel groups a
        // sample (the most, SEQ_FINAL_MAX); then past it, a launch per sample.
        (128, Some([(0..128).filter(|u| u % 7 != 2).collect(), (0..128).collect()]), 9, 4, 3),
        (132, Some([(0..132).collect(), (0..132).filter(|u| u % 2 == 0).collect()]), 9, 4, 3),
    ];
    for split_rows in [0usize, 16, 1] {
        let cfg = BnConfig { split_rows, ..BnConfig::default() };
        for (case, (full, kept, per, cap, n)) in cases.iter().cloned().enumerate() {
            let mut r = rng(2600 + case as u64 + 10 * split_rows as u64);
            let sts: [Stored; 2] = match &kept {
                None => [Stored { side: Side::Full, full }; 2],
                Some(k) => [
                    Stored { side: Side::Kept { count: 0, map: 0 }, full },
                    Stored { side: Side::Kept { count: 1, map: k[0].len() }, full },
                ],
            };
            let max = sts[0].max();
            let rows_cap = cap * per;
            let splits = sparsetrain::ops::batchnorm::splits(gpu, rows_cap, max, cfg);
            let (counts, maps) = match &kept {
                None => (vec![0u32, 0], vec![0u32]),
                Some(k) => (
                    k.iter().map(|v| v.len() as u32).collect(),
                    k.iter().flatten().map(|&u| u as u32).chain([0]).collect::<Vec<u32>>(),
                ),
            };
            let tdims = Tensor::from_u32(gpu, "dims", &[2], &counts).unwrap();
            let tmaps = Tensor::from_u32(gpu, "maps", &[maps.len()], &maps).unwrap();
            // Each sample's values: its stored channels, padding zero.
            let stored = |j: usize| match &kept {
                None => (full, full),
                Some(k) => (k[j].len(), k[j].len().div_ceil(4) * 4),
            };
            let values = |r: &mut rand::rngs::StdRng, j: usize, lo: f32, hi: f32| -> Vec<f32> {
                let (count, c) = stored(j);
                let v = rand_f32(r, rows_cap * max, lo, hi);
                v.iter()
                    .enumerate()
                    .map(|(i, &x)| if c > 0 && i < rows_cap * c && i % c < count { x } else { 0.0 })
                    .collect()
            };
            let (x, dy, dx0) = (
                [values(&mut r, 0, -2.0, 3.0), values(&mut r, 1, -2.0, 3.0)],
                [values(&mut r, 0, -1.0, 1.0), values(&mut r, 1, -1.0, 1.0)],
                [rand_f32(&mut r, rows_cap * max, -1.0, 1.0), rand_f32(&mut r, rows_cap * max, -1.0, 1.0)],
            );
            let gamma = rand_f32(&mut r, full, 0.5, 1.5);
            let beta = rand_f32(&mut r, full, -0.5, 0.5);
            let running: Vec<f32> =
                (0..2 * full).map(|i| if i < full { 0.1 } else { 1.0 } + r.random_range(-0.1..0.1)).collect();
            let prior = rand_f32(&mut r, full, -1.0, 1.0);
            let t = |name: &str, v: &[f32]| Tensor::from_f32(gpu, name, &[v.len()], v).unwrap();
            let (tg, tb) = (t("gamma", &gamma), t("beta", &beta));
            let len = rows_cap * max;
            let nine = vec![9.0; len];
            let zeros = vec![0.0; (4 + 2 * splits) * max];
            // Paired and one by one, each on its own copies.
            let setup = || {
                let x = joint(gpu, "x", len, [&x[0], &x[1]]);
                let dy = joint(gpu, "dy", len, [&dy[0], &dy[1]]);
                let y = joint(gpu, "y", len, [&nine, &nine]);
                let dx = joint(gpu, "dx", len, [&dx0[0], &dx0[1]]);
                let stats = joint(gpu, "stats", zeros.len(), [&zeros, &zeros]);
                (x, dy, y, dx, stats, t("running", &running), t("dgamma", &prior), t("dbeta", &prior))
            };
            let (a, b) = (setup(), setup());
            let rows = Rows::BatchOf { cap, per };
            // dx accumulated and gated, or neither.
            let flags = (case % 2 == 0, case % 2 == 0);
            let mut launches = [0usize; 2];
            run_with_batch(gpu, n, |rec| {
                let ts = pair_tensors(&a.0, &a.4, &a.5, (&tdims, &tmaps), (&tg, &tb));
                forward_pair(rec, [&a.2[0], &a.2[1]], ts, rows, sts, cfg, true).unwrap();
                backward_pair(rec, ([&a.3[0], &a.3[1]], [&a.1[0], &a.1[1]]), (&a.6, &a.7), ts, rows, sts, cfg, flags)
                    .unwrap();
                launches[0] = rec.dispatches();
                let ts = pair_tensors(&b.0, &b.4, &b.5, (&tdims, &tmaps), (&tg, &tb));
                for j in 0..2 {
                    forward(rec, &b.2[j], ts[j], rows, sts[j], cfg, true, true).unwrap();
                }
                for j in 0..2 {
                    backward(rec, &b.3[j], &b.1[j], (&b.6, &b.7), ts[j], rows, sts[j], cfg, flags).unwrap();
                }
                launches[1] = rec.dispatches() - launches[0];
            });
            let tag = format!("case {case}{label}, {splits} splits, {n} of {cap} samples, flags {flags:?}");
            // Per pass: the reduction (a first level and a final where
            // split) and the apply. Paired, the first level and the apply
            // take both samples, and so do the finals up to SEQ_FINAL_MAX.
            let split = usize::from(splits > 1);
            let seq = split == 1 && max <= sparsetrain::ops::batchnorm_pair::SEQ_FINAL_MAX;
            let reduction = if seq { 2 } else { split + 2 };
            let want = [2 * (reduction + 1), 4 * (split + 2)];
            assert_eq!(launches, want, "{tag}: launches paired and one by one");
            let down = |t: &Tensor| t.download_f32(gpu).unwrap();
            for j in 0..2 {
                assert_same_bits(&format!("{tag}: sample {j} y"), &down(&a.2[j]), &down(&b.2[j]));
                assert_same_bits(&format!("{tag}: sample {j} dx"), &down(&a.3[j]), &down(&b.3[j]));
                assert_same_bits(&format!("{tag}: sample {j} statistics"), &down(&a.4[j]), &down(&b.4[j]));
            }
            assert_same_bits(&format!("{tag}: running statistics"), &down(&a.5), &down(&b.5));
            assert_same_bits(&format!("{tag}: dgamma"), &down(&a.6), &down(&b.6));
            assert_same_bits(&format!("{tag}: dbeta"), &down(&a.7), &down(&b.7));
            assert!(down(&a.5) != running, "{tag}: the running statistics did not move");
        }
    }
}

/// A pair test's layer: channels, each sample's kept units (None: all
/// stored), pixels per sample, capacity and batch.
type PairCase = (usize, Option<[Vec<usize>; 2]>, usize, usize, usize);

/// Both samples' BatchNorm tensors: their own x and statistics, one running
/// state, kept set, γ and β.
fn pair_tensors<'a>(
    xs: &'a [Tensor; 2],
    stats: &'a [Tensor; 2],
    running: &'a Tensor,
    (dims, maps): (&'a Tensor, &'a Tensor),
    (gamma, beta): (&'a Tensor, &'a Tensor),
) -> [BnTensors<'a>; 2] {
    [0, 1].map(|j| BnTensors { x: &xs[j], dims, maps, stats: &stats[j], running, gamma, beta })
}
