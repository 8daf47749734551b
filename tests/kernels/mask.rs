//! Mask sampling: bit-exact against the reference generator, then
//! statistical tests with fixed seeds (proportion, runs, independence).

use sparsetrain::ops::mask::{MaskKey, mask_sample};
use sparsetrain::{DType, Gpu, Recorder, Tensor, cpu};

use crate::common::*;

fn draw(gpu: &Gpu, scores: &[f32], key: MaskKey) -> Vec<u32> {
    let n = scores.len();
    let ts = Tensor::from_f32(gpu, "scores", &[n], scores).unwrap();
    let tm = Tensor::from_u32(gpu, "mask", &[n], &vec![7; n]).unwrap();
    let mut rec = Recorder::new(gpu);
    mask_sample(&mut rec, &tm, &ts, key, n).unwrap();
    rec.finish().unwrap();
    tm.download_u32(gpu).unwrap()
}

#[test]
fn mask_matches_reference_bit_for_bit() {
    let Some(gpu) = gpu("mask_matches_reference_bit_for_bit") else { return };
    for (case, &n) in [1usize, 257, 1000, 4099].iter().enumerate() {
        let mut r = rng(900 + case as u64);
        let scores = rand_f32(&mut r, n, 0.0, 1.0);
        for key in
            [MaskKey { seed: 1, step: 0, sample: 0 }, MaskKey { seed: 0xdead_beef_0000_0001, step: 12345, sample: 1 }]
        {
            let got = draw(&gpu, &scores, key);
            let want = cpu::mask::mask_sample(&to_f64(&scores), key);
            let diff: Vec<usize> = (0..n).filter(|&i| got[i] != want[i]).take(8).collect();
            assert!(diff.is_empty(), "n={n} {key:?}: masks differ at {diff:?}");
        }
    }
    // A zero-length draw is a no-op, not an error.
    let empty = Tensor::zeros(&gpu, "e", &[1], DType::U32).unwrap();
    let s = Tensor::zeros(&gpu, "s", &[1], DType::F32).unwrap();
    mask_sample(&mut Recorder::new(&gpu), &empty, &s, MaskKey { seed: 0, step: 0, sample: 0 }, 0).unwrap();
}

#[test]
fn kept_fraction_is_within_4_sigma() {
    let Some(gpu) = gpu("kept_fraction_is_within_4_sigma") else { return };
    let n = 50_000;
    let mut failures = Vec::new();
    for (i, &s) in [0.0f32, 1e-4, 0.01, 0.1, 0.5, 0.9, 0.99, 0.9999, 1.0].iter().enumerate() {
        let mut kept = 0u64;
        let draws = 4;
        for step in 0..draws {
            let m = draw(&gpu, &vec![s; n], MaskKey { seed: 77 + i as u64, step, sample: 0 });
            kept += m.iter().map(|&b| b as u64).sum::<u64>();
        }
        let total = (n * draws as usize) as f64;
        let p = s as f64;
        let sigma = (total * p * (1.0 - p)).sqrt();
        let dev = (kept as f64 - total * p).abs();
        eprintln!(
            "s={s}: kept {kept} of {total}, expected {:.1}, deviation {:.2} sigma",
            total * p,
            dev / sigma.max(1e-300)
        );
        let ok = if p == 0.0 || p == 1.0 { dev == 0.0 } else { dev <= 4.0 * sigma };
        if !ok {
            failures.push(format!("s={s}: kept {kept}/{total}, {:.2} sigma", dev / sigma));
        }
    }
    assert!(failures.is_empty(), "proportion test failed: {failures:?}");
}

/// Wald–Wolfowitz runs test over the units of one draw: too few runs means
/// neighbouring units are correlated, too many means they alternate.
#[test]
fn runs_test_passes() {
    let Some(gpu) = gpu("runs_test_passes") else { return };
    for (i, &s) in [0.5f32, 0.2, 0.8].iter().enumerate() {
        let m = draw(&gpu, &vec![s; 40_000], MaskKey { seed: 4242, step: i as u32, sample: 0 });
        let n1 = m.iter().filter(|&&b| b == 1).count() as f64;
        let n0 = m.len() as f64 - n1;
        let runs = 1 + m.windows(2).filter(|w| w[0] != w[1]).count();
        let n = n0 + n1;
        let mean = 2.0 * n0 * n1 / n + 1.0;
        let var = 2.0 * n0 * n1 * (2.0 * n0 * n1 - n) / (n * n * (n - 1.0));
        let z = (runs as f64 - mean) / var.sqrt();
        eprintln!("s={s}: {runs} runs, expected {mean:.1}, z = {z:.2}");
        assert!(z.abs() < 4.0, "runs test failed for s={s}: z = {z:.2}");
    }
}

/// Two samples of the same step (and two steps) agree no more than
/// independent draws would: the 2×2 table's correlation is near zero.
#[test]
fn samples_and_steps_are_independent() {
    let Some(gpu) = gpu("samples_and_steps_are_independent") else { return };
    let n = 40_000;
    let mut r = rng(31);
    let scores = rand_f32(&mut r, n, 0.05, 0.95);
    let base = MaskKey { seed: 99, step: 5, sample: 0 };
    let a = draw(&gpu, &scores, base);
    for other in [MaskKey { sample: 1, ..base }, MaskKey { step: 6, ..base }, MaskKey { seed: 100, ..base }] {
        let b = draw(&gpu, &scores, other);
        // Under independence, Σ (a_i - s_i)(b_i - s_i) has mean 0 and
        // variance Σ (s_i (1 - s_i))².
        let (mut stat, mut var) = (0.0f64, 0.0f64);
        for i in 0..n {
            let s = scores[i] as f64;
            stat += (a[i] as f64 - s) * (b[i] as f64 - s);
            var += (s * (1.0 - s)).powi(2);
        }
        let z = stat / var.sqrt();
        eprintln!("{base:?} vs {other:?}: z = {z:.2}");
        assert!(z.abs() < 4.0, "{base:?} and {other:?} look dependent: z = {z:.2}");
    }
    // Sanity of the statistic itself: a draw against itself is far from 0.
    let mut self_stat = 0.0;
    for i in 0..n {
        let s = scores[i] as f64;
        self_stat += (a[i] as f64 - s).powi(2);
    }
    assert!(self_stat > 100.0);
}
