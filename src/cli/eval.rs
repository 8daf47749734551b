//! `sparsetrain eval` and the dataset flags it shares with `train`.

use anyhow::Context;
use sparsetrain::Gpu;

use crate::{DatasetArg, usage};

/// The data of `--dataset` / `--data-dir`, with usage errors for bad flags.
pub fn load_split(
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

pub fn eval(
    network: std::path::PathBuf,
    dataset: DatasetArg,
    data_dir: Option<std::path::PathBuf>,
    seed: u64,
    test_size: usize,
) -> anyhow::Result<()> {
    use sparsetrain::{DType, Recorder, Tensor};
    if !network.is_file() {
        return Err(usage(format!("{} is not a file", network.display())));
    }
    let gpu = Gpu::open().context("opening the GPU")?;
    let net = network_of(&gpu, &network)?;
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

/// The network in `path`: an export as it is, or a checkpoint's kept units.
/// A checkpoint taken after the mask was chosen uses that mask; an earlier
/// one uses the first candidate the run itself would draw from its scores
/// (selection needs the training data, which `train` has and this has not).
pub fn network_of(gpu: &Gpu, path: &std::path::Path) -> anyhow::Result<sparsetrain::export::CompactMlp> {
    use sparsetrain::checkpoint::Checkpoint;
    use sparsetrain::export::CompactMlp;
    let as_export = CompactMlp::load(path);
    if let Ok(net) = as_export {
        return Ok(net);
    }
    let ck = match Checkpoint::load(path) {
        Ok(ck) => ck,
        Err(ck_err) => anyhow::bail!(
            "{} is neither an exported network ({}) nor a checkpoint ({ck_err})",
            path.display(),
            as_export.err().map(|e| e.to_string()).unwrap_or_default()
        ),
    };
    let mut session = sparsetrain::train::Session::restore(gpu, &ck)?;
    if ck.u32("fixed_mask").is_none() {
        session.draw_first_candidate()?;
        eprintln!("note: {} predates mask selection; using one mask drawn from its scores", path.display());
    }
    Ok(session.export()?)
}
