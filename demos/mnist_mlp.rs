//! mnist_mlp: sparse versus dense training of the same MLP, side by side.
//!
//! With `--data-dir DIR` (the four MNIST IDX files, e.g. ../shared/data/mnist)
//! it trains on MNIST; without, on the built-in procedural digits. Both runs
//! use the same seed, data order and schedule; the table at the end puts
//! accuracy, step time and the size of the kept network next to each other.
//!
//!     cargo run --release --example mnist_mlp -- --data-dir ../shared/data/mnist --epochs 3

use clap::Parser;
use sparsetrain::Gpu;
use sparsetrain::data::{self, DatasetKind};
use sparsetrain::sparse::SparseConfig;
use sparsetrain::train::{ModelSpec, Session, TrainConfig};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    #[arg(long, default_value_t = 0.25)]
    keep: f32,
    #[arg(long, value_delimiter = ',', default_values_t = vec![512usize, 512])]
    hidden: Vec<usize>,
}

struct Outcome {
    name: String,
    test_acc: f64,
    step_ms: f64,
    params: (usize, usize),
}

fn run(gpu: &Gpu, split: &data::Split, cfg: TrainConfig, name: &str) -> anyhow::Result<Outcome> {
    let epochs = cfg.epochs;
    let mut s = Session::new(gpu, cfg, split.train.shape, split.train.classes)?;
    let mut step_ms = 0.0;
    for e in 0..epochs {
        let st = s.train_epoch(&split.train, e, false, |_, _| {})?;
        let acc = s.evaluate(&split.test, 0, s.eval_key(e))?;
        println!(
            "{name:>6} epoch {}: loss {:.4}, test acc {:.2}%, step {:.1} ms",
            e + 1,
            st.loss,
            100.0 * acc,
            st.step_ms
        );
        step_ms = st.step_ms;
    }
    let dense = s.graph().param_count();
    let params = match s.select_mask(&split.train)? {
        Some(summary) => {
            s.train_epoch(&split.train, 0, true, |_, _| {})?;
            summary.params
        }
        None => (dense, dense),
    };
    let test_acc = s.evaluate(&split.test, 0, None)?;
    Ok(Outcome { name: name.into(), test_acc, step_ms, params })
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let split = match &a.data_dir {
        Some(dir) => data::load_mnist_dir(dir, DatasetKind::Mnist)?,
        None => data::synthetic_digits(10_000, 2_000, 1),
    };
    let gpu = Gpu::open()?;
    println!("device: {}; data: {} train / {} test images", gpu.report().name, split.train.len(), split.test.len());
    let base = TrainConfig {
        model: ModelSpec::Mlp { hidden: a.hidden.clone() },
        epochs: a.epochs,
        finetune_epochs: 1,
        ..TrainConfig::default()
    };
    let sparse = TrainConfig { sparse: Some(SparseConfig { keep: a.keep, ..SparseConfig::default() }), ..base.clone() };
    let dense = TrainConfig { sparse: None, ..base };
    let results = [run(&gpu, &split, sparse, "sparse")?, run(&gpu, &split, dense, "dense")?];
    println!("\n| run | test acc | step ms | kept parameters |\n|---|---:|---:|---:|");
    for r in &results {
        println!("| {} | {:.2}% | {:.1} | {} of {} |", r.name, 100.0 * r.test_acc, r.step_ms, r.params.0, r.params.1);
    }
    println!("\nsparse step time is {:.2}x the dense one", results[0].step_ms / results[1].step_ms);
    Ok(())
}
