//! `sparsetrain eval` and the dataset flags it shares with `train`.

use anyhow::Context;
use sparsetrain::Gpu;

use sparsetrain::data::DatasetKind;

use crate::{DatasetArg, usage};

/// The data of `kind` / `--data-dir`, with usage errors for bad flags.
/// `sizes` are the built-in sets' (`--train-size`, `--test-size`); `None`
/// for a flag the command does not have (eval has no training set).
pub fn load_split(
    kind: sparsetrain::data::DatasetKind,
    data_dir: Option<&std::path::Path>,
    seed: u64,
    sizes: (Option<usize>, usize),
) -> anyhow::Result<sparsetrain::data::Split> {
    use sparsetrain::data::{self, DatasetKind};
    if kind.is_builtin() {
        let (max, bytes) = match kind {
            DatasetKind::Shapes => (data::shapes::MAX_IMAGES, kind.shape().len()),
            _ => (data::synthetic::MAX_IMAGES, kind.shape().len()),
        };
        for (flag, n) in [("--train-size", sizes.0), ("--test-size", Some(sizes.1))] {
            match n {
                Some(0) => return Err(usage(format!("{flag} must be at least 1"))),
                Some(n) if n > max => {
                    return Err(usage(format!(
                        "{flag} {n} is more than the {max} images the {} set generates ({bytes} bytes each)",
                        kind.name()
                    )));
                }
                _ => {}
            }
        }
        let n_train = sizes.0.unwrap_or(1);
        return Ok(match kind {
            DatasetKind::Shapes => data::synthetic_shapes(n_train, sizes.1, seed),
            _ => data::synthetic_digits(n_train, sizes.1, seed),
        });
    }
    let files = match kind {
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => "the binary CIFAR files",
        _ => "the four IDX files",
    };
    let dir = data_dir.ok_or_else(|| {
        usage(format!(
            "--dataset {} needs --data-dir DIR with {files} (e.g. ../shared/data/{})",
            kind.name(),
            kind.name()
        ))
    })?;
    if !dir.is_dir() {
        return Err(usage(format!("--data-dir {} is not a directory", dir.display())));
    }
    Ok(match kind {
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => data::load_cifar_dir(dir, kind)?,
        _ => data::load_mnist_dir(dir, kind)?,
    })
}

pub fn eval(
    network: std::path::PathBuf,
    dataset: Option<DatasetArg>,
    data_dir: Option<std::path::PathBuf>,
    seed: u64,
    test_size: usize,
) -> anyhow::Result<()> {
    if !network.is_file() {
        return Err(usage(format!("{} is not a file", network.display())));
    }
    let gpu = Gpu::open().context("opening the GPU")?;
    let net = network_of(&gpu, &network)?;
    let kind = match dataset {
        Some(d) => d.kind(),
        None => net.info.get("dataset").and_then(|d| DatasetKind::parse(d)).unwrap_or(DatasetKind::Synthetic),
    };
    // The built-in sets' test images do not depend on the training size.
    let split = load_split(kind, data_dir.as_deref(), seed, (None, test_size))?;
    let test = &split.test;
    // An MLP takes any image of its size; a CNN its shape.
    let fits =
        if net.spec.input.plane() > 1 { test.shape == net.spec.input } else { test.dim() == net.spec.input.len() };
    if !fits || test.classes != net.spec.classes {
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
        net.describe_input(kind.name(), kind.shape(), &kind.norm());
    }
    Ok(net)
}
