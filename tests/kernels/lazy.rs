use rand::Rng;
use sparsetrain::ops::lazy::{CLIP_LEN, Lazy, LazyPass, LazySlot, LazyState, PEND, RING, RING_AT, SetsRef, SlotSide};
use sparsetrain::ops::optim::Sgd;
use sparsetrain::step::{StepBlock, StepBuffer};
use sparsetrain::{DType, Recorder, Tensor, cpu};

use crate::common::*;

const NONE: u32 = u32::MAX;

/// Lazy SGD against eager steps of every weight: parameters whose rows
/// and columns follow two channel sets (a weight in kernel-position
/// blocks, a bias, a classifier with all rows, a parameter touched whole),
/// two mask samples per step keeping some, none or all channels, a skipped
/// (non-finite) step, units that sit out several steps; the weights a step
/// reaches refreshed to their eager values before its passes, the norm's
/// partial sums against Σ g², gradients cleared, and after the final
/// catch-up every weight and momentum equal to the eager run's. Run twice:
/// every slot refreshed by `lazy_refresh`, and four of the five gathered
/// per sample by `lazy_gather` (against the f64 gather of the eager
/// weights, padding included, the outputs reset to NaN every step; one a
/// classifier's bias, whose rows follow no set), the fifth refreshed; a
/// refreshed slot gathered as well is found up to date. Each both ways:
/// a step's update by `lazy_sgd`, and deferred to the weights' next
/// refresh or gather (the gradient kept and the factor noted in the ring,
/// whose index wraps during the run; a non-finite step's gradient dropped;
/// a settle midway that leaves no update deferred and changes no result).
/// Then lagging clocks stamped without touching the weights.
#[test]
fn lazy_sgd_equals_eager_steps() {
    let Some(gpu) = gpu("lazy_sgd_equals_eager_steps") else { return };
    // (grid cap, gathered, both samples' gathers in one launch).
    let cases = [(None, false, false), (Some(1), false, false), (None, true, false), (Some(1), true, false)];
    let cases = cases.into_iter().chain([(None, true, true), (Some(1), true, true)]);
    for ((grid_cap, gathered, paired), defer) in cases.flat_map(|c| [(c, false), (c, true)]) {
        let gpu_c;
        let gpu = match grid_cap {
            None => &gpu,
            Some(c) => {
                let opts = sparsetrain::GpuOptions { grid_cap: Some(c), ..Default::default() };
                let Some(g) = gpu_with("lazy_sgd_equals_eager_steps (capped grid)", opts) else { return };
                gpu_c = g;
                &gpu_c
            }
        };
        run_case(gpu, grid_cap, (gathered, paired), defer);
    }
}

fn run_case(gpu: &sparsetrain::Gpu, grid_cap: Option<u32>, (gathered, paired): (bool, bool), defer: bool) {
    // Set 0: 7 channels at list slot 0; set 1: 5 channels at slot 7.
    let (c0, c1, entries, sets) = (7usize, 5usize, 12usize, 2usize);
    let s0 = Some((0, 0));
    let s1 = Some((1, 7));
    let side = |len, set| SlotSide { len, set };
    // A weight in kernel-position blocks and its bias (gathered together),
    // a classifier with all rows (gathered alone), a parameter touched whole.
    let slots = vec![
        LazySlot { offset: 0, rows: side(c0, s0), cols: side(c1, s1), blocks: 3, gathered },
        LazySlot { offset: 105, rows: side(c0, s0), cols: side(1, None), blocks: 1, gathered },
        LazySlot { offset: 112, rows: side(4, None), cols: side(c0, s0), blocks: 1, gathered },
        LazySlot { offset: 140, rows: side(6, None), cols: side(1, None), blocks: 1, gathered: false },
        // A classifier's bias: its rows follow no set, and its layer's
        // gather brings it up to date with the weight.
        LazySlot { offset: 146, rows: side(4, None), cols: side(1, None), blocks: 1, gathered },
        // A first layer's weight: rows follow a set, 40 columns all kept.
        LazySlot { offset: 150, rows: side(c0, s0), cols: side(40, None), blocks: 1, gathered },
    ];
    // The gathers' outputs per sample: [Wc of slot 0, bc of slot 1, Wc of
    // slot 2, bc of slot 4, slot 3 (refreshed, gathered as well), Wc of
    // slot 5].
    let padded = |n: usize| n.div_ceil(4) * 4;
    let sizes = [padded(c0) * 3 * padded(c1), padded(c0), 4 * padded(c0), 4, 6, padded(c0) * 40];
    // Each output's two samples in one buffer, as a pair's gathers need,
    // but the refreshed slot's in two (its pair falls back to two launches).
    let joints = sizes.map(|n| joint(gpu, "wc", n, [&[], &[]]));
    let apart = |k: usize| Tensor::zeros(gpu, "wc", &[sizes[k]], DType::F32).unwrap();
    let outs: Vec<[Tensor; 6]> =
        (0..2).map(|s| std::array::from_fn(|k| if k == 4 { apart(k) } else { joints[k][s].clone() })).collect();
    let total = 430;
    let hp = Sgd { lr: 0.07, momentum: 0.9, weight_decay: 0.01 };
    let seed =
        grid_cap.unwrap_or(0) as u64 + 10 * u64::from(gathered) + 100 * u64::from(defer) + 1000 * u64::from(paired);
    let mut r = rng(4100 + seed);
    let lazy = Lazy::new(gpu, slots.clone(), total, defer).unwrap();
    assert_eq!(lazy.defers(), defer);
    let w0 = rand_f32(&mut r, total, -1.0, 1.0);
    let v0 = rand_f32(&mut r, total, -0.1, 0.1);
    let (tw, tv) =
        (Tensor::from_f32(gpu, "w", &[total], &w0).unwrap(), Tensor::from_f32(gpu, "v", &[total], &v0).unwrap());
    // The clock starts a few updates short of the ring's length: deferred
    // updates find their factors across its wrap.
    let mut clock = RING as u32 - 4;
    let tlast = Tensor::from_u32(gpu, "last", &[total], &vec![clock; total]).unwrap();
    let tclip = Tensor::zeros(gpu, "clip", &[CLIP_LEN], DType::F32).unwrap();
    let tg = Tensor::zeros(gpu, "g", &[total], DType::F32).unwrap();
    let tsets = Tensor::zeros(gpu, "sets", &[256], DType::U32).unwrap();
    let sref = SetsRef { all: &tsets, offsets: [0, 64, 128], sets, entries };
    let st = LazyState { w: &tw, momentum: &tv, g: &tg, last: &tlast, clip: &tclip };
    let (mut w, mut v) = (to_f64(&w0), to_f64(&v0));
    let steps = 9;
    for step in 0..steps {
        // Per sample: kept channels of each set (some steps keep none or all).
        let keep = match step {
            2 => [0.0, 0.0],
            5 => [1.0, 1.0],
            _ => [0.3, 0.6],
        };
        let masks: Vec<[Vec<bool>; 2]> = (0..2)
            .map(|_| {
                [(0..c0).map(|_| r.random_bool(keep[0])).collect(), (0..c1).map(|_| r.random_bool(keep[1])).collect()]
            })
            .collect();
        let mut buf = vec![0u32; 256];
        for (s, m) in masks.iter().enumerate() {
            for (k, (slot, len)) in [(0usize, c0), (7, c1)].into_iter().enumerate() {
                let list: Vec<usize> = (0..len).filter(|&c| m[k][c]).collect();
                buf[128 + s * sets + k] = list.len() as u32;
                for (j, &c) in list.iter().enumerate() {
                    buf[s * entries + slot + j] = c as u32;
                }
                for c in 0..len {
                    buf[64 + s * entries + slot + c] = list.iter().position(|&x| x == c).map_or(NONE, |j| j as u32);
                }
            }
        }
        // The gradient: random where either sample reaches, zero elsewhere.
        let touched = |i: usize| -> bool {
            slots.iter().any(|sl| {
                if i < sl.offset || i >= sl.offset + sl.len() {
                    return false;
                }
                let e = i - sl.offset;
                let (row, col) = (e / (sl.blocks * sl.cols.len), e % sl.cols.len);
                let keeps = |sd: SlotSide, x: usize, s: usize| sd.set.is_none_or(|(k, _)| masks[s][k][x]);
                (0..2).any(|s| keeps(sl.rows, row, s) && keeps(sl.cols, col, s))
            })
        };
        let g: Vec<f32> = (0..total).map(|i| if touched(i) { r.random_range(-1.0..1.0) } else { 0.0 }).collect();
        let factor = if step == 4 { 0.0 } else { r.random_range(0.3..1.0f32) };
        if factor != 0.0 {
            clock += 1;
        }
        tsets.upload(gpu, &buf).unwrap();
        // The clock before the step's update: what the refresh brings the
        // reachable weights to, before the passes would read them.
        tclip.upload_at(gpu, 0, &[factor, 0.0, 0.0, f32::from_bits(clock - u32::from(factor != 0.0))]).unwrap();
        let block = StepBlock { lr: hp.lr, ..Default::default() };
        let step_buf = StepBuffer::new(gpu);
        let mut rec = Recorder::with_step(gpu, &step_buf);
        lazy.refresh(&mut rec, st, sref, hp).unwrap();
        if gathered {
            for out in &outs {
                for (t, n) in out.iter().zip(sizes) {
                    t.upload(gpu, &vec![f32::NAN; n]).unwrap();
                }
            }
            let before = rec.dispatches();
            let passes = [0, 1].map(|s| LazyPass { op: &lazy, st, sets: sref, hp, sample: s, first_slot: 0 });
            // (weight, bias) slots and outputs.
            let gathers = [((0, Some(1)), (0, 1)), ((2, Some(4)), (2, 3)), ((3, None), (4, 4)), ((5, None), (5, 5))];
            for (slots, (a, b)) in gathers {
                if paired {
                    let (wc, bc) = ([&outs[0][a], &outs[1][a]], [&outs[0][b], &outs[1][b]]);
                    passes[0].gather_pair(&mut rec, &passes[1], slots, wc, bc).unwrap();
                } else {
                    for (pass, out) in passes.iter().zip(&outs) {
                        pass.gather(&mut rec, slots.0, slots.1, &out[a], &out[b]).unwrap();
                    }
                }
            }
            let launches = rec.dispatches() - before;
            assert_eq!(launches, if paired { 5 } else { 8 }, "grid cap {grid_cap:?}: gathers launched");
            lazy.check_gathered().unwrap();
        }
        rec.into_plan().run(gpu, Some(&block)).unwrap();
        gpu.wait().unwrap();
        if gathered {
            // What each sample's pass reads: the eager weights before this step.
            for (s, out) in outs.iter().enumerate() {
                let list = |k: usize, len: usize| -> Vec<u32> {
                    (0..len as u32).filter(|&c| masks[s][k][c as usize]).collect()
                };
                let (rows, cols) = (list(0, c0), list(1, c1));
                let want = [
                    cpu::gather::gather_weight_blocks(&w[0..105], (c0, c1), 3, Some(&rows), Some(&cols)),
                    cpu::gather::gather_bias(&w[105..112], Some(&rows)),
                    cpu::gather::gather_weights(&w[112..140], (4, c0), None, Some(&rows)),
                    cpu::gather::gather_bias(&w[146..150], None),
                    w[140..146].to_vec(),
                    cpu::gather::gather_weights(&w[150..430], (c0, 40), Some(&rows), None),
                ];
                let names = ["Wc", "bc", "classifier Wc", "classifier bc", "refreshed slot", "first layer's Wc"];
                for (name, (t, want)) in names.iter().zip(out.iter().zip(&want)) {
                    let tag = format!("grid cap {grid_cap:?} paired {paired} step {step} sample {s}: gathered {name}");
                    // The kept part, padded: the buffer holds the most units.
                    assert_close(&tag, &t.download_f32(gpu).unwrap()[..want.len()], want, 1e-6, 1e-5);
                }
            }
        }
        let reach: Vec<usize> = (0..total).filter(|&i| touched(i)).collect();
        // The step's backward adds into the gradient where either sample
        // reaches: cleared there by now (an update deferred to this refresh
        // or gather was applied); elsewhere deferred updates keep theirs.
        let mut gnow = tg.download_f32(gpu).unwrap();
        for &i in &reach {
            assert_eq!(gnow[i], 0.0, "grid cap {grid_cap:?} step {step}: gradient of weight {i} left at the refresh");
            gnow[i] = g[i];
        }
        if !defer {
            assert_eq!(gnow, g, "grid cap {grid_cap:?} step {step}: gradient outside the reach");
        }
        tg.upload(gpu, &gnow).unwrap();
        let (gw, gv) = (tw.download_f32(gpu).unwrap(), tv.download_f32(gpu).unwrap());
        let fresh: Vec<f32> = reach.iter().flat_map(|&i| [gw[i], gv[i]]).collect();
        let want: Vec<f64> = reach.iter().flat_map(|&i| [w[i], v[i]]).collect();
        assert_close(&format!("grid cap {grid_cap:?} step {step}: refreshed weights"), &fresh, &want, 1e-6, 1e-5);
        // The launch that decides the clip record advances the clock on a
        // finite step.
        tclip.upload_at(gpu, 0, &[factor, 0.0, 0.0, f32::from_bits(clock)]).unwrap();
        let mut rec = Recorder::with_step(gpu, &step_buf);
        lazy.norm(&mut rec, &tg, sref).unwrap();
        lazy.update(&mut rec, st, sref, hp).unwrap();
        rec.into_plan().run(gpu, Some(&block)).unwrap();
        gpu.wait().unwrap();
        let tag = format!("grid cap {grid_cap:?} defer {defer} step {step}");
        let partials = lazy.partials.download_f32(gpu).unwrap();
        let got: f64 = partials.iter().map(|&x| x as f64).sum();
        let want = cpu::lazy::norm_sq(&to_f64(&g));
        assert!((got - want).abs() <= 1e-5 * want.max(1.0), "{tag}: norm² {got} vs {want}");
        let (gg, last) = (tg.download_f32(gpu).unwrap(), tlast.download_u32(gpu).unwrap());
        if defer && factor != 0.0 {
            // Deferred: the gradient kept, the clock marked, the factor noted.
            for &i in &reach {
                assert_eq!((gg[i], last[i]), (g[i], clock | PEND), "{tag}: weight {i}'s deferred update");
            }
            let ring = tclip.download_f32(gpu).unwrap();
            assert_eq!(ring[RING_AT + clock as usize % RING], factor, "{tag}: the factor in the ring");
        } else {
            // Applied now, or a non-finite step's dropped: the gradient
            // cleared where the step reached, the clocks those of the update.
            for &i in &reach {
                assert_eq!((gg[i], last[i]), (0.0, clock), "{tag}: weight {i} after the update");
            }
        }
        cpu::lazy::eager_step(&mut w, &mut v, &to_f64(&g), factor as f64, hp);
        if defer && step == 6 {
            // Settled: nothing deferred, the gradient all 0, the weights
            // updated this step at their eager values.
            let mut rec = Recorder::with_step(gpu, &step_buf);
            lazy.settle(&mut rec, st, hp).unwrap();
            rec.into_plan().run(gpu, Some(&block)).unwrap();
            gpu.wait().unwrap();
            let last = tlast.download_u32(gpu).unwrap();
            assert!(last.iter().all(|&l| l & PEND == 0 && l <= clock), "{tag}: settled clocks {last:?}");
            assert!(tg.download_f32(gpu).unwrap().iter().all(|&x| x == 0.0), "{tag}: settled gradient");
            let (gw, gv) = (tw.download_f32(gpu).unwrap(), tv.download_f32(gpu).unwrap());
            let now: Vec<usize> = (0..total).filter(|&i| last[i] == clock).collect();
            assert!(!now.is_empty(), "{tag}: some weight updated this step");
            let got: Vec<f32> = now.iter().flat_map(|&i| [gw[i], gv[i]]).collect();
            let want: Vec<f64> = now.iter().flat_map(|&i| [w[i], v[i]]).collect();
            assert_close(&format!("{tag}: settled weights"), &got, &want, 1e-6, 1e-5);
        }
    }
    let block = StepBlock { lr: hp.lr, ..Default::default() };
    let step_buf = StepBuffer::new(gpu);
    let mut rec = Recorder::with_step(gpu, &step_buf);
    lazy.catch_up(&mut rec, st, hp).unwrap();
    rec.into_plan().run(gpu, Some(&block)).unwrap();
    gpu.wait().unwrap();
    let tag = format!("grid cap {grid_cap:?} defer {defer}, {steps} steps");
    assert_close(&format!("{tag}: weights"), &tw.download_f32(gpu).unwrap(), &w, 1e-6, 1e-5);
    assert_close(&format!("{tag}: momentum"), &tv.download_f32(gpu).unwrap(), &v, 1e-6, 1e-5);
    assert!(tlast.download_u32(gpu).unwrap().iter().all(|&l| l == clock), "{tag}: every weight is up to date");
    assert!(tg.download_f32(gpu).unwrap().iter().all(|&x| x == 0.0), "{tag}: gradient cleared");
    // Clocks that lag up-to-date weights (after eager steps): stamped, the
    // weights and momentum untouched bit for bit.
    let lagging: Vec<u32> = (0..total).map(|_| r.random_range(0..=clock)).collect();
    tlast.upload(gpu, &lagging).unwrap();
    let (w_before, v_before) = (tw.download_f32(gpu).unwrap(), tv.download_f32(gpu).unwrap());
    let mut rec = Recorder::with_step(gpu, &step_buf);
    lazy.stamp(&mut rec, st, hp).unwrap();
    rec.into_plan().run(gpu, Some(&block)).unwrap();
    gpu.wait().unwrap();
    assert!(tlast.download_u32(gpu).unwrap().iter().all(|&l| l == clock), "{tag}: every clock stamped");
    assert_eq!(tw.download_f32(gpu).unwrap(), w_before, "{tag}: stamping changed weights");
    assert_eq!(tv.download_f32(gpu).unwrap(), v_before, "{tag}: stamping changed momentum");
}

/// Trainers are shared across threads by embedders: lazy SGD keeps them
/// `Send + Sync`.
#[test]
fn lazy_state_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Lazy>();
    shareable::<sparsetrain::train::trainer::Trainer>();
}
