//! The store epilogues at static sizes, with N a multiple of 4 (whole vec4
//! of C, bias and gate at once) and not (element by element): the forward
//! one (+ bias, ReLU) and the backward one (alpha, a ReLU gate holding
//! zeros and NaN, added into C), for every variant at its splits of K
//! (split-K stores through `matmul_split_reduce`) and every layout.

use sparsetrain::cpu::matmul::matmul_fused;
use sparsetrain::ops::matmul::{Dims, Layout, Matmul, Variant};
use sparsetrain::{Recorder, Tensor};

use crate::common::*;
use crate::matmul::{f16_for, label, matmul_variants, shapes_of, tol};

// (m, n, k): N of 12 and 36 store whole vec4; 7, 6 and 1 do not.
const SHAPES: [(usize, usize, usize); 5] = [(5, 7, 9), (13, 12, 19), (67, 36, 45), (33, 6, 70), (9, 1, 5)];

#[test]
fn epilogues_match_reference_aligned_or_not() {
    let test = "epilogues_match_reference_aligned_or_not";
    let Some(gpu) = gpu(test) else { return };
    let mut case = 0u64;
    for (variant, split) in matmul_variants(&gpu, test) {
        let mut trace = Trace::new(test, &label(variant, split));
        for layout in Layout::ALL {
            for &d in &SHAPES {
                case += 1;
                let mm = Matmul::new(layout).variant(variant).split_k(split);
                check_epilogues(&gpu, mm, (variant, split), d, 4100 + case);
                trace.case();
            }
        }
    }
}

/// One case: `mm` (its layout, variant and splits as asked) forward (C =
/// relu(A·B + bias), C poisoned) and backward (C = 0.5·(A·B) gated + C,
/// the gate holding exact zeros, which gate, and NaN, which do not: `<= 0`
/// is false) on seeded operands of m × n × k, against the f64 reference.
pub(crate) fn check_epilogues(
    gpu: &sparsetrain::Gpu,
    mm: Matmul,
    (variant, split): (Variant, u32),
    (m, n, k): (usize, usize, usize),
    seed: u64,
) {
    let layout = mm.layout;
    let mut r = rng(seed);
    let d = Dims { m, n, k };
    let (sa, sb) = shapes_of(layout, d);
    let a = f16_for(variant, rand_f32(&mut r, m * k, -1.0, 1.0));
    let b = f16_for(variant, rand_f32(&mut r, k * n, -1.0, 1.0));
    let bias = rand_f32(&mut r, n, -1.0, 1.0);
    let mut gate = rand_f32(&mut r, m * n, -1.0, 1.0);
    for (i, g) in gate.iter_mut().enumerate() {
        match i % 7 {
            3 => *g = 0.0,
            5 => *g = f32::NAN,
            _ => {}
        }
    }
    let acc = rand_f32(&mut r, m * n, -1.0, 1.0);
    let ta = Tensor::from_f32(gpu, "A", &sa, &a).unwrap();
    let tb = Tensor::from_f32(gpu, "B", &sb, &b).unwrap();
    let tbias = Tensor::from_f32(gpu, "bias", &[n.max(1)], &if n == 0 { vec![0.0] } else { bias.clone() }).unwrap();
    let tgate =
        Tensor::from_f32(gpu, "gate", &[(m * n).max(1)], &if m * n == 0 { vec![0.0] } else { gate.clone() }).unwrap();
    let tf = Tensor::from_f32(gpu, "C fwd", &[(m * n).max(1)], &vec![f32::NAN; (m * n).max(1)]).unwrap();
    let acc_t = if m * n == 0 { vec![0.0] } else { acc.clone() };
    let tg = Tensor::from_f32(gpu, "C back", &[acc_t.len()], &acc_t).unwrap();
    let mut rec = Recorder::new(gpu);
    mm.bias(&tbias).relu().record(&mut rec, &tf, &ta, &tb, d).unwrap();
    let mut back = mm.gate(&tgate).accumulate();
    back.alpha = 0.5;
    back.record(&mut rec, &tg, &ta, &tb, d).unwrap();
    rec.finish().unwrap();

    let (a64, b64) = (to_f64(&a), to_f64(&b));
    let mut want_f = vec![0.0; m * n];
    matmul_fused(&mut want_f, &a64, &b64, layout, 1.0, 0.0, d, Some(&to_f64(&bias)), true, None, None);
    let mut want_g = to_f64(&acc);
    matmul_fused(&mut want_g, &a64, &b64, layout, 0.5, 1.0, d, None, false, Some(&to_f64(&gate)), None);
    let what = |s: &str| format!("{s} {} {} {m}x{n}x{k} (seed {seed})", label(variant, split), layout.name());
    let abs = tol(variant, 1e-5 * (k as f64 + 1.0));
    let got_f = tf.download_f32(gpu).unwrap();
    assert_close(&what("bias + relu"), &got_f[..m * n], &want_f, abs, tol(variant, 1e-5));
    let got_g = tg.download_f32(gpu).unwrap();
    assert_close(&what("gated accumulate"), &got_g[..m * n], &want_g, abs, tol(variant, 1e-5));
}
