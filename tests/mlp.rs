//! Dense MLP on the device: every parameter gradient against the f64
//! reference, the loss falling on a small task, and a training step that
//! reads nothing back.

#[path = "kernels/common.rs"]
mod common;

use common::*;
use rand::Rng;
use sparsetrain::cpu;
use sparsetrain::mlp::{DenseTrainer, Mlp, ParamLayout};
use sparsetrain::ops::optim::Sgd;
use sparsetrain::{Recorder, Tensor};

#[test]
fn gradients_match_f64_reference() {
    let Some(gpu) = gpu("gradients_match_f64_reference") else { return };
    for (case, (sizes, batch)) in
        [(vec![23, 17, 11, 4], 9), (vec![5, 3], 1), (vec![64, 33, 10], 31)].into_iter().enumerate()
    {
        let mut r = rng(800 + case as u64);
        let layout = ParamLayout::new(&sizes).unwrap();
        let mut flat = layout.kaiming_init(case as u64);
        // Non-zero biases so that their path is exercised too.
        for l in 0..layout.layers() {
            for v in &mut flat[layout.b[l]..layout.b[l] + sizes[l + 1]] {
                *v = r.random_range(-0.1..0.1);
            }
        }
        let mlp = Mlp::from_flat(&gpu, layout.clone(), &flat).unwrap();
        let ws = mlp.workspace(&gpu, batch).unwrap();
        let x = rand_f32(&mut r, batch * sizes[0], -1.0, 1.0);
        let classes = *sizes.last().unwrap() as u32;
        let labels: Vec<u32> = (0..batch).map(|_| r.random_range(0..classes)).collect();
        let tx = Tensor::from_f32(&gpu, "x", &[batch, sizes[0]], &x).unwrap();
        let tl = Tensor::from_u32(&gpu, "labels", &[batch], &labels).unwrap();
        let mut rec = Recorder::new(&gpu);
        mlp.forward(&mut rec, &ws, &tx, batch).unwrap();
        mlp.loss(&mut rec, &ws, &tl, batch, 0).unwrap();
        mlp.backward(&mut rec, &ws, &tx, &tl, batch).unwrap();
        rec.finish().unwrap();

        let want = cpu::mlp::forward_backward(&layout, &to_f64(&flat), &to_f64(&x), &labels, batch);
        let grads = mlp.grads.download_f32(&gpu).unwrap();
        let loss = ws.loss().download_f32(&gpu).unwrap()[0];
        assert!(((loss as f64) - want.loss).abs() <= 1e-5 * want.loss.abs().max(1.0), "loss {loss} vs {}", want.loss);
        let logits = ws.logits().download_f32(&gpu).unwrap();
        let c = classes as usize;
        assert_close("logits", &logits[..batch * c], &want.logits, 1e-5, 1e-5);
        for l in 0..layout.layers() {
            let (i, o) = layout.dims(l);
            for (name, off, len) in [("W", layout.w[l], i * o), ("b", layout.b[l], o)] {
                let e = rel_err(&grads[off..off + len], &want.grads[off..off + len]);
                eprintln!("case {case} layer {l} d{name}: relative error {e:e}");
                assert!(e <= 1e-4, "case {case} {sizes:?}: layer {l} d{name} relative error {e:e} > 1e-4");
            }
        }
        // Padding between segments never receives gradient.
        let real: usize = layout.count();
        let nonzero_pad = (0..layout.total)
            .filter(|&j| {
                !(0..layout.layers()).any(|l| {
                    let (i, o) = layout.dims(l);
                    (layout.w[l]..layout.w[l] + i * o).contains(&j) || (layout.b[l]..layout.b[l] + o).contains(&j)
                })
            })
            .filter(|&j| grads[j] != 0.0)
            .count();
        assert_eq!(nonzero_pad, 0, "{real} real parameters; padding was written");
    }
}

/// Four Gaussian blobs in 12 dimensions: easily separable, so a working
/// trainer must drive the loss far down within a few epochs.
fn blobs(seed: u64, n: usize) -> (Vec<f32>, Vec<u32>) {
    let mut r = rng(seed);
    let mut c_rng = rng(99);
    let centres: Vec<Vec<f32>> = (0..4).map(|_| rand_f32(&mut c_rng, 12, -1.5, 1.5)).collect();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let c = r.random_range(0..4usize);
        x.extend(centres[c].iter().map(|v| v + r.random_range(-0.5..0.5)));
        y.push(c as u32);
    }
    (x, y)
}

#[test]
fn dense_training_reduces_loss_and_reads_nothing_back() {
    let Some(gpu) = gpu("dense_training_reduces_loss_and_reads_nothing_back") else { return };
    let batch = 32;
    let (x, y) = blobs(5, 512);
    let mlp = Mlp::new(&gpu, &[12, 32, 16, 4], 3).unwrap();
    let mut trainer = DenseTrainer::new(&gpu, mlp, batch, Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4 }).unwrap();
    let batches: Vec<(Tensor, Tensor)> = (0..512 / batch)
        .map(|b| {
            let xs = &x[b * batch * 12..(b + 1) * batch * 12];
            let ys = &y[b * batch..(b + 1) * batch];
            (Tensor::from_f32(&gpu, "x", &[batch, 12], xs).unwrap(), Tensor::from_u32(&gpu, "y", &[batch], ys).unwrap())
        })
        .collect();
    let mut losses = Vec::new();
    let epochs = 10;
    for epoch in 0..epochs {
        let mut rec = Recorder::new(&gpu);
        trainer.ws.loss().fill_f32(&mut rec, 0.0).unwrap();
        rec.finish().unwrap();
        let before = gpu.readback_stats();
        let mut rec = Recorder::new(&gpu);
        for (bx, by) in &batches {
            trainer.step(&mut rec, bx, by, batch).unwrap();
        }
        rec.finish().unwrap();
        assert_eq!(gpu.readback_stats(), before, "epoch {epoch}: training steps read data back");
        // Only now, to log: slot 1 holds the sum of this epoch's batch losses.
        losses.push(trainer.ws.loss().download_f32(&gpu).unwrap()[1] / batches.len() as f32);
    }
    eprintln!("mean loss by epoch: {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[epochs - 1] < 0.25 * losses[0], "loss did not fall enough: {losses:?}");
    // Accuracy on the training set, counted on the device.
    let mut rec = Recorder::new(&gpu);
    trainer.ws.correct().fill_u32(&mut rec, 0).unwrap();
    for (bx, by) in &batches {
        trainer.mlp.forward(&mut rec, &trainer.ws, bx, batch).unwrap();
        trainer.mlp.count_correct(&mut rec, &trainer.ws, by, batch).unwrap();
    }
    rec.finish().unwrap();
    let correct = trainer.ws.correct().download_u32(&gpu).unwrap()[0];
    assert!(correct >= 480, "only {correct}/512 correct after training");
}
