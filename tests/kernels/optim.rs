use sparsetrain::ops::optim::{self, Adam, GradScale, Sgd};
use sparsetrain::{Recorder, Tensor, cpu};

use crate::common::*;

#[test]
fn sgd_and_adam_match_reference() {
    let Some(gpu) = gpu("sgd_and_adam_match_reference") else { return };
    for (case, &n) in [1usize, 97, 256, 5003].iter().enumerate() {
        for use_scale in [false, true] {
            let mut r = rng(700 + 2 * case as u64 + use_scale as u64);
            let w = rand_f32(&mut r, n, -1.0, 1.0);
            let g = rand_f32(&mut r, n, -1.0, 1.0);
            let v = rand_f32(&mut r, n, -0.1, 0.1);
            let m2 = rand_f32(&mut r, n, 0.0, 0.1);
            let scale = if use_scale { 0.37f32 } else { 1.0 };
            let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 5e-4 };
            let adam = Adam { lr: 1e-2, weight_decay: 1e-3, ..Adam::default() };
            let mk = |name: &str, d: &[f32]| Tensor::from_f32(&gpu, name, &[n], d).unwrap();
            let (tw, tv, tg) = (mk("w", &w), mk("v", &v), mk("g", &g));
            let (aw, am, av) = (mk("aw", &w), mk("am", &v), mk("av", &m2));
            let ts = Tensor::from_f32(&gpu, "scale", &[1], &[scale]).unwrap();
            let mut rec = Recorder::new(&gpu);
            for t in 1..=3u64 {
                let s = || if use_scale { GradScale::Buffer(&ts) } else { GradScale::One };
                optim::sgd_step(&mut rec, &tw, &tv, &tg, s(), sgd, optim::Rate::Fixed, optim::AfterStep::KeepGrad, n)
                    .unwrap();
                optim::adam_step(&mut rec, &aw, &am, &av, &tg, s(), adam, optim::Rate::Fixed, t, n).unwrap();
            }
            rec.finish().unwrap();
            let (mut rw, mut rv) = (to_f64(&w), to_f64(&v));
            let (mut raw, mut ram, mut rav) = (to_f64(&w), to_f64(&v), to_f64(&m2));
            for t in 1..=3u64 {
                cpu::optim::sgd_step(&mut rw, &mut rv, &to_f64(&g), scale as f64, sgd);
                cpu::optim::adam_step(&mut raw, &mut ram, &mut rav, &to_f64(&g), scale as f64, adam, t);
            }
            let tag = format!("n={n} scale={scale}");
            assert_close(&format!("sgd w {tag}"), &tw.download_f32(&gpu).unwrap(), &rw, 1e-6, 1e-5);
            assert_close(&format!("sgd v {tag}"), &tv.download_f32(&gpu).unwrap(), &rv, 1e-6, 1e-5);
            assert_close(&format!("adam w {tag}"), &aw.download_f32(&gpu).unwrap(), &raw, 1e-6, 1e-5);
            assert_close(&format!("adam m {tag}"), &am.download_f32(&gpu).unwrap(), &ram, 1e-6, 1e-5);
            assert_close(&format!("adam v {tag}"), &av.download_f32(&gpu).unwrap(), &rav, 1e-7, 1e-5);
            assert_eq!(tg.download_f32(&gpu).unwrap(), g, "KeepGrad changed the gradient");
            // ZeroGrad: the same update, and the gradient cleared.
            let (zw, zv, zg) = (mk("zw", &w), mk("zv", &v), mk("zg", &g));
            let mut rec = Recorder::new(&gpu);
            let s = if use_scale { GradScale::Buffer(&ts) } else { GradScale::One };
            optim::sgd_step(&mut rec, &zw, &zv, &zg, s, sgd, optim::Rate::Fixed, optim::AfterStep::ZeroGrad, n)
                .unwrap();
            rec.finish().unwrap();
            let (mut rw1, mut rv1) = (to_f64(&w), to_f64(&v));
            cpu::optim::sgd_step(&mut rw1, &mut rv1, &to_f64(&g), scale as f64, sgd);
            assert_close(&format!("sgd zero-grad w {tag}"), &zw.download_f32(&gpu).unwrap(), &rw1, 1e-6, 1e-5);
            assert!(zg.download_f32(&gpu).unwrap().iter().all(|&x| x == 0.0), "ZeroGrad left a gradient");
        }
    }
}

/// Adam deciding the step's clip record itself (`adam_clip_step`, the
/// sparse step's score optimizer) against the f64 reference and against
/// the clip factor's own launch followed by `adam_step`, on sizes around
/// the workgroup (0, 1, 97, 256, 257, 1031 and the most it takes): every
/// workgroup must apply the same factor, and one alone write the record.
/// Six steps: clipped, a small squared norm (unclipped unless the gradient's
/// own squares clip it), one that overflows, a non-finite loss, then two
/// finite steps; with and without the gradient's own squares, with and
/// without loss scaling (growth 2). Before the fifth step under scaling the
/// record's S is spoilt: every workgroup must take S from the score
/// gradient's copy in the losses, and write the S that follows from it.
#[test]
fn adam_clip_matches_reference_and_separate_launch() {
    use sparsetrain::DType;
    use sparsetrain::cpu::reduce::ClipRecord;
    use sparsetrain::ops::optim::ClipDecision;
    use sparsetrain::ops::reduce::{ClipInputs, FaultTag, Reducer, SINGLE_PASS_MAX};
    let Some(gpu) = gpu("adam_clip_matches_reference_and_separate_launch") else { return };
    let reducer = Reducer::new(&gpu).unwrap();
    let adam = Adam { lr: 1e-2, weight_decay: 1e-3, ..Adam::default() };
    let mut case = 0;
    for &n in &[0usize, 1, 97, 256, 257, 1031, SINGLE_PASS_MAX] {
        for own in [false, true] {
            for growth in [None, Some(2u32)] {
                case += 1;
                let mut r = rng(3100 + case);
                let k = [1usize, 5, 1024][case as usize % 3];
                let w = rand_f32(&mut r, n, -1.0, 1.0);
                let g = rand_f32(&mut r, n, -1.0, 1.0);
                let m = rand_f32(&mut r, n, -0.1, 0.1);
                let v = rand_f32(&mut r, n, 0.0, 0.1);
                let base = rand_f32(&mut r, k, 0.5, 2.0);
                let mk = |name: &str, d: &[f32]| Tensor::from_f32(&gpu, name, &[n.max(1)], &pad(d)).unwrap();
                let (fw, fm, fv, fg) = (mk("w", &w), mk("m", &m), mk("v", &v), mk("g", &g));
                let (sw, sm, sv) = (mk("w2", &w), mk("m2", &m), mk("v2", &v));
                let start = [0., 0., 0., 0., 1024., 0., 0., 0.];
                let fused = Tensor::from_f32(&gpu, "record", &[8], &start).unwrap();
                let separate = Tensor::from_f32(&gpu, "record", &[8], &start).unwrap();
                let norms = Tensor::zeros(&gpu, "norms", &[k], DType::F32).unwrap();
                let losses = Tensor::zeros(&gpu, "losses", &[4], DType::F32).unwrap();
                let (mut rw, mut rm, mut rv) = (to_f64(&w), to_f64(&m), to_f64(&v));
                let mut want = ClipRecord { factor: 0.0, faults: 0, first: 0, clock: 0, scale: 1024.0, good: 0 };
                let tag = format!("n={n} norms={k} own squares={own} growth={growth:?}");
                for step in 0..6u64 {
                    let s = if growth.is_some() { want.scale as f32 } else { 1.0 };
                    let (mul, loss) = match step {
                        0 => (100.0 * s * s, 2.5f32),
                        1 => (1e-6 * s * s, 2.5),
                        2 => (f32::INFINITY, 2.5),
                        3 => (s * s, f32::NAN),
                        _ => (s * s, 1.5),
                    };
                    if growth.is_some() && step == 4 {
                        fused.upload_at(&gpu, 4, &[7.0f32]).unwrap();
                    }
                    let sq: Vec<f32> = base.iter().map(|b| b * mul).collect();
                    norms.upload(&gpu, &sq).unwrap();
                    losses.upload(&gpu, &[loss, 0.25, 0.0, s]).unwrap();
                    let t = step + 1;
                    let step_tag = 100 + step as u32;
                    let decision = ClipDecision {
                        record: &fused,
                        norms: (&norms, k),
                        own_squares: own,
                        loss: (&losses, 0, 2),
                        max_norm: 3.0,
                        tag: FaultTag::Fixed(step_tag),
                        loss_scale: growth.map(|g| (g, 3)),
                    };
                    let mut rec = Recorder::new(&gpu);
                    optim::adam_clip_step(&mut rec, &fw, &fm, &fv, &fg, adam, optim::Rate::Fixed, t, n, decision)
                        .unwrap();
                    let squares = own.then_some((&fg, n));
                    let inputs = ClipInputs { norms: (&norms, k), squares, loss: Some((&losses, 0, 2)) };
                    reducer
                        .clip_factor(&mut rec, &separate, 0, inputs, 3.0, FaultTag::Fixed(step_tag), growth)
                        .unwrap();
                    let scale = GradScale::Buffer(&separate);
                    optim::adam_step(&mut rec, &sw, &sm, &sv, &fg, scale, adam, optim::Rate::Fixed, t, n).unwrap();
                    rec.finish().unwrap();

                    let norms64 = to_f64(&sq);
                    let rule = (3.0, step_tag, growth);
                    let inputs = (&norms64[..], own, loss as f64 + 0.25);
                    want =
                        cpu::optim::adam_clip_step(&mut rw, &mut rm, &mut rv, &to_f64(&g), adam, t, inputs, want, rule);
                    let at = format!("{tag} step {step}");
                    let got = fused.download_f32(&gpu).unwrap();
                    let other = separate.download_f32(&gpu).unwrap();
                    assert_close(&format!("{at}: factor"), &got[..1], &[want.factor], 1e-12, 1e-5);
                    assert_close(
                        &format!("{at}: factor of the separate launch"),
                        &other[..1],
                        &[want.factor],
                        1e-12,
                        1e-5,
                    );
                    assert_eq!(got[0] == 0.0, want.factor == 0.0, "{at}: skipped or not");
                    let (faults, first, clock) = (got[1], got[2].to_bits(), got[3].to_bits());
                    assert_eq!(
                        (faults, first, clock),
                        (want.faults as f32, want.first, want.clock),
                        "{at}: faults, first, clock"
                    );
                    assert_eq!(
                        &got[1..4].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        &other[1..4].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        "{at}: the two records"
                    );
                    if growth.is_some() {
                        assert_eq!((got[4], got[5]), (want.scale as f32, want.good as f32), "{at}: scale, good steps");
                        assert_eq!((got[4], got[5]), (other[4], other[5]), "{at}: scale of the separate launch");
                    }
                    let wr = &fw.download_f32(&gpu).unwrap()[..n];
                    assert_close(&format!("{at}: w"), wr, &rw, 1e-6, 1e-5);
                    assert_close(&format!("{at}: m"), &fm.download_f32(&gpu).unwrap()[..n], &rm, 1e-6, 1e-5);
                    assert_close(&format!("{at}: v"), &fv.download_f32(&gpu).unwrap()[..n], &rv, 1e-7, 1e-5);
                    assert_close(
                        &format!("{at}: w of the separate launches"),
                        &sw.download_f32(&gpu).unwrap()[..n],
                        &to_f64(wr),
                        1e-7,
                        1e-6,
                    );
                }
                let (faults, clock) = (want.faults, want.clock);
                let expect = if growth.is_some() { (1, 4) } else { (2, 4) };
                assert_eq!((faults, clock), expect, "{tag}: the reference's faults and updates over the six steps");
            }
        }
    }
}

fn pad(d: &[f32]) -> Vec<f32> {
    if d.is_empty() { vec![0.0] } else { d.to_vec() }
}

/// `adam_clip_step` refuses what it cannot decide from: no squared norms,
/// more than one workgroup sums, no loss, a gradient too long for its own
/// squares, a scale copy inside the loss, a record that is also an input,
/// inputs in a buffer the optimizer writes,
/// a zero growth interval, a non-finite clip norm.
#[test]
fn adam_clip_refuses_misuse() {
    use sparsetrain::DType;
    use sparsetrain::ops::optim::ClipDecision;
    use sparsetrain::ops::reduce::{FaultTag, SINGLE_PASS_MAX};
    let Some(gpu) = gpu("adam_clip_refuses_misuse") else { return };
    let z = |name: &str, n: usize| Tensor::zeros(&gpu, name, &[n], DType::F32).unwrap();
    let big = SINGLE_PASS_MAX + 1;
    let (w, m, v, g) = (z("w", big), z("m", big), z("v", big), z("g", big));
    let (record, norms, losses) = (z("record", 8), z("norms", big), z("losses", 4));
    let ok = ClipDecision {
        record: &record,
        norms: (&norms, 3),
        own_squares: true,
        loss: (&losses, 0, 2),
        max_norm: 1.0,
        tag: FaultTag::Step,
        loss_scale: Some((5, 3)),
    };
    let run = |d: ClipDecision, n: usize| {
        let mut rec = Recorder::new(&gpu);
        optim::adam_clip_step(&mut rec, &w, &m, &v, &g, Adam::default(), optim::Rate::FromStep, 1, n, d)
    };
    assert!(run(ok, 10).is_ok());
    let bad = [
        ("no norms", ClipDecision { norms: (&norms, 0), ..ok }, 10),
        ("too many norms", ClipDecision { norms: (&norms, big), ..ok }, 10),
        ("no loss", ClipDecision { loss: (&losses, 0, 0), ..ok }, 10),
        ("own squares too long", ok, big),
        ("scale copy in the loss", ClipDecision { loss_scale: Some((5, 1)), ..ok }, 10),
        ("scale copy past the losses", ClipDecision { loss_scale: Some((5, 4)), ..ok }, 10),
        ("record is an input", ClipDecision { record: &norms, ..ok }, 10),
        ("norms in the gradient", ClipDecision { norms: (&g, 3), ..ok }, 10),
        ("record in the moments", ClipDecision { record: &m, ..ok }, 10),
        ("losses in the weights", ClipDecision { loss: (&w, 0, 2), ..ok }, 10),
        ("zero growth", ClipDecision { loss_scale: Some((0, 3)), ..ok }, 10),
        ("non-finite clip norm", ClipDecision { max_norm: f32::NAN, ..ok }, 10),
        ("record too short for scaling", ClipDecision { record: &z("short", 4), ..ok }, 10),
    ];
    for (what, d, n) in bad {
        assert!(run(d, n).is_err(), "{what}: accepted");
    }
    assert!(run(ClipDecision { own_squares: false, ..ok }, big).is_ok(), "a long gradient without its squares");
}
