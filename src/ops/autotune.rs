//! Choosing the matmul variant per adapter. Software and hardware GPUs
//! disagree about which variant is fastest (lavapipe punishes workgroup
//! barriers, real GPUs reward workgroup-memory reuse), so the device times
//! both once, caches the winner by adapter, and falls back to a rule on the
//! device type when timing is off. `SPARSETRAIN_MATMUL` overrides all of it.

use std::path::PathBuf;

use rand::{Rng, SeedableRng};

use crate::device::gpu::Gpu;
pub use crate::device::shader::{ChoiceSource, MatmulChoice};
use crate::device::tensor::Tensor;
use crate::error::{Error, Result};
use crate::ops::matmul::{Dims, Layout, Matmul, Variant};
pub use crate::ops::timing::{Runs, median, time_recorded};

fn cache_file() -> Option<PathBuf> {
    let dir = if let Some(d) = std::env::var_os("SPARSETRAIN_CACHE_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(d).join("sparsetrain")
    } else {
        PathBuf::from(std::env::var_os("HOME")?).join(".cache").join("sparsetrain")
    };
    Some(dir.join("matmul-variant.tsv"))
}

/// The adapter, the matmul kernels' source, and the experiments that change
/// what the variants run (`SPARSETRAIN_WIDE_BK`, `SPARSETRAIN_WIDE_TILE`,
/// `SPARSETRAIN_WIDE_PAD`, `SPARSETRAIN_WIDE_KPACK`,
/// `SPARSETRAIN_IMPLICIT_QUADS`, `SPARSETRAIN_SHADER_CHECKS`), so that a choice
/// timed under one is not taken for the defaults, nor one an older build
/// timed for this build's kernels (an H100's cache kept `regtile` from an
/// earlier engine, where this build's autotune picks `shared`).
fn cache_key(gpu: &Gpu) -> String {
    use std::hash::{Hash, Hasher};
    let r = gpu.report();
    // A source that fails to preprocess fails its pipeline later, with the
    // error; here it only leaves the hash at the version's.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    crate::device::shader::Shader::Matmul.source().unwrap_or_default().hash(&mut h);
    let mut key =
        format!("{}|{:?}|{}|v{}-{:016x}", r.name, r.backend, r.driver_info, env!("CARGO_PKG_VERSION"), h.finish());
    for var in [
        "SPARSETRAIN_WIDE_BK",
        "SPARSETRAIN_WIDE_TILE",
        "SPARSETRAIN_WIDE_PAD",
        "SPARSETRAIN_WIDE_KPACK",
        "SPARSETRAIN_IMPLICIT_QUADS",
        "SPARSETRAIN_SHADER_CHECKS",
    ] {
        if let Ok(v) = std::env::var(var).map(|v| v.trim().to_string())
            && !v.is_empty()
        {
            key.push_str(&format!("|{var}={v}"));
        }
    }
    key.replace(['\t', '\n'], " ")
}

/// Whether a cached entry stays when `new` is stored: not `new` itself, nor
/// an entry of the same adapter and driver for other kernels (another
/// build's: it would never be read again, and the file would grow with
/// every changed kernel), keys from before the version field included.
fn keep_entry(old: &str, new: &str) -> bool {
    // adapter | backend | driver | version-hash | tuning variables…
    let fields = |k: &str| k.splitn(5, '|').map(str::to_string).collect::<Vec<_>>();
    let (o, n) = (fields(old), fields(new));
    let other_build = o.len() >= 3 && n.len() >= 4 && o[..3] == n[..3] && o.get(3) != n.get(3);
    old != new && !other_build
}

fn cache_lookup(key: &str) -> Option<Variant> {
    cache_get(key, |v| Variant::parse(v).filter(|v| !matches!(v, Variant::Naive | Variant::Thin | Variant::Coop)))
}

/// The last value cached under `key` that `parse` accepts.
fn cache_get<T>(key: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
    let text = std::fs::read_to_string(cache_file()?).ok()?;
    text.lines().filter_map(|l| l.split_once('\t')).filter(|(k, _)| *k == key).filter_map(|(_, v)| parse(v)).last()
}

/// Best effort: a failed write only costs a re-tune next time.
fn cache_store(key: &str, v: Variant) {
    cache_put(key, v.name());
}

/// `value` cached under `key` (best effort, as `cache_store`).
fn cache_put(key: &str, value: &str) {
    let Some(path) = cache_file() else { return };
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut text: String = old
        .lines()
        .filter(|l| l.split_once('\t').is_some_and(|(k, _)| keep_entry(k, key)))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("{key}\t{value}\n"));
    // Write-then-rename: parallel processes never see a torn file.
    let tmp = dir.join(format!(".matmul-variant.{}.tmp", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The device's matmul choice, made now if it has not been: from
/// `SPARSETRAIN_MATMUL`, the per-adapter cache, timing (when the device was
/// opened with `autotune`), or the device-type rule. Trainers, benchmarks
/// and the command line run it before recording; matmuls recorded before
/// it use the device-type rule.
pub fn ensure(gpu: &Gpu) -> Result<MatmulChoice> {
    if let Some(c) = gpu.matmul.get() {
        // Another caller may still be probing the convolutions: settle
        // them too before a workspace is sized by them (a second probe at
        // worst; the first answer stands).
        ensure_convs(gpu)?;
        return Ok(c.clone());
    }
    let choice = choose(gpu, gpu.autotune)?;
    // A concurrent caller may have won; either choice is valid.
    let _ = gpu.matmul.set(choice);
    // Then how convolutions run with that variant (GPUs that autotune).
    ensure_convs(gpu)?;
    Ok(gpu.matmul_choice())
}

fn choose(gpu: &Gpu, autotune: bool) -> Result<MatmulChoice> {
    if let Ok(v) = std::env::var("SPARSETRAIN_MATMUL")
        && !v.trim().is_empty()
        && v.trim() != "auto"
    {
        // `coop` is a precision (train --precision mixed), not a tuning
        // choice; `thin` serves only thin products.
        let variant = Variant::parse(&v)
            .filter(|v| !matches!(v, Variant::Naive | Variant::Thin | Variant::Coop))
            .ok_or(Error::InvalidEnv {
                var: "SPARSETRAIN_MATMUL",
                value: v.clone(),
                expected: "regtile, shared, wide or auto",
            })?;
        return Ok(MatmulChoice { variant, source: ChoiceSource::Env, timings: Vec::new() });
    }
    let key = cache_key(gpu);
    if let Some(variant) = cache_lookup(&key) {
        return Ok(MatmulChoice { variant, source: ChoiceSource::Cache, timings: Vec::new() });
    }
    let fallback = MatmulChoice::fallback(gpu.report().device_type);
    if !autotune {
        return Ok(fallback);
    }
    let (size, inner) = if gpu.report().device_type == wgpu::DeviceType::Cpu { (256, 1) } else { (1024, 10) };
    let dims = Dims { m: size, n: size, k: size };
    let mut timings = Vec::new();
    for &v in Variant::tuned(gpu.report().device_type) {
        let runs = Runs { min: 3, max: 3, budget_s: 0.0, inner };
        match time_matmul(gpu, Matmul::new(Layout::NN).variant(v), dims, runs) {
            Ok(secs) => timings.push((v, crate::ops::matmul::flops(dims) / median(&secs) / 1e9)),
            // A variant this adapter cannot build (`wide` needs 16 KiB of
            // workgroup memory, 32 KiB with SPARSETRAIN_WIDE_BK=16) is left
            // out of the choice, not fatal.
            Err(Error::Shader { .. } | Error::Device(_)) if v != Variant::RegTile => {}
            Err(Error::InvalidArgument(_)) if v == Variant::Wide => {}
            Err(e) => return Err(e),
        }
    }
    let best = timings.iter().cloned().fold(None::<(Variant, f64)>, |acc, t| match acc {
        Some(a) if a.1 >= t.1 => Some(a),
        _ => Some(t),
    });
    let Some((variant, _)) = best else { return Ok(fallback) };
    cache_store(&key, variant);
    Ok(MatmulChoice { variant, source: ChoiceSource::Autotune, timings })
}

/// A, B and C of a timed product in `layout`, holding seeded random values.
pub fn bench_operands(gpu: &Gpu, layout: Layout, d: Dims) -> Result<(Tensor, Tensor, Tensor)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut rand_vec = |n: usize| (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>();
    let (a_shape, b_shape) = match layout {
        Layout::NN => ([d.m, d.k], [d.k, d.n]),
        Layout::NT => ([d.m, d.k], [d.n, d.k]),
        Layout::TN => ([d.k, d.m], [d.k, d.n]),
    };
    let a = Tensor::from_f32(gpu, "bench A", &a_shape, &rand_vec(d.m * d.k))?;
    let b = Tensor::from_f32(gpu, "bench B", &b_shape, &rand_vec(d.k * d.n))?;
    let c = Tensor::from_f32(gpu, "bench C", &[d.m, d.n], &rand_vec(d.m * d.n))?;
    Ok((a, b, c))
}

/// Seconds per matmul over several timed runs, after one warm-up run
/// (which also compiles the pipeline). Operands hold random values: zeros
/// can hide bugs and time differently.
pub fn time_matmul(gpu: &Gpu, mm: Matmul, d: Dims, runs: Runs) -> Result<Vec<f64>> {
    let (a, b, c) = bench_operands(gpu, mm.layout, d)?;
    time_recorded(gpu, runs, |rec| mm.record(rec, &c, &a, &b, d))
}

/// How convolutions run (`ops::autotune_conv`), on GPUs that autotune and
/// leave `SPARSETRAIN_IMPLICIT` at auto: the cached choice for this adapter
/// and build, else the probe's (then cached).
/// A probe the adapter cannot run (a pipeline that fails to build, sizes
/// past its limits) leaves the rule of `Gpu::implicit_convs`.
fn ensure_convs(gpu: &Gpu) -> Result<()> {
    let ty = gpu.report().device_type;
    if !gpu.autotune || ty == wgpu::DeviceType::Cpu || !gpu.implicit_convs_auto() || gpu.convs_tuned.get().is_some() {
        return Ok(());
    }
    // The probe times the variant products now run on (`coop` under mixed
    // precision, a forced SPARSETRAIN_MATMUL): part of the key.
    let key = format!("{}|convs {}", cache_key(gpu), gpu.matmul_variant().name());
    let parse = |v: &str| match v {
        "implicit" => Some(true),
        "columns" => Some(false),
        _ => None,
    };
    if let Some(implicit) = cache_get(&key, parse) {
        let _ = gpu.convs_tuned.set(implicit);
        return Ok(());
    }
    let runs = Runs { min: 3, max: 3, budget_s: 0.0, inner: 5 };
    match super::autotune_conv::probe(gpu, runs) {
        Ok(t) => {
            let implicit = t.prefers_implicit();
            let _ = gpu.convs_tuned.set(implicit);
            cache_put(&key, if implicit { "implicit" } else { "columns" });
            Ok(())
        }
        // A probe this adapter cannot run (a pipeline that does not build,
        // operands past its limits) leaves the rule; a lost device stops.
        Err(Error::DeviceLost(why)) => Err(Error::DeviceLost(why)),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::keep_entry;

    #[test]
    fn storing_a_choice_drops_other_builds_of_the_same_adapter() {
        let new = "GPU|Vulkan|drv 1|v0.1.0-00000000000000aa";
        // The same key, and another build's on this adapter and driver: dropped.
        assert!(!keep_entry(new, new));
        assert!(!keep_entry("GPU|Vulkan|drv 1|v0.1.0-00000000000000bb", new));
        assert!(!keep_entry("GPU|Vulkan|drv 1|v0.0.9-00000000000000aa|SPARSETRAIN_WIDE_BK=16", new));
        // A key from before the version field (the stale choice an H100's
        // cache held): dropped.
        assert!(!keep_entry("GPU|Vulkan|drv 1", new));
        assert!(!keep_entry("GPU|Vulkan|drv 1|SPARSETRAIN_WIDE_BK=16", new));
        // This build under a tuning variable, other adapters and drivers: kept.
        assert!(keep_entry("GPU|Vulkan|drv 1|v0.1.0-00000000000000aa|SPARSETRAIN_WIDE_BK=16", new));
        assert!(keep_entry("Other GPU|Vulkan|drv 1|v0.1.0-00000000000000bb", new));
        assert!(keep_entry("GPU|Vulkan|drv 2|v0.1.0-00000000000000bb", new));
    }
}
