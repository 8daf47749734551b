use rand::Rng;
use sparsetrain::ops::vrpge::{Estimator, Losses, ScoreFn, score_grad};
use sparsetrain::{DType, Recorder, Tensor, cpu};

use crate::common::*;

#[test]
fn score_grad_matches_reference() {
    let Some(gpu) = gpu("score_grad_matches_reference") else { return };
    let mut case = 0;
    for &n in &[1usize, 255, 1001] {
        for est in [
            (Estimator::VrPge, ScoreFn::Fisher),
            (Estimator::VrPge, ScoreFn::Exact),
            (Estimator::Pge, ScoreFn::Fisher),
            (Estimator::Pge, ScoreFn::Exact),
        ] {
            case += 1;
            let mut r = rng(1500 + case);
            // Scores away from 0 and 1, where the guard does not matter, plus
            // the exact ends, where it must keep the result finite.
            let mut s = rand_f32(&mut r, n, 0.05, 0.95);
            s[0] = if case % 2 == 0 { 0.0 } else { 1.0 };
            let m1: Vec<u32> = s.iter().map(|&p| u32::from(r.random_bool(p as f64))).collect();
            let m2: Vec<u32> = s.iter().map(|&p| u32::from(r.random_bool(p as f64))).collect();
            let losses = [2.5f32, 1.75, 9.0];
            let tl = Tensor::from_f32(&gpu, "losses", &[3], &losses).unwrap();
            let ts = Tensor::from_f32(&gpu, "s", &[n], &s).unwrap();
            let t1 = Tensor::from_u32(&gpu, "m1", &[n], &m1).unwrap();
            let t2 = Tensor::from_u32(&gpu, "m2", &[n], &m2).unwrap();
            let tg = Tensor::zeros(&gpu, "g", &[n], DType::F32).unwrap();
            let mut rec = Recorder::new(&gpu);
            // Every other case also adds the step's loss (L1 + L2)/2 into slot 2.
            let sum = (case % 2 == 0).then_some(2);
            score_grad(&mut rec, &tg, &tl, ((0, 1), sum), Losses::Slots, &ts, [(&t1, 0), (&t2, 0)], est, n, None)
                .unwrap();
            // Under loss scaling (S = 256 in slot 4): exactly S times (and
            // the sum added once more, into slot 2 of a copy of the losses).
            let record = Tensor::from_f32(&gpu, "clip", &[8], &[0., 0., 0., 0., 256., 0., 0., 0.]).unwrap();
            // S is also copied to slot 3 (for the score optimizer).
            let tl2 = Tensor::from_f32(&gpu, "losses", &[4], &[losses[0], losses[1], losses[2], 0.0]).unwrap();
            let tg2 = Tensor::zeros(&gpu, "g", &[n], DType::F32).unwrap();
            let masks = [(&t1, 0), (&t2, 0)];
            let scaled = Some((&record, Some(3)));
            score_grad(&mut rec, &tg2, &tl2, ((0, 1), sum), Losses::Slots, &ts, masks, est, n, scaled).unwrap();
            rec.finish().unwrap();
            assert_eq!(tl2.download_f32(&gpu).unwrap()[3], 256.0, "{est:?} n={n}: the copy of S");
            let clash = Some((&record, Some(1)));
            let copy_clash = score_grad(
                &mut Recorder::new(&gpu),
                &tg2,
                &tl2,
                ((0, 1), sum),
                Losses::Slots,
                &ts,
                masks,
                est,
                n,
                clash,
            );
            assert!(copy_clash.is_err(), "a copy of S over a loss slot was accepted");
            let plain: Vec<f32> = tg.download_f32(&gpu).unwrap().iter().map(|v| v * 256.0).collect();
            assert_eq!(tg2.download_f32(&gpu).unwrap(), plain, "{est:?} n={n}: loss-scaled score gradient");
            let want_losses = [2.5, 1.75, if sum.is_some() { 9.0 + 0.5 * (2.5 + 1.75) } else { 9.0 }];
            assert_eq!(tl.download_f32(&gpu).unwrap(), want_losses, "{est:?}: losses after the score gradient");
            let clash = score_grad(
                &mut Recorder::new(&gpu),
                &tg,
                &tl,
                ((0, 1), Some(1)),
                Losses::Slots,
                &ts,
                [(&t1, 0), (&t2, 0)],
                est,
                n,
                None,
            );
            assert!(clash.is_err(), "a sum slot that is a loss slot was accepted");
            let want = cpu::vrpge::score_grad((2.5, 1.75), &to_f64(&s), &m1, &m2, est);
            let got = tg.download_f32(&gpu).unwrap();
            assert!(got.iter().all(|v| v.is_finite()), "{est:?}: non-finite score gradient");
            // s = 0 or 1 with m = s gives 0/eps-guarded 0; compare the rest.
            assert_close(&format!("score_grad n={n} {est:?}"), &got[1..], &want[1..], 1e-5, 1e-5);
            // With the baseline, agreeing masks give exactly 0 (not a rounding
            // residue, which Adam would amplify into an update).
            if est.0 == Estimator::VrPge {
                let leaks: Vec<String> = (0..n)
                    .filter(|&i| m1[i] == m2[i] && got[i] != 0.0)
                    .take(8)
                    .map(|i| format!("[{i}] s={} m={} grad={:e}", s[i], m1[i], got[i]))
                    .collect();
                assert!(leaks.is_empty(), "{est:?} n={n}: agreeing units got non-zero gradients: {}", leaks.join(", "));
            }
        }
    }
}

#[test]
fn norm_and_clip_factor_match_reference() {
    use sparsetrain::ops::reduce::{ClipInputs, FaultTag, Reducer};
    let Some(gpu) = gpu("norm_and_clip_factor_match_reference") else { return };
    let reducer = Reducer::new(&gpu).unwrap();
    for (case, &(n1, n2, amp)) in [(1000usize, 77usize, 1.0f32), (300_001, 5, 0.001), (3, 1, 10.0)].iter().enumerate() {
        let mut r = rng(1600 + case as u64);
        let a = rand_f32(&mut r, n1, -amp, amp);
        let b = rand_f32(&mut r, n2, -amp, amp);
        let ta = Tensor::from_f32(&gpu, "a", &[n1], &a).unwrap();
        let tb = Tensor::from_f32(&gpu, "b", &[n2], &b).unwrap();
        let sq = Tensor::zeros(&gpu, "sq", &[2], DType::F32).unwrap();
        let clip = Tensor::zeros(&gpu, "clip", &[4], DType::F32).unwrap();
        let joint = Tensor::zeros(&gpu, "clip", &[4], DType::F32).unwrap();
        let loss = Tensor::from_f32(&gpu, "losses", &[3], &[9.0, 2.5, 1.5]).unwrap();
        let mut rec = Recorder::new(&gpu);
        reducer.sum_squares(&mut rec, &sq, 0, &ta, n1).unwrap();
        reducer.sum_squares(&mut rec, &sq, 1, &tb, n2).unwrap();
        let two = ClipInputs { norms: (&sq, 2), squares: None, loss: None };
        reducer.clip_factor(&mut rec, &clip, 0, two, 3.0, FaultTag::Fixed(17), None).unwrap();
        // The second gradient's squares summed by the clip's own launch, and
        // a finite loss read alongside: the same factor.
        let one = ClipInputs { norms: (&sq, 1), squares: Some((&tb, n2)), loss: Some((&loss, 1, 2)) };
        reducer.clip_factor(&mut rec, &joint, 0, one, 3.0, FaultTag::Fixed(17), None).unwrap();
        // The first gradient's per-workgroup partial norms read by the clip
        // factor's launch itself (a second reducer: its own partials).
        let second = Reducer::new(&gpu).unwrap();
        let parts = Tensor::zeros(&gpu, "clip", &[4], DType::F32).unwrap();
        let norms = second.square_partials(&mut rec, &ta, n1).unwrap();
        let inputs = ClipInputs { norms, squares: Some((&tb, n2)), loss: None };
        second.clip_factor(&mut rec, &parts, 0, inputs, 3.0, FaultTag::Fixed(17), None).unwrap();
        rec.finish().unwrap();
        let s1: f64 = to_f64(&a).iter().map(|v| v * v).sum();
        let s2: f64 = to_f64(&b).iter().map(|v| v * v).sum();
        assert_close("sum of squares", &sq.download_f32(&gpu).unwrap(), &[s1, s2], 1e-6, 1e-5);
        let want = (3.0 / ((s1 + s2).sqrt() + 1e-6)).min(1.0);
        for (name, t) in [("clip factor", &clip), ("clip factor with squares", &joint), ("from partials", &parts)] {
            let got = t.download_f32(&gpu).unwrap();
            assert_close(name, &got[..1], &[want], 1e-6, 1e-5);
            assert_eq!(got[1], 0.0, "{name}: a finite norm counted as a fault");
        }
    }
}

/// A non-finite squared norm gives factor 0 (skip), counts the step and
/// records the first one's number; finite ones advance the clock of lazy
/// updates.
#[test]
fn non_finite_norms_are_flagged_on_the_device() {
    use sparsetrain::ops::reduce::{ClipInputs, FaultTag, Reducer};
    let Some(gpu) = gpu("non_finite_norms_are_flagged_on_the_device") else { return };
    let reducer = Reducer::new(&gpu).unwrap();
    let clip = Tensor::zeros(&gpu, "clip", &[4], DType::F32).unwrap();
    // (step, [norm, score gradient], loss): a non-finite norm, squared
    // gradient or loss is a fault.
    let nan = f32::NAN;
    let cases = [
        (5u32, [1.0f32, 2.0], 0.5f32),
        (6, [f32::INFINITY, 1.0], 0.5),
        (7, [1.0, nan], 0.5),
        (8, [0.5, 0.5], 0.5),
        (9, [0.5, 0.5], nan),
        (10, [0.5, 1e30], 0.5),
    ];
    for (step, [norm, grad], loss) in cases {
        let t = Tensor::from_f32(&gpu, "sq", &[1], &[norm]).unwrap();
        let g = Tensor::from_f32(&gpu, "g", &[3], &[0.0, grad, 0.0]).unwrap();
        let l = Tensor::from_f32(&gpu, "loss", &[1], &[loss]).unwrap();
        let mut rec = Recorder::new(&gpu);
        let inputs = ClipInputs { norms: (&t, 1), squares: Some((&g, 3)), loss: Some((&l, 0, 1)) };
        reducer.clip_factor(&mut rec, &clip, 0, inputs, 3.0, FaultTag::Fixed(step), None).unwrap();
        rec.finish().unwrap();
        let got = clip.download_f32(&gpu).unwrap();
        // 1e30 squared overflows f32.
        let bad = !(norm.is_finite() && grad.is_finite() && loss.is_finite()) || grad == 1e30;
        assert_eq!(got[0] == 0.0, bad, "step {step}: factor {}", got[0]);
    }
    let got = clip.download_f32(&gpu).unwrap();
    assert_eq!(got[1], 4.0, "four non-finite steps counted");
    assert_eq!(got[2].to_bits(), 6, "the first one recorded");
    assert_eq!(got[3].to_bits(), 2, "two updates applied");
}

/// Dynamic loss scaling in the clip factor: the factor unscales and clips
/// (exactly, for a power-of-two scale), an overflow of the scaled norms with
/// a finite loss halves the scale and skips the step without a fault, a
/// non-finite loss is a fault (scale kept), `growth` finite steps in a row
/// double the scale, and the scale stays within [1, 2^24].
#[test]
fn loss_scaled_clip_factor_unscales_backs_off_and_grows() {
    use sparsetrain::ops::reduce::{ClipInputs, FaultTag, Reducer};
    let Some(gpu) = gpu("loss_scaled_clip_factor_unscales_backs_off_and_grows") else { return };
    let reducer = Reducer::new(&gpu).unwrap();
    let clip = Tensor::from_f32(&gpu, "clip", &[8], &[0., 0., 0., 0., 1024., 0., 0., 0.]).unwrap();
    let inf = f32::INFINITY;
    let s2 = 1024.0f32 * 1024.0;
    let unclipped = |s: f32| (3.0f32 / ((2.0f32.sqrt() / s) + 1e-6)).min(1.0) / s;
    // ([weights, scores, loss], factor, scale after, good steps after, faults)
    let cases: [([f32; 3], f32, f32, f32, f32); 7] = [
        // Norm 5 (scaled: 5·1024) clipped to 3: factor (3 / 5) / 1024.
        ([16.0 * s2, 9.0 * s2, 2.3], (3.0 / (5.0 + 1e-6)) / 1024.0, 1024.0, 1.0, 0.0),
        // Norm 1: no clipping, factor 1 / 1024.
        ([0.5 * s2, 0.5 * s2, 2.3], 1.0 / 1024.0, 1024.0, 2.0, 0.0),
        // Overflow with a finite loss: skip, halve, no fault.
        ([inf, 1.0, 2.3], 0.0, 512.0, 0.0, 0.0),
        // A non-finite loss: a fault, the scale kept.
        ([1.0, 1.0, f32::NAN], 0.0, 512.0, 0.0, 1.0),
        ([1.0, 1.0, 2.3], unclipped(512.0), 512.0, 1.0, 1.0),
        ([1.0, 1.0, 2.3], unclipped(512.0), 512.0, 2.0, 1.0),
        // The third finite step in a row doubles the scale (growth 3).
        ([1.0, 1.0, 2.3], unclipped(512.0), 1024.0, 0.0, 1.0),
    ];
    for (i, (sq, factor, scale, good, faults)) in cases.into_iter().enumerate() {
        let t = Tensor::from_f32(&gpu, "sq", &[3], &sq).unwrap();
        let mut rec = Recorder::new(&gpu);
        // The norms first, the loss last.
        let inputs = ClipInputs { norms: (&t, 2), squares: None, loss: Some((&t, 2, 1)) };
        reducer.clip_factor(&mut rec, &clip, 0, inputs, 3.0, FaultTag::Fixed(40 + i as u32), Some(3)).unwrap();
        rec.finish().unwrap();
        let got = clip.download_f32(&gpu).unwrap();
        assert_close(&format!("case {i}: factor"), &got[..1], &[factor as f64], 1e-9, 1e-6);
        assert_eq!((got[4], got[5], got[1]), (scale, good, faults), "case {i}: (scale, good steps, faults)");
    }
    assert_eq!(clip.download_f32(&gpu).unwrap()[2].to_bits(), 43, "the fault's step recorded");
    // The scale never drops below 1 nor grows past 2^24; at 1, a non-finite
    // gradient with a finite loss is a fault (no overflow left to blame).
    for (start, sq, want, faults) in
        [(2.0f32, [inf, 1.0f32], 1.0f32, 0.0), (1.0, [inf, 1.0], 1.0, 1.0), (16777216.0, [1.0, 1.0], 16777216.0, 0.0)]
    {
        clip.upload(&gpu, &[0., 0., 0., 0., start, 0., 0., 0.]).unwrap();
        let t = Tensor::from_f32(&gpu, "sq", &[2], &sq).unwrap();
        let mut rec = Recorder::new(&gpu);
        let inputs = ClipInputs { norms: (&t, 1), squares: None, loss: Some((&t, 1, 1)) };
        reducer.clip_factor(&mut rec, &clip, 0, inputs, 3.0, FaultTag::Fixed(1), Some(1)).unwrap();
        rec.finish().unwrap();
        let got = clip.download_f32(&gpu).unwrap();
        assert_eq!((got[4], got[1]), (want, faults), "scale from {start}: (scale, faults)");
    }
    // Misuse is refused: no loss, a zero growth interval, no norms, inputs
    // in the clip record's buffer.
    let t = Tensor::zeros(&gpu, "sq", &[3], DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    let no_loss = ClipInputs { norms: (&t, 1), squares: None, loss: None };
    let with_loss = ClipInputs { loss: Some((&t, 2, 1)), ..no_loss };
    assert!(reducer.clip_factor(&mut rec, &clip, 0, no_loss, 3.0, FaultTag::Fixed(1), Some(5)).is_err());
    assert!(reducer.clip_factor(&mut rec, &clip, 0, with_loss, 3.0, FaultTag::Fixed(1), Some(0)).is_err());
    let none = ClipInputs { norms: (&t, 0), ..no_loss };
    assert!(reducer.clip_factor(&mut rec, &clip, 0, none, 3.0, FaultTag::Fixed(1), None).is_err());
    let inside = ClipInputs { squares: Some((&clip, 1)), ..no_loss };
    assert!(reducer.clip_factor(&mut rec, &clip, 0, inside, 3.0, FaultTag::Fixed(1), None).is_err());
}

/// With the losses taken as the batch means of the two passes' per-row
/// losses (`Losses::Rows`), the kernel reduces them itself: the means land
/// in their slots, the step's loss in the sum, and the gradient is the one
/// from those means. Batches of 1, a prime, more than a workgroup. Under
/// loss scaling (S = 4) as the trainer runs it: S copied to slot 3.
#[test]
fn score_grad_reduces_both_passes_loss_rows() {
    let Some(gpu) = gpu("score_grad_reduces_both_passes_loss_rows") else { return };
    for (case, &(n, rows)) in [(1usize, 1usize), (255, 7), (1001, 300), (40, 1031)].iter().enumerate() {
        let mut r = rng(1700 + case as u64);
        let s = rand_f32(&mut r, n, 0.05, 0.95);
        let m1: Vec<u32> = s.iter().map(|&p| u32::from(r.random_bool(p as f64))).collect();
        let m2: Vec<u32> = s.iter().map(|&p| u32::from(r.random_bool(p as f64))).collect();
        // Both passes' rows in one buffer, the second at a capacity offset.
        let cap = rows + 3;
        let loss_rows = rand_f32(&mut r, 2 * cap, 0.0, 4.0);
        let tr = Tensor::from_f32(&gpu, "loss rows", &[2 * cap], &loss_rows).unwrap();
        let tl = Tensor::from_f32(&gpu, "losses", &[4], &[-1.0, -1.0, 9.0, 0.0]).unwrap();
        let record = Tensor::from_f32(&gpu, "clip", &[8], &[0., 0., 0., 0., 4., 0., 0., 0.]).unwrap();
        let ts = Tensor::from_f32(&gpu, "s", &[n], &s).unwrap();
        let t1 = Tensor::from_u32(&gpu, "m1", &[n], &m1).unwrap();
        let t2 = Tensor::from_u32(&gpu, "m2", &[n], &m2).unwrap();
        let tg = Tensor::zeros(&gpu, "g", &[n], DType::F32).unwrap();
        let est = (Estimator::VrPge, ScoreFn::Fisher);
        let from = Losses::Rows { t: &tr, starts: (0, cap), rows: rows.into() };
        let mut rec = Recorder::new(&gpu);
        let scaled = Some((&record, Some(3)));
        score_grad(&mut rec, &tg, &tl, ((0, 1), Some(2)), from, &ts, [(&t1, 0), (&t2, 0)], est, n, scaled).unwrap();
        rec.finish().unwrap();
        let rows64 = to_f64(&loss_rows);
        let l1 = rows64[..rows].iter().sum::<f64>() / rows as f64;
        let l2 = rows64[cap..cap + rows].iter().sum::<f64>() / rows as f64;
        let tag = format!("n={n} rows={rows}");
        let got_l = tl.download_f32(&gpu).unwrap();
        let want_l = [l1, l2, 9.0 + 0.5 * (l1 + l2), 4.0];
        assert_close(&format!("loss means, sum and the copy of S {tag}"), &got_l, &want_l, 1e-6, 1e-5);
        // The gradient from the kernel's own means (f32): exact agreement
        // of the means is checked above.
        let want = cpu::vrpge::score_grad((got_l[0] as f64, got_l[1] as f64), &to_f64(&s), &m1, &m2, est);
        let want: Vec<f64> = want.iter().map(|v| 4.0 * v).collect();
        assert_close(&format!("score_grad {tag}"), &tg.download_f32(&gpu).unwrap(), &want, 1e-6, 1e-5);
    }
    // Zero rows have no mean.
    let t = Tensor::zeros(&gpu, "t", &[4], DType::F32).unwrap();
    let u = Tensor::zeros(&gpu, "u", &[4], DType::U32).unwrap();
    let from = Losses::Rows { t: &t, starts: (0, 2), rows: 0usize.into() };
    let est = (Estimator::VrPge, ScoreFn::Fisher);
    let res = score_grad(&mut Recorder::new(&gpu), &t, &t, ((0, 1), None), from, &t, [(&u, 0), (&u, 0)], est, 4, None);
    assert!(res.is_err(), "a mean over zero rows was accepted");
    // Loss rows in the buffer of the losses written are refused.
    let from = Losses::Rows { t: &t, starts: (0, 2), rows: 1usize.into() };
    let g = Tensor::zeros(&gpu, "g", &[4], DType::F32).unwrap();
    let res = score_grad(&mut Recorder::new(&gpu), &g, &t, ((0, 1), None), from, &g, [(&u, 0), (&u, 0)], est, 4, None);
    assert!(res.is_err(), "loss rows aliasing the losses were accepted");
    // A loss scale in the losses' buffer is refused; so is a copy of S over a
    // loss slot, even with nothing else to compute.
    let l = Tensor::zeros(&gpu, "l", &[8], DType::F32).unwrap();
    let clip = Tensor::zeros(&gpu, "clip", &[8], DType::F32).unwrap();
    let scaled = |n: usize, ls: (&Tensor, Option<usize>)| {
        let masks = [(&u, 0), (&u, 0)];
        score_grad(&mut Recorder::new(&gpu), &g, &l, ((0, 1), None), Losses::Slots, &t, masks, est, n, Some(ls))
    };
    assert!(scaled(4, (&l, None)).is_err(), "a loss scale aliasing the losses was accepted");
    assert!(scaled(0, (&clip, Some(0))).is_err(), "a copy of S over a loss slot was accepted");
    // With no unit, the copy of S is still made.
    let mut rec = Recorder::new(&gpu);
    clip.upload_at(&gpu, 4, &[8.0f32]).unwrap();
    let sc = Tensor::zeros(&gpu, "s", &[4], DType::F32).unwrap();
    let copy = Some((&clip, Some(5)));
    score_grad(&mut rec, &g, &l, ((0, 1), None), Losses::Slots, &sc, [(&u, 0), (&u, 0)], est, 0, copy).unwrap();
    rec.finish().unwrap();
    assert_eq!(l.download_f32(&gpu).unwrap()[5], 8.0, "no copy of S without units");
}

/// The two losses as means over the step's batch (fewer rows than the
/// capacity): each part's first `batch` rows only.
#[test]
fn score_grad_means_cover_the_step_batch() {
    use sparsetrain::ops::Rows;
    let Some(gpu) = gpu("score_grad_means_cover_the_step_batch") else { return };
    let (n, cap, batch) = (37usize, 300usize, 129usize);
    let mut r = rng(1750);
    let s = rand_f32(&mut r, n, 0.05, 0.95);
    let m1: Vec<u32> = s.iter().map(|&p| u32::from(r.random_bool(p as f64))).collect();
    let m2: Vec<u32> = s.iter().map(|&p| u32::from(r.random_bool(p as f64))).collect();
    let loss_rows = rand_f32(&mut r, 2 * cap, 0.0, 4.0);
    let tr = Tensor::from_f32(&gpu, "loss rows", &[2 * cap], &loss_rows).unwrap();
    let tl = Tensor::from_f32(&gpu, "losses", &[3], &[-1.0, -1.0, 0.0]).unwrap();
    let ts = Tensor::from_f32(&gpu, "s", &[n], &s).unwrap();
    let t1 = Tensor::from_u32(&gpu, "m1", &[n], &m1).unwrap();
    let t2 = Tensor::from_u32(&gpu, "m2", &[n], &m2).unwrap();
    let tg = Tensor::zeros(&gpu, "g", &[n], DType::F32).unwrap();
    let est = (Estimator::VrPge, ScoreFn::Exact);
    run_with_batch(&gpu, batch, |rec| {
        let from = Losses::Rows { t: &tr, starts: (0, cap), rows: Rows::Batch(cap) };
        score_grad(rec, &tg, &tl, ((0, 1), Some(2)), from, &ts, [(&t1, 0), (&t2, 0)], est, n, None).unwrap();
    });
    let rows64 = to_f64(&loss_rows);
    let l1 = rows64[..batch].iter().sum::<f64>() / batch as f64;
    let l2 = rows64[cap..cap + batch].iter().sum::<f64>() / batch as f64;
    let got_l = tl.download_f32(&gpu).unwrap();
    assert_close("means over the batch", &got_l, &[l1, l2, 0.5 * (l1 + l2)], 1e-6, 1e-5);
    let want = cpu::vrpge::score_grad((got_l[0] as f64, got_l[1] as f64), &to_f64(&s), &m1, &m2, est);
    assert_close("score_grad", &tg.download_f32(&gpu).unwrap(), &want, 1e-6, 1e-5);
}
