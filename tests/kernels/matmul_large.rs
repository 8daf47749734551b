//! Products larger than any grid cap, checked against f64 at sampled
//! outputs: every variant must compute every tile, `coop`'s big block
//! shapes included, with the step's batch below the capacity.

use sparsetrain::ops::matmul::{CoopMode, Dims, Layout, Matmul, Variant};
use sparsetrain::{Recorder, Tensor};

use crate::common::*;
use crate::matmul::{f16_for, matmul_runs, matmul_variants, shapes_of, tol};

/// 400 outputs of C = op(A)·op(B) at random positions, with their f64 values.
fn sampled(r: &mut impl rand::Rng, layout: Layout, d: Dims, a: &[f32], b: &[f32], c: &[f32]) -> (Vec<f32>, Vec<f64>) {
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for _ in 0..400 {
        let (i, j) = (r.random_range(0..d.m), r.random_range(0..d.n));
        let mut s = 0.0f64;
        for p in 0..d.k {
            let av = if layout.trans_a() { a[p * d.m + i] } else { a[i * d.k + p] };
            let bv = if layout.trans_b() { b[j * d.k + p] } else { b[p * d.n + j] };
            s += av as f64 * bv as f64;
        }
        got.push(c[i * d.n + j]);
        want.push(s);
    }
    (got, want)
}

/// Large shapes (more tiles than any grid cap), checked against f64 at
/// sampled outputs: every variant must compute every tile.
#[test]
fn large_matmuls_compute_every_tile() {
    let Some(gpu) = gpu("large_matmuls_compute_every_tile") else { return };
    let d = Dims { m: 700, n: 1100, k: 300 };
    let mut r = rng(2100);
    let a = rand_f32(&mut r, d.m * d.k, -1.0, 1.0);
    let b = rand_f32(&mut r, d.k * d.n, -1.0, 1.0);
    for layout in Layout::ALL {
        let (sa, sb) = shapes_of(layout, d);
        for run in matmul_runs(&gpu, "large_matmuls_compute_every_tile") {
            let variant = run.variant;
            let (a, b) = (f16_for(variant, a.clone()), f16_for(variant, b.clone()));
            let ta = Tensor::from_f32(&gpu, "A", &sa, &a).unwrap();
            let tb = Tensor::from_f32(&gpu, "B", &sb, &b).unwrap();
            let tc = Tensor::from_f32(&gpu, "C", &[d.m, d.n], &vec![f32::NAN; d.m * d.n]).unwrap();
            let mut rec = Recorder::new(&gpu);
            let mm = run.matmul(layout);
            mm.record(&mut rec, &tc, &ta, &tb, d).unwrap();
            rec.finish().unwrap();
            let c = tc.download_f32(&gpu).unwrap();
            let what = run.label();
            let nan = c.iter().filter(|v| v.is_nan()).count();
            assert_eq!(nan, 0, "{what} {}: {nan} outputs never written", layout.name());
            let (got, want) = sampled(&mut r, layout, d, &a, &b, &c);
            assert_close(
                &format!("{what} {} 700x1100x300 sampled", layout.name()),
                &got,
                &want,
                tol(variant, 1e-4),
                1e-5,
            );
        }
    }
}

/// `coop`'s big block shapes, chosen for products of at least 256 such
/// tiles: staged, 4 × 2 subgroups (128 × 64 tiles); from f16 packs, 4 × 4
/// pieces on 2 × 2 subgroups (128 × 128). Against f64 at sampled outputs
/// in every layout, unsplit and split, and with the step's batch as M or K
/// below the capacity. Runs where the adapter has cooperative matrices.
#[test]
fn coop_big_blocks_compute_every_tile() {
    let Some(gpu) = gpu("coop_big_blocks_compute_every_tile") else { return };
    if !matmul_variants(&gpu, "coop_big_blocks_compute_every_tile").iter().any(|v| v.0 == Variant::Coop) {
        return;
    }
    let d = Dims { m: 2048, n: 2050, k: 100 };
    let mut r = rng(2200);
    let a = f16_for(Variant::Coop, rand_f32(&mut r, d.m * d.k, -1.0, 1.0));
    let b = f16_for(Variant::Coop, rand_f32(&mut r, d.k * d.n, -1.0, 1.0));
    let ways =
        [(CoopMode::Direct, false), (CoopMode::Direct, true), (CoopMode::Tiled, true), (CoopMode::Staged, false)];
    for (layout, (coop, unroll)) in Layout::ALL.into_iter().flat_map(|l| ways.map(|w| (l, w))) {
        for split in [1, 3] {
            let (sa, sb) = shapes_of(layout, d);
            let ta = Tensor::from_f32(&gpu, "A", &sa, &a).unwrap();
            let tb = Tensor::from_f32(&gpu, "B", &sb, &b).unwrap();
            let tc = Tensor::from_f32(&gpu, "C", &[d.m, d.n], &vec![f32::NAN; d.m * d.n]).unwrap();
            let mut rec = Recorder::new(&gpu);
            let mm = Matmul::new(layout).variant(Variant::Coop).coop_mode(coop).coop_unroll(unroll).split_k(split);
            mm.record(&mut rec, &tc, &ta, &tb, d).unwrap();
            rec.finish().unwrap();
            let c = tc.download_f32(&gpu).unwrap();
            let tag = format!("coop {coop:?} unroll {unroll} {} split {split} 2048x2050x100", layout.name());
            assert_eq!(c.iter().filter(|v| v.is_nan()).count(), 0, "{tag}: outputs never written");
            let (got, want) = sampled(&mut r, layout, d, &a, &b, &c);
            assert_close(&tag, &got, &want, tol(Variant::Coop, 1e-4), 1e-5);
        }
    }
    // The step's batch as M (a layer's forward product, 1500 rows of 2048)
    // and as K (its weight gradient, 300 of 400: no multiple of 32), below
    // the capacity the big shape is chosen for, with a partial tile along M.
    for (coop, unroll) in ways {
        let mm = |l: Layout| Matmul::new(l).variant(Variant::Coop).coop_mode(coop).coop_unroll(unroll);
        let tag = format!("coop {coop:?} unroll {unroll}");
        let (rows, inner) = (1500, 100);
        let x = f16_for(Variant::Coop, rand_f32(&mut r, d.m * inner, -1.0, 1.0));
        let w = f16_for(Variant::Coop, rand_f32(&mut r, d.n * inner, -1.0, 1.0));
        let tx = Tensor::from_f32(&gpu, "x", &[d.m, inner], &x).unwrap();
        let tw = Tensor::from_f32(&gpu, "w", &[d.n, inner], &w).unwrap();
        let ty = Tensor::from_f32(&gpu, "y", &[d.m, d.n], &vec![f32::NAN; d.m * d.n]).unwrap();
        run_with_batch(&gpu, rows, |rec| {
            mm(Layout::NT).batch_m().record(rec, &ty, &tx, &tw, Dims { m: d.m, n: d.n, k: inner }).unwrap();
        });
        let y = ty.download_f32(&gpu).unwrap();
        assert!(y[rows * d.n..].iter().all(|v| v.is_nan()), "{tag}: rows past the batch written");
        let fwd = Dims { m: rows, n: d.n, k: inner };
        let (got, want) = sampled(&mut r, Layout::NT, fwd, &x[..rows * inner], &w, &y[..rows * d.n]);
        assert_close(&format!("{tag} batch {rows} of {} forward", d.m), &got, &want, tol(Variant::Coop, 1e-4), 1e-5);
        let (cap, rows, width) = (400, 300, 2048);
        let g = f16_for(Variant::Coop, rand_f32(&mut r, cap * d.n, -1.0, 1.0));
        let x = f16_for(Variant::Coop, rand_f32(&mut r, cap * width, -1.0, 1.0));
        let tg = Tensor::from_f32(&gpu, "g", &[cap, d.n], &g).unwrap();
        let tx = Tensor::from_f32(&gpu, "x", &[cap, width], &x).unwrap();
        let tdw = Tensor::from_f32(&gpu, "dw", &[d.n, width], &vec![f32::NAN; d.n * width]).unwrap();
        run_with_batch(&gpu, rows, |rec| {
            mm(Layout::TN).batch_k().record(rec, &tdw, &tg, &tx, Dims { m: d.n, n: width, k: cap }).unwrap();
        });
        let dw = tdw.download_f32(&gpu).unwrap();
        let grad = Dims { m: d.n, n: width, k: rows };
        let (got, want) = sampled(&mut r, Layout::TN, grad, &g[..rows * d.n], &x[..rows * width], &dw);
        assert_close(
            &format!("{tag} batch {rows} of {cap} weight gradient"),
            &got,
            &want,
            tol(Variant::Coop, 1e-4),
            1e-5,
        );
    }
}
