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

/// Pairs of implicit convolution products (`Matmul::record_pair` with
/// `Implicit`): both mask samples' forward, weight-gradient and
/// input-gradient products, each sample with its own kept input and output
/// channels (counts read on the device; one sample may keep none) and its
/// own X, W and dY at their offsets in shared buffers, in every variant
/// and split, against the f64 product of the explicit im2col and col2im
/// per sample and, bit for bit, against the same products one by one, in
/// fewer launches (f32 variants).
#[test]
fn implicit_pairs_match_reference_and_single_products() {
    with_single_workgroup("implicit_pairs_match_reference_and_single_products", implicit_pair_cases);
}

fn implicit_pair_cases(gpu: &sparsetrain::Gpu, label: &str) {
    use sparsetrain::ops::matmul::{Implicit, Size, Variant};
    const TEST: &str = "implicit_pairs_match_reference_and_single_products";
    // Kept (input, output) channels of sample 0 and sample 1, of at most 12 each.
    const KEPT: [[(usize, usize); 2]; 3] = [[(5, 7), (12, 3)], [(4, 0), (9, 12)], [(1, 1), (8, 8)]];
    const CMAX: usize = 12;
    let geoms = conv_geoms();
    let mut case = 0u64;
    for g in [geoms[0], geoms[1], geoms[3], geoms[5]] {
        for kept in KEPT {
            for (variant, split) in crate::matmul::matmul_variants(gpu, TEST) {
                let run = crate::matmul::Run::plain(variant, split);
                case += 1;
                let mut r = rng(3900 + case);
                let (cap, n) = (3usize, 2usize);
                let (oh, ow) = g.out().unwrap();
                let (pixels, plane, taps) = (oh * ow, g.h * g.w, g.kh * g.kw);
                let (rows_cap, rows) = (cap * pixels, n * pixels);
                let pad = |c: usize| c.div_ceil(4) * 4;
                // Each sample's operands, stored at its padded kept counts
                // with zero padding channels (as a compacted pass stores them).
                let chans = |count: usize, stored: usize, len: usize, r: &mut rand::rngs::StdRng| -> Vec<f32> {
                    let v = rand_f32(r, len, -1.0, 1.0);
                    let v = v.iter().enumerate().map(|(i, &x)| if i % stored < count { x } else { 0.0 }).collect();
                    f16_for(variant, v)
                };
                let mut ops = Vec::new();
                for &(kin, kout) in &kept {
                    let (ci, co) = (pad(kin), pad(kout));
                    let x = chans(kin, ci.max(1), cap * plane * ci, &mut r);
                    // W [co, taps, ci]: rows past kout zero too.
                    let w: Vec<f32> = chans(kin, ci.max(1), co * taps * ci, &mut r)
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| if i / (taps * ci) < kout { v } else { 0.0 })
                        .collect();
                    let dy = chans(kout, co.max(1), rows_cap * co, &mut r);
                    ops.push((x, w, dy));
                }
                let dims: Vec<u32> = kept.iter().flat_map(|&(i, o)| [i as u32, o as u32]).collect();
                let tdims = Tensor::from_u32(gpu, "dims", &[4], &dims).unwrap();
                let (len_x, len_w, len_dy) = (cap * plane * CMAX, CMAX * taps * CMAX, rows_cap * CMAX);
                let tx = joint(gpu, "x", len_x, [&ops[0].0, &ops[1].0]);
                let tw = joint(gpu, "w", len_w, [&ops[0].1, &ops[1].1]);
                let tdy = joint(gpu, "dy", len_dy, [&ops[0].2, &ops[1].2]);
                let nan = vec![f32::NAN; rows_cap * CMAX];
                let dw0 = rand_f32(&mut r, len_w, -1.0, 1.0);
                let dx0 = rand_f32(&mut r, len_x, -1.0, 1.0);
                // Paired into (y, dw, dx), one by one into the primed copies.
                let outs = || {
                    [
                        joint(gpu, "y", rows_cap * CMAX, [&nan, &nan]),
                        joint(gpu, "dw", len_w, [&dw0, &dw0]),
                        joint(gpu, "dx", len_x, [&dx0, &dx0]),
                    ]
                };
                let (paired, single) = (outs(), outs());
                let kin = |j: usize| Size::Kept { count: 2 * j, blocks: 1 };
                let kout = |j: usize| Size::Kept { count: 2 * j + 1, blocks: 1 };
                let fwd = |j: usize| {
                    let k = Size::Kept { count: 2 * j, blocks: taps };
                    run.matmul(Layout::NT).implicit(Implicit::A(g)).sizes(
                        Some(&tdims),
                        Size::Batch { per: pixels },
                        kout(j),
                        k,
                    )
                };
                let wgrad = |j: usize| {
                    let n = Size::Kept { count: 2 * j, blocks: taps };
                    run.matmul(Layout::TN).accumulate().implicit(Implicit::B(g)).sizes(
                        Some(&tdims),
                        kout(j),
                        n,
                        Size::Batch { per: pixels },
                    )
                };
                let dgrad = |j: usize| {
                    let k = Size::Kept { count: 2 * j + 1, blocks: taps };
                    run.matmul(Layout::NN).accumulate().gate(&tx[j]).implicit(Implicit::Dx(g)).sizes(
                        Some(&tdims),
                        Size::Batch { per: plane },
                        kin(j),
                        k,
                    )
                };
                let d_fwd = Dims { m: rows_cap, n: CMAX, k: taps * CMAX };
                let d_w = Dims { m: CMAX, n: taps * CMAX, k: rows_cap };
                let d_x = Dims { m: cap * plane, n: CMAX, k: taps * CMAX };
                let mut launches = [0usize; 2];
                run_with_batch(gpu, n, |rec| {
                    let [y, dw, dx] = &paired;
                    fwd(0).record_pair(rec, (&y[0], &tx[0], &tw[0]), &fwd(1), (&y[1], &tx[1], &tw[1]), d_fwd).unwrap();
                    let ops1 = (&dw[1], &tdy[1], &tx[1]);
                    wgrad(0).record_pair(rec, (&dw[0], &tdy[0], &tx[0]), &wgrad(1), ops1, d_w).unwrap();
                    dgrad(0)
                        .record_pair(rec, (&dx[0], &tdy[0], &tw[0]), &dgrad(1), (&dx[1], &tdy[1], &tw[1]), d_x)
                        .unwrap();
                    launches[0] = rec.dispatches();
                    let [y, dw, dx] = &single;
                    for j in 0..2 {
                        fwd(j).record(rec, &y[j], &tx[j], &tw[j], d_fwd).unwrap();
                        wgrad(j).record(rec, &dw[j], &tdy[j], &tx[j], d_w).unwrap();
                        dgrad(j).record(rec, &dx[j], &tdy[j], &tw[j], d_x).unwrap();
                    }
                    launches[1] = rec.dispatches() - launches[0];
                });
                let tag = format!("{} {g:?} kept {kept:?}{label} (case {case})", run.label());
                if variant != Variant::Coop && gpu.pairs() {
                    assert!(launches[0] < launches[1], "{tag}: {launches:?} launches paired and one by one");
                }
                let same = |what: &str, j: usize, p: &Tensor, s: &Tensor| {
                    let what = format!("{tag}: sample {j} {what} paired (got) vs one by one (want)");
                    assert_same_bits(&what, &p.download_f32(gpu).unwrap(), &s.download_f32(gpu).unwrap());
                };
                for (j, &(kin, kout)) in kept.iter().enumerate() {
                    for (what, (p, s)) in ["Y", "dW", "dX"].iter().zip(paired.iter().zip(&single)) {
                        same(what, j, &p[j], &s[j]);
                    }
                    let (ci, co) = (pad(kin), pad(kout));
                    let (x, w, dy) = (&ops[j].0, &ops[j].1, &ops[j].2);
                    let cols = cpu::conv::im2col(&to_f64(&x[..n * plane * ci]), n, ci, g);
                    let (w64, dy64) = (to_f64(w), to_f64(&dy[..rows * co]));
                    let mut want = vec![0.0; rows * co];
                    cpu::matmul::matmul(
                        &mut want,
                        &cols,
                        &w64,
                        Layout::NT,
                        1.0,
                        0.0,
                        Dims { m: rows, n: co, k: taps * ci },
                    );
                    let got = paired[0][j].download_f32(gpu).unwrap();
                    assert_close(
                        &format!("paired forward {tag} sample {j}"),
                        &got[..want.len()],
                        &want,
                        tol(variant, 1e-5),
                        1e-5,
                    );
                    assert!(got[want.len()..].iter().all(|v| v.is_nan()), "{tag}: sample {j} wrote past its forward");
                    let mut want = to_f64(&dw0[..co * taps * ci]);
                    let d = Dims { m: co, n: taps * ci, k: rows };
                    cpu::matmul::matmul(&mut want, &dy64, &cols, Layout::TN, 1.0, 1.0, d);
                    let got = paired[1][j].download_f32(gpu).unwrap();
                    assert_close(
                        &format!("paired weight gradient {tag} sample {j}"),
                        &got[..want.len()],
                        &want,
                        tol(variant, 1e-4),
                        1e-5,
                    );
                    assert_eq!(
                        got[want.len()..],
                        dw0[want.len()..],
                        "{tag}: sample {j} wrote past its weight gradient"
                    );
                    let mut dcols = vec![0.0; rows * taps * ci];
                    cpu::matmul::matmul(
                        &mut dcols,
                        &dy64,
                        &w64,
                        Layout::NN,
                        1.0,
                        0.0,
                        Dims { m: rows, n: taps * ci, k: co },
                    );
                    let dx = cpu::conv::col2im(&dcols, n, ci, g);
                    let want: Vec<f64> =
                        dx.iter().enumerate().map(|(i, &v)| dx0[i] as f64 + if x[i] > 0.0 { v } else { 0.0 }).collect();
                    let got = paired[2][j].download_f32(gpu).unwrap();
                    assert_close(
                        &format!("paired input gradient {tag} sample {j}"),
                        &got[..want.len()],
                        &want,
                        tol(variant, 1e-5),
                        1e-5,
                    );
                    assert_eq!(got[want.len()..], dx0[want.len()..], "{tag}: sample {j} wrote past its input gradient");
                }
            }
        }
    }
}

/// The probe behind the per-adapter choice of how convolutions run
/// (`ops::autotune_conv`): both ways (im2col's columns, implicit operands)
/// build, compute the same products, and time positive and finite with
/// the device's matmul variant. With the autotune off (as in every test)
/// or on a CPU adapter nothing is probed: the rule stands.
#[test]
fn convolution_paths_probe_both_ways() {
    use sparsetrain::ops::autotune::Runs;
    use sparsetrain::ops::autotune_conv::{paths_disagree, probe};
    let Some(gpu) = gpu("convolution_paths_probe_both_ways") else { return };
    let diff = paths_disagree(&gpu).unwrap();
    assert!(diff < 1e-4, "columns and implicit operands differ by {diff} (relative to the largest value)");
    let t = probe(&gpu, Runs { min: 1, max: 1, budget_s: 0.0, inner: 1 }).unwrap();
    for (way, s) in [("columns", t.columns_s), ("implicit", t.implicit_s)] {
        assert!(s.is_finite() && s > 0.0, "{way}: {s} s per step");
    }
    sparsetrain::ops::autotune::ensure(&gpu).unwrap();
    let rule = gpu.matmul_variant() == sparsetrain::ops::matmul::Variant::RegTile;
    if std::env::var("SPARSETRAIN_IMPLICIT").is_err() {
        assert_eq!(gpu.implicit_convs(), rule, "the rule, with the autotune off");
    }
}
