use rand::Rng;
use sparsetrain::ops::{reduce::Reducer, softmax_xent};
use sparsetrain::{DType, Recorder, Tensor, cpu};

use crate::common::*;

#[test]
fn softmax_xent_matches_reference() {
    let Some(gpu) = gpu("softmax_xent_matches_reference") else { return };
    let reducer = Reducer::new(&gpu).unwrap();
    for (case, &(rows, cols, spread)) in
        [(1, 1, 1.0), (5, 10, 3.0), (67, 13, 3.0), (256, 10, 80.0), (3, 2, 200.0)].iter().enumerate()
    {
        let mut r = rng(400 + case as u64);
        let logits = rand_f32(&mut r, rows * cols, -spread, spread);
        let labels: Vec<u32> = (0..rows).map(|_| r.random_range(0..cols as u32)).collect();
        let tl = Tensor::from_f32(&gpu, "logits", &[rows, cols], &logits).unwrap();
        let tlab = Tensor::from_u32(&gpu, "labels", &[rows], &labels).unwrap();
        let probs = Tensor::zeros(&gpu, "probs", &[rows, cols], DType::F32).unwrap();
        let loss_rows = Tensor::zeros(&gpu, "loss rows", &[rows], DType::F32).unwrap();
        let loss = Tensor::zeros(&gpu, "loss", &[1], DType::F32).unwrap();
        let mut rec = Recorder::new(&gpu);
        softmax_xent::forward(&mut rec, &probs, &loss_rows, &tl, &tlab, rows, cols).unwrap();
        reducer.mean(&mut rec, &loss, 0, &loss_rows, rows).unwrap();
        rec.finish().unwrap();
        let (want_p, want_l) = cpu::softmax_xent::forward(&to_f64(&logits), &labels, rows, cols);
        let tag = format!("{rows}x{cols} spread {spread}");
        assert_close(&format!("probs {tag}"), &probs.download_f32(&gpu).unwrap(), &want_p, 1e-6, 1e-5);
        assert_close(&format!("loss rows {tag}"), &loss_rows.download_f32(&gpu).unwrap(), &want_l, 1e-5, 1e-5);
        let mean = cpu::reduce::mean(&want_l);
        assert_close(&format!("mean loss {tag}"), &loss.download_f32(&gpu).unwrap(), &[mean], 1e-5, 1e-5);
    }
}

/// The training head (`softmax_xent::train`, the only backward of the
/// loss): loss rows at an offset, the gradient (plain and, under loss
/// scaling with S = 1024, S times it) and the accuracy count in one launch,
/// against the f64 references; rows of 1, primes, more than a workgroup.
#[test]
fn softmax_xent_train_head_matches_reference() {
    let Some(gpu) = gpu("softmax_xent_train_head_matches_reference") else { return };
    for (case, &(rows, cols, spread)) in
        [(1, 1, 1.0), (5, 10, 3.0), (67, 13, 3.0), (257, 10, 80.0), (3, 2, 200.0)].iter().enumerate()
    {
        let mut r = rng(450 + case as u64);
        let mut logits = rand_f32(&mut r, rows * cols, -spread, spread);
        if cols > 1 {
            // A tie in the first row: the lowest class wins, as in the reference.
            logits[1] = logits[0];
        }
        let labels: Vec<u32> = (0..rows).map(|_| r.random_range(0..cols as u32)).collect();
        let tl = Tensor::from_f32(&gpu, "logits", &[rows, cols], &logits).unwrap();
        let tlab = Tensor::from_u32(&gpu, "labels", &[rows], &labels).unwrap();
        let off = 3 + rows;
        let loss_rows = Tensor::from_f32(&gpu, "loss rows", &[off + rows], &vec![-7.0; off + rows]).unwrap();
        let dlogits = Tensor::zeros(&gpu, "dlogits", &[rows, cols], DType::F32).unwrap();
        let scaled = Tensor::zeros(&gpu, "scaled", &[rows, cols], DType::F32).unwrap();
        let count = Tensor::from_u32(&gpu, "count", &[1], &[5]).unwrap();
        let record = Tensor::from_f32(&gpu, "clip", &[8], &[0., 0., 0., 0., 1024., 0., 0., 0.]).unwrap();
        let scale = 0.5f32;
        let head = |dlogits, count, loss_scale| softmax_xent::Head {
            logits: &tl,
            labels: &tlab,
            dlogits,
            loss_rows: (&loss_rows, off),
            count,
            loss_scale,
        };
        let mut rec = Recorder::new(&gpu);
        softmax_xent::train(&mut rec, head(&dlogits, Some(&count), None), scale, rows, cols).unwrap();
        softmax_xent::train(&mut rec, head(&scaled, None, Some(&record)), scale, rows, cols).unwrap();
        rec.finish().unwrap();
        let l64 = to_f64(&logits);
        let (want_p, want_l) = cpu::softmax_xent::forward(&l64, &labels, rows, cols);
        let want_d = cpu::softmax_xent::backward(&want_p, &labels, scale as f64 / rows as f64, rows, cols);
        let tag = format!("{rows}x{cols} spread {spread}");
        let got_rows = loss_rows.download_f32(&gpu).unwrap();
        assert!(got_rows[..off].iter().all(|&v| v == -7.0), "{tag}: rows before the offset were written");
        assert_close(&format!("loss rows {tag}"), &got_rows[off..], &want_l, 1e-5, 1e-5);
        assert_close(&format!("dlogits {tag}"), &dlogits.download_f32(&gpu).unwrap(), &want_d, 1e-7, 1e-5);
        let want_scaled: Vec<f64> = want_d.iter().map(|v| v * 1024.0).collect();
        let got = scaled.download_f32(&gpu).unwrap();
        assert_close(&format!("loss-scaled dlogits {tag}"), &got, &want_scaled, 1024e-7, 1e-5);
        let want_count = 5 + cpu::accuracy::accuracy_count(&l64, &labels, rows, cols);
        assert_eq!(count.download_u32(&gpu).unwrap(), [want_count], "{tag}: accuracy count");
    }
}

/// The training head on the step's batch (fewer rows than the capacity it
/// was recorded for): the mean's divisor is the batch, and rows past it keep
/// what they held.
#[test]
fn softmax_xent_train_head_uses_the_step_batch() {
    use sparsetrain::ops::Rows;
    let Some(gpu) = gpu("softmax_xent_train_head_uses_the_step_batch") else { return };
    let (cap, batch, cols) = (67usize, 40usize, 10usize);
    let mut r = rng(470);
    let logits = rand_f32(&mut r, cap * cols, -3.0, 3.0);
    let labels: Vec<u32> = (0..cap).map(|_| r.random_range(0..cols as u32)).collect();
    let tl = Tensor::from_f32(&gpu, "logits", &[cap, cols], &logits).unwrap();
    let tlab = Tensor::from_u32(&gpu, "labels", &[cap], &labels).unwrap();
    let loss_rows = Tensor::from_f32(&gpu, "loss rows", &[cap], &vec![-7.0; cap]).unwrap();
    let dlogits = Tensor::from_f32(&gpu, "dlogits", &[cap, cols], &vec![-9.0; cap * cols]).unwrap();
    let count = Tensor::from_u32(&gpu, "count", &[1], &[0]).unwrap();
    run_with_batch(&gpu, batch, |rec| {
        let head = softmax_xent::Head {
            logits: &tl,
            labels: &tlab,
            dlogits: &dlogits,
            loss_rows: (&loss_rows, 0),
            count: Some(&count),
            loss_scale: None,
        };
        softmax_xent::train(rec, head, 1.0, Rows::Batch(cap), cols).unwrap();
    });
    let l64 = to_f64(&logits[..batch * cols]);
    let (want_p, want_l) = cpu::softmax_xent::forward(&l64, &labels[..batch], batch, cols);
    let want_d = cpu::softmax_xent::backward(&want_p, &labels[..batch], 1.0 / batch as f64, batch, cols);
    let (got_l, got_d) = (loss_rows.download_f32(&gpu).unwrap(), dlogits.download_f32(&gpu).unwrap());
    assert_close("loss rows of the batch", &got_l[..batch], &want_l, 1e-5, 1e-5);
    assert_close("dlogits of the batch", &got_d[..batch * cols], &want_d, 1e-7, 1e-5);
    assert!(got_l[batch..].iter().all(|&v| v == -7.0), "loss rows past the batch were written");
    assert!(got_d[batch * cols..].iter().all(|&v| v == -9.0), "gradient rows past the batch were written");
    let want_count = cpu::accuracy::accuracy_count(&l64, &labels[..batch], batch, cols);
    assert_eq!(count.download_u32(&gpu).unwrap(), [want_count], "accuracy count over the batch");
    // An output in an input's buffer is refused (it would be overwritten
    // while read, and wgpu forbids the binding).
    let head = softmax_xent::Head {
        logits: &tl,
        labels: &tlab,
        dlogits: &tl,
        loss_rows: (&loss_rows, 0),
        count: None,
        loss_scale: None,
    };
    assert!(softmax_xent::train(&mut Recorder::new(&gpu), head, 1.0, cap, cols).is_err(), "dlogits over the logits");
}
