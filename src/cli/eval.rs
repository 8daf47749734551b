//! `sparsetrain eval` and the dataset flags it shares with `train`.

use anyhow::Context;
use sparsetrain::Gpu;

use crate::{DatasetArg, usage};

/// The data of `--dataset` / `--data-dir`, with usage errors for bad flags.
/// `sizes` are the synthetic set's (`--train-size`, `--test-size`); `None`
/// for a flag the command does not have (eval has no training set).
pub fn load_split(
    dataset: DatasetArg,
    data_dir: Option<&std::path::Path>,
    seed: u64,
    sizes: (Option<usize>, usize),
) -> anyhow::Result<(sparsetrain::data::DatasetKind, sparsetrain::data::Split)> {
    use sparsetrain::data::{self, DatasetKind};
    let kind = match dataset {
        DatasetArg::Synthetic => DatasetKind::Synthetic,
        DatasetArg::Mnist => DatasetKind::Mnist,
        DatasetArg::FashionMnist => DatasetKind::FashionMnist,
    };
    let split = match kind {
        DatasetKind::Synthetic => {
            let max = data::synthetic::MAX_IMAGES;
            for (flag, n) in [("--train-size", sizes.0), ("--test-size", Some(sizes.1))] {
                match n {
                    Some(0) => return Err(usage(format!("{flag} must be at least 1"))),
                    Some(n) if n > max => {
                        return Err(usage(format!(
                            "{flag} {n} is more than the {max} images the synthetic set generates ({} bytes each)",
                            data::synthetic::SYNTH_SIDE * data::synthetic::SYNTH_SIDE
                        )));
                    }
                    _ => {}
                }
            }
            data::synthetic_digits(sizes.0.unwrap_or(1), sizes.1, seed)
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
    if !network.is_file() {
        return Err(usage(format!("{} is not a file", network.display())));
    }
    let gpu = Gpu::open().context("opening the GPU")?;
    let net = network_of(&gpu, &network)?;
    // The synthetic set's test images do not depend on the training size.
    let (kind, split) = load_split(dataset, data_dir.as_deref(), seed, (None, test_size))?;
    let test = &split.test;
    if test.dim() != net.spec.input.len() || test.classes != net.spec.classes {
        anyhow::bail!(
            "{} takes {} inputs and {} classes; {} has {} and {}",
            network.display(),
            net.spec.input,
            net.spec.classes,
            kind.name(),
            test.shape,
            test.classes
        );
    }
    let device_net = net.to_net(&gpu)?;
    let correct = sparsetrain::train::evaluate_net(&gpu, &device_net, test, 256)?;
    println!(
        "{}: network {} ({} parameters) on {} test: {}/{} correct, accuracy {:.2}%",
        network.display(),
        net.describe(),
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
pub fn network_of(gpu: &Gpu, path: &std::path::Path) -> anyhow::Result<sparsetrain::export::Exported> {
    use sparsetrain::export::Exported;
    use sparsetrain::train::checkpoint::Checkpoint;
    let as_export = Exported::load(path);
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
    let mut net = session.export()?;
    if let Some(kind) = sparsetrain::data::DatasetKind::parse(&ck.data.name) {
        let (mean, std) = kind.norm();
        net.describe_input(kind.name(), kind.shape(), &sparsetrain::data::Norm::gray(mean, std));
    }
    Ok(net)
}
