use sparsetrain::ops::relu;
use sparsetrain::{Recorder, Tensor, cpu};

use crate::common::*;

#[test]
fn relu_forward_backward_match_reference() {
    let Some(gpu) = gpu("relu_forward_backward_match_reference") else { return };
    for (case, &n) in [1usize, 255, 256, 1000, 70001].iter().enumerate() {
        let mut r = rng(300 + case as u64);
        let x = rand_f32(&mut r, n, -1.0, 1.0);
        let dy = rand_f32(&mut r, n, -1.0, 1.0);
        let tx = Tensor::from_f32(&gpu, "x", &[n], &x).unwrap();
        let tdy = Tensor::from_f32(&gpu, "dy", &[n], &dy).unwrap();
        let mut rec = Recorder::new(&gpu);
        relu::relu_forward(&mut rec, &tx, 1, n).unwrap();
        relu::relu_backward(&mut rec, &tdy, &tx, 1, n).unwrap();
        rec.finish().unwrap();
        let mut want_y = to_f64(&x);
        cpu::relu::relu_forward(&mut want_y);
        let mut want_dy = to_f64(&dy);
        cpu::relu::relu_backward(&mut want_dy, &want_y);
        assert_close(&format!("relu fwd n={n}"), &tx.download_f32(&gpu).unwrap(), &want_y, 0.0, 0.0);
        assert_close(&format!("relu bwd n={n}"), &tdy.download_f32(&gpu).unwrap(), &want_dy, 0.0, 0.0);
    }
}
