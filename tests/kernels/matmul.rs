use sparsetrain::cpu;
use sparsetrain::ops::matmul::{CoopMode, Dims, Layout, Matmul, Variant};
use sparsetrain::{Recorder, Tensor};

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
    matmul_cases(&gpu, "matmul_matches_reference");
}

/// The same with a grid of at most 3 workgroups: every kernel must loop over
/// the tiles it was not launched for.
#[test]
fn matmul_matches_reference_on_a_capped_grid() {
    let opts = sparsetrain::GpuOptions { grid_cap: Some(3), ..Default::default() };
    let Some(gpu) = gpu_with("matmul_matches_reference_on_a_capped_grid", opts) else { return };
    matmul_cases(&gpu, "matmul_matches_reference_on_a_capped_grid");
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
    /// Whether `wide` reads operands stored along K from K-major packs
    /// (`matmul_kpack`); forced either way.
    pub kpack: bool,
}

impl Run {
    /// `variant` in `split` splits of K with every other knob at its
    /// default: slices of 8, the launcher's tile, `coop` direct, padded,
    /// no unrolling, the rule's shape, no K-major packs.
    pub(crate) fn plain(variant: Variant, split: u32) -> Run {
        Run {
            variant,
            split,
            bk: 8,
            tile: None,
            within: None,
            coop: CoopMode::Direct,
            pad: true,
            unroll: false,
            coop_shape: None,
            kpack: false,
        }
    }

    /// A matmul of `layout` in this configuration.
    pub(crate) fn matmul<'a>(&self, layout: Layout) -> Matmul<'a> {
        let mm = Matmul::new(layout).variant(self.variant).wide_depth(self.bk).coop_mode(self.coop);
        let mm = mm.wide_padding(self.pad).coop_unroll(self.unroll).wide_kpack(self.kpack);
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
        if self.variant == Variant::Coop && self.coop != CoopMode::Direct {
            s.push_str(&format!(" {:?}", self.coop).to_lowercase());
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
        if self.variant == Variant::Wide && self.kpack {
            s.push_str(" kpack");
        }
        if let Some((rows, cols)) = self.tile {
            s.push_str(&format!(" {rows}x{cols}"));
        }
        s
    }
}

/// `matmul_variants` as runs: `coop` from f16 packs (`matmul_coop_direct`,
/// with and without unrolling, in the rule's shape and, unsplit, in
/// others; `matmul_coop_tiled` likewise) and staged (`matmul_coop`); `wide` runs with slices of 8 (its default)
/// and of 16 with the launcher's tile (128 × 128 for static sizes, 128 × 64
/// for their Aᵀ·B, 64 × 64 where a kept count sets M or N), its staged slices padded where the
/// workgroup memory allows (its default) and, unsplit, unpadded; and then,
/// unsplit, with each smaller
/// tile forced at both depths, so that every workgroup shape, depth and
/// load count per thread (1, 2 or 4 per operand, unequal for 128 × 64 and
/// 64 × 128) runs; each of them with slices of 8, and the rule's tile at
/// both depths and splits, also from K-major packs (`Matmul::wide_kpack`).
/// A depth runs where the device has the workgroup memory
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
        let run = Run::plain(variant, split);
        if variant == Variant::Coop {
            // From packs, unrolling (every split), and in shapes other
            // than the rule's (unsplit: the shape changes no split's bounds).
            runs.push(Run { unroll: true, ..run });
            if split == 1 {
                for shape in [(4, 2, 4), (4, 4, 2), (2, 1, 4), (4, 1, 1)] {
                    runs.push(Run { coop_shape: Some(shape), ..run });
                }
                runs.push(Run { coop_shape: Some((4, 2, 2)), unroll: true, ..run });
                // Tiled (its chunks per thread and staged layouts follow
                // the shape): eight subgroups in K slices of 16
                // (`coop_tiled_depth`), the others of 32, each where the
                // device can stage it (all of them in 32 KiB of lavapipe's
                // 8 × 8 pieces and 48 KiB of 16 × 16), and said where not:
                // the launcher would run such a shape direct.
                let support = gpu.coop().ok();
                for shape in [(4, 2, 2), (2, 1, 4), (4, 1, 1), (4, 2, 4), (4, 4, 2)] {
                    use sparsetrain::ops::matmul_tiles::coop_tiled_depth;
                    if support.and_then(|s| coop_tiled_depth(shape, s, have)).is_none() {
                        use std::io::Write;
                        let (tm, wm, wn) = shape;
                        let _ = writeln!(
                            std::io::stderr(),
                            "NOT RUN {test} [coop tiled {tm}x{wm}x{wn}]: the device cannot stage it in {have} bytes"
                        );
                        continue;
                    }
                    runs.push(Run { coop: CoopMode::Tiled, coop_shape: Some(shape), ..run });
                }
            }
        }
        let modes: &[CoopMode] = if variant == Variant::Coop {
            &[CoopMode::Direct, CoopMode::Tiled, CoopMode::Staged]
        } else {
            &[CoopMode::Direct]
        };
        for &coop in modes {
            let run = Run { coop, ..run };
            if split > 1 {
                // Splits the device decides within 1500 floats: most products
                // here run unsplit that way, the smaller ones in 2 or 3.
                runs.push(Run { within: Some(1500), ..run });
                if variant == Variant::Wide {
                    runs.push(Run { within: Some(1500), kpack: true, ..run });
                }
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
        // (128 × 128 too: the rule's tile for Aᵀ·B is 128 × 64.)
        let forced: &[(u32, u32)] = if split == 1 { &[(128, 128), (128, 64), (64, 128), (64, 64)] } else { &[] };
        for bk in [8, 16] {
            if fits(bk, (128, 128)) {
                runs.push(Run { bk, ..run });
                // From K-major packs of the operands stored along K.
                runs.push(Run { bk, kpack: true, ..run });
                if split == 1 {
                    // The padded slices (where they fit) against none.
                    runs.push(Run { bk, pad: false, ..run });
                }
            }
            for &t in forced {
                if fits(bk, t) {
                    runs.push(Run { bk, tile: Some(t), ..run });
                    if bk == 8 {
                        runs.push(Run { bk, tile: Some(t), kpack: true, ..run });
                    }
                }
            }
        }
    }
    runs
}

fn matmul_cases(gpu: &sparsetrain::Gpu, test: &str) {
    let mut case = 0u64;
    for run in matmul_runs(gpu, test) {
        let variant = run.variant;
        let mut trace = Trace::new(test, &run.label());
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
                    trace.case();
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
    dynamic_cases(&gpu, "matmul_dynamic_sizes_and_epilogues");
}

#[test]
fn matmul_dynamic_sizes_and_epilogues_on_a_capped_grid() {
    let opts = sparsetrain::GpuOptions { grid_cap: Some(2), ..Default::default() };
    let Some(gpu) = gpu_with("matmul_dynamic_sizes_and_epilogues_on_a_capped_grid", opts) else { return };
    dynamic_cases(&gpu, "matmul_dynamic_sizes_and_epilogues_on_a_capped_grid");
}

fn dynamic_cases(gpu: &sparsetrain::Gpu, test: &str) {
    use rand::Rng;
    use sparsetrain::cpu::matmul::{ScatterRef, matmul_fused};
    use sparsetrain::ops::matmul::{DynDims, Scatter};
    let mut case = 0u64;
    for run in matmul_runs(gpu, test) {
        let variant = run.variant;
        let mut trace = Trace::new(test, &run.label());
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
                let (rows, cols) = (shuffled(&mut r, full_m), shuffled(&mut r, full_n));
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
                trace.case();
            }
        }
    }
}
