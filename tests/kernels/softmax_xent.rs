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
        let dlogits = Tensor::zeros(&gpu, "dlogits", &[rows, cols], DType::F32).unwrap();
        let scale = 0.5f32;
        let mut rec = Recorder::new(&gpu);
        softmax_xent::forward(&mut rec, &probs, &loss_rows, &tl, &tlab, rows, cols).unwrap();
        reducer.mean(&mut rec, &loss, 0, &loss_rows, rows).unwrap();
        softmax_xent::backward(&mut rec, &dlogits, &probs, &tlab, scale, rows, cols, None).unwrap();
        // Under loss scaling (S = 1024 in slot 4 of a clip record): S times
        // the gradient (not bit-exactly: the compiler may order the factors
        // differently).
        let record = Tensor::from_f32(&gpu, "clip", &[8], &[0., 0., 0., 0., 1024., 0., 0., 0.]).unwrap();
        let scaled = Tensor::zeros(&gpu, "scaled", &[rows, cols], DType::F32).unwrap();
        softmax_xent::backward(&mut rec, &scaled, &probs, &tlab, scale, rows, cols, Some(&record)).unwrap();
        rec.finish().unwrap();
        let (want_p, want_l) = cpu::softmax_xent::forward(&to_f64(&logits), &labels, rows, cols);
        let want_d = cpu::softmax_xent::backward(&want_p, &labels, scale as f64 / rows as f64, rows, cols);
        let tag = format!("{rows}x{cols} spread {spread}");
        assert_close(&format!("probs {tag}"), &probs.download_f32(&gpu).unwrap(), &want_p, 1e-6, 1e-5);
        assert_close(&format!("loss rows {tag}"), &loss_rows.download_f32(&gpu).unwrap(), &want_l, 1e-5, 1e-5);
        let mean = cpu::reduce::mean(&want_l);
        assert_close(&format!("mean loss {tag}"), &loss.download_f32(&gpu).unwrap(), &[mean], 1e-5, 1e-5);
        assert_close(&format!("dlogits {tag}"), &dlogits.download_f32(&gpu).unwrap(), &want_d, 1e-7, 1e-5);
        let want_scaled: Vec<f64> = want_d.iter().map(|v| v * 1024.0).collect();
        let got = scaled.download_f32(&gpu).unwrap();
        assert_close(&format!("loss-scaled dlogits {tag}"), &got, &want_scaled, 1024e-7, 1e-5);
    }
}
