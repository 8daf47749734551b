//! Benchmarks. They print the device, the sizes, medians of several runs
//! and the ratio to a baseline measured in the same run; speed is shown
//! here, never in timed tests.

use std::io::Write;

use crate::autotune::{Runs, median, time_matmul};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::matmul::{Dims, Layout, Matmul, Variant, flops};

/// The MLP shapes at batch 256 for hidden sizes 1024 and 4096, as (M, N, K)
/// of the forward product; the layout decides which operand is transposed.
pub fn mlp_shapes() -> Vec<Dims> {
    vec![
        Dims { m: 256, n: 1024, k: 784 },
        Dims { m: 256, n: 1024, k: 1024 },
        Dims { m: 256, n: 4096, k: 4096 },
        Dims { m: 1024, n: 784, k: 256 },
    ]
}

pub struct MatmulRow {
    pub layout: Layout,
    pub dims: Dims,
    pub variant: Variant,
    pub gflops: f64,
    pub runs: usize,
    pub vs_naive: f64,
}

fn io_err(e: std::io::Error) -> Error {
    Error::Io { path: "<stdout>".into(), source: e }
}

/// Times every variant on every layout and size; prints a Markdown table.
pub fn bench_matmul(
    gpu: &Gpu,
    layouts: &[Layout],
    shapes: &[Dims],
    runs: Runs,
    out: &mut dyn Write,
) -> Result<Vec<MatmulRow>> {
    let r = gpu.report();
    let choice = gpu.matmul_choice();
    writeln!(out, "device: {} ({:?}, {:?})", r.name, r.backend, r.device_type).map_err(io_err)?;
    writeln!(out, "chosen variant: {} (by {:?})", choice.variant.name(), choice.source).map_err(io_err)?;
    writeln!(
        out,
        "runs per cell: {}..{} within {:.1} s, median reported; ratio = GFLOP/s over the naive kernel's on the same shape",
        runs.min, runs.max, runs.budget_s
    )
    .map_err(io_err)?;
    writeln!(out).map_err(io_err)?;
    writeln!(out, "| layout | M×N×K | variant | GFLOP/s | runs | × naive |").map_err(io_err)?;
    writeln!(out, "|---|---|---|---:|---:|---:|").map_err(io_err)?;
    let mut rows = Vec::new();
    for &layout in layouts {
        for &d in shapes {
            let mut cells = Vec::new();
            for v in [Variant::Naive, Variant::RegTile, Variant::Shared] {
                let secs = time_matmul(gpu, Matmul::new(layout).variant(v), d, runs)?;
                cells.push((v, flops(d) / median(&secs) / 1e9, secs.len()));
            }
            let naive = cells[0].1;
            for (v, gflops, n) in cells {
                let mark = if v == choice.variant { " (chosen)" } else { "" };
                writeln!(
                    out,
                    "| {} | {}×{}×{} | {}{} | {:.2} | {} | {:.2} |",
                    layout.name(),
                    d.m,
                    d.n,
                    d.k,
                    v.name(),
                    mark,
                    gflops,
                    n,
                    gflops / naive
                )
                .map_err(io_err)?;
                out.flush().map_err(io_err)?;
                rows.push(MatmulRow { layout, dims: d, variant: v, gflops, runs: n, vs_naive: gflops / naive });
            }
        }
    }
    Ok(rows)
}

/// FLOPs of one training step of an MLP of `sizes` at batch `b` where hidden
/// layers keep the fraction `keep` of their units, with `passes` forward and
/// backward passes (2 for the sparse method, 1 dense). The input layer has no
/// input gradient.
pub fn step_flops(sizes: &[usize], b: usize, keep: f64, passes: usize) -> f64 {
    let layers = sizes.len() - 1;
    let mut total = 0.0;
    for l in 0..layers {
        let rho_in = if l == 0 { 1.0 } else { keep };
        let rho_out = if l + 1 == layers { 1.0 } else { keep };
        let mm = 2.0 * b as f64 * sizes[l] as f64 * rho_in * sizes[l + 1] as f64 * rho_out;
        total += mm * if l == 0 { 2.0 } else { 3.0 };
    }
    total * passes as f64
}

pub struct TrainRow {
    pub sizes: Vec<usize>,
    /// GPU seconds per kernel family in one step (empty without timestamps).
    pub profile: Vec<(&'static str, f64)>,
    /// None: dense.
    pub keep: Option<f32>,
    pub step_ms: f64,
    pub runs: usize,
    pub speedup: f64,
    pub flop_ratio: f64,
    pub readback_per_step: f64,
}

/// Times training steps (median of `runs` after `warmup`) for each model and
/// keep ratio, against the dense step of the same model; prints a Markdown table.
pub fn bench_train(
    gpu: &Gpu,
    models: &[Vec<usize>],
    keeps: &[f32],
    batch: usize,
    warmup: usize,
    runs: usize,
    out: &mut dyn Write,
) -> Result<Vec<TrainRow>> {
    use crate::mlp::{DenseTrainer, Mlp};
    use crate::ops::optim::Sgd;
    use crate::record::Recorder;
    use crate::sparse::{SparseConfig, SparseTrainer};
    use crate::tensor::Tensor;
    use rand::{Rng, SeedableRng};
    use std::time::Instant;

    let r = gpu.report();
    writeln!(
        out,
        "device: {} ({:?}, {:?}); matmul variant {}",
        r.name,
        r.backend,
        r.device_type,
        gpu.matmul_choice().variant.name()
    )
    .map_err(io_err)?;
    writeln!(
        out,
        "batch {batch}; {warmup} warm-up steps, then the median of {runs} steps, each submitted and waited for; \
         speedup = dense step time / step time, FLOP ratio = dense step FLOPs / step FLOPs (2 passes per sparse step)"
    )
    .map_err(io_err)?;
    writeln!(out).map_err(io_err)?;
    writeln!(out, "| model | mode | step ms | runs | speedup vs dense | FLOP ratio | read-back bytes/step |")
        .map_err(io_err)?;
    writeln!(out, "|---|---|---:|---:|---:|---:|---:|").map_err(io_err)?;
    let sgd = Sgd { lr: 0.01, momentum: 0.9, weight_decay: 5e-4 };
    let mut rows = Vec::new();

    for sizes in models {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let x: Vec<f32> = (0..batch * sizes[0]).map(|_| rng.random_range(-1.0..1.0)).collect();
        let classes = *sizes.last().unwrap_or(&1) as u32;
        let y: Vec<u32> = (0..batch).map(|_| rng.random_range(0..classes)).collect();
        let tx = Tensor::from_f32(gpu, "bench x", &[batch, sizes[0]], &x)?;
        let ty = Tensor::from_u32(gpu, "bench y", &[batch], &y)?;
        let mut dense_ms = f64::NAN;
        for keep in std::iter::once(None).chain(keeps.iter().map(|&k| Some(k))) {
            let mlp = Mlp::new(gpu, sizes, 1)?;
            let mut profile = Vec::new();
            let mut time_steps = |step: &mut dyn FnMut(&mut Recorder) -> Result<()>| -> Result<(Vec<f64>, f64)> {
                for _ in 0..warmup {
                    let mut rec = Recorder::new(gpu);
                    step(&mut rec)?;
                    rec.finish()?;
                }
                let before = gpu.readback_stats();
                let mut times = Vec::new();
                for _ in 0..runs {
                    let t0 = Instant::now();
                    let mut rec = Recorder::new(gpu);
                    step(&mut rec)?;
                    rec.finish()?;
                    times.push(t0.elapsed().as_secs_f64());
                }
                let bytes = (gpu.readback_stats().bytes - before.bytes) as f64 / runs as f64;
                if gpu.has_timestamps() {
                    let mut rec = Recorder::profiled(gpu)?;
                    step(&mut rec)?;
                    profile = family_shares(&rec.finish_profiled()?);
                }
                Ok((times, bytes))
            };
            let (times, bytes) = match keep {
                None => {
                    let mut t = DenseTrainer::new(gpu, mlp, batch, sgd)?;
                    time_steps(&mut |rec| t.step(rec, &tx, &ty, batch))?
                }
                Some(k) => {
                    let cfg = SparseConfig { keep: k, ..SparseConfig::default() };
                    let mut t = SparseTrainer::new(gpu, mlp, batch, sgd, cfg)?;
                    time_steps(&mut |rec| t.step(rec, &tx, &ty, batch, 0.01))?
                }
            };
            let ms = 1e3 * median(&times);
            if keep.is_none() {
                dense_ms = ms;
            }
            let dense_flops = step_flops(sizes, batch, 1.0, 1);
            let flops = keep.map_or(dense_flops, |k| step_flops(sizes, batch, k as f64, 2));
            let row = TrainRow {
                sizes: sizes.clone(),
                profile: std::mem::take(&mut profile),
                keep,
                step_ms: ms,
                runs: times.len(),
                speedup: dense_ms / ms,
                flop_ratio: dense_flops / flops,
                readback_per_step: bytes,
            };
            let name = sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("-");
            let mode = keep.map_or("dense".to_string(), |k| format!("keep {k}"));
            writeln!(
                out,
                "| {name} | {mode} | {:.2} | {} | {:.2}× | {:.2}× | {} |",
                row.step_ms, row.runs, row.speedup, row.flop_ratio, row.readback_per_step
            )
            .map_err(io_err)?;
            out.flush().map_err(io_err)?;
            rows.push(row);
        }
    }
    if rows.iter().any(|r| !r.profile.is_empty()) {
        writeln!(out, "\nGPU time per kernel family in one step (timestamp queries; ms and share of the GPU total):\n")
            .map_err(io_err)?;
        for row in &rows {
            let name = row.sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("-");
            let label = format!("{name} {}", row.keep.map_or("dense".to_string(), |k| format!("keep {k}")));
            let fams = &row.profile;
            let total: f64 = fams.iter().map(|f| f.1).sum();
            let parts: Vec<String> = fams
                .iter()
                .map(|(f, t)| format!("{f} {:.2} ({:.0}%)", 1e3 * t, 100.0 * t / total.max(1e-12)))
                .collect();
            writeln!(out, "- {label}: total {:.2} ms — {}", 1e3 * total, parts.join(", ")).map_err(io_err)?;
        }
    } else {
        writeln!(out, "\n(no timestamp queries on this adapter: no per-kernel breakdown)").map_err(io_err)?;
    }
    Ok(rows)
}

/// Seconds per kernel family, largest first.
pub fn family_shares(times: &[(crate::shader::Kernel, f64)]) -> Vec<(&'static str, f64)> {
    let mut fams: Vec<(&'static str, f64)> = Vec::new();
    for (k, t) in times {
        match fams.iter_mut().find(|f| f.0 == k.family()) {
            Some(f) => f.1 += t,
            None => fams.push((k.family(), *t)),
        }
    }
    fams.sort_by(|a, b| b.1.total_cmp(&a.1));
    fams
}
