//! `sparsetrain bench all`: both benchmarks, printed, and saved as JSON for
//! scripts/bench_table.py.

use anyhow::Context;
use sparsetrain::Gpu;
use sparsetrain::bench;
use sparsetrain::ops::autotune::Runs;
use sparsetrain::ops::matmul::{CoopMode, Dims, Layout};

/// `bench all`: both benchmarks on one device, printed, and optionally saved
/// as JSON (written to a temporary file and renamed, so a partial file never
/// replaces a good one).
pub fn bench_all(json: Option<std::path::PathBuf>, quick: bool) -> anyhow::Result<()> {
    use serde_json::json;
    let gpu = Gpu::open().context("opening the GPU")?;
    let sizes: &[usize] = if quick { &[256, 512, 1024] } else { &[256, 512, 1024, 2048] };
    let mut shapes: Vec<Dims> = sizes.iter().map(|&s| Dims { m: s, n: s, k: s }).collect();
    if !quick {
        shapes.extend(bench::mlp_shapes());
    }
    let runs = Runs { min: 3, max: 10, budget_s: 1.0, inner: 1 };
    let mut stdout = std::io::stdout();
    let mm = bench::bench_matmul(&gpu, &Layout::ALL, &shapes, &[], runs, &mut stdout)?;
    println!();
    let models = if quick {
        vec![bench::mlp_model(&[1024, 1024])]
    } else {
        vec![bench::mlp_model(&[1024, 1024]), bench::mlp_model(&[4096, 4096])]
    };
    let tr =
        bench::bench_train(&gpu, &models, &[0.5, 0.25, 0.1, 0.05], 256, 2, 5, &mut stdout, &mut std::io::stderr())?;
    let Some(path) = json else { return Ok(()) };
    let r = gpu.report();
    let when = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let doc = json!({
        "unix_time": when,
        "device": { "name": r.name, "backend": format!("{:?}", r.backend), "type": format!("{:?}", r.device_type),
                    "driver": format!("{} {}", r.driver, r.driver_info) },
        "matmul_variant": { "chosen": gpu.matmul_choice().variant.name(), "by": format!("{:?}", gpu.matmul_choice().source) },
        "batch": 256,
        "matmul": mm.iter().map(|m| json!({
            "layout": m.layout.name(), "m": m.dims.m, "n": m.dims.n, "k": m.dims.k,
            "variant": m.variant.name(), "splits": m.splits, "depth": m.depth, "tile": m.tile.map(|(r, c)| format!("{r}x{c}")), "coop": m.coop.map(|c| format!("{:?}", c.mode).to_lowercase()), "coop_unroll": m.coop.filter(|c| c.mode == CoopMode::Direct).map(|c| c.unroll), "coop_shape": m.coop.and_then(|c| c.shape).map(|(t, wm, wn)| format!("{t}x{wm}x{wn}")), "kpack": m.kpack, "gflops": m.gflops, "runs": m.runs, "vs_naive": m.vs_naive,
            "gpu_timed": m.gpu_timed, "peak_share": m.peak_share,
        })).collect::<Vec<_>>(),
        "train": tr.iter().map(|t| json!({
            "model": t.model, "keep": t.keep, "step_ms": t.step_ms, "latency_ms": t.latency_ms, "gpu_ms": t.gpu_ms,
            "host_us": t.host_us, "host_us_per_dispatch": t.host_us_per_dispatch(), "chunk": t.chunk, "host_cpu_us": t.host_cpu_us,
            "host1_us": t.host1_us, "dispatches": t.dispatches,
            "passes": t.passes, "runs": t.runs, "speedup": t.speedup,
            "flop_ratio": t.flop_ratio, "readback_bytes_per_step": t.readback_per_step,
            "profile_ms": t.profile.iter().map(|(f, s)| (f.to_string(), json!(1e3 * s))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    });
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&doc)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    println!("\nwrote {}", path.display());
    Ok(())
}
