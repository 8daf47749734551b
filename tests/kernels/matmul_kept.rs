//! Matmuls whose inner size is a kept count, as compressed layers multiply
//! them (`Size::Kept`: the count padded to 4, per block, the padding zero in
//! both operands), against the f64 product: the sizes the device derives
//! from the kept count, per block and in the implicit convolutions.

use sparsetrain::cpu;
use sparsetrain::ops::conv::ConvGeom;
use sparsetrain::ops::matmul::{Dims, Implicit, Layout, Matmul, Size};
use sparsetrain::{Gpu, Tensor};

use crate::common::*;
use crate::matmul::{f16_for, matmul_runs, tol};

/// Zeroes the padding of rows of `blocks` blocks of `kp` values, of which
/// the first `k` of each block are real.
fn zero_padding(v: Vec<f32>, k: usize, kp: usize) -> Vec<f32> {
    v.into_iter().enumerate().map(|(i, x)| if i % kp >= k { 0.0 } else { x }).collect()
}

/// Every tail of the last four (1 to 4 real values), one and three blocks,
/// in a plain product (A·Bᵀ) and in the implicit convolutions whose inner
/// size is kept channels (the forward reads kept input channels, the input
/// gradient kept output channels), in every variant, on the default grid
/// and on one workgroup walking every tile.
#[test]
fn kept_inner_sizes_match_reference() {
    with_single_workgroup("kept_inner_sizes_match_reference", kept_cases);
}

fn kept_cases(gpu: &Gpu, label_: &str) {
    let geoms: [ConvGeom; 2] = [conv_geoms()[0], conv_geoms()[1]];
    let mut case = 0u64;
    for k in [1usize, 2, 3, 4, 5, 6, 7, 9] {
        let kp = k.div_ceil(4) * 4;
        let dims = Tensor::from_u32(gpu, "dims", &[4], &[k as u32, 0, 0, 0]).unwrap();
        for run in matmul_runs(gpu, "kept_inner_sizes_match_reference") {
            let variant = run.variant;
            let tag = |what: &str| format!("{what}, {} kept {k}{label_}", run.label());
            for blocks in [1usize, 3] {
                case += 1;
                let mut r = rng(4100 + case);
                let (m, n, kd) = (7usize, 6usize, kp * blocks);
                let a = f16_for(variant, zero_padding(rand_f32(&mut r, m * kd, -1.0, 1.0), k, kp));
                let b = f16_for(variant, zero_padding(rand_f32(&mut r, n * kd, -1.0, 1.0), k, kp));
                let ta = Tensor::from_f32(gpu, "a", &[m, kd], &a).unwrap();
                let tb = Tensor::from_f32(gpu, "b", &[n, kd], &b).unwrap();
                let tc = Tensor::from_f32(gpu, "c", &[m, n], &vec![f32::NAN; m * n]).unwrap();
                run_with_batch(gpu, 1, |rec| {
                    run.matmul(Layout::NT)
                        .sizes(Some(&dims), Size::Static, Size::Static, Size::Kept { count: 0, blocks })
                        .record(rec, &tc, &ta, &tb, Dims { m, n, k: kd })
                        .unwrap();
                });
                let mut want = vec![0.0; m * n];
                let d = Dims { m, n, k: kd };
                cpu::matmul::matmul(&mut want, &to_f64(&a), &to_f64(&b), Layout::NT, 1.0, 0.0, d);
                let got = tc.download_f32(gpu).unwrap();
                assert_close(&tag(&format!("A·Bᵀ over {blocks} blocks")), &got, &want, tol(variant, 1e-5), 1e-5);
            }
            for g in geoms {
                case += 1;
                let mut r = rng(4100 + case);
                let (batch, taps) = (2usize, g.kh * g.kw);
                let (oh, ow) = g.out().unwrap();
                let rows = batch * oh * ow;
                // Forward: X with k kept channels (stored kp), W [5, taps, kp].
                let co = 5usize;
                let x = f16_for(variant, zero_padding(rand_f32(&mut r, batch * g.h * g.w * kp, -1.0, 1.0), k, kp));
                let w = f16_for(variant, zero_padding(rand_f32(&mut r, co * taps * kp, -1.0, 1.0), k, kp));
                let tx = Tensor::from_f32(gpu, "x", &[x.len()], &x).unwrap();
                let tw = Tensor::from_f32(gpu, "w", &[co, taps * kp], &w).unwrap();
                let ty = Tensor::from_f32(gpu, "y", &[rows, co], &vec![f32::NAN; rows * co]).unwrap();
                run_with_batch(gpu, batch, |rec| {
                    run.matmul(Layout::NT)
                        .implicit(Implicit::A(g))
                        .sizes(Some(&dims), Size::Static, Size::Static, Size::Kept { count: 0, blocks: taps })
                        .record(rec, &ty, &tx, &tw, Dims { m: rows, n: co, k: taps * kp })
                        .unwrap();
                });
                let cols = cpu::conv::im2col(&to_f64(&x), batch, kp, g);
                let mut want = vec![0.0; rows * co];
                let d = Dims { m: rows, n: co, k: taps * kp };
                cpu::matmul::matmul(&mut want, &cols, &to_f64(&w), Layout::NT, 1.0, 0.0, d);
                let got = ty.download_f32(gpu).unwrap();
                assert_close(&tag(&format!("implicit forward {g:?}")), &got, &want, tol(variant, 1e-5), 1e-5);

                // Input gradient: dY with k kept output channels (stored
                // kp), W [kp, taps, 4] with its padding rows zero.
                let c = 4usize;
                let dy = f16_for(variant, zero_padding(rand_f32(&mut r, rows * kp, -1.0, 1.0), k, kp));
                let mut w = rand_f32(&mut r, kp * taps * c, -1.0, 1.0);
                w[k * taps * c..].iter_mut().for_each(|v| *v = 0.0);
                let w = f16_for(variant, w);
                let tdy = Tensor::from_f32(gpu, "dy", &[rows, kp], &dy).unwrap();
                let tw = Tensor::from_f32(gpu, "w", &[kp, taps * c], &w).unwrap();
                let plane = g.h * g.w;
                let tdx =
                    Tensor::from_f32(gpu, "dx", &[batch * plane * c], &vec![f32::NAN; batch * plane * c]).unwrap();
                run_with_batch(gpu, batch, |rec| {
                    run.matmul(Layout::NN)
                        .implicit(Implicit::Dx(g))
                        .sizes(Some(&dims), Size::Static, Size::Static, Size::Kept { count: 0, blocks: taps })
                        .record(rec, &tdx, &tdy, &tw, Dims { m: batch * plane, n: c, k: taps * kp })
                        .unwrap();
                });
                let mut dcols = vec![0.0; rows * taps * c];
                let d = Dims { m: rows, n: taps * c, k: kp };
                cpu::matmul::matmul(&mut dcols, &to_f64(&dy), &to_f64(&w), Layout::NN, 1.0, 0.0, d);
                let want = cpu::conv::col2im(&dcols, batch, c, g);
                let got = tdx.download_f32(gpu).unwrap();
                assert_close(&tag(&format!("implicit input gradient {g:?}")), &got, &want, tol(variant, 1e-5), 1e-5);
            }
        }
    }
}

/// A compressed convolution's weight gradient as the layer records it —
/// kept output and input channels, K over the step's batch of pixels, a
/// scatter into the full-size gradient by column blocks — without a forced
/// split, so that the launcher's own rule decides: on CPU adapters (long K,
/// a kept count sets M and N) it splits K, and the result must not change.
#[test]
fn auto_split_weight_gradient_matches_reference() {
    use sparsetrain::ops::matmul::{Scatter, auto_splits};
    let Some(gpu) = gpu("auto_split_weight_gradient_matches_reference") else { return };
    let g = ConvGeom { h: 16, w: 16, kh: 3, kw: 3, stride: 1, pad: 1 };
    let (cap, n, pixels, taps) = (40usize, 37usize, 256usize, 9usize);
    let (full_in, full_out) = (8usize, 8usize);
    let (kept_out, kept_in): (Vec<u32>, Vec<u32>) = (vec![0, 2, 3, 5, 7], vec![1, 2, 3, 4, 6, 7]);
    let (ko, ki) = (kept_out.len(), kept_in.len());
    let (ko_p, ki_p) = (ko.div_ceil(4) * 4, ki.div_ceil(4) * 4);
    let rows = n * pixels;
    let mut r = rng(4900);
    // Compacted X [cap pixels, ki_p] and dY [cap pixels, ko_p], zero-padded.
    let x = zero_padding(rand_f32(&mut r, cap * pixels * ki_p, -1.0, 1.0), ki, ki_p);
    let dy = zero_padding(rand_f32(&mut r, cap * pixels * ko_p, -1.0, 1.0), ko, ko_p);
    let dw0 = rand_f32(&mut r, full_out * taps * full_in, -1.0, 1.0);
    let dims = Tensor::from_u32(&gpu, "dims", &[2], &[ko as u32, ki as u32]).unwrap();
    let mut maps = vec![0u32, 0];
    maps.extend(&kept_out);
    maps.extend(&kept_in);
    let tmaps = Tensor::from_u32(&gpu, "maps", &[maps.len()], &maps).unwrap();
    let tx = Tensor::from_f32(&gpu, "x", &[x.len()], &x).unwrap();
    let tdy = Tensor::from_f32(&gpu, "dy", &[cap * pixels, ko_p], &dy).unwrap();
    let tdw = Tensor::from_f32(&gpu, "dw", &[full_out, taps * full_in], &dw0).unwrap();
    let d = Dims { m: full_out, n: taps * full_in, k: cap * pixels };
    let report = gpu.report();
    let variant = gpu.matmul_variant();
    let splits = auto_splits(report.device_type, variant, 1, d.k as u32, true, false);
    println!("{:?} adapter, {}: {splits} splits of K by the launcher's rule", report.device_type, variant.name());
    if report.device_type == wgpu::DeviceType::Cpu {
        assert!(splits > 1, "the launcher's rule no longer splits this product on CPU adapters");
    }
    run_with_batch(&gpu, n, |rec| {
        Matmul::new(Layout::TN)
            .accumulate()
            .sizes(
                Some(&dims),
                Size::Kept { count: 0, blocks: 1 },
                Size::Kept { count: 1, blocks: taps },
                Size::Batch { per: pixels },
            )
            .implicit(Implicit::B(g))
            .scatter(Scatter {
                maps: &tmaps,
                rows: Some(2),
                cols: Some(2 + ko),
                ldc: taps * full_in,
                col_blocks: taps,
                col_block_full: full_in,
            })
            .record(rec, &tdw, &tdy, &tx, d)
            .unwrap();
    });
    // dW[kept_out[o], t, kept_in[c]] += Σ_rows dY[row, o] · im2col(X)[row, t, c].
    let cols = cpu::conv::im2col(&to_f64(&x[..rows * ki_p]), n, ki_p, g);
    let mut want = to_f64(&dw0);
    for (o, &fo) in kept_out.iter().enumerate() {
        for t in 0..taps {
            for (c, &fc) in kept_in.iter().enumerate() {
                let s: f64 =
                    (0..rows).map(|row| f64::from(dy[row * ko_p + o]) * cols[row * taps * ki_p + t * ki_p + c]).sum();
                want[fo as usize * taps * full_in + t * full_in + fc as usize] += s;
            }
        }
    }
    let got = tdw.download_f32(&gpu).unwrap();
    let tag = format!("weight gradient, {} with {splits} splits of K = {rows}", variant.name());
    assert_close(&tag, &got, &want, 1e-4, 1e-5);
}
