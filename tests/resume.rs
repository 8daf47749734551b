//! Checkpoints and exact resume: N steps, a checkpoint written to disk and
//! read back, then N more steps give bit-identical weights, scores and
//! optimizer state to 2N uninterrupted steps; mismatched checkpoints are
//! refused by name; a crash between writing and renaming leaves the previous
//! checkpoint loadable.

#[path = "kernels/common.rs"]
mod common;

use common::*;
use sparsetrain::data::synthetic_digits;
use sparsetrain::nn::{GraphSpec, Shape};
use sparsetrain::sparse::{SparseConfig, Updates};
use sparsetrain::train::checkpoint::{Checkpoint, CheckpointDir, DataId, Progress};
use sparsetrain::train::{ModelSpec, Phase, Session, TrainConfig};

const INPUT: Shape = Shape { c: 1, h: 28, w: 28 };

fn graph() -> GraphSpec {
    GraphSpec::mlp(784, &[40, 24], 10)
}

fn temp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sparsetrain-resume-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(sparse: bool) -> TrainConfig {
    TrainConfig {
        model: ModelSpec::Mlp { hidden: vec![40, 24] },
        epochs: 3,
        batch: 50,
        // Lazy SGD, so that its deferred state is checkpointed too.
        sparse: sparse.then(|| SparseConfig { keep: 0.3, updates: Updates::Lazy, ..SparseConfig::default() }),
        ..TrainConfig::default()
    }
}

/// Every tensor of a checkpoint, as bits.
fn state_bits(s: &Session) -> Vec<(String, Vec<u32>)> {
    let ck = s.checkpoint(progress(0, 0), DataId { name: "x".into(), fingerprint: 0 }).unwrap();
    let f = ck.f32s.iter().map(|(n, v)| (n.clone(), v.iter().map(|x| x.to_bits()).collect()));
    f.chain(ck.u32s.iter().cloned()).collect()
}

fn progress(epoch: usize, step_in_epoch: usize) -> Progress {
    Progress { phase: "train".into(), epoch, step_in_epoch, global_step: 0, mask_step: 0, best_test_acc: -1.0 }
}

#[test]
fn resume_is_bit_identical() {
    let Some(gpu) = gpu("resume_is_bit_identical") else { return };
    let split = synthetic_digits(400, 50, 3);
    let ds = &split.train;
    let data = DataId { name: "synthetic".into(), fingerprint: ds.fingerprint() };
    let dir = temp("bits");
    for sparse in [true, false] {
        // 2N = 12 uninterrupted steps: all 8 of epoch 0, then 4 of epoch 1.
        let mut a = Session::new(&gpu, config(sparse), INPUT, 10).unwrap();
        let steps = a.epoch_steps(ds);
        assert_eq!(steps, 8);
        a.run_steps(ds, 0, false, 0..steps, |_, _| {}).unwrap();
        a.run_steps(ds, 1, false, 0..4, |_, _| {}).unwrap();

        // N steps, checkpoint mid-epoch 0, a new session from the file, N more.
        let mut b = Session::new(&gpu, config(sparse), INPUT, 10).unwrap();
        b.run_steps(ds, 0, false, 0..6, |_, _| {}).unwrap();
        let path = dir.join(format!("ck-{sparse}.safetensors"));
        b.checkpoint(progress(0, 6), data.clone()).unwrap().save(&path).unwrap();
        drop(b);
        let ck = Checkpoint::load(&path).unwrap();
        assert_eq!(ck.progress.step_in_epoch, 6);
        assert_eq!(ck.progress.global_step, 6);
        ck.check_compatible(&config(sparse), &graph(), &data, false).unwrap();
        let mut c = Session::restore(&gpu, &ck).unwrap();
        c.run_steps(ds, 0, false, 6..steps, |_, _| {}).unwrap();
        c.run_steps(ds, 1, false, 0..4, |_, _| {}).unwrap();
        assert_eq!(c.steps_taken, a.steps_taken);

        let (sa, sc) = (state_bits(&a), state_bits(&c));
        // Sparse: params, momentum, scores and their two moments, and lazy
        // SGD's deferred state (rate, clocks, update count).
        assert_eq!(sa.len(), if sparse { 8 } else { 2 });
        for ((name, x), (_, y)) in sa.iter().zip(&sc) {
            let diff = x.iter().zip(y).filter(|(p, q)| p != q).count();
            assert_eq!(diff, 0, "sparse={sparse}: {name} differs in {diff} of {} values after resume", x.len());
        }
        assert_eq!(a.trainer.step, c.trainer.step, "mask generator position");
        // Brought up to date, they stay identical.
        a.trainer.catch_up(&gpu).unwrap();
        c.trainer.catch_up(&gpu).unwrap();
        assert_eq!(state_bits(&a), state_bits(&c), "sparse={sparse}: after catch-up");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mismatched_checkpoints_are_refused_by_name() {
    let Some(gpu) = gpu("mismatched_checkpoints_are_refused_by_name") else { return };
    let s = Session::new(&gpu, config(true), INPUT, 10).unwrap();
    let data = DataId { name: "synthetic".into(), fingerprint: 42 };
    let ck = s.checkpoint(progress(0, 0), data.clone()).unwrap();
    let sizes = graph();
    let err =
        ck.check_compatible(&config(true), &GraphSpec::mlp(784, &[41, 24], 10), &data, false).unwrap_err().to_string();
    assert!(err.contains("architecture"), "{err}");
    let mut other = config(true);
    other.lr = 0.5;
    let err = ck.check_compatible(&other, &sizes, &data, false).unwrap_err().to_string();
    assert!(err.contains("lr = 0.05"), "{err}");
    let other_data = DataId { name: "mnist".into(), fingerprint: 7 };
    let err = ck.check_compatible(&config(true), &sizes, &other_data, false).unwrap_err().to_string();
    assert!(err.contains("--force"), "{err}");
    // --force overrides the data check only.
    ck.check_compatible(&config(true), &sizes, &other_data, true).unwrap();
    assert!(ck.check_compatible(&other, &sizes, &other_data, true).is_err());
}

#[test]
fn a_crash_mid_checkpoint_keeps_the_previous_one() {
    let Some(gpu) = gpu("a_crash_mid_checkpoint_keeps_the_previous_one") else { return };
    let dir = temp("crash");
    let cd = CheckpointDir { dir: dir.clone(), keep_last: 2 };
    let mut s = Session::new(&gpu, config(true), INPUT, 10).unwrap();
    let split = synthetic_digits(100, 10, 1);
    let data = DataId { name: "synthetic".into(), fingerprint: split.train.fingerprint() };
    s.run_steps(&split.train, 0, false, 0..1, |_, _| {}).unwrap();
    let first = cd.save_step(&s.checkpoint(progress(0, 1), data.clone()).unwrap()).unwrap();
    // A crash between write and rename leaves a temporary file and, at worst,
    // a torn file under a newer name (as if the disk filled mid-write).
    s.run_steps(&split.train, 0, false, 1..2, |_, _| {}).unwrap();
    let bytes = s.checkpoint(progress(0, 2), data.clone()).unwrap().to_bytes().unwrap();
    std::fs::write(dir.join(".step-000000000002.safetensors.999.tmp"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(cd.step_path(2), &bytes[..bytes.len() / 3]).unwrap();
    let (ck, path, skipped) = cd.latest(|_| Ok(())).unwrap();
    assert_eq!(path, first, "the previous checkpoint is the one resumed");
    assert_eq!(ck.progress.global_step, 1);
    assert_eq!(skipped.len(), 1, "the torn file is reported: {skipped:?}");
    // Keep-last-k deletes the oldest.
    for k in 3..6 {
        s.run_steps(&split.train, 0, false, 0..1, |_, _| {}).unwrap();
        let mut ck = s.checkpoint(progress(0, k), data.clone()).unwrap();
        ck.progress.global_step = k as u64 + 10;
        cd.save_step(&ck).unwrap();
    }
    assert_eq!(cd.steps().unwrap().len(), 2, "keep_last = 2");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_checkpoint_files_are_typed_errors() {
    let Some(gpu) = gpu("bad_checkpoint_files_are_typed_errors") else { return };
    let dir = temp("badck");
    let s = Session::new(&gpu, config(true), INPUT, 10).unwrap();
    let good = s.checkpoint(progress(0, 0), DataId { name: "d".into(), fingerprint: 1 }).unwrap().to_bytes().unwrap();
    let p = dir.join("c.safetensors");
    for cut in (0..good.len()).step_by(97) {
        std::fs::write(&p, &good[..cut]).unwrap();
        assert!(Checkpoint::load(&p).is_err(), "truncated to {cut} bytes was accepted");
    }
    std::fs::write(&p, &good).unwrap();
    assert!(Checkpoint::load(&p).is_ok());
    assert!(Checkpoint::load(&dir).is_err(), "a directory is not a checkpoint");
    // An export is not a checkpoint.
    let g = sparsetrain::nn::Graph::mlp(2, &[], 2).unwrap();
    let net = sparsetrain::export::Exported::from_graph(&g, &[], &vec![0.0; g.param_total], &[]).unwrap();
    std::fs::write(&p, net.to_bytes().unwrap()).unwrap();
    assert!(Checkpoint::load(&p).unwrap_err().to_string().contains("not a sparsetrain checkpoint"));
    // Lazy SGD's clocks past the update count (or marked deferred, which no
    // checkpoint holds) would apply updates that never were: refused.
    let ck = s.checkpoint(progress(0, 0), DataId { name: "d".into(), fingerprint: 1 }).unwrap();
    for bad in [1, sparsetrain::ops::lazy::PEND] {
        let mut ck = ck.clone();
        let last = ck.u32s.iter_mut().find(|(n, _)| n == "lazy_last").expect("lazy clocks saved");
        last.1[3] = bad;
        let err = Session::restore(&gpu, &ck).err().expect("a clock past the count restored");
        assert!(err.to_string().contains("update count"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A batch of NaN inputs: every step is detected on the device and skipped
/// (no parameter changes), and the first one is named.
#[test]
fn non_finite_steps_are_skipped_and_named() {
    let Some(gpu) = gpu("non_finite_steps_are_skipped_and_named") else { return };
    let split = synthetic_digits(100, 10, 2);
    for sparse in [true, false] {
        let mut s = Session::new(&gpu, config(sparse), INPUT, 10).unwrap();
        // Two good steps, then poisoned batches.
        s.run_steps(&split.train, 0, false, 0..2, |_, _| {}).unwrap();
        assert_eq!(s.faults().unwrap().skipped, 0);
        // Lazy SGD defers updates; compare weights brought up to date (the
        // clocks of lazy SGD legitimately move when deferred work is done).
        s.trainer.catch_up(&gpu).unwrap();
        let trained = |s: &Session| -> Vec<(String, Vec<u32>)> {
            state_bits(s).into_iter().filter(|(n, _)| !n.starts_with("lazy")).collect()
        };
        let before = trained(&s);
        let mut x = vec![0.5f32; 50 * 784];
        x.iter_mut().step_by(97).for_each(|v| *v = f32::NAN);
        let y = vec![3u32; 50];
        for global in [2, 3] {
            s.trainer.set_batch(&gpu, &x, &y).unwrap();
            s.trainer.run(&gpu, Phase::Train, 50, 0.05, 0.05, global).unwrap();
            s.steps_taken += 1;
        }
        let f = s.faults().unwrap();
        assert_eq!(f.skipped, 2, "sparse={sparse}: {f:?}");
        assert_eq!(f.first_step, Some(2), "sparse={sparse}: the third step is the first bad one");
        s.trainer.catch_up(&gpu).unwrap();
        let after = trained(&s);
        for ((name, x), (_, y)) in before.iter().zip(&after) {
            assert_eq!(x, y, "sparse={sparse}: {name} changed in a skipped step");
        }
        // Training goes on afterwards.
        s.run_steps(&split.train, 0, false, 0..1, |_, _| {}).unwrap();
        assert_eq!(s.faults().unwrap().skipped, 2);
        assert_ne!(state_bits(&s)[0].1, after[0].1, "a good step after the faults changed nothing");
    }
}

/// A residual network with BatchNorm (running statistics in the state),
/// augmented batches (crops and flips keyed by the step) and lazy SGD
/// resumes bit for bit, and its lazy updates equal eager ones; evaluation
/// is never augmented, so the session's masked accuracy is the export's.
#[test]
fn cnn_resume_with_augmentation_is_bit_identical() {
    use sparsetrain::data::{Augment, synthetic_shapes};
    let Some(gpu) = gpu("cnn_resume_with_augmentation_is_bit_identical") else { return };
    let split = synthetic_shapes(60, 40, 4);
    let (ds, shape) = (&split.train, split.train.shape);
    let data = DataId { name: "shapes".into(), fingerprint: ds.fingerprint() };
    let cfg = TrainConfig {
        model: ModelSpec::Resnet { depth: 8, width: 4 },
        augment: Augment::CROP_FLIP,
        epochs: 2,
        batch: 20,
        // This tiny network at batch 20 is chaotic at larger rates (one ulp
        // of change in its initial weights moves them by 0.3 within three
        // steps at lr 0.05): compare lazy with eager where rounding stays
        // rounding.
        lr: 0.01,
        // Lazy SGD through convolutions (kernel-position blocks), BatchNorm
        // and residual unions.
        sparse: Some(SparseConfig { keep: 0.3, updates: Updates::Lazy, ..SparseConfig::default() }),
        ..TrainConfig::default()
    };
    let spec = cfg.model.graph(shape, 10).unwrap();
    let dir = temp("cnn");
    let mut a = Session::new(&gpu, cfg.clone(), shape, 10).unwrap();
    a.run_steps(ds, 0, false, 0..3, |_, _| {}).unwrap();
    a.run_steps(ds, 1, false, 0..2, |_, _| {}).unwrap();
    let mut b = Session::new(&gpu, cfg.clone(), shape, 10).unwrap();
    b.run_steps(ds, 0, false, 0..2, |_, _| {}).unwrap();
    let path = dir.join("ck.safetensors");
    b.checkpoint(progress(0, 2), data.clone()).unwrap().save(&path).unwrap();
    drop(b);
    let ck = Checkpoint::load(&path).unwrap();
    ck.check_compatible(&cfg, &spec, &data, false).unwrap();
    let mut c = Session::restore(&gpu, &ck).unwrap();
    c.run_steps(ds, 0, false, 2..3, |_, _| {}).unwrap();
    c.run_steps(ds, 1, false, 0..2, |_, _| {}).unwrap();
    let (sa, sc) = (state_bits(&a), state_bits(&c));
    assert!(
        sa.iter().any(|(n, _)| n == "state"),
        "running statistics are checkpointed: {:?}",
        sa.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in sa.iter().zip(&sc) {
        let diff = x.iter().zip(y).filter(|(p, q)| p != q).count();
        assert_eq!(diff, 0, "{name} differs in {diff} of {} values after resume", x.len());
    }
    // Lazy equals eager here too, once caught up.
    let eager_cfg =
        TrainConfig { sparse: cfg.sparse.map(|s| SparseConfig { updates: Updates::Eager, ..s }), ..cfg.clone() };
    let mut e = Session::new(&gpu, eager_cfg, shape, 10).unwrap();
    e.run_steps(ds, 0, false, 0..3, |_, _| {}).unwrap();
    e.run_steps(ds, 1, false, 0..2, |_, _| {}).unwrap();
    a.trainer.catch_up(&gpu).unwrap();
    let (pa, pe) = (a.trainer.net.params.download_f32(&gpu).unwrap(), e.trainer.net.params.download_f32(&gpu).unwrap());
    let scale = pe.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = pa.iter().zip(&pe).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(err <= 1e-5 * scale, "lazy vs eager CNN weights differ by {err:e} (scale {scale:e})");
    // Evaluation: unaugmented, repeatable, and what the export scores.
    a.select_mask(ds).unwrap();
    let acc = a.evaluate(&split.test, 0, None).unwrap();
    assert_eq!(acc, a.evaluate(&split.test, 0, None).unwrap());
    let net = a.export().unwrap().to_net(&gpu).unwrap();
    let correct = sparsetrain::train::evaluate_net(&gpu, &net, &split.test, 16).unwrap();
    assert_eq!(correct as f64 / split.test.len() as f64, acc, "export vs masked network");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lazy SGD defers each step's update to the weights' next gather; settling
/// them (`Trainer::settle`: before a checkpoint, when the ring of clip
/// factors would run out, and here before every run of one trainer that
/// no catch-up precedes) changes no bit of training, nor does turning the
/// deferral off mid-epoch with updates waiting (`Trainer::set_lazy_defer`).
#[test]
fn settling_deferred_updates_changes_nothing() {
    let Some(gpu) = gpu("settling_deferred_updates_changes_nothing") else { return };
    let split = synthetic_digits(400, 50, 4);
    let ds = &split.train;
    let mut a = Session::new(&gpu, config(true), INPUT, 10).unwrap();
    let mut b = Session::new(&gpu, config(true), INPUT, 10).unwrap();
    let mut c = Session::new(&gpu, config(true), INPUT, 10).unwrap();
    // Deferred whatever the adapter's default (`defer_rule`).
    for s in [&mut a, &mut b, &mut c] {
        s.trainer.set_lazy_defer(&gpu, true).unwrap();
    }
    assert!(a.trainer.lazy.as_ref().unwrap().op.defers(), "updates deferred");
    b.trainer.lazy.as_mut().unwrap().settle_every = 1;
    let pending = |s: &Session| -> usize {
        let last = s.trainer.lazy.as_ref().unwrap().last.download_u32(&gpu).unwrap();
        last.iter().filter(|&&l| l & sparsetrain::ops::lazy::PEND != 0).count()
    };
    for (i, s) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        for k in 0..4 {
            if i == 2 && k == 2 {
                assert!(pending(s) > 0, "no update waiting when the deferral is turned off");
                s.trainer.set_lazy_defer(&gpu, false).unwrap();
                assert_eq!(pending(s), 0, "an update still waiting with the deferral off");
            }
            s.run_steps(ds, 0, false, 2 * k..2 * k + 2, |_, _| {}).unwrap();
        }
        s.run_steps(ds, 1, false, 0..3, |_, _| {}).unwrap();
    }
    assert!(!c.trainer.lazy.as_ref().unwrap().op.defers(), "the deferral turned off");
    assert!(pending(&a) > 0, "no update deferred after a step");
    a.trainer.settle(&gpu).unwrap();
    assert_eq!(pending(&a), 0, "an update still deferred after settling");
    assert_eq!(state_bits(&a), state_bits(&b), "settled before every run, or not");
    assert_eq!(state_bits(&a), state_bits(&c), "deferred throughout, or turned off mid-epoch");
    for s in [&mut a, &mut b, &mut c] {
        s.trainer.catch_up(&gpu).unwrap();
    }
    assert_eq!(state_bits(&a), state_bits(&b), "after catch-up");
    assert_eq!(state_bits(&a), state_bits(&c), "after catch-up, turned off mid-epoch");
    // A dense trainer has no lazy SGD to set.
    let mut d = Session::new(&gpu, config(false), INPUT, 10).unwrap();
    let err = d.trainer.set_lazy_defer(&gpu, true).unwrap_err().to_string();
    assert!(err.contains("no lazy SGD"), "{err}");
}

/// Turning the deferral off on a trainer whose clocks lag the update count
/// (fine-tuning's eager steps before any training step), restored from a
/// checkpoint, keeps its clocks: its training then equals that of one left
/// deferred, bit for bit (a trainer rebuilt there would have applied every
/// fine-tuning update again).
#[test]
fn switching_deferral_after_finetuning_keeps_the_clocks() {
    let Some(gpu) = gpu("switching_deferral_after_finetuning_keeps_the_clocks") else { return };
    let split = synthetic_digits(400, 50, 6);
    let ds = &split.train;
    let data = DataId { name: "synthetic".into(), fingerprint: ds.fingerprint() };
    let dir = temp("switch-deferral");
    let run = |switch: bool| -> Vec<(String, Vec<u32>)> {
        let mut s = Session::new(&gpu, config(true), INPUT, 10).unwrap();
        s.trainer.set_lazy_defer(&gpu, true).unwrap();
        s.draw_first_candidate().unwrap();
        s.run_steps(ds, 0, true, 0..3, |_, _| {}).unwrap();
        assert_eq!(s.trainer.step, 0, "fine-tuning takes no training step");
        assert!(s.trainer.lazy.as_ref().unwrap().clocks_lag, "fine-tuning left the clocks behind");
        let path = dir.join(format!("ck-{switch}.safetensors"));
        s.checkpoint(progress(0, 3), data.clone()).unwrap().save(&path).unwrap();
        drop(s);
        let mut s = Session::restore(&gpu, &Checkpoint::load(&path).unwrap()).unwrap();
        s.trainer.set_lazy_defer(&gpu, true).unwrap();
        if switch {
            s.trainer.set_lazy_defer(&gpu, false).unwrap();
        }
        s.run_steps(ds, 1, false, 0..4, |_, _| {}).unwrap();
        s.trainer.catch_up(&gpu).unwrap();
        state_bits(&s)
    };
    let kept = run(false);
    assert!(kept == run(true), "turning the deferral off after fine-tuning changed training");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lazy SGD (the default) against eager SGD of every weight, same run:
/// after steps in two epochs (two rates), a checkpoint and a resume of the
/// lazy run mid-epoch, units that sat out several steps, the weights and
/// momenta agree to 1e-5 of their largest magnitude once brought up to date.
#[test]
fn lazy_sgd_equals_eager_across_resume() {
    let Some(gpu) = gpu("lazy_sgd_equals_eager_across_resume") else { return };
    let split = synthetic_digits(400, 50, 5);
    let ds = &split.train;
    let data = DataId { name: "synthetic".into(), fingerprint: ds.fingerprint() };
    let with = |lazy: bool| TrainConfig {
        sparse: Some(SparseConfig {
            keep: 0.2,
            updates: if lazy { Updates::Lazy } else { Updates::Eager },
            ..SparseConfig::default()
        }),
        ..config(true)
    };
    let mut eager = Session::new(&gpu, with(false), INPUT, 10).unwrap();
    assert!(eager.trainer.lazy.is_none());
    // Two epochs, fine-tuning steps (eager in both: they advance the update
    // count and update every weight), then training again (the lazy run
    // from a checkpoint taken after the fine-tuning).
    let finetune = |s: &mut Session| {
        s.draw_first_candidate().unwrap();
        s.run_steps(ds, 2, true, 0..3, |_, _| {}).unwrap();
    };
    let train_again = |s: &mut Session| s.run_steps(ds, 3, false, 0..4, |_, _| {}).unwrap();
    eager.run_steps(ds, 0, false, 0..8, |_, _| {}).unwrap();
    eager.run_steps(ds, 1, false, 0..5, |_, _| {}).unwrap();
    finetune(&mut eager);
    train_again(&mut eager);

    let mut lazy = Session::new(&gpu, with(true), INPUT, 10).unwrap();
    lazy.run_steps(ds, 0, false, 0..5, |_, _| {}).unwrap();
    let dir = temp("lazy");
    let path = dir.join("ck.safetensors");
    lazy.checkpoint(progress(0, 5), data.clone()).unwrap().save(&path).unwrap();
    drop(lazy);
    let mut lazy = Session::restore(&gpu, &Checkpoint::load(&path).unwrap()).unwrap();
    lazy.run_steps(ds, 0, false, 5..8, |_, _| {}).unwrap();
    lazy.run_steps(ds, 1, false, 0..5, |_, _| {}).unwrap();
    finetune(&mut lazy);
    let after = dir.join("after-finetune.safetensors");
    lazy.checkpoint(progress(2, 3), data.clone()).unwrap().save(&after).unwrap();
    drop(lazy);
    let mut lazy = Session::restore(&gpu, &Checkpoint::load(&after).unwrap()).unwrap();
    train_again(&mut lazy);
    lazy.trainer.catch_up(&gpu).unwrap();
    // Some weights sat out: their clocks lag the update count before catch-up.
    for (name, t) in [("params", 0), ("momentum", 1)] {
        let (a, b) = match t {
            0 => (
                eager.trainer.net.params.download_f32(&gpu).unwrap(),
                lazy.trainer.net.params.download_f32(&gpu).unwrap(),
            ),
            _ => {
                (eager.trainer.momentum.download_f32(&gpu).unwrap(), lazy.trainer.momentum.download_f32(&gpu).unwrap())
            }
        };
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (i, err) = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .enumerate()
            .fold((0, 0.0f32), |m, (i, e)| if e > m.1 { (i, e) } else { m });
        eprintln!("{name}: max difference {err:e} at {i} (largest magnitude {scale:e})");
        assert!(
            err <= 1e-5 * scale,
            "{name}: lazy and eager differ by {err:e} at {i} (scale {scale:e}): {} vs {}",
            b[i],
            a[i]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
