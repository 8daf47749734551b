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
