//! `matmul_pack` (the f16 packs of the mixed-precision matmul) against its
//! CPU reference, bit for bit: every layout and side, awkward sizes, block
//! tiles, values that round to even, overflow, subnormals and zeros, sizes
//! read on the device and implicit convolution operands. A plain kernel
//! (integer rounding, no f16 support needed): it runs on every adapter.

use sparsetrain::cpu;
use sparsetrain::ops::matmul::{Dims, DynDims, Implicit, Layout, Matmul, Size};
use sparsetrain::{Recorder, Tensor};

use crate::common::*;
use crate::matmul::shapes_of;

/// Values whose rounding to f16 is a corner: ties to even (down and up), a
/// carry into the exponent, the largest half and what rounds to it or past
/// it, subnormals (one rounding up to the smallest normal), the smallest
/// ones' ties and just below, an f32 subnormal, signed zero, infinities.
const CORNERS: [f32; 20] = [
    2047.99,
    6.1032e-5,
    2.98e-8,
    1.0e-40,
    1.0 + 1.0 / 2048.0,
    1.0 + 3.0 / 2048.0,
    -(1.0 + 3.0 / 2048.0),
    65504.0,
    65519.0,
    65520.0,
    -70000.0,
    6.1035156e-5,
    6.0e-5,
    1.0e-6,
    2.9802322e-8,
    4.4703484e-8,
    1.0e-9,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
];

/// Random values in [-2, 2] with the corners (and a NaN) mixed in.
fn values(r: &mut rand::rngs::StdRng, len: usize) -> Vec<f32> {
    use rand::Rng;
    let mut v = rand_f32(r, len, -2.0, 2.0);
    for x in v.iter_mut() {
        if r.random_range(0..4) == 0 {
            *x = CORNERS[r.random_range(0..CORNERS.len())];
        } else if r.random_range(0..200) == 0 {
            *x = f32::NAN;
        }
    }
    v
}

/// The pack as u32 against the reference: equal bits, NaN for NaN.
fn assert_pack(what: &str, got: &[u32], want: &[u32]) {
    assert!(got.len() >= want.len(), "{what}: pack of {} u32, want at least {}", got.len(), want.len());
    let halves = |w: u32| [(w & 0xffff) as u16, (w >> 16) as u16];
    let nan = |h: u16| h & 0x7c00 == 0x7c00 && h & 0x3ff != 0;
    let mut bad = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        for (j, (gh, wh)) in halves(g).into_iter().zip(halves(w)).enumerate() {
            if gh != wh && !(nan(gh) && nan(wh)) {
                bad.push(format!("[{}] got {gh:#06x} want {wh:#06x}", 2 * i + j));
            }
        }
    }
    assert!(bad.is_empty(), "{what}: {} halves differ; first: {}", bad.len(), bad[..bad.len().min(8)].join(", "));
    eprintln!("{what}: ok, {} halves equal", 2 * want.len());
}

/// Both packs of a product (A's, B's) against the reference of `a` and `b`
/// (as stored) for sizes `d` on `tile` blocks.
fn assert_packs(
    gpu: &sparsetrain::Gpu,
    what: &str,
    (pa, pb): &(Tensor, Tensor),
    (a, b): (&[f32], &[f32]),
    layout: Layout,
    d: Dims,
    tile: (u32, u32),
) {
    let t = (tile.0 as usize, tile.1 as usize);
    for (side, out, x, b_side) in [("A", pa, a, false), ("B", pb, b, true)] {
        let want = cpu::matmul::f16_pack(x, layout, d, b_side, t);
        assert_pack(&format!("{what}: {side}"), &out.download_u32(gpu).unwrap(), &want);
    }
}

/// Plain operands: every layout, both sides, awkward sizes (1, primes, an
/// empty K) on block tiles of 64 × 64, 128 × 128 and 8 × 16.
#[test]
fn f16_packs_match_reference() {
    let Some(gpu) = gpu("f16_packs_match_reference") else { return };
    let mut case = 0u64;
    for layout in Layout::ALL {
        for &(m, n, k) in &[(1usize, 1usize, 1usize), (5, 7, 9), (31, 33, 29), (67, 130, 45), (3, 2, 70), (4, 4, 0)] {
            for tile in [(64u32, 64u32), (128, 128), (8, 16)] {
                case += 1;
                let mut r = rng(4100 + case);
                let d = Dims { m, n, k };
                let (sa, sb) = shapes_of(layout, d);
                let a = values(&mut r, m * k);
                let b = values(&mut r, k * n);
                let ta = Tensor::from_f32(&gpu, "A", &sa, &a).unwrap();
                let tb = Tensor::from_f32(&gpu, "B", &sb, &b).unwrap();
                let tc = Tensor::zeros(&gpu, "C", &[m, n], sparsetrain::DType::F32).unwrap();
                let mut rec = Recorder::new(&gpu);
                let packs = Matmul::new(layout).record_packs(&mut rec, (&tc, &ta, &tb), d, tile).unwrap();
                rec.finish().unwrap();
                let what = format!("pack {} {m}x{n}x{k} tile {tile:?}", layout.name());
                assert_packs(&gpu, &what, &packs, (&a, &b), layout, d, tile);
            }
        }
    }
}

/// Sizes read on the device (kept counts, padded to 4) below static
/// capacities: the pack is laid out for the counts, dense; a count of 0
/// leaves an empty product.
#[test]
fn f16_packs_of_kept_sizes() {
    let Some(gpu) = gpu("f16_packs_of_kept_sizes") else { return };
    let mut case = 0u64;
    for layout in Layout::ALL {
        for &(rm, rn, rk) in &[(5usize, 7usize, 9usize), (13, 1, 30), (17, 30, 0), (2, 3, 37)] {
            case += 1;
            let mut r = rng(4200 + case);
            let pad = |x: usize| x.div_ceil(4) * 4;
            let d = Dims { m: pad(rm), n: pad(rn), k: pad(rk) };
            let cap = Dims { m: d.m + 8, n: d.n + 4, k: d.k + 12 };
            // Compacted operands: the real values, zero padding to 4.
            let (sa, sb) = shapes_of(layout, d);
            let fill = |r: &mut rand::rngs::StdRng, [rows, cols]: [usize; 2], real: [usize; 2]| {
                let v = values(r, rows * cols);
                (0..rows * cols)
                    .map(|i| if i / cols < real[0] && i % cols < real[1] { v[i] } else { 0.0 })
                    .collect::<Vec<f32>>()
            };
            let (ra, rb) = match layout {
                Layout::NN => ([rm, rk], [rk, rn]),
                Layout::NT => ([rm, rk], [rn, rk]),
                Layout::TN => ([rk, rm], [rk, rn]),
            };
            let a = fill(&mut r, sa, ra);
            let b = fill(&mut r, sb, rb);
            let big = |v: &[f32], len: usize| {
                let mut out = v.to_vec();
                out.resize(len, 7.0);
                out
            };
            let ta = Tensor::from_f32(&gpu, "A", &[cap.m * cap.k], &big(&a, cap.m * cap.k)).unwrap();
            let tb = Tensor::from_f32(&gpu, "B", &[cap.k * cap.n], &big(&b, cap.k * cap.n)).unwrap();
            let tc = Tensor::zeros(&gpu, "C", &[cap.m, cap.n], sparsetrain::DType::F32).unwrap();
            let dims = Tensor::from_u32(&gpu, "dims", &[3], &[rm as u32, rn as u32, rk as u32]).unwrap();
            let mut rec = Recorder::new(&gpu);
            let mm = Matmul::new(layout).dynamic(DynDims { dims: &dims, m: Some(0), n: Some(1), k: Some(2) });
            let packs = mm.record_packs(&mut rec, (&tc, &ta, &tb), cap, (64, 64)).unwrap();
            rec.finish().unwrap();
            let what = format!("kept pack {} {rm}x{rn}x{rk}", layout.name());
            assert_packs(&gpu, &what, &packs, (&a, &b), layout, d, (64, 64));
        }
    }
}

/// Implicit convolution operands (im2col of X, forward and weight
/// gradient) pack as their explicit im2col does, with a step batch below
/// the capacity.
#[test]
fn f16_packs_of_implicit_operands() {
    let Some(gpu) = gpu("f16_packs_of_implicit_operands") else { return };
    let mut case = 0u64;
    for g in conv_geoms() {
        case += 1;
        let mut r = rng(4300 + case);
        let (cap, n, c, co) = (3usize, 2usize, 8usize, 5usize);
        let (oh, ow) = g.out().unwrap();
        let (pixels, kdim) = (oh * ow, g.kh * g.kw * c);
        let (rows_cap, rows) = (cap * pixels, n * pixels);
        let x = values(&mut r, cap * g.h * g.w * c);
        let w = values(&mut r, co * kdim);
        let dy = values(&mut r, rows_cap * co);
        let tx = Tensor::from_f32(&gpu, "x", &[x.len()], &x).unwrap();
        let tw = Tensor::from_f32(&gpu, "w", &[co, kdim], &w).unwrap();
        let tdy = Tensor::from_f32(&gpu, "dy", &[rows_cap, co], &dy).unwrap();
        let ty = Tensor::zeros(&gpu, "y", &[rows_cap, co], sparsetrain::DType::F32).unwrap();
        let tdw = Tensor::zeros(&gpu, "dw", &[co, kdim], sparsetrain::DType::F32).unwrap();
        let per = Size::Batch { per: pixels };
        // im2col of the batch's samples, in f32 (exact: a gather).
        let x64: Vec<f64> = x[..n * g.h * g.w * c].iter().map(|&v| f64::from(v)).collect();
        let cols: Vec<f32> = cpu::conv::im2col(&x64, n, c, g).iter().map(|&v| v as f32).collect();
        let mut packs = None;
        run_with_batch(&gpu, n, |rec| {
            let fwd = Matmul::new(Layout::NT).implicit(Implicit::A(g)).sizes(None, per, Size::Static, Size::Static);
            let pa = fwd.record_packs(rec, (&ty, &tx, &tw), Dims { m: rows_cap, n: co, k: kdim }, (64, 64));
            let grad = Matmul::new(Layout::TN).implicit(Implicit::B(g)).sizes(None, Size::Static, Size::Static, per);
            let pb = grad.record_packs(rec, (&tdw, &tdy, &tx), Dims { m: co, n: kdim, k: rows_cap }, (64, 64));
            // The implicit operand of each: the forward's A, the gradient's B.
            packs = Some((pa.unwrap().0, pb.unwrap().1));
        });
        let (pa, pb) = packs.unwrap();
        let tag = format!("{g:?}");
        let want = cpu::matmul::f16_pack(&cols, Layout::NT, Dims { m: rows, n: co, k: kdim }, false, (64, 64));
        assert_pack(&format!("implicit A {tag}"), &pa.download_u32(&gpu).unwrap(), &want);
        let want = cpu::matmul::f16_pack(&cols, Layout::TN, Dims { m: co, n: kdim, k: rows }, true, (64, 64));
        assert_pack(&format!("implicit B {tag}"), &pb.download_u32(&gpu).unwrap(), &want);
    }
}

#[test]
fn f16_packs_refuse_bad_tiles() {
    let Some(gpu) = gpu("f16_packs_refuse_bad_tiles") else { return };
    let t = Tensor::zeros(&gpu, "t", &[16], sparsetrain::DType::F32).unwrap();
    let d = Dims { m: 4, n: 4, k: 4 };
    let mut rec = Recorder::new(&gpu);
    for tile in [(0, 64), (64, 12), (7, 8)] {
        let err = Matmul::new(Layout::NN).record_packs(&mut rec, (&t, &t, &t), d, tile).unwrap_err();
        assert!(err.to_string().contains("multiples of 8"), "{tile:?}: {err}");
    }
}
