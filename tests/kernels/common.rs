//! Test harness shared by the GPU tests: device opening that never passes by
//! not running, seeded random data, and comparisons that report the max
//! error and the first mismatches.

// Each test binary that includes this file uses a different subset of it.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use sparsetrain::{Error, Gpu, GpuOptions};

/// Opens a device. Without an adapter the test fails when `CI` or
/// `SPARSETRAIN_REQUIRE_GPU` is set, and otherwise returns None after saying
/// that it skips.
pub fn gpu(test: &str) -> Option<Gpu> {
    gpu_with(test, GpuOptions::default())
}

/// Runs `case` on the default device and again on one whose grids are
/// capped to a single workgroup (the label says which), so that kernels
/// striding over their work are checked past their first stride.
pub fn with_single_workgroup(test: &str, mut case: impl FnMut(&Gpu, &str)) {
    let Some(g) = gpu(test) else { return };
    case(&g, "");
    drop(g);
    let opts = GpuOptions { grid_cap: Some(1), ..Default::default() };
    let Some(g) = gpu_with(&format!("{test} (one workgroup)"), opts) else { return };
    case(&g, " (one workgroup)");
}

/// `with_single_workgroup` for pair tests: the device opened with pairs on
/// whatever SPARSETRAIN_PAIRS says, then one whose grids are one workgroup
/// (the label says which).
pub fn pairs_on_each_grid(test: &str, mut case: impl FnMut(&Gpu, &str)) {
    for (grid_cap, label) in [(None, ""), (Some(1), " (one workgroup)")] {
        let opts = GpuOptions { pairs: Some(true), grid_cap, ..Default::default() };
        let Some(g) = gpu_with(test, opts) else { return };
        case(&g, label);
    }
}

/// `gpu` with options (the autotune is always off in tests: the matmul
/// variant is forced explicitly where it matters, and elsewhere the cached or
/// device-type choice avoids timing work in every test).
pub fn gpu_with(test: &str, opts: GpuOptions) -> Option<Gpu> {
    match Gpu::open_with(&GpuOptions { autotune: false, ..opts }) {
        Ok(g) => Some(g),
        Err(e @ Error::NoAdapter { .. }) => {
            let required = ["CI", "SPARSETRAIN_REQUIRE_GPU"]
                .iter()
                .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false"));
            if required {
                panic!("{test}: a GPU adapter is required (CI or SPARSETRAIN_REQUIRE_GPU is set): {e}");
            }
            eprintln!("SKIPPED {test}: {e}");
            None
        }
        Err(e) => panic!("{test}: opening the GPU failed: {e}"),
    }
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// 0..n in a random order: a unit map of a scatter into a full-size C.
pub fn shuffled(rng: &mut impl Rng, n: usize) -> Vec<u32> {
    use rand::seq::SliceRandom;
    let mut v: Vec<u32> = (0..n as u32).collect();
    v.shuffle(rng);
    v
}

pub fn rand_f32(rng: &mut impl Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Two views of `len` floats in one buffer, their starts a multiple of 64
/// floats apart with a gap between (both mask samples' operands of a
/// pair), holding `data[0]` and `data[1]`, zeros past a shorter one.
pub fn joint(gpu: &Gpu, label: &str, len: usize, data: [&[f32]; 2]) -> [sparsetrain::Tensor; 2] {
    let gap = len.div_ceil(64) * 64 + 64;
    let t = sparsetrain::Tensor::zeros(gpu, label, &[gap + len], sparsetrain::DType::F32).unwrap();
    let views = [t.view(0, &[len]).unwrap(), t.view(gap, &[len]).unwrap()];
    for (v, d) in views.iter().zip(data) {
        let mut full = d.to_vec();
        full.resize(len, 0.0);
        v.upload(gpu, &full).unwrap();
    }
    views
}

/// Fails unless `got` and `want` hold the same bits, naming how many
/// values differ and the first few (index, got, want).
pub fn assert_same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let diff: Vec<usize> = (0..got.len()).filter(|&i| got[i].to_bits() != want[i].to_bits()).collect();
    let first: Vec<(usize, f32, f32)> = diff.iter().take(4).map(|&i| (i, got[i], want[i])).collect();
    assert!(
        diff.is_empty(),
        "{what}: {} of {} values differ, first (index, got, want) {first:?}",
        diff.len(),
        got.len()
    );
}

/// Panics, listing the max error and the first mismatches, unless every
/// |got - want| <= abs + rel·|want| (NaN never passes).
pub fn assert_close(what: &str, got: &[f32], want: &[f64], abs: f64, rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs reference {}", got.len(), want.len());
    let mut max_err = 0.0f64;
    let mut bad = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        // Written so that NaN fails.
        if err.is_nan() || err > abs + rel * w.abs() {
            bad.push((i, g, w));
        }
        if err.is_nan() {
            max_err = f64::NAN;
        } else if !max_err.is_nan() {
            max_err = max_err.max(err);
        }
    }
    if !bad.is_empty() {
        let first: Vec<String> = bad.iter().take(8).map(|(i, g, w)| format!("[{i}] got {g} want {w}")).collect();
        panic!(
            "{what}: {} of {} elements differ (max error {max_err:e}, tolerance {abs:e} + {rel:e}·|want|); first: {}",
            bad.len(),
            got.len(),
            first.join(", ")
        );
    }
    eprintln!("{what}: ok, max error {max_err:e} over {} elements", got.len());
}

/// Max |got - want| over max |want|: the error measure for whole parameter
/// tensors, whose small entries would make an elementwise relative test noisy.
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| m.max((g as f64 - w).abs())) / scale
}

/// Panics unless `rel_err(got, want) <= tol`; prints the error either way.
pub fn assert_rel(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs reference {}", got.len(), want.len());
    let e = rel_err(got, want);
    eprintln!("{what}: relative error {e:e}");
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

/// Records with a step block whose batch is `batch`, runs, and waits: for
/// kernels whose rows come from the step.
pub fn run_with_batch(gpu: &Gpu, batch: usize, record: impl FnOnce(&mut sparsetrain::Recorder)) {
    use sparsetrain::step::{StepBlock, StepBuffer};
    let step = StepBuffer::new(gpu);
    let mut rec = sparsetrain::Recorder::with_step(gpu, &step);
    record(&mut rec);
    let plan = rec.into_plan();
    plan.run(gpu, Some(&StepBlock { batch: batch as u32, ..Default::default() })).unwrap();
    gpu.wait().unwrap();
}

/// A stored-channel layout for kernel tests: all `full` channels, or the
/// first `count` of them kept (padded to 4), with the count at dims[0].
pub fn stored(full: usize, count: Option<usize>) -> sparsetrain::ops::conv::Stored {
    use sparsetrain::ops::gather::Side;
    let side = match count {
        None => Side::Full,
        Some(_) => Side::Kept { count: 0, map: 0 },
    };
    sparsetrain::ops::conv::Stored { side, full }
}

/// Awkward convolution geometries for kernel tests: odd sizes, strides,
/// padding, 1×1 kernels, a single pixel, a rectangular kernel, and a
/// strided one with more output pixels per sample than a split of K's 32
/// rows (so that a split starts inside a sample).
pub fn conv_geoms() -> [sparsetrain::ops::conv::ConvGeom; 7] {
    use sparsetrain::ops::conv::ConvGeom;
    [
        ConvGeom { h: 5, w: 7, kh: 3, kw: 3, stride: 1, pad: 1 },
        ConvGeom { h: 8, w: 8, kh: 3, kw: 3, stride: 2, pad: 1 },
        ConvGeom { h: 6, w: 6, kh: 1, kw: 1, stride: 2, pad: 0 },
        ConvGeom { h: 1, w: 1, kh: 1, kw: 1, stride: 1, pad: 0 },
        ConvGeom { h: 9, w: 5, kh: 5, kw: 5, stride: 1, pad: 2 },
        ConvGeom { h: 7, w: 7, kh: 2, kw: 3, stride: 3, pad: 0 },
        ConvGeom { h: 12, w: 12, kh: 3, kw: 3, stride: 2, pad: 1 },
    ]
}

/// Per-run timing of a long test, printed past the harness's capture where
/// `SPARSETRAIN_TEST_TRACE` is set, when the run ends: on a device where a
/// test runs long, it says whether the first case of each run (which
/// compiles its pipelines) or every case's round trip takes the time.
pub struct Trace {
    label: String,
    start: std::time::Instant,
    first: Option<std::time::Duration>,
    cases: usize,
}

impl Trace {
    pub fn new(test: &str, run: &str) -> Trace {
        Trace { label: format!("{test} [{run}]"), start: std::time::Instant::now(), first: None, cases: 0 }
    }

    /// One case of the run has finished.
    pub fn case(&mut self) {
        self.cases += 1;
        self.first.get_or_insert(self.start.elapsed());
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if std::env::var("SPARSETRAIN_TEST_TRACE").is_ok_and(|s| !s.is_empty() && s != "0") {
            use std::io::Write;
            let total = self.start.elapsed().as_secs_f64();
            let first = self.first.map_or(0.0, |d| d.as_secs_f64());
            let each = if self.cases > 1 { (total - first) / (self.cases - 1) as f64 * 1e3 } else { 0.0 };
            let _ = writeln!(
                std::io::stderr(),
                "TRACE {}: {} cases in {total:.2} s (first {first:.2} s, then {each:.2} ms each)",
                self.label,
                self.cases
            );
        }
    }
}
