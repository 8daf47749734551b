//! The `sparsetrain` command line: device information, benchmarks and training.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sparsetrain::autotune::Runs;
use sparsetrain::bench;
use sparsetrain::ops::matmul::{Dims, Layout};
use sparsetrain::{Gpu, GpuOptions};

#[derive(Parser)]
#[command(name = "sparsetrain", version, about = "Sparse neural network training on any wgpu GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the adapter, its backend, device type and limits.
    Info,
    /// Run a benchmark.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Every matmul variant on every layout: GFLOP/s and the ratio to the naive kernel.
    Matmul {
        /// Square sizes to time (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 512, 1024, 2048])]
        sizes: Vec<usize>,
        /// Skip the MLP shapes (batch 256, hidden 1024 and 4096).
        #[arg(long)]
        no_mlp_shapes: bool,
        /// Layouts to time.
        #[arg(long, value_delimiter = ',', default_values_t = vec![LayoutArg::Nn, LayoutArg::Nt, LayoutArg::Tn])]
        layouts: Vec<LayoutArg>,
        /// Fewest timed runs per cell.
        #[arg(long, default_value_t = 3)]
        min_runs: usize,
        /// Most timed runs per cell.
        #[arg(long, default_value_t = 10)]
        max_runs: usize,
        /// Seconds per cell after which no runs beyond --min-runs are added.
        #[arg(long, default_value_t = 1.0)]
        budget: f64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    Nn,
    Nt,
    Tn,
}

impl std::fmt::Display for LayoutArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LayoutArg::Nn => "nn",
            LayoutArg::Nt => "nt",
            LayoutArg::Tn => "tn",
        })
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // clap uses 0 for --help/--version and 2 for usage errors.
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info => {
            let gpu = Gpu::open_with(&GpuOptions::default()).context("opening the GPU")?;
            println!("{}", gpu.report());
            let c = gpu.matmul_choice();
            println!("matmul variant: {} (by {:?})", c.variant.name(), c.source);
            for (v, g) in &c.timings {
                println!("  {:8} {g:.2} GFLOP/s", v.name());
            }
        }
        Command::Bench { what } => match what {
            BenchWhat::Matmul { sizes, no_mlp_shapes, layouts, min_runs, max_runs, budget } => {
                if min_runs == 0 || max_runs < min_runs || !budget.is_finite() || budget < 0.0 {
                    anyhow::bail!("need 1 <= --min-runs <= --max-runs and a finite --budget >= 0");
                }
                let gpu = Gpu::open().context("opening the GPU")?;
                let mut shapes: Vec<Dims> = sizes.iter().map(|&s| Dims { m: s, n: s, k: s }).collect();
                if !no_mlp_shapes {
                    shapes.extend(bench::mlp_shapes());
                }
                let layouts: Vec<Layout> = layouts
                    .iter()
                    .map(|l| match l {
                        LayoutArg::Nn => Layout::NN,
                        LayoutArg::Nt => Layout::NT,
                        LayoutArg::Tn => Layout::TN,
                    })
                    .collect();
                let runs = Runs { min: min_runs, max: max_runs, budget_s: budget, inner: 1 };
                bench::bench_matmul(&gpu, &layouts, &shapes, runs, &mut std::io::stdout())?;
            }
        },
    }
    Ok(())
}
