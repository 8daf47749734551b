use sparsetrain::ops::Rows;
use sparsetrain::ops::conv::{ConvGeom, col2im, im2col, im2col_as};
use sparsetrain::{DType, Tensor, cpu};

use crate::common::*;

/// im2col and col2im against the reference: odd sizes, strides, padding,
/// 1×1 kernels, a single pixel, all channels or a kept count padded to 4,
/// and a step batch smaller than the capacity (rows past it untouched).
#[test]
fn im2col_and_col2im_match_reference() {
    let Some(gpu) = gpu("im2col_and_col2im_match_reference") else { return };
    let geoms = conv_geoms();
    for (case, g) in geoms.into_iter().enumerate() {
        // Stored channels 3 and 6 take the single-float path, 8, 12 and 16
        // the vec4 path.
        for (full, count) in [(3usize, None), (6, None), (8, None), (11, Some(5usize)), (13, Some(13)), (4, Some(0))] {
            let mut r = rng(2100 + case as u64);
            let st = stored(full, count);
            // Buffers hold the largest layout; the data is laid out with the
            // channels the device stores for this count.
            let (c, max) = (count.map_or(full, |k| k.div_ceil(4) * 4), st.max());
            let (cap, n) = (4usize, 3usize);
            let (oh, ow) = g.out().unwrap();
            let kept = count.unwrap_or(full);
            // Padding channels of a compacted tensor are zero, as kernels write them.
            let mut x = rand_f32(&mut r, cap * g.h * g.w * max, -1.0, 1.0);
            for (i, v) in x.iter_mut().enumerate() {
                if c == 0 || i % c >= kept {
                    *v = 0.0;
                }
            }
            let dims = Tensor::from_u32(&gpu, "dims", &[1], &[count.unwrap_or(0) as u32]).unwrap();
            let tx = Tensor::from_f32(&gpu, "x", &[x.len()], &x).unwrap();
            let row = g.kh * g.kw * c;
            let cols_len = cap * oh * ow * g.kh * g.kw * max;
            let cols = Tensor::from_f32(&gpu, "cols", &[cols_len], &vec![7.0; cols_len]).unwrap();
            // The other thread layout of im2col (per row on GPUs, per
            // position on CPU adapters) gives the same columns.
            let cols_other = Tensor::from_f32(&gpu, "cols", &[cols_len], &vec![7.0; cols_len]).unwrap();
            let per_row_here = gpu.report().device_type == wgpu::DeviceType::Cpu;
            let dcols_h = rand_f32(&mut r, cols_len, -1.0, 1.0);
            let dcols = Tensor::from_f32(&gpu, "dcols", &[dcols_h.len()], &dcols_h).unwrap();
            let prior = rand_f32(&mut r, x.len(), -1.0, 1.0);
            let dx = Tensor::from_f32(&gpu, "dx", &[x.len()], &prior).unwrap();
            let dx_acc = Tensor::from_f32(&gpu, "dx acc", &[x.len()], &prior).unwrap();
            run_with_batch(&gpu, n, |rec| {
                im2col(rec, &cols, &tx, &dims, g, st, Rows::Batch(cap)).unwrap();
                im2col_as(rec, &cols_other, &tx, &dims, g, st, Rows::Batch(cap), !per_row_here).unwrap();
                col2im(rec, &dx, &dcols, None, &dims, g, st, Rows::Batch(cap), false).unwrap();
                col2im(rec, &dx_acc, &dcols, Some(&tx), &dims, g, st, Rows::Batch(cap), true).unwrap();
            });
            let tag = format!("{g:?} channels {c} (kept {kept})");
            let want = cpu::conv::im2col(&to_f64(&x[..n * g.h * g.w * c]), n, c, g);
            let got = cols.download_f32(&gpu).unwrap();
            assert_close(&format!("im2col {tag}"), &got[..want.len()], &want, 0.0, 0.0);
            assert!(got[want.len()..].iter().all(|&v| v == 7.0), "{tag}: im2col wrote past the step's batch");
            assert_eq!(got, cols_other.download_f32(&gpu).unwrap(), "{tag}: the two im2col thread layouts differ");
            let dcols64 = to_f64(&dcols_h[..n * oh * ow * row]);
            let want = cpu::conv::col2im(&dcols64, n, c, g);
            let got = dx.download_f32(&gpu).unwrap();
            assert_close(&format!("col2im {tag}"), &got[..want.len()], &want, 1e-6, 1e-6);
            assert_eq!(got[want.len()..], prior[want.len()..], "{tag}: col2im wrote past the step's batch");
            let want: Vec<f64> =
                want.iter().enumerate().map(|(i, &v)| prior[i] as f64 + if x[i] > 0.0 { v } else { 0.0 }).collect();
            let got = dx_acc.download_f32(&gpu).unwrap();
            assert_close(&format!("col2im gated, accumulated {tag}"), &got[..want.len()], &want, 1e-6, 1e-6);
        }
    }
    // Geometry the kernel does not fit is an error, not a panic.
    let bad = ConvGeom { h: 2, w: 2, kh: 5, kw: 5, stride: 1, pad: 0 };
    let t = Tensor::zeros(&gpu, "t", &[64], DType::F32).unwrap();
    let d = Tensor::zeros(&gpu, "d", &[1], DType::U32).unwrap();
    assert!(im2col(&mut sparsetrain::Recorder::new(&gpu), &t, &t, &d, bad, stored(1, None), Rows::Fixed(1)).is_err());
    // Kernels past 7×7 are refused by name.
    let big = ConvGeom { h: 9, w: 9, kh: 9, kw: 9, stride: 1, pad: 4 };
    let e = big.out().unwrap_err().to_string();
    assert!(e.contains("9x9") && e.contains("49"), "{e}");
}
