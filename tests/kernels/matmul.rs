use sparsetrain::cpu;
use sparsetrain::ops::matmul::{Dims, Layout, Matmul, Variant};
use sparsetrain::{Recorder, Tensor};

use crate::common::*;

const SHAPES: [(usize, usize, usize); 11] = [
    (1, 1, 1),
    (1, 7, 3),
    (5, 1, 9),
    (4, 8, 12),
    (13, 17, 19),
    (31, 33, 29),
    (64, 64, 64),
    (67, 130, 45),
    (128, 96, 260),
    (3, 5, 1),
    (6, 5, 0),
];

fn shapes_of(layout: Layout, d: Dims) -> ([usize; 2], [usize; 2]) {
    match layout {
        Layout::NN => ([d.m, d.k], [d.k, d.n]),
        Layout::NT => ([d.m, d.k], [d.n, d.k]),
        Layout::TN => ([d.k, d.m], [d.k, d.n]),
    }
}

/// Every variant × layout × awkward shape, overwrite (C poisoned with NaN,
/// so an unwritten element or a read of C with beta = 0 fails) and
/// accumulate with alpha ≠ 1.
#[test]
fn matmul_matches_reference() {
    let Some(gpu) = gpu("matmul_matches_reference") else { return };
    let mut case = 0u64;
    for variant in [Variant::RegTile, Variant::Shared, Variant::Naive] {
        for layout in Layout::ALL {
            for &(m, n, k) in &SHAPES {
                for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, 1.0)] {
                    case += 1;
                    let mut r = rng(1000 + case);
                    let d = Dims { m, n, k };
                    let (sa, sb) = shapes_of(layout, d);
                    let a = rand_f32(&mut r, m * k, -1.0, 1.0);
                    let b = rand_f32(&mut r, k * n, -1.0, 1.0);
                    let c0 = if beta == 0.0 { vec![f32::NAN; m * n] } else { rand_f32(&mut r, m * n, -1.0, 1.0) };
                    let ta = Tensor::from_f32(&gpu, "A", &sa, &a).unwrap();
                    let tb = Tensor::from_f32(&gpu, "B", &sb, &b).unwrap();
                    let tc = Tensor::from_f32(&gpu, "C", &[m, n], &c0).unwrap();
                    let mut rec = Recorder::new(&gpu);
                    let mm = Matmul { layout, alpha, beta, variant: Some(variant) };
                    mm.record(&mut rec, &tc, &ta, &tb, d).unwrap();
                    rec.finish().unwrap();
                    let got = tc.download_f32(&gpu).unwrap();
                    let mut want = if beta == 0.0 { vec![0.0; m * n] } else { to_f64(&c0) };
                    cpu::matmul::matmul(&mut want, &to_f64(&a), &to_f64(&b), layout, alpha as f64, beta as f64, d);
                    let what = format!(
                        "{} {} {m}x{n}x{k} alpha {alpha} beta {beta} (seed {})",
                        variant.name(),
                        layout.name(),
                        1000 + case
                    );
                    assert_close(&what, &got, &want, 1e-5 * (k as f64 + 1.0), 1e-5);
                }
            }
        }
    }
}

/// Operands as views into one flat buffer, as the models use them.
#[test]
fn matmul_on_views() {
    let Some(gpu) = gpu("matmul_on_views") else { return };
    let mut r = rng(7);
    let d = Dims { m: 9, n: 14, k: 11 };
    let a = rand_f32(&mut r, d.m * d.k, -1.0, 1.0);
    let b = rand_f32(&mut r, d.n * d.k, -1.0, 1.0);
    // wgpu forbids one buffer bound read-only and read-write in the same
    // dispatch, even on disjoint ranges: inputs share one buffer, C another.
    let flat = Tensor::zeros(&gpu, "flat", &[1024], sparsetrain::DType::F32).unwrap();
    let out = Tensor::zeros(&gpu, "out", &[1024], sparsetrain::DType::F32).unwrap();
    let ta = flat.view(64, &[d.m, d.k]).unwrap();
    let tb = flat.view(256, &[d.n, d.k]).unwrap();
    let tc = out.view(512, &[d.m, d.n]).unwrap();
    ta.upload(&gpu, &a).unwrap();
    tb.upload(&gpu, &b).unwrap();
    let mut rec = Recorder::new(&gpu);
    Matmul::new(Layout::NT).record(&mut rec, &tc, &ta, &tb, d).unwrap();
    rec.finish().unwrap();
    let mut want = vec![0.0; d.m * d.n];
    cpu::matmul::matmul(&mut want, &to_f64(&a), &to_f64(&b), Layout::NT, 1.0, 0.0, d);
    assert_close("NT on views", &tc.download_f32(&gpu).unwrap(), &want, 1e-4, 1e-5);
    // The rest of the flat buffer is untouched.
    let all = out.download_f32(&gpu).unwrap();
    assert!(all[..512].iter().all(|&v| v == 0.0), "matmul wrote before C");
    assert!(all[512 + d.m * d.n..].iter().all(|&v| v == 0.0), "matmul wrote past C");
}

#[test]
fn matmul_rejects_bad_shapes() {
    let Some(gpu) = gpu("matmul_rejects_bad_shapes") else { return };
    let a = Tensor::zeros(&gpu, "A", &[4, 4], sparsetrain::DType::F32).unwrap();
    let c = Tensor::zeros(&gpu, "C", &[4, 4], sparsetrain::DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    let err = Matmul::new(Layout::NN).record(&mut rec, &c, &a, &a, Dims { m: 4, n: 4, k: 5 }).unwrap_err();
    assert!(err.to_string().contains("matmul"), "{err}");
}
