//! `matmul_thin`, products with a side of at most 16 (`THIN_MAX`), against
//! the f64 reference: N thin and M thin, every layout, unsplit and in 3
//! splits of K, on awkward sizes (a side of 1, primes, the thin side at 16,
//! K empty, of 1, and past the lanes' stride), with the forward epilogue
//! and the gated, accumulating backward one; then sizes read from the
//! device with a scatter into a full-size C, as a sparse step's output
//! layer runs them, and a product with no thin side refused.

use rand::Rng;
use sparsetrain::cpu::matmul::{ScatterRef, matmul_fused};
use sparsetrain::ops::matmul::{Dims, DynDims, Layout, Matmul, Scatter, Variant};
use sparsetrain::{Recorder, Tensor};

use crate::common::*;
use crate::matmul::shapes_of;
use crate::matmul_epilogue::check_epilogues;

// (m, n, k): N thin, then M thin; the last is thin both ways (N is taken).
const SHAPES: [(usize, usize, usize); 12] = [
    (67, 10, 300),
    (129, 12, 1024),
    (300, 1, 7),
    (5, 16, 1029),
    (130, 3, 0),
    (33, 13, 64),
    (10, 300, 67),
    (1, 517, 45),
    (16, 130, 260),
    (3, 1031, 1),
    (7, 129, 2053),
    (7, 9, 5),
];

#[test]
fn thin_matches_reference() {
    let test = "thin_matches_reference";
    let Some(gpu) = gpu(test) else { return };
    let mut case = 0u64;
    for split in [1, 3] {
        let mut trace = Trace::new(test, &format!("thin split {split}"));
        for layout in Layout::ALL {
            for &d in &SHAPES {
                case += 1;
                let mm = Matmul::new(layout).variant(Variant::Thin).split_k(split);
                check_epilogues(&gpu, mm, (Variant::Thin, split), d, 4300 + case);
                trace.case();
            }
        }
    }
    // No thin side: refused, not run wrong.
    let a = Tensor::zeros(&gpu, "A", &[17, 5], sparsetrain::DType::F32).unwrap();
    let b = Tensor::zeros(&gpu, "B", &[5, 17], sparsetrain::DType::F32).unwrap();
    let c = Tensor::zeros(&gpu, "C", &[17, 17], sparsetrain::DType::F32).unwrap();
    let d = Dims { m: 17, n: 17, k: 5 };
    let err = Matmul::new(Layout::NN).variant(Variant::Thin).record(&mut Recorder::new(&gpu), &c, &a, &b, d);
    let err = err.unwrap_err().to_string();
    assert!(err.contains("thin") && err.contains("16"), "{err}");
}

/// Kept counts from the device (padded to 4): N thin with the long side and
/// K kept (a sparse forward product of the output layer), and M thin with N
/// kept and scatter-added into a full-size C through a column map (its
/// weight gradient); each unsplit and in 3 splits, a count of 0 included.
#[test]
fn thin_dynamic_sizes_and_scatter() {
    let test = "thin_dynamic_sizes_and_scatter";
    let Some(gpu) = gpu(test) else { return };
    let mut case = 0u64;
    for split in [1, 3] {
        for layout in Layout::ALL {
            // (thin side, real long side, real k) for each of N thin and M thin.
            for &(thin, rl, rk) in &[(10usize, 37usize, 300usize), (3, 130, 9), (16, 1, 61), (7, 0, 5), (1, 45, 0)] {
                for m_thin in [false, true] {
                    case += 1;
                    let seed = 4400 + case;
                    let mut r = rng(seed);
                    let pad = |x: usize| x.div_ceil(4) * 4;
                    let (long, k) = (pad(rl), pad(rk));
                    let (d, d_max, dyn_m, dyn_n) = if m_thin {
                        (Dims { m: thin, n: long, k }, Dims { m: thin, n: long + 8, k: k + 12 }, None, Some(0))
                    } else {
                        (Dims { m: long, n: thin, k }, Dims { m: long + 8, n: thin, k: k + 12 }, Some(0), None)
                    };
                    let (real_m, real_n) = if m_thin { (thin, rl) } else { (rl, thin) };
                    // Operands laid out at the device's sizes (the padded
                    // counts) in buffers of the capacity, zero past the real
                    // sizes, as compaction leaves them.
                    let (sa, sb) = shapes_of(layout, d);
                    let (dm, dn) = (d.m, d.n);
                    let mut a = vec![0.0f32; d_max.m * d_max.k];
                    for i in 0..sa[0] {
                        for j in 0..sa[1] {
                            let (row, kk) = if layout.trans_a() { (j, i) } else { (i, j) };
                            if row < real_m && kk < rk {
                                a[i * sa[1] + j] = r.random_range(-1.0..1.0);
                            }
                        }
                    }
                    let mut b = vec![0.0f32; d_max.k * d_max.n];
                    for i in 0..sb[0] {
                        for j in 0..sb[1] {
                            let (kk, col) = if layout.trans_b() { (j, i) } else { (i, j) };
                            if kk < rk && col < real_n {
                                b[i * sb[1] + j] = r.random_range(-1.0..1.0);
                            }
                        }
                    }
                    let bias: Vec<f32> = (0..d_max.n).map(|_| r.random_range(-1.0..1.0)).collect();
                    let dims = [rl as u32, rk as u32];
                    let ta = Tensor::from_f32(&gpu, "A", &[a.len()], &a).unwrap();
                    let tb = Tensor::from_f32(&gpu, "B", &[b.len()], &b).unwrap();
                    let tbias = Tensor::from_f32(&gpu, "bias", &[bias.len()], &bias).unwrap();
                    let tdims = Tensor::from_u32(&gpu, "dims", &[2], &dims).unwrap();
                    let dynd = DynDims { dims: &tdims, m: dyn_m, n: dyn_n, k: Some(1) };
                    let len = d_max.m * d_max.n;
                    let tc = Tensor::from_f32(&gpu, "C", &[len], &vec![f32::NAN; len]).unwrap();
                    // A full-size C of shuffled columns (and rows).
                    let (full_m, full_n) = (d_max.m + 5, d_max.n + 11);
                    let (rows, cols) = (shuffled(&mut r, full_m), shuffled(&mut r, full_n));
                    let mut maps = vec![0u32; 3];
                    maps.extend(&rows);
                    maps.extend(&cols);
                    let tmaps = Tensor::from_u32(&gpu, "maps", &[maps.len()], &maps).unwrap();
                    let full0 = rand_f32(&mut r, full_m * full_n, -1.0, 1.0);
                    let tfull = Tensor::from_f32(&gpu, "full", &[full0.len()], &full0).unwrap();
                    let scatter = Scatter {
                        maps: &tmaps,
                        rows: Some(3),
                        cols: Some(3 + full_m),
                        ldc: full_n,
                        col_blocks: 1,
                        col_block_full: full_n,
                    };
                    let mut rec = Recorder::new(&gpu);
                    let mm = Matmul::new(layout).variant(Variant::Thin).split_k(split).dynamic(dynd);
                    mm.bias(&tbias).relu().record(&mut rec, &tc, &ta, &tb, d_max).unwrap();
                    mm.accumulate().scatter(scatter).record(&mut rec, &tfull, &ta, &tb, d_max).unwrap();
                    rec.finish().unwrap();

                    let (a64, b64) = (to_f64(&a[..dm * d.k]), to_f64(&b[..d.k * dn]));
                    let mut want_c = vec![0.0; dm * dn];
                    matmul_fused(
                        &mut want_c,
                        &a64,
                        &b64,
                        layout,
                        1.0,
                        0.0,
                        d,
                        Some(&to_f64(&bias[..dn])),
                        true,
                        None,
                        None,
                    );
                    let mut want_full = to_f64(&full0);
                    let sref = ScatterRef { rows: Some(&rows), cols: Some(&cols), ldc: full_n, real_m, real_n };
                    matmul_fused(&mut want_full, &a64, &b64, layout, 1.0, 1.0, d, None, false, None, Some(&sref));

                    let side = if m_thin { "M thin" } else { "N thin" };
                    let tag =
                        format!("thin split {split} {} {side} {thin}, real {rl} x k {rk} (seed {seed})", layout.name());
                    let got = tc.download_f32(&gpu).unwrap();
                    assert_close(&format!("bias+relu {tag}"), &got[..dm * dn], &want_c, 1e-5 * (k as f64 + 1.0), 1e-5);
                    assert!(got[dm * dn..].iter().all(|v| v.is_nan()), "{tag}: wrote past the dynamic size");
                    let got_full = tfull.download_f32(&gpu).unwrap();
                    assert_close(&format!("scatter {tag}"), &got_full, &want_full, 1e-5 * (k as f64 + 1.0), 1e-5);
                }
            }
        }
    }
}

/// Real (m, n, k) of sample 0 and sample 1.
type PairSizes = [(usize, usize, usize); 2];

/// Both samples' bounds and real sizes of a thin pair: N thin (a bound of
/// 12 columns), then M thin (12 rows); a sample keeps nothing or one of
/// everything.
const THIN_PAIRS: [(PairSizes, Dims); 4] = [
    ([(290, 6, 11), (67, 10, 43)], Dims { m: 296, n: 12, k: 44 }),
    ([(0, 0, 0), (61, 9, 1)], Dims { m: 296, n: 12, k: 44 }),
    ([(5, 70, 9), (12, 13, 43)], Dims { m: 12, n: 72, k: 44 }),
    ([(1, 1, 1), (9, 0, 30)], Dims { m: 12, n: 72, k: 44 }),
];

/// Pairs (`Matmul::record_pair`) on `matmul_thin`, as a sparse step's
/// output layer runs its two mask samples: against the reference and, bit
/// for bit, against the two products one by one, in one launch unsplit
/// and split (see matmul_pair.rs), kept counts from the device or static.
#[test]
fn thin_pairs_match_reference_and_single_products() {
    use crate::matmul::Run;
    use crate::matmul_pair::pair_case;
    let test = "thin_pairs_match_reference_and_single_products";
    let Some(gpu) = gpu(test) else { return };
    let mut case = 0u64;
    for split in [1, 3] {
        let run = Run::plain(Variant::Thin, split);
        // Launches per pair of products, and per pair of scatters (one by
        // one unsplit).
        let per_pair = Some(if split == 1 { (1, Some(2)) } else { (3, Some(3)) });
        let mut trace = Trace::new(test, &run.label());
        for layout in Layout::ALL {
            for (ci, &(sizes, max)) in THIN_PAIRS.iter().enumerate() {
                for kept in [true, false] {
                    // Static sizes: once per bound, both samples at it.
                    if !kept && ci % 2 == 1 {
                        continue;
                    }
                    case += 1;
                    pair_case(&gpu, &run, layout, (sizes, max), kept, 4500 + case, per_pair);
                    trace.case();
                }
            }
        }
    }
}
