//! The training benchmark: the modes of each model (dense and each keep)
//! take turns in timed rounds, and each row reports the step's time, its
//! fixed cost and its speedup over the dense step of the same round.

use std::io::Write;
use std::time::Instant;

use super::io_err;
use crate::device::gpu::Gpu;
use crate::error::{Error, Result};
use crate::nn::{Graph, GraphSpec, Net};
use crate::ops::autotune::median;
use crate::ops::optim::Sgd;
use crate::sparse::SparseConfig;
use crate::train::{MAX_CHUNK, Phase, Trainer};

/// Timed rounds of the training benchmark: each times every mode of a
/// model in turn, `runs` steps each.
pub const ROUNDS: usize = 3;

/// One row of the training benchmark.
pub struct TrainRow {
    pub model: String,
    /// None: dense.
    pub keep: Option<f32>,
    /// Median wall time of one step submitted and waited for.
    pub latency_ms: f64,
    /// Wall time per step of `runs` steps submitted back to back, waited for
    /// at the end: the median over `ROUNDS` rounds.
    pub step_ms: f64,
    /// Median host time per step to write the step blocks, encode the plan
    /// and submit, for `chunk` steps submitted together as training submits
    /// them (`Trainer::run_staged`; the batches' upload is not counted).
    pub host_us: f64,
    /// `host_us` counted in CPU time of the submitting thread (where the
    /// platform reports it): without the time the thread waited for a core
    /// (on a CPU adapter the device's own threads take them).
    pub host_cpu_us: Option<f64>,
    /// Steps per submission behind `host_us`.
    pub chunk: usize,
    /// Median host time of a step submitted alone (`Trainer::run`).
    pub host1_us: f64,
    pub dispatches: usize,
    pub passes: usize,
    /// GPU-busy time of one step (timestamps), where the adapter has them.
    pub gpu_ms: Option<f64>,
    pub runs: usize,
    /// Dense step over this row's step, per round (the modes of a model take
    /// turns in each round): the median over the rounds.
    pub speedup: f64,
    pub flop_ratio: f64,
    pub readback_per_step: f64,
    /// GPU seconds per kernel family in one step (empty without timestamps).
    pub profile: Vec<(&'static str, f64)>,
}

impl TrainRow {
    pub fn host_us_per_dispatch(&self) -> f64 {
        self.host_us / self.dispatches.max(1) as f64
    }

    pub fn mode(&self) -> String {
        mode_name(self.keep)
    }
}

fn mode_name(keep: Option<f32>) -> String {
    keep.map_or("dense".to_string(), |k| format!("keep {k}"))
}

/// `SPARSETRAIN_PROFILE`: "kernels" breaks the profile down by kernel
/// rather than family, "dispatches" also lists every dispatch of each step.
fn profile_mode() -> Option<&'static str> {
    match std::env::var("SPARSETRAIN_PROFILE").ok()?.as_str() {
        "kernels" => Some("kernels"),
        "dispatches" => Some("dispatches"),
        _ => None,
    }
}

/// Matmul FLOPs of one training step per sample, `kept[p]` units kept in
/// prunable layer p (None: dense): forward, input gradient (not for layers
/// reading the input) and weight gradient, times `passes`.
pub fn step_flops(graph: &Graph, kept: Option<&[usize]>, passes: usize) -> f64 {
    let fwd = graph.flops(kept);
    let first: f64 = graph
        .nodes
        .iter()
        .filter(|n| n.inputs.contains(&0))
        .map(|n| {
            let rho_out = match (kept, graph.values[n.output].set) {
                (Some(k), crate::nn::graph::ChannelSet::Unit(p)) => k[p] as f64 / graph.unit_widths()[p].max(1) as f64,
                _ => 1.0,
            };
            n.layer.flops(&n.in_shapes, graph.values[n.output].shape, 1.0, rho_out)
        })
        .sum();
    (3.0 * fwd - first) * passes as f64
}

/// Times training steps of each model, dense and at each keep ratio, with
/// batch `batch`; prints a Markdown table and the per-kernel profile to
/// `out`, and what it is doing to `progress` as it goes (minutes per model
/// on a CPU adapter; best effort: a failed write there stops nothing). All
/// modes of a model are built at once (their memory together) and timed in
/// alternation, so that the speedups compare steps run moments apart.
#[allow(clippy::too_many_arguments)]
pub fn bench_train(
    gpu: &Gpu,
    models: &[(String, GraphSpec)],
    keeps: &[f32],
    batch: usize,
    warmup: usize,
    runs: usize,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<Vec<TrainRow>> {
    use rand::{Rng, SeedableRng};

    let r = gpu.report();
    crate::ops::autotune::ensure(gpu)?;
    let variant = gpu.matmul_variant();
    // How `coop` reads its operands, where it runs.
    let how = match crate::device::variant::coop_mode_env()? {
        _ if variant != crate::ops::matmul::Variant::Coop => "",
        None => " (f16 packs, staged in tiles where no size is kept on GPUs)",
        Some(crate::ops::matmul::CoopMode::Direct) => " (from f16 packs)",
        Some(crate::ops::matmul::CoopMode::Staged) => " (staged)",
        Some(crate::ops::matmul::CoopMode::Tiled) => " (f16 packs staged in tiles)",
    };
    writeln!(
        out,
        "device: {} ({:?}, {:?}); matmul variant {}{how}; convolutions {}; precision {}",
        r.name,
        r.backend,
        r.device_type,
        variant.name(),
        if gpu.implicit_convs() { "in place" } else { "through im2col columns" },
        gpu.precision().name()
    )
    .map_err(io_err)?;
    let as_bytes = crate::train::byte_inputs_env()?;
    let inputs = if as_bytes { "pixel bytes" } else { "floats (SPARSETRAIN_BYTE_INPUTS=off)" };
    writeln!(
        out,
        "batch {batch}; {warmup} warm-up steps; latency = median of {runs} steps each submitted and waited for; \
         step = median over {ROUNDS} rounds of max({runs}, 2 × chunk) steps submitted back to back as training does, in runs \
         of up to `chunk` (at most {MAX_CHUNK}) staged steps per submission, from the first submission (the first run's \
         staging and encoding, the pipeline's fill, left out) until all are done (per step; batches uploaded as {inputs}); host = median time per step to write the \
         step blocks, encode the plan and submit, over the first submission of each round (the device idle when it starts; \
         `chunk` steps, the batches' upload not counted; host CPU: the same in the thread's CPU time, without waits for a \
         core); host 1 = the same for a step submitted alone (latency and host 1 \
         over consecutive steps of a mode); the modes of a model take turns in \
         every round; speedup = median over the rounds of dense step / step; FLOP ratio = dense step FLOPs / \
         step FLOPs (2 passes per sparse step)"
    )
    .map_err(io_err)?;
    writeln!(out).map_err(io_err)?;
    writeln!(
        out,
        "| model | mode | step ms | latency ms | GPU ms | host µs | host µs/dispatch | host CPU µs/dispatch | chunk | host 1 µs/dispatch | dispatches | passes | speedup | FLOP ratio | read-back B/step |"
    )
    .map_err(io_err)?;
    writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|").map_err(io_err)?;
    let sgd = Sgd { lr: 0.01, momentum: 0.9, weight_decay: 5e-4 };
    let (lr, score_lr) = (0.01, 0.01);
    let mut rows = Vec::new();
    let mut dispatch_log = Vec::new();
    for (name, spec) in models {
        let graph = Graph::from_spec(spec.clone())?;
        let dim = graph.input().len();
        let classes = graph.classes() as u32;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Pixel bytes of one channel, normalised as grey images are: the
        // rounds upload them as training does (SPARSETRAIN_BYTE_INPUTS),
        // the warm-up and latency steps their floats.
        let pixels: Vec<u8> = (0..batch * dim).map(|_| rng.random()).collect();
        let tables = crate::data::Norm::gray(0.5, 0.25).tables();
        let x: Vec<f32> = pixels.iter().map(|&b| tables[0][usize::from(b)]).collect();
        let y: Vec<u32> = (0..batch).map(|_| rng.random_range(0..classes)).collect();
        let dense_flops = step_flops(&graph, None, 1);
        // Every mode of the model lives at once and the timed rounds take
        // the modes in turn, so that a machine whose speed drifts (another
        // job starting, clocks changing) slows dense and sparse steps
        // alike rather than whichever happened to run then.
        let modes: Vec<Option<f32>> = std::iter::once(None).chain(keeps.iter().map(|&k| Some(k))).collect();
        let (mut trainers, mut byte_modes) = (Vec::new(), Vec::new());
        let _ = writeln!(progress, "bench train {name}: building and warming up {} modes", modes.len());
        for &keep in &modes {
            let built = Instant::now();
            let net = Net::new(gpu, Graph::from_spec(spec.clone())?, 1)?;
            let sparse = keep.map(|k| SparseConfig { keep: k, ..SparseConfig::default() });
            let mut t = Trainer::new(gpu, net, batch, sgd, sparse)?;
            let bytes_on = as_bytes && t.byte_inputs_fit(gpu);
            if bytes_on {
                t.enable_byte_inputs(gpu, &tables)?;
                // The byte plan recorded and its decode compiled before any
                // timing.
                if warmup > 0 {
                    t.stage_byte_batches(gpu, &pixels, &y, &[batch])?;
                    t.run_staged(gpu, Phase::Train, lr, score_lr, 0)?;
                }
            }
            t.set_batch(gpu, &x, &y)?;
            for _ in 0..warmup {
                t.run(gpu, Phase::Train, batch, lr, score_lr, 0)?;
            }
            gpu.wait()?;
            trainers.push(t);
            byte_modes.push(bytes_on);
            let _ = writeln!(progress, "  {} ready in {:.1} s", mode_name(keep), built.elapsed().as_secs_f64());
        }
        let n = modes.len();
        let _ = writeln!(progress, "bench train {name}: {runs} steps per mode submitted one at a time (latency)");
        let (mut lat, mut host1) = (vec![Vec::new(); n], vec![Vec::new(); n]);
        // Latency and host time per mode over consecutive steps, as training
        // runs them: a plan replayed after another one finds the host's
        // caches cold. Byte batches are staged before the clock starts (a
        // float batch is already uploaded), so that the plan is the rounds'.
        for (i, t) in trainers.iter_mut().enumerate() {
            for _ in 0..runs {
                if byte_modes[i] {
                    t.stage_byte_batches(gpu, &pixels, &y, &[batch])?;
                }
                let t0 = Instant::now();
                if byte_modes[i] {
                    t.run_staged(gpu, Phase::Train, lr, score_lr, 0)?;
                } else {
                    t.run(gpu, Phase::Train, batch, lr, score_lr, 0)?;
                }
                host1[i].push(t0.elapsed().as_secs_f64());
                gpu.wait()?;
                lat[i].push(t0.elapsed().as_secs_f64());
            }
        }
        let (mut step, mut bytes, mut host) = (vec![Vec::new(); n], vec![0u64; n], vec![Vec::new(); n]);
        let mut host_cpu = vec![Vec::new(); n];
        // The rounds stage and submit their steps as training does: the
        // same batch for every step, uploaded once per submission.
        // A round is at least two full runs of staged steps, as training
        // submits them, so that the host time is that of training's runs,
        // timed from the first submission: training stages and encodes a
        // run while the device works on the one before, so only its first
        // run's staging and encoding (the pipeline's fill) keep the device
        // waiting; the later runs' show wherever the host, not the device,
        // sets the pace. (Until the fourteenth session a round was one
        // run, its fill included: BENCHMARKS.md.)
        let chunk = trainers.iter().map(|t| t.max_chunk()).min().unwrap_or(1);
        let per_round = runs.max(2 * chunk);
        let (xs, ys, bs) = (x.repeat(chunk), y.repeat(chunk), pixels.repeat(chunk));
        for round in 0..ROUNDS {
            for (i, t) in trainers.iter_mut().enumerate() {
                let before = gpu.readback_stats();
                let mut t0 = None;
                let mut left = per_round;
                while left > 0 {
                    let k = chunk.min(left);
                    if byte_modes[i] {
                        t.stage_byte_batches(gpu, &bs[..k * batch * dim], &ys[..k * batch], &vec![batch; k])?;
                    } else {
                        t.stage_batches(gpu, &xs[..k * batch * dim], &ys[..k * batch], &vec![batch; k])?;
                    }
                    let (h0, c0) = (Instant::now(), thread_cpu_seconds());
                    t.run_staged(gpu, Phase::Train, lr, score_lr, 0)?;
                    if left == per_round {
                        host[i].push(h0.elapsed().as_secs_f64() / k as f64);
                        if let (Some(a), Some(b)) = (c0, thread_cpu_seconds()) {
                            host_cpu[i].push((b - a) / k as f64);
                        }
                    }
                    t0.get_or_insert_with(Instant::now);
                    left -= k;
                }
                gpu.wait()?;
                let t0 = t0.ok_or_else(|| Error::InvalidArgument("bench train: a round of no steps".into()))?;
                step[i].push(1e3 * t0.elapsed().as_secs_f64() / per_round as f64);
                bytes[i] += gpu.readback_stats().bytes - before.bytes;
            }
            let times: Vec<String> =
                modes.iter().zip(&step).map(|(&k, s)| format!("{} {:.2}", mode_name(k), s[round])).collect();
            let _ = writeln!(
                progress,
                "bench train {name}: round {}/{ROUNDS} of {per_round} steps per mode, ms per step: {}",
                round + 1,
                times.join(", ")
            );
        }
        if gpu.has_timestamps() {
            let _ = writeln!(progress, "bench train {name}: GPU time and per-kernel profile of one step per mode");
        }
        for (i, (&keep, t)) in modes.iter().zip(&mut trainers).enumerate() {
            let block = t.step_block(Phase::Train, batch, lr, score_lr, 0);
            // The replays below bypass the trainer's count of steps since
            // lazy SGD last settled its deferred updates: settle first, so
            // that a few more cannot outrun the ring of factors.
            t.settle(gpu)?;
            let plan = t.plan_for(gpu, Phase::Train, byte_modes[i])?;
            let (dispatches, passes) = (plan.dispatches(), plan.passes());
            let (gpu_ms, profile) = if gpu.has_timestamps() {
                let busy: Vec<f64> = (0..3).map(|_| plan.gpu_seconds(gpu, Some(&block))).collect::<Result<Vec<_>>>()?;
                let times = plan.profile(gpu, Some(&block))?;
                if profile_mode() == Some("dispatches") {
                    dispatch_log.push((format!("{name} {}", mode_name(keep)), plan.grids(), times.clone()));
                }
                (Some(1e3 * median(&busy)), family_shares(&times))
            } else {
                (None, Vec::new())
            };
            let flops = match keep {
                None => dense_flops,
                Some(k) => {
                    let kept: Vec<usize> =
                        graph.unit_widths().iter().map(|&w| ((k as f64 * w as f64).round() as usize).max(1)).collect();
                    step_flops(&graph, Some(&kept), 2)
                }
            };
            // The ratio of each round's dense step to this mode's, taken
            // moments apart: the median of those, not of two separate medians.
            let ratios: Vec<f64> = step[0].iter().zip(&step[i]).map(|(d, s)| d / s).collect();
            let row = TrainRow {
                model: name.clone(),
                keep,
                latency_ms: 1e3 * median(&lat[i]),
                step_ms: median(&step[i]),
                host_us: 1e6 * median(&host[i]),
                host_cpu_us: (!host_cpu[i].is_empty()).then(|| 1e6 * median(&host_cpu[i])),
                chunk,
                host1_us: 1e6 * median(&host1[i]),
                dispatches,
                passes,
                gpu_ms,
                runs,
                speedup: median(&ratios),
                flop_ratio: dense_flops / flops,
                readback_per_step: bytes[i] as f64 / (ROUNDS * per_round) as f64,
                profile,
            };
            writeln!(
                out,
                "| {name} | {} | {:.2} | {:.2} | {} | {:.0} | {:.2} | {} | {} | {:.2} | {} | {} | {:.2}× | {:.2}× | {} |",
                row.mode(),
                row.step_ms,
                row.latency_ms,
                row.gpu_ms.map_or("–".into(), |g| format!("{g:.2}")),
                row.host_us,
                row.host_us_per_dispatch(),
                row.host_cpu_us.map_or("–".into(), |c| format!("{:.2}", c / row.dispatches.max(1) as f64)),
                row.chunk,
                row.host1_us / row.dispatches.max(1) as f64,
                row.dispatches,
                row.passes,
                row.speedup,
                row.flop_ratio,
                row.readback_per_step
            )
            .map_err(io_err)?;
            out.flush().map_err(io_err)?;
            rows.push(row);
        }
    }
    if rows.iter().any(|r| !r.profile.is_empty()) {
        writeln!(out, "\nGPU time per kernel family in one step (one timed pass per dispatch; ms and share):\n")
            .map_err(io_err)?;
        for row in &rows {
            let total: f64 = row.profile.iter().map(|f| f.1).sum();
            let parts: Vec<String> = row
                .profile
                .iter()
                .map(|(f, t)| format!("{f} {:.2} ({:.0}%)", 1e3 * t, 100.0 * t / total.max(1e-12)))
                .collect();
            writeln!(out, "- {} {}: total {:.2} ms — {}", row.model, row.mode(), 1e3 * total, parts.join(", "))
                .map_err(io_err)?;
        }
    } else {
        writeln!(out, "\n(no timestamp queries on this adapter: no GPU time, no per-kernel breakdown)")
            .map_err(io_err)?;
    }
    for (what, grids, times) in dispatch_log {
        writeln!(out, "\nEvery dispatch of one {what} step (kernel, workgroups, ms):\n").map_err(io_err)?;
        for (i, ((kernel, g), (_, t))) in grids.iter().zip(&times).enumerate() {
            writeln!(out, "{i:4} {:24} {:>5}×{}×{} {:9.3}", kernel.entry_point(), g.x, g.y, g.z, 1e3 * t)
                .map_err(io_err)?;
        }
    }
    Ok(rows)
}

/// Seconds per kernel family, largest first; per kernel (entry point)
/// instead when `SPARSETRAIN_PROFILE` is `kernels` or `dispatches`, to see which pass of
/// a family costs what.
pub fn family_shares(times: &[(crate::device::shader::Kernel, f64)]) -> Vec<(&'static str, f64)> {
    let by_kernel = profile_mode().is_some();
    let mut fams: Vec<(&'static str, f64)> = Vec::new();
    for (k, t) in times {
        let name = if by_kernel { k.entry_point() } else { k.family() };
        match fams.iter_mut().find(|f| f.0 == name) {
            Some(f) => f.1 += t,
            None => fams.push((name, *t)),
        }
    }
    fams.sort_by(|a, b| b.1.total_cmp(&a.1));
    fams
}

/// A model for the training benchmark by name: `lenet5` (28×28 grey),
/// `resnetN` (width 16) and `vggN` (width 64) on 32×32 colour with a
/// `:WIDTH` suffix for another width, all 10 classes; or the hidden sizes of
/// an MLP on 784 inputs ("1024-1024").
pub fn model_by_name(name: &str) -> Result<(String, GraphSpec)> {
    use crate::nn::{Shape, models};
    let bad = |m: String| Error::InvalidArgument(m);
    let (base, width) = match name.split_once(':') {
        Some((b, w)) => (b, Some(w.parse::<usize>().map_err(|_| bad(format!("width {w:?} is not a number")))?)),
        None => (name, None),
    };
    let rgb = Shape { c: 3, h: 32, w: 32 };
    let depth = |prefix: &str| base.strip_prefix(prefix).and_then(|d| d.parse::<usize>().ok());
    let spec = if base == "lenet5" && width.is_none() {
        models::lenet5(Shape { c: 1, h: 28, w: 28 }, 10)?
    } else if let Some(d) = depth("resnet") {
        models::resnet(d, width.unwrap_or(16), rgb, 10)?
    } else if let Some(d) = depth("vgg") {
        models::vgg(d, width.unwrap_or(64), rgb, 10)?
    } else {
        let hidden: std::result::Result<Vec<usize>, _> = base.split(['-', ',', ' ']).map(str::parse).collect();
        match hidden {
            Ok(h) if !h.is_empty() && !h.contains(&0) && width.is_none() => return Ok(mlp_model(&h)),
            _ => {
                return Err(bad(
                    "expected lenet5, resnetN or vggN (optionally :WIDTH), or MLP hidden sizes like 1024-1024".into(),
                ));
            }
        }
    };
    Ok((name.to_string(), spec))
}

/// The MLP 784-hidden-10 for the training benchmark, named like "784-1024-1024-10".
pub fn mlp_model(hidden: &[usize]) -> (String, GraphSpec) {
    let mut sizes = vec![784];
    sizes.extend(hidden);
    sizes.push(10);
    (sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("-"), GraphSpec::mlp(784, hidden, 10))
}

/// CPU seconds the calling thread has run, where the platform reports it.
/// Host time measured by the wall clock on a CPU adapter also counts the
/// moments the device's own threads held every core.
fn thread_cpu_seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec, which `ts` is.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_by_name() {
        assert_eq!(model_by_name("1024-1024").unwrap().0, "784-1024-1024-10");
        assert_eq!(model_by_name("resnet20").unwrap().0, "resnet20");
        assert!(model_by_name("resnet32:32").is_ok());
        for bad in ["resnet21", "vgg12", "lenet5:4", "1024-0", "", "resnet20:x"] {
            assert!(model_by_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
