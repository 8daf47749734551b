use sparsetrain::ops::Rows;
use sparsetrain::ops::pool::{PoolGeom, PoolMode, backward_as, forward_as};
use sparsetrain::{Tensor, cpu};

use crate::common::*;

/// Max and average pooling, forward and backward (gated, accumulated), on
/// even and uneven sizes, global windows and single pixels, all channels or
/// a kept count, rows from the step; a thread per pixel and per value.
#[test]
fn pooling_matches_reference() {
    let Some(gpu) = gpu("pooling_matches_reference") else { return };
    let geoms = [
        PoolGeom { h: 4, w: 4, kh: 2, kw: 2, sh: 2, sw: 2 },
        PoolGeom { h: 5, w: 7, kh: 2, kw: 2, sh: 2, sw: 2 },
        PoolGeom { h: 6, w: 6, kh: 6, kw: 6, sh: 6, sw: 6 },
        PoolGeom { h: 1, w: 1, kh: 1, kw: 1, sh: 1, sw: 1 },
        PoolGeom { h: 9, w: 9, kh: 3, kw: 3, sh: 3, sw: 3 },
    ];
    for (case, g) in geoms.into_iter().enumerate() {
        for (mode, per_pixel) in [PoolMode::Max, PoolMode::Avg].into_iter().flat_map(|m| [(m, false), (m, true)]) {
            for (full, count) in [(5usize, None), (10, Some(6usize))] {
                let mut r = rng(2300 + case as u64);
                let st = stored(full, count);
                let (c, max) = (count.map_or(full, |k| k.div_ceil(4) * 4), st.max());
                let (cap, n) = (3usize, 2usize);
                let (oh, ow) = g.out().unwrap();
                let x = rand_f32(&mut r, cap * g.h * g.w * max, -1.0, 1.0);
                let dy = rand_f32(&mut r, cap * oh * ow * max, -1.0, 1.0);
                let prior = rand_f32(&mut r, x.len(), -1.0, 1.0);
                let dims = Tensor::from_u32(&gpu, "dims", &[1], &[count.unwrap_or(0) as u32]).unwrap();
                let (tx, tdy) = (
                    Tensor::from_f32(&gpu, "x", &[x.len()], &x).unwrap(),
                    Tensor::from_f32(&gpu, "dy", &[dy.len()], &dy).unwrap(),
                );
                let y = Tensor::from_f32(&gpu, "y", &[dy.len()], &vec![9.0; dy.len()]).unwrap();
                let dx = Tensor::from_f32(&gpu, "dx", &[x.len()], &prior).unwrap();
                run_with_batch(&gpu, n, |rec| {
                    forward_as(rec, (&y, &tx, &dims), g, st, Rows::Batch(cap), mode, per_pixel).unwrap();
                    let t = (&dx, &tdy, &tx, &dims);
                    backward_as(rec, t, g, st, Rows::Batch(cap), mode, (true, true), per_pixel).unwrap();
                });
                let tag =
                    format!("{mode:?} {g:?} channels {c}, thread per {}", if per_pixel { "pixel" } else { "value" });
                let xin = to_f64(&x[..n * g.h * g.w * c]);
                let want = cpu::pool::forward(&xin, n, c, g, mode);
                let got = y.download_f32(&gpu).unwrap();
                assert_close(&format!("pool {tag}"), &got[..want.len()], &want, 1e-6, 1e-6);
                assert!(got[want.len()..].iter().all(|&v| v == 9.0), "{tag}: rows past the step were written");
                let want = cpu::pool::backward(&xin, &to_f64(&dy[..n * oh * ow * c]), n, c, g, mode);
                let want: Vec<f64> =
                    want.iter().enumerate().map(|(i, &d)| prior[i] as f64 + if x[i] > 0.0 { d } else { 0.0 }).collect();
                let got = dx.download_f32(&gpu).unwrap();
                assert_close(&format!("pool backward {tag}"), &got[..want.len()], &want, 1e-6, 1e-6);
            }
        }
    }
    // Overlapping windows are refused.
    assert!(PoolGeom { h: 5, w: 5, kh: 3, kw: 3, sh: 2, sw: 2 }.out().is_err());
}
