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
