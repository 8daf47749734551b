//! The matmul benchmark: every variant on every layout and size, timed by
//! GPU timestamps where the adapter has them.

use std::io::Write;
use std::time::Instant;

use super::io_err;
use crate::device::gpu::Gpu;
use crate::error::{Error, Result};
use crate::ops::autotune::{Runs, bench_operands, median, time_matmul};
use crate::ops::matmul::{CoopMode, Dims, Layout, Matmul, TileFit, Variant, flops};

/// GPU time a timed run keeps the device busy for, in seconds: a run
/// records the product as many times over as that takes (at most
/// `MAX_REPS`).
const BUSY_S: f64 = 0.025;
const MAX_REPS: usize = 64;
/// GPU time of such runs, untimed, before the timed ones.
const WARM_S: f64 = 0.2;

/// GPU seconds of one matmul per run, from timestamps around its passes
/// (`Plan::gpu_seconds`): no submit or wait in the figure. A run replays
/// the product back to back until it has kept the GPU busy about `BUSY_S`,
/// after `WARM_S` of such runs untimed: on an H100 a product timed alone,
/// after the GPU had idled while the next cell's pipelines compiled, ran
/// at a fraction of its rate in a training step (the same kernel 10
/// against 30 TFLOP/s; BENCHMARKS.md, nineteenth session), as the clocks
/// fall while the GPU idles and do not rise within a few milliseconds.
fn time_matmul_gpu(gpu: &Gpu, mm: Matmul, d: Dims, runs: Runs) -> Result<Vec<f64>> {
    let (a, b, c) = bench_operands(gpu, mm.layout, d)?;
    let plan_of = |reps: usize| -> Result<crate::device::record::Plan> {
        let mut rec = crate::device::record::Recorder::new(gpu);
        for _ in 0..reps {
            mm.record(&mut rec, &c, &a, &b, d)?;
        }
        Ok(rec.into_plan())
    };
    let once = plan_of(1)?;
    once.gpu_seconds(gpu, None)?;
    let one = once.gpu_seconds(gpu, None)?.max(1e-7);
    let reps = ((BUSY_S / one).ceil() as usize).clamp(1, MAX_REPS);
    let plan = plan_of(reps)?;
    let (mut warm, since) = (0.0, Instant::now());
    let warm_wall = (5.0 * WARM_S).min(runs.budget_s.max(WARM_S));
    while warm < WARM_S && since.elapsed().as_secs_f64() < warm_wall {
        warm += plan.gpu_seconds(gpu, None)?.max(1e-7);
    }
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < runs.min.max(1) || (out.len() < runs.max && start.elapsed().as_secs_f64() < runs.budget_s) {
        out.push(plan.gpu_seconds(gpu, None)? / reps as f64);
    }
    Ok(out)
}

/// The MLP shapes at batch 256 for hidden sizes 1024 and 4096, as (M, N, K)
/// of the forward product (the layout decides which operand is
/// transposed), and the weight gradient of ResNet-20's first 3×3
/// convolutions at batch 128 (16 × 144 outputs, K = 128 · 32 · 32): few
/// output tiles over a long K, the product split-K is for; then the
/// 784-8192-8192-10 MLP's thin products (its output layer at batch 2048).
pub fn mlp_shapes() -> Vec<Dims> {
    vec![
        Dims { m: 256, n: 1024, k: 784 },
        Dims { m: 256, n: 1024, k: 1024 },
        Dims { m: 256, n: 4096, k: 4096 },
        Dims { m: 1024, n: 784, k: 256 },
        Dims { m: 16, n: 144, k: 131072 },
        // The 784-8192-8192-10 MLP's output layer at batch 2048: forward
        // and weight gradient (`thin` where it runs).
        Dims { m: 2048, n: 10, k: 8192 },
        Dims { m: 10, n: 8192, k: 2048 },
    ]
}

/// How a `coop` cell runs: from packs or staged, and for packs whether
/// `matmul_coop_direct` takes two K pieces a pass and which shape it was asked for (None:
/// the launcher's rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopCell {
    pub mode: CoopMode,
    pub unroll: bool,
    pub shape: Option<(u32, u32, u32)>,
}

/// A configuration a cell times: `wide`'s K slice depth and block tile
/// (rows × columns; None for the other variants), the splits of K, and how
/// `coop` runs (None for the others).
type Config = (Option<u32>, Option<(u32, u32)>, u32, Option<CoopCell>, Option<bool>);

/// The `matmul_coop_direct` shapes timed besides the rule's: 4 × 4 pieces
/// per subgroup on 2 × 4 and 4 × 2 subgroups (blocks of 128 × 256 and
/// 256 × 128, where the subgroups of a workgroup share more of their
/// pieces through the L1 cache; on an H100 neither beat the rule's 2 × 2,
/// BENCHMARKS.md). `matmul_coop_tiled` runs them too, one of them by its
/// own rule where the adapter fits it (`coop_tiled_shape`).
const COOP_SHAPES: [(u32, u32, u32); 2] = [(4, 2, 4), (4, 4, 2)];

/// What `bench_matmul` times of variant `v` on `d`: unsplit, and split as
/// the launcher would on this device for the tile. `wide` runs its static
/// products' tile (the rule's, 128 × 128 or for Aᵀ·B 128 × 64, unless
/// SPARSETRAIN_WIDE_TILE says otherwise)
/// with K slices of 8 and of 16, each with and without K-major packs where
/// the layout has an operand to pack (`Matmul::wide_kpack`; the packing
/// timed with the product), then each other tile at the depth it would
/// run with (where the adapter has the workgroup memory). `coop` runs from
/// f16 packs (the packing timed with the product) two K pieces a pass (its
/// default) and one, in the COOP_SHAPES, through workgroup tiles in its
/// rule's shape and in the others, and staged.
fn configs(gpu: &Gpu, v: Variant, layout: Layout, d: Dims) -> Result<Vec<Config>> {
    use crate::ops::matmul_tiles::{block_shape, wide_depth};
    let (m, n, k) = (d.m as u32, d.n as u32, d.k as u32);
    let ty = gpu.report().device_type;
    let splits = |tile: glam::UVec2| {
        let tiles = n.div_ceil(tile.x.max(1)) * m.div_ceil(tile.y.max(1));
        let auto = crate::ops::matmul::auto_splits(ty, v, tiles, k, false, false);
        if v.splits_k() && auto > 1 { vec![1, auto] } else { vec![1] }
    };
    let fit = TileFit { trans_a: layout.trans_a(), ..TileFit::default() };
    if v == Variant::Coop {
        let mut out = Vec::new();
        let direct = |unroll, shape| CoopCell { mode: CoopMode::Direct, unroll, shape };
        // The rule's shape asked for by name, so that SPARSETRAIN_COOP_SHAPE
        // cannot run under the rule's label.
        let support = gpu.coop().map_err(Error::InvalidArgument)?;
        let rule = Some(crate::ops::matmul_tiles::coop_direct_shape(m, n, false, support.frag));
        let mut cells = vec![direct(true, rule), direct(false, rule)];
        cells.extend(COOP_SHAPES.iter().map(|&s| direct(true, Some(s))));
        // Tiled in its rule's shape, then in the direct rule's and the
        // COOP_SHAPES where they differ, each where the adapter can stage
        // it (eight subgroups run K slices of 16: `coop_tiled_depth`), so
        // that no cell labelled tiled runs direct.
        let tiled = |shape| CoopCell { mode: CoopMode::Tiled, unroll: true, shape };
        let tiled_rule = crate::ops::matmul_tiles::coop_tiled_shape(m, n, false, support, gpu.limits());
        let wg_bytes = gpu.limits().max_compute_workgroup_storage_size;
        let mut shapes = Vec::new();
        for s in [tiled_rule].into_iter().chain(rule).chain(COOP_SHAPES) {
            let fits = crate::ops::matmul_tiles::coop_tiled_depth(s, support, wg_bytes).is_some();
            if fits && !shapes.contains(&s) {
                shapes.push(s);
            }
        }
        cells.extend(shapes.into_iter().map(|s| tiled(Some(s))));
        cells.push(CoopCell { mode: CoopMode::Staged, unroll: false, shape: None });
        for cell in cells {
            let coop_staged = cell.mode == CoopMode::Staged;
            let tile = block_shape(gpu, v, m, n, TileFit { coop_staged, coop_shape: cell.shape, ..fit })?.tile;
            out.extend(splits(tile).into_iter().map(|s| (None, None, s, Some(cell), None)));
        }
        return Ok(out);
    }
    let tile = block_shape(gpu, v, m, n, fit)?.tile;
    if v != Variant::Wide {
        return Ok(splits(tile).into_iter().map(|s| (None, None, s, None, None)).collect());
    }
    let mut tiles = vec![(tile.y, tile.x)];
    for t in [(128, 128), (128, 64), (64, 128), (64, 64)] {
        if !tiles.contains(&t) {
            tiles.push(t);
        }
    }
    let mut out = Vec::new();
    for (i, &(rows, cols)) in tiles.iter().enumerate() {
        let wg = glam::UVec2::new(cols / 8, rows / 8);
        let depths: Vec<u32> = if i == 0 {
            [8, 16].into_iter().filter(|&bk| wide_depth(gpu, Some(bk), wg).is_ok()).collect()
        } else {
            wide_depth(gpu, None, wg).ok().into_iter().collect()
        };
        // Aᵀ·B has nothing to pack.
        let kpacks: &[Option<bool>] = if i == 0 && layout != Layout::TN { &[Some(false), Some(true)] } else { &[None] };
        for bk in depths {
            for s in splits(glam::UVec2::new(cols, rows)) {
                out.extend(kpacks.iter().map(|&kp| (Some(bk), Some((rows, cols)), s, None, kp)));
            }
        }
    }
    Ok(out)
}

pub struct MatmulRow {
    pub layout: Layout,
    pub dims: Dims,
    pub variant: Variant,
    /// Splits of K (1: none).
    pub splits: u32,
    /// `wide`'s K slice depth (`Matmul::wide_depth`); None for the others.
    pub depth: Option<u32>,
    /// `wide`'s block tile, rows × columns (`Matmul::wide_tile`); None for the others.
    pub tile: Option<(u32, u32)>,
    /// How `coop` ran (`Matmul::coop_mode`, `coop_unroll`,
    /// `coop_direct_shape`); None for the others.
    pub coop: Option<CoopCell>,
    /// Whether `wide` was asked to read K-major packs
    /// (`Matmul::wide_kpack`); None where not asked.
    pub kpack: Option<bool>,
    pub gflops: f64,
    pub runs: usize,
    /// GFLOP/s over the naive kernel's on the same shape (None: naive not timed).
    pub vs_naive: Option<f64>,
    /// Timed by GPU timestamps (else wall clock around submit and wait).
    pub gpu_timed: bool,
    /// Share of the adapter's fp32 peak, where the peak is known.
    pub peak_share: Option<f64>,
}

/// The fp32 peak of an adapter in TFLOP/s: `SPARSETRAIN_PEAK_TFLOPS`, else
/// a few known data-centre and desktop GPUs by name (vendor figures for
/// non-tensor fp32), else None.
pub fn fp32_peak_tflops(adapter: &str) -> Option<f64> {
    if let Some(v) = std::env::var("SPARSETRAIN_PEAK_TFLOPS").ok().and_then(|v| v.parse::<f64>().ok()) {
        return (v > 0.0).then_some(v);
    }
    peak_by_name(adapter)
}

/// The fp32 peak of a known adapter, by name.
fn peak_by_name(adapter: &str) -> Option<f64> {
    let name = adapter.to_lowercase();
    let known: [(&[&str], f64); 8] = [
        (&["h100", "pcie"], 51.2),
        (&["h100"], 66.9),
        (&["h200"], 66.9),
        (&["a100"], 19.5),
        (&["l40s"], 91.6),
        (&["rtx 4090"], 82.6),
        (&["rtx 3090"], 35.6),
        (&["a10g"], 31.2),
    ];
    known.iter().find(|(keys, _)| keys.iter().all(|k| name.contains(k))).map(|&(_, t)| t)
}

/// Times `variants` (empty: every variant the adapter runs) on every layout
/// and size; prints a Markdown table.
pub fn bench_matmul(
    gpu: &Gpu,
    layouts: &[Layout],
    shapes: &[Dims],
    variants: &[Variant],
    runs: Runs,
    out: &mut dyn Write,
) -> Result<Vec<MatmulRow>> {
    let r = gpu.report();
    let choice = crate::ops::autotune::ensure(gpu)?;
    writeln!(out, "device: {} ({:?}, {:?})", r.name, r.backend, r.device_type).map_err(io_err)?;
    writeln!(out, "chosen variant: {} (by {:?})", choice.variant.name(), choice.source).map_err(io_err)?;
    writeln!(
        out,
        "runs per cell: {}..{} within {:.1} s, median reported; ratio = GFLOP/s over the naive kernel's on the same shape",
        runs.min, runs.max, runs.budget_s
    )
    .map_err(io_err)?;
    let timed = gpu.has_timestamps();
    let peak = fp32_peak_tflops(&r.name);
    writeln!(
        out,
        "timing: {}; fp32 peak: {}",
        if timed { "GPU timestamps around the kernel, replayed back to back for 25 ms a run after 0.2 s of warm-up (at most 64 times)" } else { "wall clock around submit and wait (no timestamps)" },
        peak.map_or("unknown (set SPARSETRAIN_PEAK_TFLOPS)".to_string(), |p| format!("{p} TFLOP/s"))
    )
    .map_err(io_err)?;
    writeln!(out).map_err(io_err)?;
    writeln!(out, "| layout | M×N×K | variant | GFLOP/s | % of fp32 peak | runs | × naive |").map_err(io_err)?;
    writeln!(out, "|---|---|---|---:|---:|---:|---:|").map_err(io_err)?;
    let mut rows = Vec::new();
    for &layout in layouts {
        for &d in shapes {
            let mut cells = Vec::new();
            let mut all = vec![Variant::Naive, Variant::RegTile, Variant::Shared, Variant::Wide];
            // The mixed-precision kernel (f16 operands, f32 accumulation)
            // where the adapter has cooperative matrices.
            if gpu.coop().is_ok() {
                all.push(Variant::Coop);
            }
            // Products with a thin side (`matmul_thin`).
            if d.m.min(d.n) <= crate::ops::matmul::THIN_MAX as usize {
                all.push(Variant::Thin);
            }
            let timed_variants: Vec<Variant> =
                if variants.is_empty() { all } else { all.into_iter().filter(|v| variants.contains(v)).collect() };
            for &v in &timed_variants {
                for (depth, wtile, s, coop, kpack) in configs(gpu, v, layout, d)? {
                    let mut mm = Matmul::new(layout).variant(v).split_k(s);
                    if let Some(on) = kpack {
                        mm = mm.wide_kpack(on);
                    }
                    if let Some(cell) = coop {
                        mm = mm.coop_mode(cell.mode).coop_unroll(cell.unroll);
                        if let Some((tm, wm, wn)) = cell.shape {
                            mm = mm.coop_direct_shape(tm, wm, wn);
                        }
                    }
                    if let Some(bk) = depth {
                        mm = mm.wide_depth(bk);
                    }
                    if let Some((rows, cols)) = wtile {
                        mm = mm.wide_tile(rows, cols);
                    }
                    let secs = if timed { time_matmul_gpu(gpu, mm, d, runs)? } else { time_matmul(gpu, mm, d, runs)? };
                    cells.push((v, s, depth, wtile, coop, kpack, flops(d) / median(&secs) / 1e9, secs.len()));
                }
            }
            let naive = cells.iter().find(|c| c.0 == Variant::Naive).map(|c| c.6);
            // The depth and tile `wide` runs a static product with when
            // nothing asks for others.
            let fit = crate::ops::matmul::TileFit { trans_a: layout.trans_a(), ..Default::default() };
            let wg = crate::ops::matmul::wide_workgroup(fit)?;
            let usual = crate::ops::matmul_tiles::wide_depth(gpu, None, wg).ok();
            let usual_tile = Some((8 * wg.y, 8 * wg.x));
            // Whether `wide` packs this product when not asked: by the rule,
            // where a pack fits one binding.
            let (m, n, k) = (d.m as u32, d.n as u32, d.k as u32);
            let max_bytes = gpu.limits().max_storage_buffer_binding_size;
            let packs =
                crate::ops::matmul::kpack_lens((m, n, k), wg * 8, (layout.trans_a(), layout.trans_b()), max_bytes);
            let usual_kpack = (packs.0.is_some() || packs.1.is_some())
                && crate::device::variant::wide_kpack_env()?
                    .unwrap_or_else(|| crate::ops::matmul::kpack_rule(r.device_type, (m, n, k)));
            // The mode the launcher runs these static products in.
            let usual_coop = crate::device::variant::coop_mode_env()?
                .unwrap_or_else(|| crate::device::variant::coop_mode_rule(r.device_type, false));
            // The shapes the launcher gives `coop` direct and tiled here.
            let coop_rules = gpu.coop().ok().map(|support| {
                let direct = crate::ops::matmul_tiles::coop_direct_shape(m, n, false, support.frag);
                (direct, crate::ops::matmul_tiles::coop_tiled_shape(m, n, false, support, gpu.limits()))
            });
            let coop_rule = |c: &CoopCell| match (c.mode, coop_rules) {
                (CoopMode::Direct, Some((direct, _))) => Some(direct),
                (CoopMode::Tiled, Some((_, tiled))) => Some(tiled),
                _ => None,
            };
            // What the launcher runs a product of this shape on by default:
            // `thin` by its rule, else the device's choice.
            let thin = crate::device::variant::thin_env()?.unwrap_or_else(|| {
                crate::ops::matmul::thin_rule(r.device_type, gpu.matmul_variant_for(m, n), layout, (m, n, k))
            });
            let thin = thin
                && choice.source != crate::device::shader::ChoiceSource::Env
                && m.min(n) <= crate::ops::matmul::THIN_MAX;
            let chosen = if thin { Variant::Thin } else { choice.variant };
            for (v, splits, depth, tile, coop, kpack, gflops, n) in cells {
                let default = (depth.is_none() || (depth == usual && tile == usual_tile))
                    && kpack.is_none_or(|on| on == usual_kpack)
                    && coop.is_none_or(|c| {
                        c.mode == usual_coop
                            && (c.mode != CoopMode::Direct || c.unroll)
                            && c.shape.is_none_or(|s| Some(s) == coop_rule(&c))
                    });
                let mark = if v == chosen && default { " (chosen)" } else { "" };
                let mut split = if splits > 1 { format!(" split {splits}") } else { String::new() };
                if depth == Some(16) {
                    split.push_str(" bk 16");
                }
                if let Some((rows, cols)) = tile.filter(|&t| Some(t) != usual_tile) {
                    split.push_str(&format!(" {rows}x{cols}"));
                }
                if kpack == Some(true) {
                    split.push_str(" kpack");
                }
                if let Some(c) = coop {
                    match c.mode {
                        CoopMode::Staged => split.push_str(" staged"),
                        CoopMode::Tiled => split.push_str(" tiled"),
                        CoopMode::Direct => {}
                    }
                    if c.mode == CoopMode::Direct && !c.unroll {
                        split.push_str(" no unroll");
                    }
                    if let Some((tm, wm, wn)) = c.shape.filter(|&s| Some(s) != coop_rule(&c)) {
                        split.push_str(&format!(" {tm}x{wm}x{wn}"));
                    }
                }
                let share = peak.map(|p| gflops / (p * 1e3));
                writeln!(
                    out,
                    "| {} | {}×{}×{} | {}{}{} | {:.2} | {} | {} | {} |",
                    layout.name(),
                    d.m,
                    d.n,
                    d.k,
                    v.name(),
                    split,
                    mark,
                    gflops,
                    share.map_or("—".to_string(), |s| format!("{:.1}%", 100.0 * s)),
                    n,
                    naive.map_or("—".to_string(), |b| format!("{:.2}", gflops / b))
                )
                .map_err(io_err)?;
                out.flush().map_err(io_err)?;
                let vs_naive = naive.map(|b| gflops / b);
                rows.push(MatmulRow {
                    layout,
                    dims: d,
                    variant: v,
                    splits,
                    depth,
                    tile,
                    coop,
                    kpack,
                    gflops,
                    runs: n,
                    vs_naive,
                    gpu_timed: timed,
                    peak_share: share,
                });
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_peaks_by_adapter_name() {
        assert_eq!(peak_by_name("NVIDIA H100 80GB HBM3"), Some(66.9));
        assert_eq!(peak_by_name("NVIDIA H100 PCIe"), Some(51.2));
        assert_eq!(peak_by_name("NVIDIA A100-SXM4-40GB"), Some(19.5));
        assert_eq!(peak_by_name("llvmpipe (LLVM 15.0.6, 256 bits)"), None);
    }
}
