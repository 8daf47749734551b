//! Pairs (`Matmul::record_pair`): the same product of two mask samples in
//! one launch, each on its own operands, kept counts and bias, against the
//! f64 reference per sample and, bit for bit, against the two products
//! recorded one by one. Sizes are kept counts read on the device (each
//! sample's at its own entries of one dims tensor) or static; a sample may
//! keep nothing. Every f32 variant takes pairs in one launch, `coop` from
//! f16 packs in two (both samples' packs, then the product); split K,
//! `coop` staged or tiled and operands in separate buffers run one by one,
//! checked the same.

use rand::Rng;
use sparsetrain::cpu::matmul::{ScatterRef, matmul_fused};
use sparsetrain::ops::matmul::{CoopMode, Dims, Layout, Matmul, Scatter, Size, Variant};
use sparsetrain::{Recorder, Tensor};

use crate::common::*;
use crate::matmul::{Run, f16_for, matmul_runs, shapes_of, tol};

/// Real (m, n, k) of sample 0 and sample 1: unequal, awkward, nothing kept
/// by one sample, one of everything, and the static bounds themselves.
const CASES: [[(usize, usize, usize); 2]; 7] = [
    [(5, 7, 9), (17, 30, 23)],
    [(1, 1, 1), (13, 0, 6)],
    [(8, 12, 0), (3, 5, 2)],
    [(31, 29, 37), (31, 29, 37)],
    [(290, 6, 11), (67, 13, 5)],
    [(0, 0, 0), (61, 41, 43)],
    [(64, 72, 40), (60, 68, 36)],
];

/// The bound of every case's sizes (a layer's full width).
const MAX: Dims = Dims { m: 296, n: 72, k: 44 };

/// Values of one sample's operand: real rows × cols of a stored
/// [rows_p, cols_p] (padded) block, zero past them, the rest of the view
/// `poison`.
fn block(r: &mut impl Rng, (rows, cols): (usize, usize), (rows_p, cols_p): (usize, usize), len: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; len];
    for i in 0..rows_p {
        for j in 0..cols_p {
            if i < rows && j < cols {
                v[i * cols_p + j] = r.random_range(-1.0..1.0);
            }
        }
    }
    v
}

fn pair_cases(gpu: &sparsetrain::Gpu, test: &str) {
    // Unpadded, default depth: the runs whose launches differ for pairs
    // (K-major packs and the depths change nothing a pair does).
    let runs: Vec<Run> = matmul_runs(gpu, test).into_iter().filter(|r| r.bk == 8 && r.pad && !r.kpack).collect();
    let mut case = 0u64;
    for run in runs {
        let mut trace = Trace::new(test, &run.label());
        // Launches per pair of plain products and of scatters: unsplit,
        // one (a scatter: two, one by one) for the f32 variants, two for
        // `coop` from f16 packs (the packs, the product); split in a fixed
        // count, both samples' partials and each one's reduce; split by
        // the device, each sample's unsplit launch too. `coop` split or
        // not from packs runs one by one (launches not counted).
        let unsplit = run.split == 1 && run.within.is_none();
        let per_pair = match run.variant {
            Variant::Coop if unsplit && run.coop == CoopMode::Direct => Some((2, None)),
            Variant::Coop => None,
            _ if run.within.is_some() => Some((5, Some(5))),
            _ if unsplit => Some((1, Some(2))),
            _ => Some((3, Some(3))),
        };
        for layout in Layout::ALL {
            for (ci, sizes) in CASES.iter().enumerate() {
                for kept in [true, false] {
                    if !kept && ci > 0 {
                        // Static sizes: one case, both samples at the bounds.
                        continue;
                    }
                    case += 1;
                    let seed = 4100 + case;
                    pair_case(gpu, &run, layout, (*sizes, MAX), kept, seed, per_pair);
                    trace.case();
                }
            }
        }
    }
}

/// One pair of real sizes within the bounds `max`: bias + ReLU (C
/// poisoned), and an accumulating gated product; A shared by both samples
/// where the sizes are static (a first layer's input), else each sample's
/// own.
pub(crate) fn pair_case(
    gpu: &sparsetrain::Gpu,
    run: &Run,
    layout: Layout,
    (sizes, max): ([(usize, usize, usize); 2], Dims),
    kept: bool,
    seed: u64,
    per_pair: Option<(usize, Option<usize>)>,
) {
    let mut r = rng(seed);
    let pad = |x: usize| x.div_ceil(4) * 4;
    let real = if kept { sizes } else { [(max.m, max.n, max.k); 2] };
    let d: [Dims; 2] = real.map(|(m, n, k)| Dims { m: pad(m).min(max.m), n: pad(n), k: pad(k) });
    let (len_a, len_b, len_c) = (max.m * max.k, max.k * max.n, max.m * max.n);
    let mut ops: Vec<[Vec<f32>; 5]> = Vec::new();
    for j in 0..2 {
        let (sa, sb) = shapes_of(layout, d[j]);
        let (rm, rn, rk) = real[j];
        let ra = if layout.trans_a() { (rk, rm) } else { (rm, rk) };
        let rb = if layout.trans_b() { (rn, rk) } else { (rk, rn) };
        // Exact in f16 for `coop` (the reference then sees what it multiplies).
        let a = f16_for(run.variant, block(&mut r, ra, (sa[0], sa[1]), len_a));
        let b = f16_for(run.variant, block(&mut r, rb, (sb[0], sb[1]), len_b));
        let bias = block(&mut r, (1, rn), (1, d[j].n), max.n);
        let gate = rand_f32(&mut r, len_c, -1.0, 1.0);
        let acc = rand_f32(&mut r, len_c, -1.0, 1.0);
        ops.push([a, b, bias, gate, acc]);
    }
    if !kept {
        // Static sizes: one A for both (its values are sample 0's).
        ops[1][0] = ops[0][0].clone();
    }
    let dims: Vec<u32> = real.iter().flat_map(|&(m, n, k)| [m as u32, n as u32, k as u32]).collect();
    let tdims = Tensor::from_u32(gpu, "dims", &[6], &dims).unwrap();
    let op = |i: usize| [ops[0][i].as_slice(), ops[1][i].as_slice()];
    let ta = if kept {
        joint(gpu, "A", len_a, op(0))
    } else {
        let t = Tensor::from_f32(gpu, "A", &[len_a], &ops[0][0]).unwrap();
        [t.clone(), t]
    };
    let (tb, tbias, tgate) =
        (joint(gpu, "B", len_b, op(1)), joint(gpu, "bias", max.n, op(2)), joint(gpu, "gate", len_c, op(3)));
    let nan = vec![f32::NAN; len_c];
    let acc = op(4);
    // Paired, then the same products one by one.
    let tc = joint(gpu, "C", len_c, [&nan, &nan]);
    let th = joint(gpu, "H", len_c, acc);
    let (uc, uh) = (joint(gpu, "C'", len_c, [&nan, &nan]), joint(gpu, "H'", len_c, acc));
    let mm = |j: usize| -> Matmul {
        let base = run.matmul(layout);
        if kept {
            let s = |i: usize| Size::Kept { count: 3 * j + i, blocks: 1 };
            base.sizes(Some(&tdims), s(0), s(1), s(2))
        } else {
            base
        }
    };
    let dmax = if kept { max } else { d[0] };
    let fwd = |j: usize| mm(j).bias(&tbias[j]).relu();
    let back = |j: usize| mm(j).gate(&tgate[j]).accumulate();
    let mut rec = Recorder::new(gpu);
    fwd(0).record_pair(&mut rec, (&tc[0], &ta[0], &tb[0]), &fwd(1), (&tc[1], &ta[1], &tb[1]), dmax).unwrap();
    back(0).record_pair(&mut rec, (&th[0], &ta[0], &tb[0]), &back(1), (&th[1], &ta[1], &tb[1]), dmax).unwrap();
    let paired = rec.dispatches();
    for j in 0..2 {
        fwd(j).record(&mut rec, &uc[j], &ta[j], &tb[j], dmax).unwrap();
        back(j).record(&mut rec, &uh[j], &ta[j], &tb[j], dmax).unwrap();
    }
    let singles = rec.dispatches() - paired;
    // A weight-gradient pair: both samples scatter-add into one full C,
    // each through its own maps (permutations at their own offsets).
    let (full_m, full_n) = (max.m + 10, max.n + 10);
    let mut maps = vec![0u32; 3];
    let mut perms = Vec::new();
    for _ in 0..2 {
        let (rows, cols) = (shuffled(&mut r, full_m), shuffled(&mut r, full_n));
        maps.extend(&rows);
        maps.extend(&cols);
        perms.push((rows, cols));
    }
    let tmaps = Tensor::from_u32(gpu, "maps", &[maps.len()], &maps).unwrap();
    let full0 = rand_f32(&mut r, full_m * full_n, -1.0, 1.0);
    let (tfull, ufull) = [0, 1].map(|_| Tensor::from_f32(gpu, "full", &[full0.len()], &full0).unwrap()).into();
    let scat = |j: usize| {
        let at = 3 + j * (full_m + full_n);
        let sc = Scatter {
            maps: &tmaps,
            rows: Some(at),
            cols: Some(at + full_m),
            ldc: full_n,
            col_blocks: 1,
            col_block_full: full_n,
        };
        mm(j).accumulate().scatter(sc)
    };
    let before = rec.dispatches();
    scat(0).record_pair(&mut rec, (&tfull, &ta[0], &tb[0]), &scat(1), (&tfull, &ta[1], &tb[1]), dmax).unwrap();
    let scatter_paired = rec.dispatches() - before;
    for j in 0..2 {
        scat(j).record(&mut rec, &ufull, &ta[j], &tb[j], dmax).unwrap();
    }
    rec.finish().unwrap();
    let tag = format!(
        "{} {} real {:?} {} (seed {seed})",
        run.label(),
        layout.name(),
        real,
        if kept { "kept" } else { "static" }
    );
    if let Some((per, scatter)) = per_pair {
        assert_eq!(paired, 2 * per, "{tag}: {per} launch(es) for each pair of products ({singles} one by one)");
        if let Some(want) = scatter {
            assert_eq!(scatter_paired, want, "{tag}: launches of a pair of scatters");
        }
    }
    // The scatters: sample 0's additions, then sample 1's, whichever way.
    let mut want_full = to_f64(&full0);
    for (j, (rows, cols)) in perms.iter().enumerate() {
        let dj = d[j];
        let (a64, b64) = (to_f64(&ops[j][0][..dj.m * dj.k]), to_f64(&ops[j][1][..dj.k * dj.n]));
        let (real_m, real_n) = (real[j].0, real[j].1);
        let sref = ScatterRef { rows: Some(rows), cols: Some(cols), ldc: full_n, real_m, real_n };
        matmul_fused(&mut want_full, &a64, &b64, layout, 1.0, 1.0, dj, None, false, None, Some(&sref));
    }
    let abs = tol(run.variant, 2e-5 * (max.k as f64 + 1.0));
    let got_full = tfull.download_f32(gpu).unwrap();
    assert_close(&format!("scatter pair {tag}"), &got_full, &want_full, abs, 1e-5);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got_full), bits(&ufull.download_f32(gpu).unwrap()), "{tag}: scatter pair vs one by one");
    for j in 0..2 {
        let dj = d[j];
        let (a64, b64) = (to_f64(&ops[j][0][..dj.m * dj.k]), to_f64(&ops[j][1][..dj.k * dj.n]));
        let (bias64, gate64) = (to_f64(&ops[j][2][..dj.n]), to_f64(&ops[j][3][..dj.m * dj.n]));
        let mut want_c = vec![0.0; dj.m * dj.n];
        matmul_fused(&mut want_c, &a64, &b64, layout, 1.0, 0.0, dj, Some(&bias64), true, None, None);
        let mut want_h = to_f64(&ops[j][4][..dj.m * dj.n]);
        matmul_fused(&mut want_h, &a64, &b64, layout, 1.0, 1.0, dj, None, false, Some(&gate64), None);
        let abs = tol(run.variant, 1e-5 * (dj.k as f64 + 1.0));
        let got_c = tc[j].download_f32(gpu).unwrap();
        assert_close(&format!("bias+relu sample {j} {tag}"), &got_c[..dj.m * dj.n], &want_c, abs, 1e-5);
        assert!(got_c[dj.m * dj.n..].iter().all(|v| v.is_nan()), "{tag}: sample {j} wrote past its size");
        let got_h = th[j].download_f32(gpu).unwrap();
        assert_close(&format!("gated accumulate sample {j} {tag}"), &got_h[..dj.m * dj.n], &want_h, abs, 1e-5);
        assert_eq!(&got_h[dj.m * dj.n..], &ops[j][4][dj.m * dj.n..], "{tag}: sample {j} wrote past its size");
        // One launch or two, the same bits.
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got_c), bits(&uc[j].download_f32(gpu).unwrap()), "{tag}: sample {j} C paired vs alone");
        assert_eq!(bits(&got_h), bits(&uh[j].download_f32(gpu).unwrap()), "{tag}: sample {j} H paired vs alone");
    }
}

#[test]
fn pairs_match_reference_and_single_products() {
    let Some(gpu) = gpu("pairs_match_reference_and_single_products") else { return };
    pair_cases(&gpu, "pairs_match_reference_and_single_products");
}

/// At most two workgroups: each loops over a run of tiles that crosses
/// from sample 0's into sample 1's.
#[test]
fn pairs_on_a_capped_grid() {
    let opts = sparsetrain::GpuOptions { grid_cap: Some(2), ..Default::default() };
    let Some(gpu) = gpu_with("pairs_on_a_capped_grid", opts) else { return };
    pair_cases(&gpu, "pairs_on_a_capped_grid");
}

/// Operands of the two samples in different buffers, or one C for both:
/// one by one, the same results.
#[test]
fn pairs_in_separate_buffers_run_one_by_one() {
    let Some(gpu) = gpu("pairs_in_separate_buffers_run_one_by_one") else { return };
    let d = Dims { m: 13, n: 9, k: 7 };
    let mut r = rng(4099);
    let (a, b) = (rand_f32(&mut r, d.m * d.k, -1.0, 1.0), rand_f32(&mut r, d.k * d.n, -1.0, 1.0));
    let ta = Tensor::from_f32(&gpu, "A", &[a.len()], &a).unwrap();
    let tb = Tensor::from_f32(&gpu, "B", &[b.len()], &b).unwrap();
    let tc = [0, 1].map(|_| Tensor::zeros(&gpu, "C", &[d.m * d.n], sparsetrain::DType::F32).unwrap());
    let mm = Matmul::new(Layout::NN).variant(Variant::RegTile);
    let mut rec = Recorder::new(&gpu);
    mm.record_pair(&mut rec, (&tc[0], &ta, &tb), &mm, (&tc[1], &ta, &tb), d).unwrap();
    assert_eq!(rec.dispatches(), 2, "C in two buffers: two launches");
    rec.finish().unwrap();
    let mut want = vec![0.0; d.m * d.n];
    matmul_fused(&mut want, &to_f64(&a), &to_f64(&b), Layout::NN, 1.0, 0.0, d, None, false, None, None);
    for (j, t) in tc.iter().enumerate() {
        assert_close(&format!("separate buffers, sample {j}"), &t.download_f32(&gpu).unwrap(), &want, 1e-4, 1e-5);
    }
    // One C for both samples (in one buffer, but not apart): one by one,
    // the second adding to the first.
    let c0 = rand_f32(&mut r, d.m * d.n, -1.0, 1.0);
    let shared = Tensor::from_f32(&gpu, "C", &[c0.len()], &c0).unwrap();
    let acc = mm.accumulate();
    let mut rec = Recorder::new(&gpu);
    acc.record_pair(&mut rec, (&shared, &ta, &tb), &acc, (&shared, &ta, &tb), d).unwrap();
    assert_eq!(rec.dispatches(), 2, "one C for both samples: two launches");
    rec.finish().unwrap();
    let want2: Vec<f64> = c0.iter().zip(&want).map(|(&c, &w)| c as f64 + 2.0 * w).collect();
    assert_close("one C for both samples", &shared.download_f32(&gpu).unwrap(), &want2, 1e-4, 1e-5);
}
