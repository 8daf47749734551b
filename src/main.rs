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
    /// Train an MLP on the device (default: the built-in procedural digits).
    Train(TrainArgs),
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Hidden layer widths, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 256])]
    hidden: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Initial learning rate (cosine-decayed per epoch unless --no-cosine).
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f32,
    #[arg(long)]
    no_cosine: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = DatasetArg::Synthetic)]
    dataset: DatasetArg,
    /// Directory with the four MNIST-format IDX files (mnist, fashion-mnist).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Training images generated for --dataset synthetic.
    #[arg(long, default_value_t = 10_000)]
    train_size: usize,
    /// Test images generated for --dataset synthetic.
    #[arg(long, default_value_t = 2_000)]
    test_size: usize,
    /// Append one JSON line per epoch to this file.
    #[arg(long)]
    metrics: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum DatasetArg {
    Synthetic,
    Mnist,
    FashionMnist,
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
            if e.downcast_ref::<UsageError>().is_some() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// A flag that parsed but makes no sense: exit code 2, like clap's own errors.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => train(args)?,
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
                    return Err(usage("need 1 <= --min-runs <= --max-runs and a finite --budget >= 0"));
                }
                if sizes.contains(&0) {
                    return Err(usage("--sizes must be positive"));
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

fn train(a: TrainArgs) -> anyhow::Result<()> {
    use sparsetrain::data::{self, DatasetKind};
    use sparsetrain::train::{Session, TrainConfig};
    use std::io::Write;

    let cfg = TrainConfig {
        hidden: a.hidden.clone(),
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        cosine: !a.no_cosine,
        seed: a.seed,
    };
    cfg.validate().map_err(|e| usage(e.to_string()))?;
    let kind = match a.dataset {
        DatasetArg::Synthetic => DatasetKind::Synthetic,
        DatasetArg::Mnist => DatasetKind::Mnist,
        DatasetArg::FashionMnist => DatasetKind::FashionMnist,
    };
    let split = match kind {
        DatasetKind::Synthetic => {
            if a.train_size == 0 {
                return Err(usage("--train-size must be at least 1"));
            }
            data::synthetic_digits(a.train_size, a.test_size, a.seed)
        }
        _ => {
            let dir = a.data_dir.as_ref().ok_or_else(|| {
                usage(format!(
                    "--dataset {} needs --data-dir DIR with the four IDX files (e.g. ../shared/data/{})",
                    kind.name(),
                    kind.name()
                ))
            })?;
            if !dir.is_dir() {
                return Err(usage(format!("--data-dir {} is not a directory", dir.display())));
            }
            data::load_mnist_dir(dir, kind)?
        }
    };
    let mut metrics = match &a.metrics {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening metrics file {}", p.display()))?,
        ),
        None => None,
    };
    let gpu = Gpu::open().context("opening the GPU")?;
    let r = gpu.report();
    println!(
        "device: {} ({:?}, {:?}); matmul variant {}",
        r.name,
        r.backend,
        r.device_type,
        gpu.matmul_choice().variant.name()
    );
    let mut session = Session::new(&gpu, cfg.clone(), split.train.dim, split.train.classes)?;
    let sizes = &session.trainer.mlp.layout.sizes;
    println!(
        "data: {} ({} train, {} test); model: MLP {} ({} parameters), dense",
        kind.name(),
        split.train.len(),
        split.test.len(),
        sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("-"),
        session.trainer.mlp.layout.count()
    );
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} steps, {per_sec}, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut last = None;
    for epoch in 0..cfg.epochs {
        bar.reset();
        bar.set_message(format!("{}/{}", epoch + 1, cfg.epochs));
        let (loss, train_acc, step_s) = session.train_epoch(&split.train, epoch, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish_and_clear();
        if !loss.is_finite() {
            anyhow::bail!("the loss became {loss} in epoch {}; lower --lr", epoch + 1);
        }
        let test_acc = session.evaluate(&split.test)?;
        let samples_per_s = cfg.batch as f64 / step_s;
        println!(
            "epoch {:>3}/{}  lr {:.4}  loss {:.4}  train acc {:6.2}%  test acc {:6.2}%  step {:7.2} ms  {:8.0} samples/s",
            epoch + 1,
            cfg.epochs,
            cfg.lr_at(epoch),
            loss,
            100.0 * train_acc,
            100.0 * test_acc,
            1e3 * step_s,
            samples_per_s
        );
        if let Some(f) = metrics.as_mut() {
            writeln!(
                f,
                "{{\"epoch\":{},\"lr\":{},\"loss\":{},\"train_acc\":{},\"test_acc\":{},\"step_ms\":{},\"samples_per_s\":{}}}",
                epoch + 1,
                cfg.lr_at(epoch),
                loss,
                train_acc,
                test_acc,
                1e3 * step_s,
                samples_per_s
            )?;
        }
        last = Some((loss, train_acc, test_acc));
    }
    if let Some((loss, train_acc, test_acc)) = last {
        let rb = gpu.readback_stats();
        println!(
            "done: final loss {loss:.4}, train acc {:.2}%, test acc {:.2}%; {} bytes read back in {} reads (logging and evaluation only)",
            100.0 * train_acc,
            100.0 * test_acc,
            rb.bytes,
            rb.calls
        );
    }
    Ok(())
}
