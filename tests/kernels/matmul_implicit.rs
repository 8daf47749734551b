//! Implicit convolution operands (IMPLICIT) of the matmul family against
//! the explicit im2col and col2im, in every variant.

use sparsetrain::cpu;
use sparsetrain::ops::matmul::{Dims, Layout, Matmul};
use sparsetrain::{DType, Recorder, Tensor};

use crate::common::*;
use crate::matmul::{f16_for, matmul_runs, tol};

/// Implicit convolution operands (IMPLICIT) in every variant: the forward
/// product with A = im2col(X) (layout A·Bᵀ) and the weight gradient with
/// B = im2col(X) (layout Aᵀ·B, accumulated) against the f64 product of the
/// explicit im2col, and the input gradient col2im(dY·W) as one product
/// (gated, accumulated) against the explicit col2im; awkward geometries (strides, padding, 1×1, a single
/// pixel, rectangular kernels), 4 to 12 channels, and a step batch below the
/// capacity (rows past it untouched), on the default grid and on one
/// workgroup walking every tile. A channel count that is not a multiple
/// of 4 is refused.
#[test]
fn implicit_convolution_operands_match_im2col() {
    with_single_workgroup("implicit_convolution_operands_match_im2col", implicit_cases);
}

fn implicit_cases(gpu: &sparsetrain::Gpu, label: &str) {
    use sparsetrain::ops::conv::ConvGeom;
    use sparsetrain::ops::matmul::{Implicit, Size};
    let geoms = conv_geoms();
    let mut case = 0u64;
    for g in geoms {
        for c in [4usize, 8, 12] {
            // Forced `wide` tiles are left to the other tests: an implicit
            // operand goes through the element loaders, whose indices the
            // tile only offsets, and each tile is a minute of lavapipe's
            // pipeline compiles here.
            let runs = matmul_runs(gpu, "implicit_convolution_operands_match_im2col");
            for run in runs.into_iter().filter(|r| r.tile.is_none()) {
                let variant = run.variant;
                case += 1;
                let mut r = rng(3100 + case);
                let (cap, n, co) = (3usize, 2usize, 5usize);
                let (oh, ow) = g.out().unwrap();
                let (pixels, kdim) = (oh * ow, g.kh * g.kw * c);
                let (rows_cap, rows) = (cap * pixels, n * pixels);
                let x = rand_f32(&mut r, cap * g.h * g.w * c, -1.0, 1.0);
                let w = rand_f32(&mut r, co * kdim, -1.0, 1.0);
                let dy = rand_f32(&mut r, rows_cap * co, -1.0, 1.0);
                let dw0 = rand_f32(&mut r, co * kdim, -1.0, 1.0);
                let (x, w, dy) = (f16_for(variant, x), f16_for(variant, w), f16_for(variant, dy));
                let tx = Tensor::from_f32(gpu, "x", &[x.len()], &x).unwrap();
                let tw = Tensor::from_f32(gpu, "w", &[co, kdim], &w).unwrap();
                let tdy = Tensor::from_f32(gpu, "dy", &[rows_cap, co], &dy).unwrap();
                let ty = Tensor::from_f32(gpu, "y", &[rows_cap, co], &vec![f32::NAN; rows_cap * co]).unwrap();
                let tdw = Tensor::from_f32(gpu, "dw", &[co, kdim], &dw0).unwrap();
                let per = Size::Batch { per: pixels };
                run_with_batch(gpu, n, |rec| {
                    run.matmul(Layout::NT)
                        .implicit(Implicit::A(g))
                        .sizes(None, per, Size::Static, Size::Static)
                        .record(rec, &ty, &tx, &tw, Dims { m: rows_cap, n: co, k: kdim })
                        .unwrap();
                    run.matmul(Layout::TN)
                        .accumulate()
                        .implicit(Implicit::B(g))
                        .sizes(None, Size::Static, Size::Static, per)
                        .record(rec, &tdw, &tdy, &tx, Dims { m: co, n: kdim, k: rows_cap })
                        .unwrap();
                });
                let tag = format!("{} {g:?} channels {c}{label}", run.label());
                let cols = cpu::conv::im2col(&to_f64(&x[..n * g.h * g.w * c]), n, c, g);
                let mut want = vec![0.0; rows * co];
                cpu::matmul::matmul(
                    &mut want,
                    &cols,
                    &to_f64(&w),
                    Layout::NT,
                    1.0,
                    0.0,
                    Dims { m: rows, n: co, k: kdim },
                );
                let got = ty.download_f32(gpu).unwrap();
                assert_close(&format!("implicit forward {tag}"), &got[..want.len()], &want, tol(variant, 1e-5), 1e-5);
                assert!(got[want.len()..].iter().all(|v| v.is_nan()), "{tag}: rows past the step's batch written");
                let mut want = to_f64(&dw0);
                let d = Dims { m: co, n: kdim, k: rows };
                cpu::matmul::matmul(&mut want, &to_f64(&dy[..rows * co]), &cols, Layout::TN, 1.0, 1.0, d);
                let got = tdw.download_f32(gpu).unwrap();
                assert_close(&format!("implicit weight gradient {tag}"), &got, &want, tol(variant, 1e-4), 1e-5);

                // dX = col2im(dY·W) in one product (12 output channels: in
                // fours; a split of K's 32 then starts inside a kernel
                // position), gated by X > 0 and added to what dX held.
                let co = 12usize;
                let w = f16_for(variant, rand_f32(&mut r, co * kdim, -1.0, 1.0));
                let dy = f16_for(variant, rand_f32(&mut r, rows_cap * co, -1.0, 1.0));
                let dx0 = rand_f32(&mut r, x.len(), -1.0, 1.0);
                let tw = Tensor::from_f32(gpu, "w", &[co, kdim], &w).unwrap();
                let tdy = Tensor::from_f32(gpu, "dy", &[rows_cap, co], &dy).unwrap();
                let tdx = Tensor::from_f32(gpu, "dx", &[x.len()], &dx0).unwrap();
                let plane = g.h * g.w;
                run_with_batch(gpu, n, |rec| {
                    run.matmul(Layout::NN)
                        .accumulate()
                        .gate(&tx)
                        .implicit(Implicit::Dx(g))
                        .sizes(None, Size::Batch { per: plane }, Size::Static, Size::Static)
                        .record(rec, &tdx, &tdy, &tw, Dims { m: cap * plane, n: c, k: g.kh * g.kw * co })
                        .unwrap();
                });
                let mut dcols = vec![0.0; rows * kdim];
                let d = Dims { m: rows, n: kdim, k: co };
                cpu::matmul::matmul(&mut dcols, &to_f64(&dy[..rows * co]), &to_f64(&w), Layout::NN, 1.0, 0.0, d);
                let dx = cpu::conv::col2im(&dcols, n, c, g);
                let want: Vec<f64> =
                    dx.iter().enumerate().map(|(i, &v)| dx0[i] as f64 + if x[i] > 0.0 { v } else { 0.0 }).collect();
                let got = tdx.download_f32(gpu).unwrap();
                assert_close(
                    &format!("implicit input gradient {tag}"),
                    &got[..want.len()],
                    &want,
                    tol(variant, 1e-5),
                    1e-5,
                );
                assert_eq!(got[want.len()..], dx0[want.len()..], "{tag}: dX past the step's batch written");
            }
        }
    }
    // Three channels per kernel position cannot be read in fours.
    let g = ConvGeom { h: 4, w: 4, kh: 3, kw: 3, stride: 1, pad: 1 };
    let t = Tensor::zeros(gpu, "t", &[4096], DType::F32).unwrap();
    let mut rec = Recorder::new(gpu);
    let e = Matmul::new(Layout::NT)
        .implicit(Implicit::A(g))
        .record(&mut rec, &t, &t, &t, Dims { m: 16, n: 2, k: 27 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiple of 4"), "{e}");
    let e = Matmul::new(Layout::TN)
        .implicit(Implicit::A(g))
        .record(&mut rec, &t, &t, &t, Dims { m: 16, n: 2, k: 36 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("transposed"), "{e}");
}
