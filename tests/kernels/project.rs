use sparsetrain::ops::project::{Projection, project_scores};
use sparsetrain::{Recorder, Tensor, cpu};

use crate::common::*;

#[test]
fn projection_matches_reference_and_meets_the_budget() {
    let Some(gpu) = gpu("projection_matches_reference_and_meets_the_budget") else { return };
    let mut case = 0;
    for &n in &[1usize, 7, 1000, 5003] {
        for init in ["uniform", "half", "wide"] {
            for keep in [0.1f32, 0.5, 2.0] {
                case += 1;
                let mut r = rng(1200 + case);
                let s: Vec<f32> = match init {
                    "uniform" => rand_f32(&mut r, n, 0.0, 1.0),
                    "half" => vec![0.5; n],
                    // Outside [0, 1] too, as after an optimizer step.
                    _ => rand_f32(&mut r, n, -0.5, 1.5),
                };
                let budget = keep * n as f32;
                let pr = Projection::new(budget);
                let ts = Tensor::from_f32(&gpu, "s", &[n], &s).unwrap();
                let shift = Tensor::from_f32(&gpu, "shift", &[1], &[f32::NAN]).unwrap();
                let mut rec = Recorder::new(&gpu);
                project_scores(&mut rec, &ts, &shift, pr, n).unwrap();
                rec.finish().unwrap();
                let got = ts.download_f32(&gpu).unwrap();
                let v = shift.download_f32(&gpu).unwrap()[0];
                let mut want = to_f64(&s);
                let want_v = cpu::project::project_scores(&mut want, pr);
                let tag = format!("n={n} {init} keep={keep}");
                assert!((v as f64 - want_v).abs() <= 1e-3, "{tag}: shift {v} vs {want_v}");
                assert_close(&format!("projected {tag}"), &got, &want, 1e-3, 0.0);
                assert!(got.iter().all(|x| (0.0..=1.0).contains(x)), "{tag}: outside [0, 1]");
                let sum: f64 = got.iter().map(|&x| x as f64).sum();
                assert!(sum <= budget as f64 + 2e-3 * (n as f64).sqrt().max(1.0), "{tag}: sum {sum} > budget {budget}");
            }
        }
    }
}

#[test]
fn initial_half_scores_project_to_keep() {
    // method.md: s starts at 0.5, the first projection pulls it to `keep`.
    let Some(gpu) = gpu("initial_half_scores_project_to_keep") else { return };
    let n = 2048;
    let ts = Tensor::from_f32(&gpu, "s", &[n], &vec![0.5; n]).unwrap();
    let shift = Tensor::from_f32(&gpu, "shift", &[1], &[0.0]).unwrap();
    let mut rec = Recorder::new(&gpu);
    project_scores(&mut rec, &ts, &shift, Projection::new(0.1 * n as f32), n).unwrap();
    rec.finish().unwrap();
    let got = ts.download_f32(&gpu).unwrap();
    assert!(got.iter().all(|&x| (x - 0.1).abs() < 1e-3), "first values {:?}", &got[..4]);
}
