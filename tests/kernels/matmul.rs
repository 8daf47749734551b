use sparsetrain::cpu;
use sparsetrain::ops::matmul::{CoopMode, Dims, Layout, Matmul, Variant};
use sparsetrain::{DType, Recorder, Tensor};

use crate::common::*;

/// The variants a matmul test runs, each with the splits of K it runs with:
/// the f32 family everywhere, and `coop` (mixed precision) where the device
/// has cooperative matrices; the variants that split K run unsplit and in 3
/// splits (uneven, some empty on short K). Where the device lacks `coop`,
/// the test says that it did not run, and fails if
/// `SPARSETRAIN_REQUIRE_COOP` is set (as on the GPU machine's runs).
pub(crate) fn matmul_variants(gpu: &sparsetrain::Gpu, test: &str) -> Vec<(Variant, u32)> {
    let mut v = vec![Variant::RegTile, Variant::Shared, Variant::Wide, Variant::Naive];
    match gpu.coop() {
        Ok(_) => v.push(Variant::Coop),
        Err(why) => {
            if std::env::var("SPARSETRAIN_REQUIRE_COOP").is_ok_and(|s| !s.is_empty() && s != "0") {
                panic!("{test}: SPARSETRAIN_REQUIRE_COOP is set but the coop variant cannot run: {why}");
            }
            // Once per test, straight to the process's stderr, past the test
            // harness's capture, so that a passing run's log shows what did
            // not run.
            static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
            let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
            if !said.iter().any(|t| t == test) {
                said.push(test.to_string());
                use std::io::Write;
                let msg = format!("NOT RUN {test} [coop]: mixed precision needs cooperative matrices: {why}");
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
        }
    }
    v.into_iter().flat_map(|v| if v.splits_k() { vec![(v, 1), (v, 3)] } else { vec![(v, 1)] }).collect()
}

pub(crate) fn label(variant: Variant, split: u32) -> String {
    if split > 1 { format!("{} split {split}", variant.name()) } else { variant.name().to_string() }
}

/// Inputs of a `coop` case, rounded to f16 (the f64 reference then sees the
/// values the tensor cores multiply); others unchanged.
pub(crate) fn f16_for(variant: Variant, v: Vec<f32>) -> Vec<f32> {
    if variant != Variant::Coop {
        return v;
    }
    v.into_iter().map(|x| half::f16::from_f32(x).to_f32()).collect()
}

/// A `coop` case's absolute tolerance: its inputs are exact in f16, but
/// tensor cores may accumulate with less care than f32 fused multiply-adds.
pub(crate) fn tol(variant: Variant, abs: f64) -> f64 {
    if variant == Variant::Coop { 10.0 * abs } else { abs }
}

// The last four are narrow and tall: `matmul_regtile` narrows its tile to
// N and stacks the rest of the workgroup along M (several tiles of M); the
// last is tall enough that it picks a narrower width padding N less (8 wide).
// (23, 29, 70): 667 outputs, which the runs whose splits the device decides
// within 1500 floats split in two, both with work (K of 70 over chunks of 64).
const SHAPES: [(usize, usize, usize); 16] = [
    (1, 1, 1),
    (1, 7, 3),
    (5, 1, 9),
    (4, 8, 12),
    (13, 17, 19),
    (31, 33, 29),
    (64, 64, 64),
    (67, 130, 45),
    (128, 96, 260),
    (23, 29, 70),
    (3, 5, 1),
    (6, 5, 0),
    (300, 3, 17),
    (517, 6, 7),
    (263, 13, 10),
    (1031, 36, 9),
];

pub(crate) fn shapes_of(layout: Layout, d: Dims) -> ([usize; 2], [usize; 2]) {
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
    matmul_cases(&gpu);
}

/// The same with a grid of at most 3 workgroups: every kernel must loop over
/// the tiles it was not launched for.
#[test]
fn matmul_matches_reference_on_a_capped_grid() {
    let opts = sparsetrain::GpuOptions { grid_cap: Some(3), ..Default::default() };
    let Some(gpu) = gpu_with("matmul_matches_reference_on_a_capped_grid", opts) else { return };
    matmul_cases(&gpu);
}

/// One configuration a matmul test runs: a variant, its splits of K, and
/// for `wide` its K slice depth and block tile (rows × columns; None: the
/// launcher's rule).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub variant: Variant,
    pub split: u32,
    pub bk: u32,
    pub tile: Option<(u32, u32)>,
    /// The device decides the splits, up to `split`, within this many floats
    /// of partials (`Matmul::split_k_within`).
    pub within: Option<usize>,
    /// How `coop` reads its operands (f16 packs or staged).
    pub coop: CoopMode,
    /// Whether `wide` pads its staged slices where it fits (its default).
    pub pad: bool,
    /// Whether `matmul_coop_direct` takes two K pieces a pass.
    pub unroll: bool,
    /// `matmul_coop_direct`'s shape forced (None: the launcher's rule).
    pub coop_shape: Option<(u32, u32, u32)>,
}

impl Run {
    /// A matmul of `layout` in this configuration.
    pub(crate) fn matmul<'a>(&self, layout: Layout) -> Matmul<'a> {
        let mm = Matmul::new(layout).variant(self.variant).wide_depth(self.bk).coop_mode(self.coop);
        let mm = mm.wide_padding(self.pad).coop_unroll(self.unroll);
        let mm = match self.coop_shape {
            Some((tm, wm, wn)) => mm.coop_direct_shape(tm, wm, wn),
            None => mm,
        };
        let mm = match self.within {
            Some(room) => mm.split_k_within(self.split, room),
            None => mm.split_k(self.split),
        };
        match self.tile {
            Some((rows, cols)) => mm.wide_tile(rows, cols),
            None => mm,
        }
    }

    /// The variant, its splits, a depth other than 8 and a forced tile.
    pub(crate) fn label(&self) -> String {
        let mut s = match self.within {
            Some(room) => format!("{} split ≤{} within {room}", self.variant.name(), self.split),
            None => label(self.variant, self.split),
        };
        if self.bk != 8 {
            s.push_str(&format!(" bk {}", self.bk));
        }
        if self.variant == Variant::Coop && self.coop == CoopMode::Staged {
            s.push_str(" staged");
        }
        if self.variant == Variant::Coop && self.unroll {
            s.push_str(" unroll");
        }
        if let Some((tm, wm, wn)) = self.coop_shape.filter(|_| self.variant == Variant::Coop) {
            s.push_str(&format!(" {tm}x{wm}x{wn}"));
        }
        if self.variant == Variant::Wide && !self.pad {
            s.push_str(" unpadded");
        }
        if let Some((rows, cols)) = self.tile {
            s.push_str(&format!(" {rows}x{cols}"));
        }
        s
    }
}

/// `matmul_variants` as runs: `coop` from f16 packs (`matmul_coop_direct`,
/// with and without unrolling, in the rule's shape and, unsplit, in
/// others) and staged (`matmul_coop`); `wide` runs with slices of 8 (its default)
/// and of 16 with the launcher's tile (128 × 128 for static sizes, 64 × 64
/// where a kept count sets M or N), its staged slices padded where the
/// workgroup memory allows (its default) and, unsplit, unpadded; and then,
/// unsplit, with each smaller
/// tile forced at both depths, so that every workgroup shape, depth and
/// load count per thread (1, 2 or 4 per operand, unequal for 128 × 64 and
/// 64 × 128) runs. A depth runs where the device has the workgroup memory
/// for the tile (64·depth·(WG_X + WG_Y) bytes: 32 KiB at 128 × 128 and 16),
/// and the test says what did not run. The others ignore depth and tile.
pub(crate) fn matmul_runs(gpu: &sparsetrain::Gpu, test: &str) -> Vec<Run> {
    let have = gpu.limits().max_compute_workgroup_storage_size;
    let fits = |bk: u32, (rows, cols): (u32, u32)| {
        let ok = 8 * bk * (rows + cols) <= have;
        if !ok {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "NOT RUN {test} [wide bk {bk} {rows}x{cols}]: the device has {have} bytes of workgroup memory"
            );
        }
        ok
    };
    let mut runs = Vec::new();
    for (variant, split) in matmul_variants(gpu, test) {
        let run = Run {
            variant,
            split,
            bk: 8,
            tile: None,
            within: None,
            coop: CoopMode::Direct,
            pad: true,
            unroll: false,
            coop_shape: None,
        };
        if variant == Variant::Coop {
            // From packs, unrolling (every split), and in shapes other
            // than the rule's (unsplit: the shape changes no split's bounds).
            runs.push(Run { unroll: true, ..run });
            if split == 1 {
                for shape in [(4, 2, 4), (4, 4, 2), (2, 1, 4), (4, 1, 1)] {
                    runs.push(Run { coop_shape: Some(shape), ..run });
                }
                runs.push(Run { coop_shape: Some((4, 2, 2)), unroll: true, ..run });
            }
        }
        let modes: &[CoopMode] =
            if variant == Variant::Coop { &[CoopMode::Direct, CoopMode::Staged] } else { &[CoopMode::Direct] };
        for &coop in modes {
            let run = Run { coop, ..run };
            if split > 1 {
                // Splits the device decides within 1500 floats: most products
                // here run unsplit that way, the smaller ones in 2 or 3.
                runs.push(Run { within: Some(1500), ..run });
            }
            if variant != Variant::Wide {
                runs.push(run);
            }
        }
        if variant != Variant::Wide {
            continue;
        }
        // The tile changes no split's bounds: unsplit is enough for the
        // forced ones.
        let forced: &[(u32, u32)] = if split == 1 { &[(128, 64), (64, 128), (64, 64)] } else { &[] };
        for bk in [8, 16] {
            if fits(bk, (128, 128)) {
                runs.push(Run { bk, ..run });
                if split == 1 {
                    // The padded slices (where they fit) against none.
                    runs.push(Run { bk, pad: false, ..run });
                }
            }
            for &t in forced {
                if fits(bk, t) {
                    runs.push(Run { bk, tile: Some(t), ..run });
                }
            }
        }
    }
    runs
}

fn matmul_cases(gpu: &sparsetrain::Gpu) {
    let mut case = 0u64;
    for run in matmul_runs(gpu, "matmul_matches_reference") {
        let variant = run.variant;
        for layout in Layout::ALL {
            for &(m, n, k) in &SHAPES {
                for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, 1.0)] {
                    case += 1;
                    let mut r = rng(1000 + case);
                    let d = Dims { m, n, k };
                    let (sa, sb) = shapes_of(layout, d);
                    let a = f16_for(variant, rand_f32(&mut r, m * k, -1.0, 1.0));
                    let b = f16_for(variant, rand_f32(&mut r, k * n, -1.0, 1.0));
                    let c0 = if beta == 0.0 { vec![f32::NAN; m * n] } else { rand_f32(&mut r, m * n, -1.0, 1.0) };
                    let ta = Tensor::from_f32(gpu, "A", &sa, &a).unwrap();
                    let tb = Tensor::from_f32(gpu, "B", &sb, &b).unwrap();
                    let tc = Tensor::from_f32(gpu, "C", &[m, n], &c0).unwrap();
                    let mut rec = Recorder::new(gpu);
                    let mut mm = run.matmul(layout);
                    (mm.alpha, mm.beta) = (alpha, beta);
                    mm.record(&mut rec, &tc, &ta, &tb, d).unwrap();
                    rec.finish().unwrap();
                    let got = tc.download_f32(gpu).unwrap();
                    let mut want = if beta == 0.0 { vec![0.0; m * n] } else { to_f64(&c0) };
                    cpu::matmul::matmul(&mut want, &to_f64(&a), &to_f64(&b), layout, alpha as f64, beta as f64, d);
                    let what = format!(
                        "{} {} {m}x{n}x{k} alpha {alpha} beta {beta} (seed {})",
                        run.label(),
                        layout.name(),
                        1000 + case
                    );
                    assert_close(&what, &got, &want, tol(variant, 1e-5 * (k as f64 + 1.0)), tol(variant, 1e-5));
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
    // `wide` takes K slices of 8 or 16 only.
    let d = Dims { m: 4, n: 4, k: 4 };
    let err =
        Matmul::new(Layout::NN).variant(Variant::Wide).wide_depth(12).record(&mut rec, &c, &a, &a, d).unwrap_err();
    assert!(err.to_string().contains("8 or 16"), "{err}");
    // ... and block tiles of 64 or 128 a side, checked whatever variant runs.
    for (rows, cols) in [(96, 64), (128, 32), (0, 64)] {
        for v in [Variant::Wide, Variant::Shared] {
            let err =
                Matmul::new(Layout::NN).variant(v).wide_tile(rows, cols).record(&mut rec, &c, &a, &a, d).unwrap_err();
            assert!(err.to_string().contains("64 or 128"), "{rows}x{cols} on {}: {err}", v.name());
        }
    }
}

/// Compressed-layer features: sizes read from the device (rounded up to 4),
/// bias + ReLU epilogue, ReLU gate, and scatter-add into a full-size C
/// through kept-unit maps, including a layer with no unit kept.
#[test]
fn matmul_dynamic_sizes_and_epilogues() {
    let Some(gpu) = gpu("matmul_dynamic_sizes_and_epilogues") else { return };
    dynamic_cases(&gpu);
}

#[test]
fn matmul_dynamic_sizes_and_epilogues_on_a_capped_grid() {
    let opts = sparsetrain::GpuOptions { grid_cap: Some(2), ..Default::default() };
    let Some(gpu) = gpu_with("matmul_dynamic_sizes_and_epilogues_on_a_capped_grid", opts) else { return };
    dynamic_cases(&gpu);
}

fn dynamic_cases(gpu: &sparsetrain::Gpu) {
    use rand::Rng;
    use sparsetrain::cpu::matmul::{ScatterRef, matmul_fused};
    use sparsetrain::ops::matmul::{DynDims, Scatter};
    let mut case = 0u64;
    for run in matmul_runs(gpu, "matmul_dynamic_sizes_and_epilogues") {
        let variant = run.variant;
        for layout in Layout::ALL {
            // (real m, real n, real k) read from `dims`; 0 = nothing kept.
            for &(rm, rn, rk) in &[
                (5usize, 7usize, 9usize),
                (1, 1, 1),
                (13, 0, 6),
                (8, 12, 0),
                (17, 30, 23),
                (17, 30, 100),
                (290, 6, 11),
                (300, 37, 5),
            ] {
                case += 1;
                let mut r = rng(1300 + case);
                let pad = |x: usize| x.div_ceil(4) * 4;
                let (m, n, k) = (pad(rm), pad(rn), pad(rk));
                // Static bounds larger than the real sizes, as for a layer's full width.
                let d_max = Dims { m: m + 8, n: n + 4, k: k + 12 };
                let d = Dims { m, n, k };
                let (sa, sb) = shapes_of(layout, d);
                // Operands zero-padded past the real sizes, as compaction leaves them.
                let mut a = vec![0.0f32; d_max.m * d_max.k];
                let mut b = vec![0.0f32; d_max.k * d_max.n];
                for i in 0..sa[0] {
                    for j in 0..sa[1] {
                        let real = if layout.trans_a() { i < rk && j < rm } else { i < rm && j < rk };
                        if real {
                            a[i * sa[1] + j] = r.random_range(-1.0..1.0);
                        }
                    }
                }
                for i in 0..sb[0] {
                    for j in 0..sb[1] {
                        let real = if layout.trans_b() { i < rn && j < rk } else { i < rk && j < rn };
                        if real {
                            b[i * sb[1] + j] = r.random_range(-1.0..1.0);
                        }
                    }
                }
                let (a, b) = (f16_for(variant, a), f16_for(variant, b));
                let bias: Vec<f32> =
                    (0..d_max.n).map(|c| if c < rn { r.random_range(-1.0..1.0) } else { 0.0 }).collect();
                let gate = rand_f32(&mut r, d_max.m * d_max.n, -1.0, 1.0);
                let dims = [rm as u32, rn as u32, rk as u32];
                let ta = Tensor::from_f32(gpu, "A", &[a.len()], &a).unwrap();
                let tb = Tensor::from_f32(gpu, "B", &[b.len()], &b).unwrap();
                let tbias = Tensor::from_f32(gpu, "bias", &[bias.len()], &bias).unwrap();
                let tgate = Tensor::from_f32(gpu, "gate", &[gate.len()], &gate).unwrap();
                let tdims = Tensor::from_u32(gpu, "dims", &[3], &dims).unwrap();
                let dynd = DynDims { dims: &tdims, m: Some(0), n: Some(1), k: Some(2) };

                // 1. Forward-style: C = relu(A·B + bias), C poisoned.
                let tc = Tensor::from_f32(gpu, "C", &[d_max.m * d_max.n], &vec![f32::NAN; d_max.m * d_max.n]).unwrap();
                // 2. Backward-style: C = (A·B) gated.
                let tg = Tensor::from_f32(gpu, "G", &[d_max.m * d_max.n], &vec![f32::NAN; d_max.m * d_max.n]).unwrap();
                // 3. Scatter-add into a full C (at least [40, 50]) through maps.
                let (full_m, full_n) = (40usize.max(rm + 10), 50usize.max(rn + 10));
                let mut rows: Vec<u32> = (0..full_m as u32).collect();
                let mut cols: Vec<u32> = (0..full_n as u32).collect();
                for i in (1..rows.len()).rev() {
                    rows.swap(i, r.random_range(0..=i));
                }
                for i in (1..cols.len()).rev() {
                    cols.swap(i, r.random_range(0..=i));
                }
                // Maps live at offsets inside one u32 buffer, as kept lists do.
                let mut maps = vec![0u32; 3];
                maps.extend(&rows);
                maps.extend(&cols);
                let tmaps = Tensor::from_u32(gpu, "maps", &[maps.len()], &maps).unwrap();
                let full0 = rand_f32(&mut r, full_m * full_n, -1.0, 1.0);
                let tfull = Tensor::from_f32(gpu, "full", &[full0.len()], &full0).unwrap();
                let scatter = Scatter {
                    maps: &tmaps,
                    rows: Some(3),
                    cols: Some(3 + full_m),
                    ldc: full_n,
                    col_blocks: 1,
                    col_block_full: full_n,
                };

                let mut rec = Recorder::new(gpu);
                let base = run.matmul(layout).dynamic(dynd);
                base.bias(&tbias).relu().record(&mut rec, &tc, &ta, &tb, d_max).unwrap();
                base.gate(&tgate).record(&mut rec, &tg, &ta, &tb, d_max).unwrap();
                base.accumulate().scatter(scatter).record(&mut rec, &tfull, &ta, &tb, d_max).unwrap();
                rec.finish().unwrap();

                let (a64, b64) = (to_f64(&a[..d.m * d.k]), to_f64(&b[..d.k * d.n]));
                let mut want_c = vec![0.0; d.m * d.n];
                let bias64 = to_f64(&bias[..d.n]);
                matmul_fused(&mut want_c, &a64, &b64, layout, 1.0, 0.0, d, Some(&bias64), true, None, None);
                let mut want_g = vec![0.0; d.m * d.n];
                let gate64 = to_f64(&gate[..d.m * d.n]);
                matmul_fused(&mut want_g, &a64, &b64, layout, 1.0, 0.0, d, None, false, Some(&gate64), None);
                let mut want_full = to_f64(&full0);
                let sref = ScatterRef { rows: Some(&rows), cols: Some(&cols), ldc: full_n, real_m: rm, real_n: rn };
                matmul_fused(&mut want_full, &a64, &b64, layout, 1.0, 1.0, d, None, false, None, Some(&sref));

                let tag = format!("{} {} real {rm}x{rn}x{rk} (seed {})", run.label(), layout.name(), 1300 + case);
                let got_c = tc.download_f32(gpu).unwrap();
                assert_close(
                    &format!("bias+relu {tag}"),
                    &got_c[..d.m * d.n],
                    &want_c,
                    tol(variant, 1e-5 * (k as f64 + 1.0)),
                    1e-5,
                );
                assert!(got_c[d.m * d.n..].iter().all(|v| v.is_nan()), "{tag}: wrote past the dynamic size");
                let got_g = tg.download_f32(gpu).unwrap();
                assert_close(
                    &format!("gate {tag}"),
                    &got_g[..d.m * d.n],
                    &want_g,
                    tol(variant, 1e-5 * (k as f64 + 1.0)),
                    1e-5,
                );
                let got_full = tfull.download_f32(gpu).unwrap();
                assert_close(
                    &format!("scatter {tag}"),
                    &got_full,
                    &want_full,
                    tol(variant, 1e-5 * (k as f64 + 1.0)),
                    1e-5,
                );
            }
        }
    }
}

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
    let ways = [(CoopMode::Direct, false), (CoopMode::Direct, true), (CoopMode::Staged, false)];
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
