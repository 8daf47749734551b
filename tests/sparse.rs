//! The sparse method on the device against its f64 reference: one full step
//! (masks, compressed passes, VR-PGE, clipping, SGD, Adam, projection), and
//! training steps that read back nothing.

#[path = "kernels/common.rs"]
mod common;

use common::*;
use rand::Rng;
use sparsetrain::cpu;
use sparsetrain::mlp::{Mlp, ParamLayout};
use sparsetrain::ops::mask::MaskKey;
use sparsetrain::ops::optim::Sgd;
use sparsetrain::ops::project::Projection;
use sparsetrain::ops::vrpge::{Estimator, ScoreFn};
use sparsetrain::sparse::{SparseConfig, SparseTrainer};
use sparsetrain::{Recorder, Tensor};

fn check(what: &str, got: &[f32], want: &[f64]) {
    assert_rel(what, got, want, 1e-4);
}

#[test]
fn one_step_matches_f64_reference() {
    let Some(gpu) = gpu("one_step_matches_f64_reference") else { return };
    // Scores: random in (0.1, 0.9), or all 1 (everything kept), all 0 (nothing
    // kept: every layer must still give a defined, finite result), or a single
    // unit per layer at 1.
    #[derive(Clone, Copy, Debug)]
    enum Init {
        Random,
        All,
        None,
        Single,
    }
    let cases = [
        (vec![13, 11, 7, 5], 6, 0.5f32, Estimator::VrPge, ScoreFn::Fisher, Init::Random),
        (vec![9, 17, 4], 3, 0.25, Estimator::VrPge, ScoreFn::Exact, Init::Random),
        (vec![8, 6, 6, 3], 5, 0.9, Estimator::Pge, ScoreFn::Fisher, Init::Random),
        (vec![20, 40, 30, 10], 16, 0.1, Estimator::VrPge, ScoreFn::Fisher, Init::Random),
        (vec![12, 9, 10, 4], 7, 1.0, Estimator::VrPge, ScoreFn::Fisher, Init::All),
        (vec![12, 9, 10, 4], 7, 0.5, Estimator::VrPge, ScoreFn::Fisher, Init::None),
        (vec![12, 9, 10, 4], 7, 0.5, Estimator::VrPge, ScoreFn::Fisher, Init::Single),
    ];
    for (case, (sizes, batch, keep, estimator, score_fn, init)) in cases.into_iter().enumerate() {
        let mut r = rng(1700 + case as u64);
        let layout = ParamLayout::new(&sizes).unwrap();
        let mut flat = layout.kaiming_init(case as u64);
        for l in 0..layout.layers() {
            for v in &mut flat[layout.b[l]..layout.b[l] + sizes[l + 1]] {
                *v = r.random_range(0.0..0.2);
            }
        }
        let mlp = Mlp::from_flat(&gpu, layout.clone(), &flat).unwrap();
        let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 5e-4 };
        let cfg = SparseConfig {
            keep,
            estimator,
            score_fn,
            seed: 40 + case as u64,
            // Bisect to the end so that f32 and f64 land on the same shift.
            projection_tol: 1e-9,
            projection_iters: 40,
            ..SparseConfig::default()
        };
        let mut tr = SparseTrainer::new(&gpu, mlp, batch, sgd, cfg).unwrap();
        let units = tr.units();
        // Varied scores, so that the estimator sees more than the projected constant.
        let scores: Vec<f32> = match init {
            Init::Random => rand_f32(&mut r, units, 0.1, 0.9),
            Init::All => vec![1.0; units],
            Init::None => vec![0.0; units],
            Init::Single => (0..units).map(|u| if tr.unit_off.contains(&u) { 1.0 } else { 0.0 }).collect(),
        };
        tr.scores.upload(&gpu, &scores).unwrap();
        let x = rand_f32(&mut r, batch * sizes[0], -1.0, 1.0);
        let labels: Vec<u32> = (0..batch).map(|_| r.random_range(0..*sizes.last().unwrap() as u32)).collect();
        let tx = Tensor::from_f32(&gpu, "x", &[batch, sizes[0]], &x).unwrap();
        let ty = Tensor::from_u32(&gpu, "y", &[batch], &labels).unwrap();
        let score_lr = 0.05;
        let mut rec = Recorder::new(&gpu);
        tr.step(&mut rec, &tx, &ty, batch, score_lr).unwrap();
        rec.finish().unwrap();

        // The masks, from the reference generator with the same keys.
        let s64 = to_f64(&scores);
        let m1 = cpu::mask::mask_sample(&s64, MaskKey { seed: cfg.seed, step: 0, sample: 0 });
        let m2 = cpu::mask::mask_sample(&s64, MaskKey { seed: cfg.seed, step: 0, sample: 1 });
        assert_eq!(tr.samples[0].mask.download_u32(&gpu).unwrap(), m1, "mask 1");
        assert_eq!(tr.samples[1].mask.download_u32(&gpu).unwrap(), m2, "mask 2");
        let mut st = cpu::sparse::StepState {
            params: to_f64(&flat),
            momentum: vec![0.0; layout.total],
            scores: s64,
            adam_m: vec![0.0; units],
            adam_v: vec![0.0; units],
        };
        let adam = sparsetrain::ops::optim::Adam { lr: score_lr, ..cfg.score_adam };
        let proj = Projection { budget: tr.budget(), iters: cfg.projection_iters, tol: cfg.projection_tol };
        let res = cpu::sparse::step(
            &mut st,
            &layout,
            &tr.unit_off,
            &to_f64(&x),
            &labels,
            batch,
            [&m1, &m2],
            (sgd, adam, cfg.clip_norm as f64, (estimator, score_fn), proj),
            1,
        );
        let tag = format!("case {case} {sizes:?} keep {keep} {estimator:?} {score_fn:?} {init:?}");
        let kept = tr.kept_counts(&gpu, &tr.samples[0]).unwrap();
        let want_kept: Vec<usize> =
            tr.unit_off.windows(2).map(|w| m1[w[0]..w[1]].iter().map(|&b| b as usize).sum()).collect();
        assert_eq!(kept, want_kept, "{tag}: kept counts");
        let losses = tr.loss.download_f32(&gpu).unwrap();
        check(&format!("{tag} losses"), &losses[..2], &[res.losses.0, res.losses.1]);
        check(&format!("{tag} clip"), &tr.clip.download_f32(&gpu).unwrap()[..1], &[res.clip]);
        check(&format!("{tag} weights"), &tr.mlp.params.download_f32(&gpu).unwrap(), &st.params);
        check(&format!("{tag} momentum"), &tr.momentum.download_f32(&gpu).unwrap(), &st.momentum);
        check(&format!("{tag} adam m"), &tr.score_m.download_f32(&gpu).unwrap(), &st.adam_m);
        check(&format!("{tag} adam v"), &tr.score_v.download_f32(&gpu).unwrap(), &st.adam_v);
        // Per unit, with the first mismatches named: a unit whose masks agree
        // must not move by more than the projection moves every unit.
        assert_close(&format!("{tag} scores"), &tr.scores.download_f32(&gpu).unwrap(), &st.scores, 1e-4, 0.0);
        if estimator == Estimator::VrPge {
            // Where the two masks agree, the score gradient is exactly 0.
            let g = tr.score_grad.download_f32(&gpu).unwrap();
            let leaks: Vec<String> = (0..units)
                .filter(|&u| m1[u] == m2[u] && g[u] != 0.0)
                .take(8)
                .map(|u| format!("unit {u}: {:e}", g[u]))
                .collect();
            assert!(leaks.is_empty(), "{tag}: agreeing masks, non-zero score gradient: {}", leaks.join(", "));
        }
    }
}

#[test]
fn training_steps_read_back_nothing_and_respect_the_budget() {
    let Some(gpu) = gpu("training_steps_read_back_nothing_and_respect_the_budget") else { return };
    let (batch, dim) = (32, 16);
    let mut r = rng(1800);
    let mlp = Mlp::new(&gpu, &[dim, 64, 48, 4], 2).unwrap();
    let sgd = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4 };
    let mut tr = SparseTrainer::new(&gpu, mlp, batch, sgd, SparseConfig { keep: 0.25, ..Default::default() }).unwrap();
    let x = rand_f32(&mut r, batch * dim, -1.0, 1.0);
    let y: Vec<u32> = (0..batch).map(|i| (i % 4) as u32).collect();
    let tx = Tensor::from_f32(&gpu, "x", &[batch, dim], &x).unwrap();
    let ty = Tensor::from_u32(&gpu, "y", &[batch], &y).unwrap();
    gpu.wait().unwrap();
    let before = gpu.readback_stats();
    for _ in 0..20 {
        let mut rec = Recorder::new(&gpu);
        tr.step(&mut rec, &tx, &ty, batch, 0.01).unwrap();
        rec.submit().unwrap();
    }
    gpu.wait().unwrap();
    assert_eq!(gpu.readback_stats(), before, "20 training steps read data back");
    let s = tr.scores.download_f32(&gpu).unwrap();
    let sum: f32 = s.iter().sum();
    assert!(s.iter().all(|v| (0.0..=1.0).contains(v)), "scores left [0, 1]");
    assert!(sum <= tr.budget() + 1e-2, "sum of scores {sum} exceeds the budget {}", tr.budget());
    let losses = tr.loss.download_f32(&gpu).unwrap();
    assert!(losses.iter().all(|l| l.is_finite()), "losses {losses:?}");
    let counts = tr.kept_counts(&gpu, &tr.samples[0]).unwrap();
    assert_eq!(counts.len(), 2);
    assert!(counts[0] <= 64 && counts[1] <= 48);
}
