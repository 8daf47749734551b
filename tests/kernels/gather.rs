use rand::Rng;
use sparsetrain::ops::gather::{KeptSet, Side, gather_weights, scatter_bias_grad};
use sparsetrain::{Recorder, Tensor, cpu};

use crate::common::*;

fn subset(r: &mut impl Rng, n: usize, keep: f64) -> Vec<u32> {
    (0..n as u32).filter(|_| r.random_bool(keep)).collect()
}

#[test]
fn gather_and_scatter_match_reference() {
    let Some(gpu) = gpu("gather_and_scatter_match_reference") else { return };
    gather_cases(&gpu);
}

#[test]
fn gather_and_scatter_on_a_capped_grid() {
    let opts = sparsetrain::GpuOptions { grid_cap: Some(1), ..Default::default() };
    let Some(gpu) = gpu_with("gather_and_scatter_on_a_capped_grid", opts) else { return };
    gather_cases(&gpu);
}

fn gather_cases(gpu: &sparsetrain::Gpu) {
    let (rows_full, cols_full, batch) = (37usize, 23usize, 5usize);
    let mut case = 0;
    for keep_rows in [Some(1.0), Some(0.5), Some(0.0), Some(0.1), None] {
        for keep_cols in [Some(0.5), None, Some(1.0), Some(0.0)] {
            case += 1;
            let mut r = rng(1400 + case);
            let rows = keep_rows.map(|k| subset(&mut r, rows_full, k));
            let cols = keep_cols.map(|k| subset(&mut r, cols_full, k));
            // dims = [kept rows, kept cols]; maps = rows list at 0, cols list at 64.
            let dims = [rows.as_ref().map_or(0, |v| v.len() as u32), cols.as_ref().map_or(0, |v| v.len() as u32)];
            let mut maps = vec![u32::MAX; 128];
            if let Some(v) = &rows {
                maps[..v.len()].copy_from_slice(v);
            }
            if let Some(v) = &cols {
                maps[64..64 + v.len()].copy_from_slice(v);
            }
            let rside = if rows.is_some() { Side::Kept { count: 0, map: 0 } } else { Side::Full };
            let cside = if cols.is_some() { Side::Kept { count: 1, map: 64 } } else { Side::Full };
            let w = rand_f32(&mut r, rows_full * cols_full, -1.0, 1.0);
            let b = rand_f32(&mut r, rows_full, -1.0, 1.0);
            let max = rside.max_len(rows_full) * cside.max_len(cols_full);
            let pr = rside.max_len(rows_full);
            let dy = rand_f32(&mut r, batch * pr, -1.0, 1.0);
            let db0 = rand_f32(&mut r, rows_full, -1.0, 1.0);
            let tdims = Tensor::from_u32(gpu, "dims", &[2], &dims).unwrap();
            let tmaps = Tensor::from_u32(gpu, "maps", &[128], &maps).unwrap();
            let kept = KeptSet { dims: &tdims, maps: &tmaps, ranks: &tmaps };
            let tw = Tensor::from_f32(gpu, "w", &[w.len()], &w).unwrap();
            let tb = Tensor::from_f32(gpu, "b", &[b.len()], &b).unwrap();
            let twc = Tensor::from_f32(gpu, "wc", &[max], &vec![f32::NAN; max]).unwrap();
            let tbc = Tensor::from_f32(gpu, "bc", &[pr], &vec![f32::NAN; pr]).unwrap();
            let tdy = Tensor::from_f32(gpu, "dy", &[dy.len()], &dy).unwrap();
            let tdb = Tensor::from_f32(gpu, "db", &[rows_full], &db0).unwrap();
            let mut rec = Recorder::new(gpu);
            // The bias rides along in the same launch, except in every third case.
            let with_bias = case % 3 != 0;
            let bias = with_bias.then_some((&tbc, &tb));
            gather_weights(&mut rec, &twc, &tw, bias, kept, rside, cside, (rows_full, cols_full)).unwrap();
            scatter_bias_grad(&mut rec, &tdb, &tdy, kept, rside, rows_full, batch).unwrap();
            rec.finish().unwrap();

            let tag = format!("rows {keep_rows:?} cols {keep_cols:?}");
            let want_wc =
                cpu::gather::gather_weights(&to_f64(&w), (rows_full, cols_full), rows.as_deref(), cols.as_deref());
            let got_wc = twc.download_f32(gpu).unwrap();
            assert_close(&format!("gather_weights {tag}"), &got_wc[..want_wc.len()], &want_wc, 0.0, 0.0);
            assert!(got_wc[want_wc.len()..].iter().all(|v| v.is_nan()), "{tag}: wrote past the compacted weights");
            let got_bc = tbc.download_f32(gpu).unwrap();
            if with_bias {
                let want_bc = cpu::gather::gather_bias(&to_f64(&b), rows.as_deref());
                assert_close(&format!("gather_bias {tag}"), &got_bc[..want_bc.len()], &want_bc, 0.0, 0.0);
            } else {
                assert!(got_bc.iter().all(|v| v.is_nan()), "{tag}: the bias was gathered though not asked for");
            }
            let mut want_db = to_f64(&db0);
            cpu::gather::scatter_bias_grad(&mut want_db, &to_f64(&dy), rows.as_deref(), batch);
            assert_close(&format!("scatter_bias_grad {tag}"), &tdb.download_f32(gpu).unwrap(), &want_db, 1e-5, 1e-5);
        }
    }
}

/// Bias gradients over many rows (a convolution's pixels, a large batch):
/// the first level's partial sums against their reference, and the two
/// levels together against the one-level sum, dense and through kept
/// lists, with the step's batch below the capacity.
#[test]
fn bias_grad_in_two_levels_matches_reference() {
    use sparsetrain::ops::Rows;
    use sparsetrain::ops::gather::{bias_grad_of, bias_partials_len, column_chunks, column_partials};
    let Some(gpu) = gpu("bias_grad_in_two_levels_matches_reference") else { return };
    let full = 13usize;
    for (case, (cap, batch)) in
        [(257usize, 257usize), (1000, 999), (4099, 3001), (300, 1), (100, 100)].into_iter().enumerate()
    {
        for keep in [None, Some(0.5), Some(0.0), Some(1.0)] {
            let mut r = rng(1450 + case as u64);
            let rows = keep.map(|k| subset(&mut r, full, k));
            let dims = [rows.as_ref().map_or(0, |v| v.len() as u32)];
            let mut maps = vec![u32::MAX; 16];
            if let Some(v) = &rows {
                maps[..v.len()].copy_from_slice(v);
            }
            let side = if rows.is_some() { Side::Kept { count: 0, map: 0 } } else { Side::Full };
            let width = match &rows {
                Some(v) => v.len().div_ceil(4) * 4,
                None => full,
            };
            // dy as stored: the kept columns, zero padding.
            let mut dy = rand_f32(&mut r, cap * side.max_len(full), -1.0, 1.0);
            for row in dy.chunks_mut(width.max(1)).take(cap) {
                row[rows.as_ref().map_or(full, |v| v.len())..].fill(0.0);
            }
            let db0 = rand_f32(&mut r, full, -1.0, 1.0);
            let tdims = Tensor::from_u32(&gpu, "dims", &[1], &dims).unwrap();
            let tmaps = Tensor::from_u32(&gpu, "maps", &[16], &maps).unwrap();
            let kept = KeptSet { dims: &tdims, maps: &tmaps, ranks: &tmaps };
            let tdy = Tensor::from_f32(&gpu, "dy", &[dy.len()], &dy).unwrap();
            let tdb = Tensor::from_f32(&gpu, "db", &[full], &db0).unwrap();
            let plen = bias_partials_len(cap, side, full).max(1);
            let tp = Tensor::from_f32(&gpu, "partials", &[plen], &vec![f32::NAN; plen]).unwrap();
            run_with_batch(&gpu, batch, |rec| {
                bias_grad_of(rec, (&tdb, true), &tdy, kept, side, full, Rows::Batch(cap), Some(&tp)).unwrap();
            });
            let tag = format!("capacity {cap} batch {batch} keep {keep:?}");
            let mut want = to_f64(&db0);
            cpu::gather::scatter_bias_grad(&mut want, &to_f64(&dy), rows.as_deref(), batch);
            assert_close(
                &format!("two-level bias gradient {tag}"),
                &tdb.download_f32(&gpu).unwrap(),
                &want,
                1e-5,
                1e-5,
            );
            // Assigned (a dense step's backward): what db held is gone. Kept
            // units' gradients are only ever added.
            if rows.is_none() {
                run_with_batch(&gpu, batch, |rec| {
                    bias_grad_of(rec, (&tdb, false), &tdy, kept, side, full, Rows::Batch(cap), Some(&tp)).unwrap();
                });
                let mut want = vec![0.0; full];
                cpu::gather::scatter_bias_grad(&mut want, &to_f64(&dy), None, batch);
                let got = tdb.download_f32(&gpu).unwrap();
                assert_close(&format!("assigned bias gradient {tag}"), &got, &want, 1e-5, 1e-5);
            } else {
                let mut rec = Recorder::new(&gpu);
                let assigned =
                    bias_grad_of(&mut rec, (&tdb, false), &tdy, kept, side, full, Rows::Batch(cap), Some(&tp));
                assert!(assigned.is_err(), "{tag}: a kept side's bias gradient was assigned");
            }
            if let Some((chunk, chunks)) = column_chunks(cap) {
                let got = tp.download_f32(&gpu).unwrap();
                let want = cpu::gather::column_partials(&to_f64(&dy), width, batch, chunk, chunks);
                assert_close(&format!("column partials {tag}"), &got[..chunks * width], &want, 1e-5, 1e-5);
                // Called alone, with a batch past the chunks' reach: an error.
                let mut rec = Recorder::new(&gpu);
                assert!(column_partials(&mut rec, &tp, &tdy, kept, side, full, cap, (chunk, chunks - 1)).is_err());
            } else {
                assert!(bias_partials_len(cap, side, full) == 0, "{tag}: one level needs no partial sums");
            }
        }
    }
}

/// Both mask samples' gathers in one launch (`gather_weight_blocks_pair`):
/// each sample's kept rows and columns (sample 1's lists after sample
/// 0's), a weight in column blocks, with and without a bias, a side that
/// follows no set, a sample keeping none or all, on both grids; the same
/// values as each sample's gather alone and as the f64 gather, and one
/// launch. Outputs in two buffers fall back to a launch per sample.
#[test]
fn paired_gathers_match_each_sample_alone() {
    pairs_on_each_grid("paired_gathers_match_each_sample_alone", paired_gather_cases);
}

fn paired_gather_cases(gpu: &sparsetrain::Gpu, label: &str) {
    use sparsetrain::ops::gather::{gather_weight_blocks, gather_weight_blocks_pair};
    let (rows_full, cols_full) = (19usize, 13usize);
    // Sets per sample (rows, cols) and list entries per sample.
    let (sets, entries) = (2usize, 40usize);
    let mut case = 0u64;
    for blocks in [1usize, 3] {
        for (keep_rows, keep_cols) in
            [(Some([0.5, 0.3]), Some([0.6, 1.0])), (Some([0.0, 1.0]), None), (None, Some([0.4, 0.0]))]
        {
            for (with_bias, joint_out) in [(true, true), (false, true), (true, false)] {
                case += 1;
                let mut r = rng(1500 + case);
                let pick = |r: &mut rand::rngs::StdRng, n: usize, k: Option<[f64; 2]>| {
                    k.map(|k| [subset(r, n, k[0]), subset(r, n, k[1])])
                };
                let (rows, cols) = (pick(&mut r, rows_full, keep_rows), pick(&mut r, cols_full, keep_cols));
                // dims [s·2 + set]; maps: sample s's rows list at s·40, its cols at s·40 + 20.
                let mut dims = vec![0u32; 2 * sets];
                let mut maps = vec![u32::MAX; 2 * entries];
                for s in 0..2 {
                    for (k, (list, at)) in [(&rows, 0usize), (&cols, 20)].into_iter().enumerate() {
                        if let Some(l) = list {
                            dims[s * sets + k] = l[s].len() as u32;
                            maps[s * entries + at..s * entries + at + l[s].len()].copy_from_slice(&l[s]);
                        }
                    }
                }
                let side = |kept: bool, s: usize, k: usize, at: usize| {
                    if kept { Side::Kept { count: s * sets + k, map: s * entries + at } } else { Side::Full }
                };
                let sides = [0, 1].map(|s| (side(rows.is_some(), s, 0, 0), side(cols.is_some(), s, 1, 20)));
                let (rs, cs) = sides[0];
                let (max, pr) = (rs.max_len(rows_full) * cs.max_len(cols_full) * blocks, rs.max_len(rows_full));
                let w = rand_f32(&mut r, rows_full * blocks * cols_full, -1.0, 1.0);
                let b = rand_f32(&mut r, rows_full, -1.0, 1.0);
                let tdims = Tensor::from_u32(gpu, "dims", &[dims.len()], &dims).unwrap();
                let tmaps = Tensor::from_u32(gpu, "maps", &[maps.len()], &maps).unwrap();
                let kept = KeptSet { dims: &tdims, maps: &tmaps, ranks: &tmaps };
                let (tw, tb) = (
                    Tensor::from_f32(gpu, "w", &[w.len()], &w).unwrap(),
                    Tensor::from_f32(gpu, "b", &[b.len()], &b).unwrap(),
                );
                let nans = |n: usize| vec![f32::NAN; n];
                let outs = |n: usize| -> [Tensor; 2] {
                    if joint_out {
                        joint(gpu, "out", n, [&nans(n), &nans(n)])
                    } else {
                        [0, 1].map(|_| Tensor::from_f32(gpu, "out", &[n], &nans(n)).unwrap())
                    }
                };
                let (wc, bc, wc1, bc1) = (outs(max), outs(pr), outs(max), outs(pr));
                let mut launches = [0usize; 2];
                run_with_batch(gpu, 1, |rec| {
                    let bias = with_bias.then_some(([&bc[0], &bc[1]], &tb));
                    let full = (rows_full, cols_full);
                    gather_weight_blocks_pair(rec, ([&wc[0], &wc[1]], &tw), bias, kept, sides, full, blocks).unwrap();
                    launches[0] = rec.dispatches();
                    for s in 0..2 {
                        let bias = with_bias.then_some((&bc1[s], &tb));
                        gather_weight_blocks(rec, (&wc1[s], &tw), bias, kept, sides[s], full, blocks).unwrap();
                    }
                    launches[1] = rec.dispatches() - launches[0];
                });
                let tag = format!(
                    "case {case}{label}: blocks {blocks}, rows {keep_rows:?}, cols {keep_cols:?}, bias {with_bias}, one buffer {joint_out}"
                );
                assert_eq!(launches, [if joint_out { 1 } else { 2 }, 2], "{tag}: launches paired and one by one");
                let down = |t: &Tensor| t.download_f32(gpu).unwrap();
                for s in 0..2 {
                    assert_same_bits(&format!("{tag}: sample {s} Wc"), &down(&wc[s]), &down(&wc1[s]));
                    assert_same_bits(&format!("{tag}: sample {s} bc"), &down(&bc[s]), &down(&bc1[s]));
                    let (rl, cl) = (rows.as_ref().map(|l| &l[s][..]), cols.as_ref().map(|l| &l[s][..]));
                    let want = cpu::gather::gather_weight_blocks(&to_f64(&w), (rows_full, cols_full), blocks, rl, cl);
                    let got = down(&wc[s]);
                    assert_close(&format!("{tag}: sample {s} Wc against f64"), &got[..want.len()], &want, 0.0, 0.0);
                    if with_bias {
                        let want = cpu::gather::gather_bias(&to_f64(&b), rl);
                        assert_close(
                            &format!("{tag}: sample {s} bc against f64"),
                            &down(&bc[s])[..want.len()],
                            &want,
                            0.0,
                            0.0,
                        );
                    }
                }
            }
        }
    }
}

/// Where both samples cannot share one launch, each takes its own: a side
/// kept for one sample and full for the other, sets not evenly apart, or
/// one output tensor for both.
#[test]
fn paired_gathers_fall_back_one_by_one() {
    use sparsetrain::ops::gather::gather_weight_blocks_pair;
    let Some(gpu) = gpu("paired_gathers_fall_back_one_by_one") else { return };
    let (rows_full, cols_full) = (9usize, 7usize);
    let tdims = Tensor::from_u32(&gpu, "dims", &[8], &[3, 2, 0, 0, 4, 5, 0, 0]).unwrap();
    let maps: Vec<u32> = (0..64).map(|i| i % 5).collect();
    let tmaps = Tensor::from_u32(&gpu, "maps", &[64], &maps).unwrap();
    let kept = KeptSet { dims: &tdims, maps: &tmaps, ranks: &tmaps };
    let tw = Tensor::from_f32(&gpu, "w", &[rows_full * cols_full], &vec![1.0; rows_full * cols_full]).unwrap();
    let n = 12 * 8;
    let out = joint(&gpu, "wc", n, [&[], &[]]);
    let k = |count: usize, map: usize| Side::Kept { count, map };
    let cases = [
        ("rows kept for one sample only", [(k(0, 0), k(1, 20)), (Side::Full, k(5, 52))]),
        ("sets not evenly apart", [(k(0, 0), k(1, 20)), (k(4, 32), k(5, 50))]),
    ];
    for (what, sides) in cases {
        let mut rec = Recorder::new(&gpu);
        gather_weight_blocks_pair(&mut rec, ([&out[0], &out[1]], &tw), None, kept, sides, (rows_full, cols_full), 1)
            .unwrap();
        assert_eq!(rec.dispatches(), 2, "{what}: a launch per sample");
        rec.finish().unwrap();
    }
    // Even sets, but one tensor for both outputs.
    let sides = [(k(0, 0), k(1, 20)), (k(4, 32), k(5, 52))];
    let mut rec = Recorder::new(&gpu);
    gather_weight_blocks_pair(&mut rec, ([&out[0], &out[0]], &tw), None, kept, sides, (rows_full, cols_full), 1)
        .unwrap();
    assert_eq!(rec.dispatches(), 2, "one output tensor: a launch per sample");
    rec.finish().unwrap();
    let mut rec = Recorder::new(&gpu);
    gather_weight_blocks_pair(&mut rec, ([&out[0], &out[1]], &tw), None, kept, sides, (rows_full, cols_full), 1)
        .unwrap();
    assert_eq!(rec.dispatches(), 1, "even sets, two outputs in one buffer: one launch");
    rec.finish().unwrap();
}
