//! The `sparsetrain` command line: device information, benchmarks and training.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sparsetrain::bench;
use sparsetrain::ops::autotune::Runs;
use sparsetrain::ops::matmul::{Dims, Layout, Variant};
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
    /// Train a network on the device (default: an MLP on the built-in
    /// procedural digits; `--model resnet20` and the other CNNs default to
    /// the built-in procedural colour shapes).
    Train(TrainArgs),
    /// Write the network of a checkpoint as the kept units alone (a smaller
    /// dense network of the same architecture, in safetensors).
    Export {
        /// A checkpoint file (`step-*.safetensors` or `best.safetensors`).
        checkpoint: std::path::PathBuf,
        #[arg(long)]
        out: std::path::PathBuf,
        /// Replace an existing --out file.
        #[arg(long)]
        force: bool,
    },
    /// Accuracy of an exported network or a checkpoint on a dataset's test set.
    Eval {
        /// A file written by `train --export` / `export`, or a checkpoint.
        network: std::path::PathBuf,
        /// The test set (default: the one the network was trained on, as
        /// its file records; else the synthetic digits).
        #[arg(long, value_enum)]
        dataset: Option<DatasetArg>,
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
    /// The architecture. Prunable units: the MLP's hidden neurons, every
    /// convolution's output channels (1×1 shortcuts included).
    #[arg(long, value_enum, default_value_t = ModelArg::Mlp)]
    model: ModelArg,
    /// Hidden layer widths of the MLP, comma-separated [default: 256,256].
    /// (Given once: a repeated flag is an error, not a concatenation.)
    #[arg(long, value_delimiter = ',', action = clap::ArgAction::Set)]
    hidden: Vec<usize>,
    /// Base width of ResNet (first stage's channels, doubled per stage) and
    /// VGG [default: 16 for ResNet as in He et al.; the reference code's
    /// ResNet-32 uses 32; 64 for VGG].
    #[arg(long)]
    width: Option<usize>,
    /// Fraction of prunable units kept, in (0, 1].
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
    /// SGD of the weights no mask of a step reaches: lazy (caught up
    /// exactly when next reached; O(kept) work per step) or eager (every
    /// weight every step); auto is lazy at --keep 0.12 and below.
    #[arg(long, value_enum, default_value_t = UpdatesArg::Auto)]
    updates: UpdatesArg,
    /// Joint gradient-norm clipping of weights and scores.
    #[arg(long, default_value_t = 3.0)]
    clip: f32,
    /// Matmul arithmetic: f32, or mixed (f16 operands on tensor cores with
    /// f32 accumulation and f32 master weights, dynamic loss scaling);
    /// mixed needs an adapter with cooperative matrices (`sparsetrain info`).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
    /// Masks drawn from the final scores; the best on the training set is kept.
    #[arg(long, default_value_t = 10)]
    select_draws: usize,
    /// Training images the candidate masks are scored on (0: all).
    #[arg(long, default_value_t = 0)]
    select_on: usize,
    /// Epochs of fine-tuning with the chosen mask fixed.
    #[arg(long, default_value_t = 1)]
    finetune_epochs: usize,
    /// Learning rate of fine-tuning (constant unless --finetune-cosine).
    #[arg(long, default_value_t = 0.01)]
    finetune_lr: f32,
    /// Cosine-decay the fine-tuning learning rate per epoch, from
    /// --finetune-lr towards 0, so that the network it ends with is not
    /// one noisy step of a constant rate away from its neighbours.
    #[arg(long)]
    finetune_cosine: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The data [default: synthetic for mlp and lenet5, shapes for the
    /// 32×32 models].
    #[arg(long, value_enum)]
    dataset: Option<DatasetArg>,
    /// Directory with the dataset's files: the four MNIST-format IDX files
    /// (mnist, fashion-mnist) or the binary CIFAR files (cifar10, cifar100).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Training-time augmentation [default: crop-flip for shapes and CIFAR,
    /// none for digits].
    #[arg(long, value_enum)]
    augment: Option<AugmentArg>,
    /// Padding of the random crop (`--augment crop` or `crop-flip`): the
    /// image shifts by up to this many pixels each way.
    #[arg(long, default_value_t = 4)]
    crop_pad: usize,
    /// Training images generated for the built-in sets (synthetic, shapes).
    #[arg(long, default_value_t = 10_000)]
    train_size: usize,
    /// Test images generated for the built-in sets (synthetic, shapes).
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
    /// Replace an existing --export file, start over in a checkpoint
    /// directory that holds checkpoints, take over a stale lock on it; with
    /// --resume, continue on other data.
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
enum PrecisionArg {
    F32,
    Mixed,
}

impl PrecisionArg {
    fn get(self) -> sparsetrain::Precision {
        match self {
            PrecisionArg::F32 => sparsetrain::Precision::F32,
            PrecisionArg::Mixed => sparsetrain::Precision::Mixed,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum UpdatesArg {
    Auto,
    Lazy,
    Eager,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScoreFnArg {
    Fisher,
    Exact,
}

#[derive(Clone, Copy, ValueEnum)]
enum DatasetArg {
    /// Built-in procedural digits, 28×28 grey.
    Synthetic,
    /// Built-in procedural coloured shapes, 32×32 colour.
    Shapes,
    Mnist,
    FashionMnist,
    Cifar10,
    Cifar100,
}

impl DatasetArg {
    fn kind(self) -> sparsetrain::data::DatasetKind {
        use sparsetrain::data::DatasetKind;
        match self {
            DatasetArg::Synthetic => DatasetKind::Synthetic,
            DatasetArg::Shapes => DatasetKind::Shapes,
            DatasetArg::Mnist => DatasetKind::Mnist,
            DatasetArg::FashionMnist => DatasetKind::FashionMnist,
            DatasetArg::Cifar10 => DatasetKind::Cifar10,
            DatasetArg::Cifar100 => DatasetKind::Cifar100,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModelArg {
    /// Linear layers of --hidden widths with ReLUs.
    Mlp,
    /// LeNet-5: two 5×5 convolutions (6, 16 channels) with max pooling,
    /// then 120 and 84 units and the classifier.
    Lenet5,
    /// CIFAR ResNets (He et al. 2016) of 20, 32, 44, 56 and 110 layers.
    Resnet20,
    Resnet32,
    Resnet44,
    Resnet56,
    Resnet110,
    /// VGG with BatchNorm, 11, 16 and 19 layers.
    Vgg11,
    Vgg16,
    Vgg19,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AugmentArg {
    None,
    /// Random crop of the image padded by --crop-pad pixels (for digits,
    /// which a mirror image would turn into other shapes).
    Crop,
    /// Random crop of the image padded by --crop-pad pixels, and horizontal flip.
    CropFlip,
    /// Horizontal flip only (for clothing, where a crop would cut off the
    /// outline a small network relies on).
    Flip,
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
        /// A model to time: a name (lenet5; resnetN for any depth 6n + 2,
        /// e.g. resnet20; vgg11, vgg16, vgg19; ResNets at width 16, VGG at 64, with a
        /// `:WIDTH` suffix for another, e.g. `resnet32:32`) or the hidden
        /// sizes of an MLP, e.g. `1024-1024` (repeat the flag for several).
        #[arg(long = "model", num_args = 1)]
        models: Vec<String>,
        #[arg(long, value_delimiter = ',', default_values_t = vec![0.5f32, 0.25, 0.1, 0.05])]
        keeps: Vec<f32>,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Matmul arithmetic of every row (see `train --precision`).
        #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
        precision: PrecisionArg,
    },
    /// Every matmul variant on every layout: GFLOP/s and the ratio to the naive kernel.
    Matmul {
        /// Square sizes to time (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 512, 1024, 2048])]
        sizes: Vec<usize>,
        /// Further shapes to time, M×N×K each (comma-separated), e.g.
        /// `2048x8192x8192`.
        #[arg(long, value_delimiter = ',', value_parser = parse_shape)]
        shapes: Vec<(usize, usize, usize)>,
        /// Skip the MLP shapes (batch 256, hidden 1024 and 4096).
        #[arg(long)]
        no_mlp_shapes: bool,
        /// Variants to time (comma-separated; default all the adapter runs).
        /// Without `naive` the ratio column is left empty.
        #[arg(long, value_delimiter = ',', value_parser = parse_variant)]
        variants: Vec<Variant>,
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

/// A matmul variant by the name `Variant::parse` reads.
fn parse_variant(s: &str) -> Result<Variant, String> {
    Variant::parse(s)
        .ok_or_else(|| format!("`{s}` is not a matmul variant: naive, regtile, shared, wide, thin or coop"))
}

/// `MxNxK` (an `x` or `×` between positive sizes).
fn parse_shape(s: &str) -> Result<(usize, usize, usize), String> {
    let parts: Vec<&str> = s.split(['x', 'X', '×']).map(str::trim).collect();
    let sizes: Vec<usize> = parts.iter().filter_map(|p| p.parse().ok()).filter(|&n| n > 0).collect();
    match sizes[..] {
        [m, n, k] if parts.len() == 3 => Ok((m, n, k)),
        _ => Err(format!("`{s}` is not a shape M×N×K of positive sizes, e.g. 2048x8192x8192")),
    }
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
        Command::Train(args) => cli::train::train(args)?,
        Command::Export { checkpoint, out, force } => {
            if !checkpoint.is_file() {
                return Err(usage(format!("{} is not a checkpoint file", checkpoint.display())));
            }
            if out.exists() && !force {
                return Err(usage(format!("--out {} already exists; pass --force to replace it", out.display())));
            }
            let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            };
            if same(&out, &checkpoint) {
                return Err(usage(format!(
                    "--out {} is the checkpoint being exported; choose another file",
                    out.display()
                )));
            }
            sparsetrain::io::check_writable_file(&out).map_err(|e| usage(format!("--out {e}")))?;
            let gpu = Gpu::open().context("opening the GPU")?;
            let net = cli::eval::network_of(&gpu, &checkpoint)?;
            net.save(&out, force)?;
            println!("exported network {} ({} parameters) to {}", net.describe(), net.param_count(), out.display());
        }
        Command::Eval { network, dataset, data_dir, seed, test_size } => {
            cli::eval::eval(network, dataset, data_dir, seed, test_size)?
        }
        Command::Plot { metrics, out } => {
            if !metrics.is_file() {
                return Err(usage(format!("{} is not a metrics file", metrics.display())));
            }
            let m = sparsetrain::plot::read_metrics(&metrics)?;
            for w in m.warnings() {
                eprintln!("warning: {}: {w}", metrics.display());
            }
            for f in sparsetrain::plot::plot_run(&m, &out)? {
                println!("wrote {}", f.display());
            }
        }
        Command::Info => {
            let gpu = Gpu::open_with(&GpuOptions::default()).context("opening the GPU")?;
            println!("{}", gpu.report());
            let c = sparsetrain::ops::autotune::ensure(&gpu)?;
            println!("matmul variant: {} (by {:?})", c.variant.name(), c.source);
            for (v, g) in &c.timings {
                println!("  {:8} {g:.2} GFLOP/s", v.name());
            }
        }
        Command::Bench { what } => match what {
            BenchWhat::All { json, quick } => cli::bench::bench_all(json, quick)?,
            BenchWhat::Train { models, keeps, batch, warmup, runs, precision } => {
                if batch == 0 || runs == 0 {
                    return Err(usage("--batch and --runs must be at least 1"));
                }
                if keeps.iter().any(|k| !(*k > 0.0 && *k <= 1.0)) {
                    return Err(usage("--keeps must lie in (0, 1]"));
                }
                let models = if models.is_empty() {
                    vec![bench::mlp_model(&[1024, 1024]), bench::mlp_model(&[4096, 4096])]
                } else {
                    models
                        .iter()
                        .map(|m| bench::model_by_name(m).map_err(|e| usage(format!("--model {m:?}: {e}"))))
                        .collect::<anyhow::Result<Vec<_>>>()?
                };
                let gpu = Gpu::open().context("opening the GPU")?;
                gpu.set_precision(precision.get())?;
                bench::bench_train(
                    &gpu,
                    &models,
                    &keeps,
                    batch,
                    warmup,
                    runs,
                    &mut std::io::stdout(),
                    &mut std::io::stderr(),
                )?;
            }
            BenchWhat::Matmul {
                sizes,
                shapes: extra,
                no_mlp_shapes,
                variants,
                layouts,
                min_runs,
                max_runs,
                budget,
            } => {
                if min_runs == 0 || max_runs < min_runs || !budget.is_finite() || budget < 0.0 {
                    return Err(usage("need 1 <= --min-runs <= --max-runs and a finite --budget >= 0"));
                }
                if sizes.contains(&0) {
                    return Err(usage("--sizes must be positive"));
                }
                let gpu = Gpu::open().context("opening the GPU")?;
                let mut shapes: Vec<Dims> = sizes.iter().map(|&s| Dims { m: s, n: s, k: s }).collect();
                shapes.extend(extra.iter().map(|&(m, n, k)| Dims { m, n, k }));
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
                if variants.contains(&Variant::Coop)
                    && let Err(why) = gpu.coop()
                {
                    return Err(usage(format!("--variants coop: {why}")));
                }
                bench::bench_matmul(&gpu, &layouts, &shapes, &variants, runs, &mut std::io::stdout())?;
            }
        },
    }
    Ok(())
}
