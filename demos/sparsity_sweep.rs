//! sparsity_sweep: accuracy against speed over keep ratios.
//!
//! Trains the same MLP dense and at several keep ratios (on the procedural
//! digits, or MNIST with `--data-dir`), and writes the table of test accuracy,
//! step time and kept parameters to `OUT/sweep.md` and `OUT/sweep.csv`, and
//! the chart of accuracy against step time to `OUT/accuracy_vs_step_time.{png,svg}`.
//!
//!     cargo run --release --example sparsity_sweep -- --out sweep-out

use std::io::Write;

use clap::Parser;
use sparsetrain::Gpu;
use sparsetrain::data::{self, DatasetKind};
use sparsetrain::plot::{SweepPoint, plot_sweep};
use sparsetrain::sparse::SparseConfig;
use sparsetrain::train::{ModelSpec, Session, TrainConfig};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    #[arg(long, default_value = "sweep-out")]
    out: std::path::PathBuf,
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.5f32, 0.25, 0.1, 0.05])]
    keeps: Vec<f32>,
    #[arg(long, value_delimiter = ',', default_values_t = vec![512usize, 512])]
    hidden: Vec<usize>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let split = match &a.data_dir {
        Some(dir) => data::load_mnist_dir(dir, DatasetKind::Mnist)?,
        None => data::synthetic_digits(10_000, 2_000, 1),
    };
    let gpu = Gpu::open()?;
    std::fs::create_dir_all(&a.out)?;
    let mut rows = Vec::new();
    for keep in std::iter::once(None).chain(a.keeps.iter().map(|&k| Some(k))) {
        let cfg = TrainConfig {
            model: ModelSpec::Mlp { hidden: a.hidden.clone() },
            epochs: a.epochs,
            sparse: keep.map(|k| SparseConfig { keep: k, ..SparseConfig::default() }),
            finetune_epochs: 1,
            ..TrainConfig::default()
        };
        let mut s = Session::new(&gpu, cfg, split.train.shape, split.train.classes)?;
        let mut step_ms = f64::NAN;
        for e in 0..a.epochs {
            step_ms = s.train_epoch(&split.train, e, false, |_, _| {})?.step_ms;
        }
        let dense_params = s.graph().param_count();
        let params = match s.select_mask(&split.train)? {
            Some(summary) => {
                s.train_epoch(&split.train, 0, true, |_, _| {})?;
                summary.params.0
            }
            None => dense_params,
        };
        let acc = s.evaluate(&split.test, 0, None)?;
        let name = keep.map_or("dense".to_string(), |k| format!("keep {k}"));
        println!("{name:>10}: test acc {:.2}%, step {step_ms:.1} ms, {params} parameters kept", 100.0 * acc);
        rows.push((name, keep.unwrap_or(1.0), acc, step_ms, params));
    }
    let dense_ms = rows[0].3;
    let mut md = std::fs::File::create(a.out.join("sweep.md"))?;
    let mut csv = std::fs::File::create(a.out.join("sweep.csv"))?;
    writeln!(md, "| run | test acc | step ms | speedup | kept parameters |\n|---|---:|---:|---:|---:|")?;
    writeln!(csv, "run,keep,test_acc,step_ms,speedup,params")?;
    for (name, keep, acc, ms, params) in &rows {
        writeln!(md, "| {name} | {:.2}% | {ms:.1} | {:.2}x | {params} |", 100.0 * acc, dense_ms / ms)?;
        writeln!(csv, "{name},{keep},{acc},{ms},{},{params}", dense_ms / ms)?;
    }
    println!("wrote {} and {}", a.out.join("sweep.md").display(), a.out.join("sweep.csv").display());
    let points: Vec<SweepPoint> = rows
        .iter()
        .map(|(name, _, acc, ms, _)| SweepPoint { label: name.clone(), step_ms: *ms, test_acc: *acc })
        .collect();
    for f in plot_sweep(&points, &a.out)? {
        println!("wrote {}", f.display());
    }
    Ok(())
}
