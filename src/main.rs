//! The `sparsetrain` command line: device information, benchmarks and training.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sparsetrain::autotune::Runs;
use sparsetrain::bench;
use sparsetrain::checkpoint::{CheckpointDir, DataId, Progress};
use sparsetrain::ops::matmul::{Dims, Layout};
use sparsetrain::{Gpu, GpuOptions};

#[derive(Parser)]
#[command(name = "sparsetrain", version, about = "Sparse neural network training on any wgpu GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the train variant does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Accuracy of an exported network (`train --export`) on a dataset's test set.
    Eval {
        /// A file written by `train --export`.
        network: std::path::PathBuf,
        #[arg(long, value_enum, default_value_t = DatasetArg::Synthetic)]
        dataset: DatasetArg,
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// Seed of the synthetic data (use the training run's).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 2_000)]
        test_size: usize,
    },
    /// Draw the charts of a run from its metrics file (PNG and SVG).
    Plot {
        /// A metrics file written by `train --metrics`.
        metrics: std::path::PathBuf,
        /// Directory for the charts.
        #[arg(long, default_value = "plots")]
        out: std::path::PathBuf,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Hidden layer widths, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 256])]
    hidden: Vec<usize>,
    /// Fraction of prunable units (hidden neurons) kept, in (0, 1].
    #[arg(long, default_value_t = 0.25)]
    keep: f32,
    /// Train the dense baseline instead: no masks, one pass per step.
    #[arg(long)]
    dense: bool,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Initial weight learning rate (SGD; cosine-decayed per epoch unless --no-cosine).
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f32,
    #[arg(long)]
    no_cosine: bool,
    /// Initial score learning rate (Adam; cosine-decayed like --lr). method.md
    /// gives 1e-2 for the reference code's long CIFAR runs; MLP runs of a few
    /// epochs need the scores to settle faster.
    #[arg(long, default_value_t = 0.05)]
    score_lr: f32,
    /// Score-gradient estimator.
    #[arg(long, value_enum, default_value_t = EstimatorArg::Vrpge)]
    estimator: EstimatorArg,
    /// Score function: Fisher-preconditioned (default) or the exact one.
    #[arg(long, value_enum, default_value_t = ScoreFnArg::Fisher)]
    score_fn: ScoreFnArg,
    /// Joint gradient-norm clipping of weights and scores.
    #[arg(long, default_value_t = 3.0)]
    clip: f32,
    /// Masks drawn from the final scores; the best on the training set is kept.
    #[arg(long, default_value_t = 10)]
    select_draws: usize,
    /// Training images the candidate masks are scored on (0: all).
    #[arg(long, default_value_t = 0)]
    select_on: usize,
    /// Epochs of fine-tuning with the chosen mask fixed.
    #[arg(long, default_value_t = 1)]
    finetune_epochs: usize,
    /// Constant learning rate of fine-tuning.
    #[arg(long, default_value_t = 0.01)]
    finetune_lr: f32,
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
    /// Append one JSON line per epoch (and a summary line) to this file.
    #[arg(long)]
    metrics: Option<std::path::PathBuf>,
    /// Draw the run's charts into this directory at the end (PNG and SVG).
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Write the final network (the kept units only) to this safetensors file.
    #[arg(long)]
    export: Option<std::path::PathBuf>,
    /// Replace an existing --export file; with --resume, continue on other data.
    #[arg(long)]
    force: bool,
    /// Write checkpoints (safetensors) into this directory.
    #[arg(long)]
    checkpoint_dir: Option<std::path::PathBuf>,
    /// Checkpoint every N steps (0: at the end of each epoch only).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: u64,
    /// Step checkpoints kept besides the best one.
    #[arg(long, default_value_t = 3)]
    keep_checkpoints: usize,
    /// What a step with a non-finite loss or gradient does: stop the run
    /// (the last checkpoint stays), or skip the step and go on.
    #[arg(long, value_enum, default_value_t = OnNanArg::Stop)]
    on_nan: OnNanArg,
    /// Continue the run whose checkpoints are in this directory (give the
    /// same flags as the original run; checkpoints keep going there unless
    /// --checkpoint-dir says otherwise).
    #[arg(long)]
    resume: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnNanArg {
    Stop,
    Skip,
}

#[derive(Clone, Copy, ValueEnum)]
enum EstimatorArg {
    /// Variance-reduced policy gradient (leave-one-out baseline).
    Vrpge,
    /// Plain policy gradient without baseline (ablation).
    Pge,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScoreFnArg {
    Fisher,
    Exact,
}

#[derive(Clone, Copy, ValueEnum)]
enum DatasetArg {
    Synthetic,
    Mnist,
    FashionMnist,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// The matmul and training benchmarks together; `--json FILE` keeps every
    /// figure for `scripts/bench_table.py`, which prints the BENCHMARKS.md tables.
    All {
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Smaller sizes (square matmuls up to 1024, the 1024-wide MLP only).
        #[arg(long)]
        quick: bool,
    },
    /// Training step time, dense and sparse at several keep ratios, with FLOP ratios.
    Train {
        /// Hidden sizes of the MLPs to time, e.g. `1024,1024` (repeat the flag for several).
        #[arg(long = "model", value_delimiter = ',', num_args = 1)]
        models: Vec<String>,
        #[arg(long, value_delimiter = ',', default_values_t = vec![0.5f32, 0.25, 0.1, 0.05])]
        keeps: Vec<f32>,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
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
        Command::Eval { network, dataset, data_dir, seed, test_size } => {
            eval(network, dataset, data_dir, seed, test_size)?
        }
        Command::Plot { metrics, out } => {
            if !metrics.is_file() {
                return Err(usage(format!("{} is not a metrics file", metrics.display())));
            }
            let m = sparsetrain::plot::read_metrics(&metrics)?;
            for f in sparsetrain::plot::plot_run(&m, &out)? {
                println!("wrote {}", f.display());
            }
        }
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
            BenchWhat::All { json, quick } => bench_all(json, quick)?,
            BenchWhat::Train { models, keeps, batch, warmup, runs } => {
                if batch == 0 || runs == 0 {
                    return Err(usage("--batch and --runs must be at least 1"));
                }
                if keeps.iter().any(|k| !(*k > 0.0 && *k <= 1.0)) {
                    return Err(usage("--keeps must lie in (0, 1]"));
                }
                let models: Vec<Vec<usize>> = if models.is_empty() {
                    vec![vec![784, 1024, 1024, 10], vec![784, 4096, 4096, 10]]
                } else {
                    let mut out = Vec::new();
                    for m in &models {
                        let hidden: Result<Vec<usize>, _> = m.split(['-', ' ']).map(str::parse).collect();
                        let hidden = hidden
                            .map_err(|_| usage(format!("--model {m:?}: expected hidden sizes like 1024-1024")))?;
                        if hidden.is_empty() || hidden.contains(&0) {
                            return Err(usage(format!("--model {m:?}: sizes must be positive")));
                        }
                        let mut sizes = vec![784];
                        sizes.extend(hidden);
                        sizes.push(10);
                        out.push(sizes);
                    }
                    out
                };
                let gpu = Gpu::open().context("opening the GPU")?;
                bench::bench_train(&gpu, &models, &keeps, batch, warmup, runs, &mut std::io::stdout())?;
            }
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
    use sparsetrain::ops::optim::Adam;
    use sparsetrain::ops::vrpge::{Estimator, ScoreFn};
    use sparsetrain::sparse::SparseConfig;
    use sparsetrain::train::{Session, TrainConfig};
    use std::io::Write;

    for (flag, v) in [("--keep", a.keep), ("--score-lr", a.score_lr), ("--clip", a.clip)] {
        if !v.is_finite() {
            return Err(usage(format!("{flag} must be a finite number, got {v}")));
        }
    }
    if !(a.keep > 0.0 && a.keep <= 1.0) {
        return Err(usage(format!("--keep must be in (0, 1], got {}", a.keep)));
    }
    let sparse = (!a.dense).then(|| SparseConfig {
        keep: a.keep,
        estimator: match a.estimator {
            EstimatorArg::Vrpge => Estimator::VrPge,
            EstimatorArg::Pge => Estimator::Pge,
        },
        score_fn: match a.score_fn {
            ScoreFnArg::Fisher => ScoreFn::Fisher,
            ScoreFnArg::Exact => ScoreFn::Exact,
        },
        score_adam: Adam { lr: a.score_lr, ..Adam::default() },
        clip_norm: a.clip,
        seed: a.seed,
        ..SparseConfig::default()
    });
    let cfg = TrainConfig {
        hidden: a.hidden.clone(),
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        cosine: !a.no_cosine,
        seed: a.seed,
        sparse,
        select_draws: a.select_draws,
        select_on: a.select_on,
        finetune_epochs: if a.dense { 0 } else { a.finetune_epochs },
        finetune_lr: a.finetune_lr,
    };
    cfg.validate().map_err(|e| usage(e.to_string()))?;
    if let Some(p) = a.export.as_ref().filter(|p| p.exists() && !a.force) {
        return Err(usage(format!("--export {} already exists; pass --force to replace it", p.display())));
    }
    let (kind, split) = load_split(a.dataset, a.data_dir.as_deref(), a.seed, (a.train_size, a.test_size))?;
    let metrics = match &a.metrics {
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
    let mut sizes = vec![split.train.dim];
    sizes.extend(&cfg.hidden);
    sizes.push(split.train.classes);
    let data_id = DataId { name: kind.name().into(), fingerprint: split.train.fingerprint() };
    let ck_dir = a
        .checkpoint_dir
        .clone()
        .or_else(|| a.resume.clone())
        .map(|dir| CheckpointDir { dir, keep_last: a.keep_checkpoints });
    let (mut session, start) = match &a.resume {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(usage(format!("--resume {} is not a directory", dir.display())));
            }
            let (ck, path, skipped) = CheckpointDir { dir: dir.clone(), keep_last: a.keep_checkpoints }.latest()?;
            for s in skipped {
                eprintln!("warning: skipped an unreadable checkpoint: {s}");
            }
            ck.check_compatible(&cfg, &sizes, &data_id, a.force).map_err(|e| usage(e.to_string()))?;
            println!(
                "resuming from {}: {} epoch {} step {} ({} steps done)",
                path.display(),
                ck.progress.phase,
                ck.progress.epoch + 1,
                ck.progress.step_in_epoch,
                ck.progress.global_step
            );
            (Session::restore(&gpu, &ck)?, ck.progress)
        }
        None => (
            Session::new(&gpu, cfg.clone(), split.train.dim, split.train.classes)?,
            Progress {
                phase: "train".into(),
                epoch: 0,
                step_in_epoch: 0,
                global_step: 0,
                mask_step: 0,
                best_test_acc: -1.0,
            },
        ),
    };
    let mut rep = Reporter {
        metrics,
        history: Vec::new(),
        bar: progress_bar(),
        ck_dir,
        every: a.checkpoint_every,
        data: data_id,
        best: start.best_test_acc,
        on_nan: a.on_nan,
        faults_seen: 0,
    };
    let in_finetune = start.phase == "finetune";
    let mut last = None;
    if !in_finetune {
        last = run_epochs(&mut session, &split, &mut rep, cfg.epochs, false, (start.epoch, start.step_in_epoch))?;
    }
    let mut plot_summary = None;
    let summary = if in_finetune { session.summarize_fixed()? } else { session.select_mask(&split.train)? };
    if let Some(summary) = summary {
        if !in_finetune {
            let cands: Vec<String> = summary.candidates.iter().map(|a| format!("{:.2}", 100.0 * a)).collect();
            println!(
                "mask selection: {} draws from the final scores, train acc % [{}], chose #{}",
                cands.len(),
                cands.join(", "),
                summary.chosen
            );
        }
        if cfg.finetune_epochs > 0 {
            let from = if in_finetune { (start.epoch, start.step_in_epoch) } else { (0, 0) };
            last = run_epochs(&mut session, &split, &mut rep, cfg.finetune_epochs, true, from)?.or(last);
        }
        let test_acc = session.evaluate(&split.test, 0, None)?;
        let join = |v: &[usize]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        println!(
            "final network: kept units per hidden layer {} of {}; parameters {} of {} ({:.1}%); forward FLOPs/sample {} of {} ({:.1}%); test acc {:.2}%",
            join(&summary.kept).join("/"),
            join(&sizes[1..sizes.len() - 1]).join("/"),
            summary.params.0,
            summary.params.1,
            100.0 * summary.params.0 as f64 / summary.params.1 as f64,
            summary.flops.0,
            summary.flops.1,
            100.0 * summary.flops.0 as f64 / summary.flops.1 as f64,
            100.0 * test_acc
        );
        if let Some(f) = rep.metrics.as_mut() {
            writeln!(
                f,
                "{{\"phase\":\"summary\",\"kept\":[{}],\"params\":{},\"dense_params\":{},\"flops\":{},\"dense_flops\":{},\"test_acc\":{},\"score_hist\":[{}]}}",
                join(&summary.kept).join(","),
                summary.params.0,
                summary.params.1,
                summary.flops.0,
                summary.flops.1,
                test_acc,
                join(&summary.score_hist).join(",")
            )?;
        }
        if let Some(l) = last.as_mut() {
            l.test_acc = test_acc;
        }
        plot_summary = Some(sparsetrain::plot::Record {
            phase: "summary".into(),
            kept: summary.kept.clone(),
            params: summary.params.0,
            dense_params: summary.params.1,
            test_acc,
            score_hist: summary.score_hist.clone(),
            ..Default::default()
        });
    }
    if let Some(l) = last {
        let rb = gpu.readback_stats();
        println!(
            "done: final loss {:.4}, train acc {:.2}%, test acc {:.2}%; {} bytes read back in {} reads (logging and evaluation only)",
            l.loss,
            100.0 * l.train_acc,
            100.0 * l.test_acc,
            rb.bytes,
            rb.calls
        );
    }
    if let Some(path) = &a.export {
        let net = session.export()?;
        net.save(path, a.force)?;
        println!(
            "exported MLP {} ({} parameters) to {}",
            net.sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("-"),
            net.param_count(),
            path.display()
        );
    }
    if let Some(dir) = &a.plot {
        let m = sparsetrain::plot::Metrics { epochs: rep.history, summary: plot_summary };
        for f in sparsetrain::plot::plot_run(&m, dir)? {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}

/// Where epoch results go: the terminal, the metrics file, the history kept
/// for `--plot`, and the checkpoints.
struct Reporter {
    metrics: Option<std::fs::File>,
    history: Vec<sparsetrain::plot::Record>,
    bar: indicatif::ProgressBar,
    ck_dir: Option<CheckpointDir>,
    every: u64,
    data: DataId,
    best: f64,
    on_nan: OnNanArg,
    faults_seen: u64,
}

impl Reporter {
    /// Reads the device's record of non-finite steps: stops the run, or
    /// reports newly skipped steps, as --on-nan says.
    fn check_faults(&mut self, session: &sparsetrain::train::Session) -> anyhow::Result<()> {
        let f = session.faults()?;
        if f.skipped > self.faults_seen {
            let first = f.first_step.unwrap_or(0);
            if self.on_nan == OnNanArg::Stop {
                let kept = match &self.ck_dir {
                    Some(cd) => format!("; the last good checkpoint in {} is kept", cd.dir.display()),
                    None => String::new(),
                };
                anyhow::bail!(
                    "non-finite loss or gradient at step {first} (the step was not applied){kept}; \
                     lower the learning rate, or pass --on-nan skip to skip such steps"
                );
            }
            eprintln!(
                "warning: {} step(s) skipped for a non-finite loss or gradient so far (first at step {first})",
                f.skipped
            );
            self.faults_seen = f.skipped;
        }
        Ok(())
    }

    fn checkpoint(
        &mut self,
        session: &sparsetrain::train::Session,
        finetune: bool,
        epoch: usize,
        step_in_epoch: usize,
        test_acc: Option<f64>,
    ) -> anyhow::Result<()> {
        if self.ck_dir.is_none() {
            return Ok(());
        }
        // Never checkpoint past a fault that stops the run.
        self.check_faults(session)?;
        let Some(cd) = &self.ck_dir else { return Ok(()) };
        let improved = test_acc.is_some_and(|t| t > self.best);
        if improved {
            self.best = test_acc.unwrap_or(self.best);
        }
        let progress = Progress {
            phase: if finetune { "finetune" } else { "train" }.into(),
            epoch,
            step_in_epoch,
            global_step: 0,
            mask_step: 0,
            best_test_acc: self.best,
        };
        let ck = session.checkpoint(progress, self.data.clone())?;
        cd.save_step(&ck)?;
        if improved {
            cd.save_best(&ck)?;
        }
        Ok(())
    }
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps, {per_sec}, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

impl Reporter {
    fn report(&mut self, s: &sparsetrain::train::EpochStats, total: usize) -> anyhow::Result<()> {
        use std::io::Write;
        let kept = if s.kept.is_empty() {
            String::new()
        } else {
            format!(
                "  kept {}  scores at 0/1 {:.0}%",
                s.kept.iter().map(|k| k.to_string()).collect::<Vec<_>>().join("/"),
                100.0 * s.polarized
            )
        };
        println!(
            "{:8} {:>3}/{}  lr {:.4}  loss {:.4}  train acc {:6.2}%  test acc {:6.2}%  step {:7.2} ms  {:8.0} samples/s{kept}",
            s.phase,
            s.epoch,
            total,
            s.lr,
            s.loss,
            100.0 * s.train_acc,
            100.0 * s.test_acc,
            s.step_ms,
            s.samples_per_s
        );
        if let Some(f) = self.metrics.as_mut() {
            writeln!(f, "{}", s.to_json())?;
        }
        self.history.push(sparsetrain::plot::Record {
            phase: s.phase.into(),
            epoch: s.epoch,
            lr: s.lr as f64,
            loss: s.loss,
            train_acc: s.train_acc,
            test_acc: s.test_acc,
            step_ms: s.step_ms,
            samples_per_s: s.samples_per_s,
            kept: s.kept.clone(),
            polarized: s.polarized,
            ..Default::default()
        });
        Ok(())
    }
}

/// Trains epochs `from.0..count` of a phase (fine-tuning with the fixed mask
/// when `finetune`), the first from step `from.1`, checkpointing as asked;
/// evaluates and reports each; returns the last epoch's stats.
fn run_epochs(
    session: &mut sparsetrain::train::Session,
    split: &sparsetrain::data::Split,
    rep: &mut Reporter,
    count: usize,
    finetune: bool,
    from: (usize, usize),
) -> anyhow::Result<Option<sparsetrain::train::EpochStats>> {
    let mut last = None;
    let ds = &split.train;
    let batch = session.cfg.batch;
    for epoch in from.0..count {
        let first = if epoch == from.0 { from.1 } else { 0 };
        let steps = session.epoch_steps(ds);
        rep.bar.reset();
        rep.bar.set_message(format!("{} {}/{count}", if finetune { "finetune" } else { "epoch" }, epoch + 1));
        let start = std::time::Instant::now();
        let mut pos = first;
        while pos < steps {
            // Run up to the next multiple of --checkpoint-every (counted in
            // steps of the whole run), then checkpoint there.
            let end = if rep.every > 0 {
                let to_next = rep.every - session.steps_taken % rep.every;
                (pos + to_next as usize).min(steps)
            } else {
                steps
            };
            let bar = rep.bar.clone();
            session.run_steps(ds, epoch, finetune, pos..end, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            pos = end;
            if rep.every > 0 && pos < steps && session.steps_taken.is_multiple_of(rep.every) {
                rep.checkpoint(session, finetune, epoch, pos, None)?;
            }
        }
        rep.check_faults(session)?;
        let samples = ds.len().saturating_sub(first * batch);
        let mut stats = session.end_epoch(epoch, finetune, steps - first, samples, start.elapsed().as_secs_f64())?;
        rep.bar.finish_and_clear();
        let key = if finetune { None } else { session.eval_key(epoch) };
        stats.test_acc = session.evaluate(&split.test, 0, key)?;
        rep.report(&stats, count)?;
        // An epoch-end checkpoint points at the start of the next epoch.
        rep.checkpoint(session, finetune, epoch + 1, 0, Some(stats.test_acc))?;
        last = Some(stats);
    }
    Ok(last)
}

/// `bench all`: both benchmarks on one device, printed, and optionally saved
/// as JSON (written to a temporary file and renamed, so a partial file never
/// replaces a good one).
fn bench_all(json: Option<std::path::PathBuf>, quick: bool) -> anyhow::Result<()> {
    use serde_json::json;
    let gpu = Gpu::open().context("opening the GPU")?;
    let sizes: &[usize] = if quick { &[256, 512, 1024] } else { &[256, 512, 1024, 2048] };
    let mut shapes: Vec<Dims> = sizes.iter().map(|&s| Dims { m: s, n: s, k: s }).collect();
    if !quick {
        shapes.extend(bench::mlp_shapes());
    }
    let runs = Runs { min: 3, max: 10, budget_s: 1.0, inner: 1 };
    let mut stdout = std::io::stdout();
    let mm = bench::bench_matmul(&gpu, &Layout::ALL, &shapes, runs, &mut stdout)?;
    println!();
    let models: Vec<Vec<usize>> = if quick {
        vec![vec![784, 1024, 1024, 10]]
    } else {
        vec![vec![784, 1024, 1024, 10], vec![784, 4096, 4096, 10]]
    };
    let tr = bench::bench_train(&gpu, &models, &[0.5, 0.25, 0.1, 0.05], 256, 2, 5, &mut stdout)?;
    let Some(path) = json else { return Ok(()) };
    let r = gpu.report();
    let when = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let doc = json!({
        "unix_time": when,
        "device": { "name": r.name, "backend": format!("{:?}", r.backend), "type": format!("{:?}", r.device_type),
                    "driver": format!("{} {}", r.driver, r.driver_info) },
        "matmul_variant": { "chosen": gpu.matmul_choice().variant.name(), "by": format!("{:?}", gpu.matmul_choice().source) },
        "matmul": mm.iter().map(|m| json!({
            "layout": m.layout.name(), "m": m.dims.m, "n": m.dims.n, "k": m.dims.k,
            "variant": m.variant.name(), "gflops": m.gflops, "runs": m.runs, "vs_naive": m.vs_naive,
        })).collect::<Vec<_>>(),
        "train": tr.iter().map(|t| json!({
            "model": t.sizes, "keep": t.keep, "step_ms": t.step_ms, "runs": t.runs, "speedup": t.speedup,
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

/// The data of `--dataset` / `--data-dir`, with usage errors for bad flags.
fn load_split(
    dataset: DatasetArg,
    data_dir: Option<&std::path::Path>,
    seed: u64,
    sizes: (usize, usize),
) -> anyhow::Result<(sparsetrain::data::DatasetKind, sparsetrain::data::Split)> {
    use sparsetrain::data::{self, DatasetKind};
    let kind = match dataset {
        DatasetArg::Synthetic => DatasetKind::Synthetic,
        DatasetArg::Mnist => DatasetKind::Mnist,
        DatasetArg::FashionMnist => DatasetKind::FashionMnist,
    };
    let split = match kind {
        DatasetKind::Synthetic => {
            if sizes.0 == 0 || sizes.1 == 0 {
                return Err(usage("--train-size and --test-size must be at least 1"));
            }
            data::synthetic_digits(sizes.0, sizes.1, seed)
        }
        _ => {
            let dir = data_dir.ok_or_else(|| {
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
    Ok((kind, split))
}

fn eval(
    network: std::path::PathBuf,
    dataset: DatasetArg,
    data_dir: Option<std::path::PathBuf>,
    seed: u64,
    test_size: usize,
) -> anyhow::Result<()> {
    use sparsetrain::export::CompactMlp;
    use sparsetrain::{DType, Recorder, Tensor};
    if !network.is_file() {
        return Err(usage(format!("{} is not a file", network.display())));
    }
    let net = CompactMlp::load(&network)?;
    // The synthetic set's test images do not depend on the training size.
    let (kind, split) = load_split(dataset, data_dir.as_deref(), seed, (1, test_size))?;
    let test = &split.test;
    if test.dim != net.sizes[0] || test.classes != *net.sizes.last().unwrap_or(&0) {
        anyhow::bail!(
            "{} takes {} inputs and {} classes; {} has {} and {}",
            network.display(),
            net.sizes[0],
            net.sizes.last().unwrap_or(&0),
            kind.name(),
            test.dim,
            test.classes
        );
    }
    let gpu = Gpu::open().context("opening the GPU")?;
    let mlp = net.to_mlp(&gpu)?;
    let batch = 256;
    let ws = mlp.workspace(&gpu, batch)?;
    let x = Tensor::zeros(&gpu, "x", &[batch, test.dim], DType::F32)?;
    let y = Tensor::zeros(&gpu, "y", &[batch], DType::U32)?;
    let (mut hx, mut hy) = (Vec::new(), Vec::new());
    let mut rec = Recorder::new(&gpu);
    ws.correct().fill_u32(&mut rec, 0)?;
    rec.submit()?;
    let idx: Vec<u32> = (0..test.len() as u32).collect();
    for chunk in idx.chunks(batch) {
        sparsetrain::data::gather_batch(test, chunk, &mut hx, &mut hy);
        let n = chunk.len();
        x.view(0, &[n, test.dim])?.upload(&gpu, &hx)?;
        y.view(0, &[n])?.upload(&gpu, &hy)?;
        let mut rec = Recorder::new(&gpu);
        mlp.forward(&mut rec, &ws, &x, n)?;
        mlp.count_correct(&mut rec, &ws, &y, n)?;
        rec.submit()?;
    }
    let correct = ws.correct().download_u32(&gpu)?[0];
    println!(
        "{}: MLP {} ({} parameters) on {} test: {}/{} correct, accuracy {:.2}%",
        network.display(),
        net.sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("-"),
        net.param_count(),
        kind.name(),
        correct,
        test.len(),
        100.0 * correct as f64 / test.len() as f64
    );
    Ok(())
}
