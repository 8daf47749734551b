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
