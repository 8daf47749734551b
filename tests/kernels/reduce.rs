use sparsetrain::ops::reduce::Reducer;
use sparsetrain::{DType, Recorder, Tensor, cpu};

use crate::common::*;

/// Sums and means of awkward lengths, on the device's grid and on one
/// workgroup (whose threads then each sum many elements, four loads a pass
/// and then one by one).
#[test]
fn sum_and_mean_match_reference() {
    with_single_workgroup("sum_and_mean_match_reference", sum_and_mean_cases);
}

fn sum_and_mean_cases(gpu: &sparsetrain::Gpu, tag: &str) {
    let reducer = Reducer::new(gpu).unwrap();
    for (case, &n) in [0usize, 1, 255, 256, 257, 4096, 4097, 10007, 300_001].iter().enumerate() {
        let mut r = rng(500 + case as u64);
        let x = rand_f32(&mut r, n.max(1), -1.0, 1.0);
        let tx = Tensor::from_f32(gpu, "x", &[n.max(1)], &x).unwrap();
        let out = Tensor::from_f32(gpu, "out", &[3], &[f32::NAN, f32::NAN, 2.5]).unwrap();
        let mut rec = Recorder::new(gpu);
        reducer.sum(&mut rec, &out, 0, &tx, n).unwrap();
        if n == 0 {
            // A mean of nothing is refused rather than made up.
            assert!(reducer.mean(&mut rec, &out, 1, &tx, n).is_err());
        } else {
            reducer.mean(&mut rec, &out, 1, &tx, n).unwrap();
        }
        reducer.reduce(&mut rec, &out, 2, &tx, n, 2.0, true).unwrap();
        rec.finish().unwrap();
        let xs = to_f64(&x[..n]);
        let s = cpu::reduce::sum(&xs);
        let mut got = out.download_f32(gpu).unwrap();
        let mean = if n == 0 {
            assert!(got[1].is_nan(), "slot 1 was written for an empty mean");
            got[1] = 0.0;
            0.0
        } else {
            cpu::reduce::mean(&xs)
        };
        let want = [s, mean, 2.5 + 2.0 * s];
        assert_close(&format!("sum/mean n={n}{tag}"), &got, &want, 1e-6 * (n as f64 + 1.0), 1e-5);
    }
    // A u32 tensor is refused, not misread.
    let u = Tensor::zeros(gpu, "u", &[4], DType::U32).unwrap();
    let out = Tensor::zeros(gpu, "out", &[1], DType::F32).unwrap();
    assert!(reducer.sum(&mut Recorder::new(gpu), &out, 0, &u, 4).is_err());
}

/// Squared norms and means over the step's batch (a length known on the
/// device only), on both sides of the one-launch threshold.
#[test]
fn batch_sized_reductions_match_reference() {
    use sparsetrain::ops::Rows;
    use sparsetrain::ops::reduce::SINGLE_PASS_MAX;
    let Some(gpu) = gpu("batch_sized_reductions_match_reference") else { return };
    let reducer = Reducer::new(&gpu).unwrap();
    for (case, (cap, per, n)) in
        [(7usize, 3usize, 5usize), (300, 1, 299), (SINGLE_PASS_MAX + 900, 1, SINGLE_PASS_MAX + 611), (40, 250, 33)]
            .into_iter()
            .enumerate()
    {
        let mut r = rng(520 + case as u64);
        let x = rand_f32(&mut r, cap * per, -1.0, 1.0);
        let tx = Tensor::from_f32(&gpu, "x", &[x.len()], &x).unwrap();
        let out = Tensor::from_f32(&gpu, "out", &[4], &[f32::NAN, f32::NAN, f32::NAN, 1.5]).unwrap();
        let rows = if per == 1 { Rows::Batch(cap) } else { Rows::BatchOf { cap, per } };
        run_with_batch(&gpu, n, |rec| {
            reducer.mean(rec, &out, 0, &tx, rows).unwrap();
            reducer.reduce(rec, &out, 1, &tx, rows, 0.5, false).unwrap();
            // The same mean, also added to a running sum in slot 3.
            reducer.mean_and_add(rec, &out, (2, 3), &tx, rows).unwrap();
            assert!(reducer.mean_and_add(rec, &out, (2, 2), &tx, rows).is_err(), "a mean added to itself");
        });
        let xs = to_f64(&x[..n * per]);
        let mean = cpu::reduce::mean(&xs);
        let want = [mean, 0.5 * cpu::reduce::sum(&xs), mean, 1.5 + mean];
        let tag = format!("batch {n} of {cap}, {per} rows each");
        assert_close(&tag, &out.download_f32(&gpu).unwrap(), &want, 1e-6 * (n * per) as f64, 1e-5);
    }
}
