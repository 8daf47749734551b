//! `sparsetrain train`: a run from flags to summary. Everything that can be
//! checked is checked before the first step — flags, sizes against the
//! device, every output path, the checkpoint directory's lock — so a run
//! never trains for an hour to fail on a typo. Then data, device, resume,
//! the epoch loop (`report`), mask selection, fine-tuning, export, plots.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::ValueEnum;
use sparsetrain::Gpu;
use sparsetrain::io::{DirLock, check_writable_file, prepare_dir, remove_stale_temporaries};
use sparsetrain::nn::Graph;
use sparsetrain::train::checkpoint::{CheckpointDir, DataId, Progress};
use sparsetrain::train::{ModelSpec, Session, TrainConfig, Trainer};

use super::eval::load_split;
use super::report::{Reporter, progress_bar, run_epochs};
use crate::{AugmentArg, EstimatorArg, ModelArg, ScoreFnArg, TrainArgs, UpdatesArg, usage};

/// The model of the flags; `--hidden` and `--width` only where they mean something.
fn model_of(a: &TrainArgs) -> anyhow::Result<ModelSpec> {
    let name = a.model.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    if a.model != ModelArg::Mlp && !a.hidden.is_empty() {
        return Err(usage(format!("--hidden sets the MLP's widths; --model {name} has its own (see --width)")));
    }
    let width = |default: usize| a.width.unwrap_or(default);
    let model = match a.model {
        ModelArg::Mlp | ModelArg::Lenet5 if a.width.is_some() => {
            return Err(usage(format!(
                "--width sets the base width of ResNet and VGG; --model {name} has fixed widths{}",
                if a.model == ModelArg::Mlp { " (use --hidden)" } else { "" }
            )));
        }
        ModelArg::Mlp => ModelSpec::Mlp { hidden: if a.hidden.is_empty() { vec![256, 256] } else { a.hidden.clone() } },
        ModelArg::Lenet5 => ModelSpec::Lenet5,
        ModelArg::Resnet20 => ModelSpec::Resnet { depth: 20, width: width(16) },
        ModelArg::Resnet32 => ModelSpec::Resnet { depth: 32, width: width(16) },
        ModelArg::Resnet44 => ModelSpec::Resnet { depth: 44, width: width(16) },
        ModelArg::Resnet56 => ModelSpec::Resnet { depth: 56, width: width(16) },
        ModelArg::Resnet110 => ModelSpec::Resnet { depth: 110, width: width(16) },
        ModelArg::Vgg11 => ModelSpec::Vgg { depth: 11, width: width(64) },
        ModelArg::Vgg16 => ModelSpec::Vgg { depth: 16, width: width(64) },
        ModelArg::Vgg19 => ModelSpec::Vgg { depth: 19, width: width(64) },
    };
    model.validate().map_err(|e| usage(format!("--model {name}: {e}")))?;
    Ok(model)
}

/// The data of the flags: --dataset, or the model's built-in default.
pub fn dataset_of(a: &TrainArgs, model: &ModelSpec) -> sparsetrain::data::DatasetKind {
    use sparsetrain::data::DatasetKind;
    match a.dataset {
        Some(d) => d.kind(),
        None if model.is_convolutional() && !matches!(model, ModelSpec::Lenet5) => DatasetKind::Shapes,
        None => DatasetKind::Synthetic,
    }
}

/// The run's settings from its flags; nonsense is a usage error.
fn config_of(a: &TrainArgs) -> anyhow::Result<TrainConfig> {
    use sparsetrain::ops::optim::Adam;
    use sparsetrain::ops::vrpge::{Estimator, ScoreFn};
    use sparsetrain::sparse::{SparseConfig, Updates};
    for (flag, v) in [("--keep", a.keep), ("--score-lr", a.score_lr), ("--clip", a.clip)] {
        if !v.is_finite() {
            return Err(usage(format!("{flag} must be a finite number, got {v}")));
        }
    }
    if !(a.keep > 0.0 && a.keep <= 1.0) {
        return Err(usage(format!("--keep must be in (0, 1], got {}", a.keep)));
    }
    if a.keep_checkpoints == 0 {
        return Err(usage("--keep-checkpoints must be at least 1 (the newest checkpoint is what --resume reads)"));
    }
    let model = model_of(a)?;
    let kind = dataset_of(a, &model);
    if a.data_dir.is_some() && kind.is_builtin() {
        return Err(usage(format!(
            "--data-dir is only read with --dataset mnist, fashion-mnist, cifar10 or cifar100; the {} set is generated{}",
            kind.name(),
            if a.dataset.is_none() { " (the model's default data: name a --dataset)" } else { "" }
        )));
    }
    let crop = |flip: bool| -> anyhow::Result<sparsetrain::data::Augment> {
        // A pad of a quarter of the image or more would mostly show padding.
        let shape = kind.shape();
        let side = shape.h.min(shape.w);
        if a.crop_pad == 0 || a.crop_pad.saturating_mul(4) >= side {
            return Err(usage(format!(
                "--crop-pad must lie between 1 and a quarter of the image side ({side}), got {}",
                a.crop_pad
            )));
        }
        Ok(sparsetrain::data::Augment { crop_pad: a.crop_pad, flip })
    };
    let augment = match a.augment {
        None | Some(AugmentArg::None | AugmentArg::Flip) if a.crop_pad != 4 => {
            return Err(usage("--crop-pad needs --augment crop or crop-flip"));
        }
        None => kind.default_augment(),
        Some(AugmentArg::None) => sparsetrain::data::Augment::NONE,
        Some(AugmentArg::Crop) => crop(false)?,
        Some(AugmentArg::CropFlip) => crop(true)?,
        Some(AugmentArg::Flip) => sparsetrain::data::Augment { crop_pad: 0, flip: true },
    };
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
        updates: match a.updates {
            UpdatesArg::Auto => Updates::Auto,
            UpdatesArg::Lazy => Updates::Lazy,
            UpdatesArg::Eager => Updates::Eager,
        },
        seed: a.seed,
        ..SparseConfig::default()
    });
    let cfg = TrainConfig {
        model,
        augment,
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
        finetune_cosine: a.finetune_cosine && !a.dense,
        precision: a.precision.get(),
    };
    cfg.validate().map_err(|e| usage(e.to_string()))?;
    Ok(cfg)
}

/// Every output of the run, checked writable before any work.
fn check_outputs(a: &TrainArgs) -> anyhow::Result<()> {
    if let Some(p) = &a.export {
        check_writable_file(p).map_err(|e| usage(format!("--export {e}")))?;
        if p.exists() && !a.force {
            return Err(usage(format!("--export {} already exists; pass --force to replace it", p.display())));
        }
    }
    if let Some(p) = &a.metrics {
        check_writable_file(p).map_err(|e| usage(format!("--metrics {e}")))?;
    }
    if let Some(d) = &a.plot {
        prepare_dir(d).map_err(|e| usage(format!("--plot {e}")))?;
    }
    if let Some(d) = &a.checkpoint_dir {
        prepare_dir(d).map_err(|e| usage(format!("--checkpoint-dir {e}")))?;
    }
    Ok(())
}

/// Refuses a budget that cannot keep one unit in every prunable layer, and
/// sizes beyond the device, naming the flag: the model alone is the model
/// flags' doing, a batch that does not fit --batch's.
fn check_sizes(gpu: &Gpu, a: &TrainArgs, graph: &Graph, sparse: bool) -> anyhow::Result<()> {
    let (units, layers) = (graph.units(), graph.prunable.len());
    if sparse && (a.keep as f64) * (units as f64) < layers as f64 {
        return Err(usage(format!(
            "--keep {} keeps {:.3} of the {units} prunable units: too few for one unit in each of the {layers} \
             prunable layers; the smallest valid --keep here is {:.6}",
            a.keep,
            a.keep as f64 * units as f64,
            (layers as f64 / units as f64).min(1.0)
        )));
    }
    Trainer::check_fits(gpu, graph, 1, sparse)
        .map_err(|e| usage(format!("{}: the model does not fit this device: {e}", model_flags(a))))?;
    Trainer::check_fits(gpu, graph, a.batch, sparse)
        .map_err(|e| usage(format!("--batch {}: the batch does not fit this device: {e}", a.batch)))?;
    Ok(())
}

/// The flags that chose the model, for messages.
fn model_flags(a: &TrainArgs) -> String {
    let name = a.model.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    match (a.model, a.width) {
        (ModelArg::Mlp, _) if !a.hidden.is_empty() => format!("--hidden {:?}", a.hidden),
        (_, Some(w)) => format!("--model {name} --width {w}"),
        _ => format!("--model {name}"),
    }
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    use std::io::Write;

    let cfg = config_of(&a)?;
    check_outputs(&a)?;
    // The checkpoint directory is this run's alone while it runs; what a
    // killed earlier run left half-written goes first.
    let ck_path: Option<PathBuf> = a.checkpoint_dir.clone().or_else(|| a.resume.clone());
    if let Some(dir) = &a.resume
        && !dir.is_dir()
    {
        return Err(usage(format!("--resume {} is not a directory", dir.display())));
    }
    let _lock = match &ck_path {
        Some(dir) => Some(DirLock::acquire(dir, a.force).map_err(|e| usage(e.to_string()))?),
        None => None,
    };
    if let Some(dir) = &ck_path {
        for name in remove_stale_temporaries(dir, &["step-", "best."])? {
            eprintln!("note: removed {name}, a checkpoint half-written by a run that was killed");
        }
    }
    let ck_dir = ck_path.map(|dir| CheckpointDir { dir, keep_last: a.keep_checkpoints });
    if let (Some(cd), None) = (&ck_dir, &a.resume) {
        // A new run would mix its checkpoints with an old run's.
        if !cd.steps()?.is_empty() && !a.force {
            return Err(usage(format!(
                "--checkpoint-dir {} already holds checkpoints; --resume it, choose another directory, or pass --force",
                cd.dir.display()
            )));
        }
    }
    let kind = dataset_of(&a, &cfg.model);
    let split = load_split(kind, a.data_dir.as_deref(), a.seed, (Some(a.train_size), a.test_size))?;
    let gpu = Gpu::open().context("opening the GPU")?;
    let graph_spec = cfg
        .model
        .graph(split.train.shape, split.train.classes)
        .map_err(|e| usage(format!("{} on {} ({}): {e}", model_flags(&a), kind.name(), split.train.shape)))?;
    let graph = Graph::from_spec(graph_spec.clone()).map_err(|e| usage(format!("{}: {e}", model_flags(&a))))?;
    check_sizes(&gpu, &a, &graph, cfg.sparse.is_some())?;
    let r = gpu.report();
    println!(
        "device: {} ({:?}, {:?}); matmul variant {}",
        r.name,
        r.backend,
        r.device_type,
        sparsetrain::ops::autotune::ensure(&gpu)?.variant.name()
    );
    println!(
        "model {}: {} parameters, {} prunable units in {} layers; data {} ({} train, {} test images of {}); augmentation {}",
        cfg.model.describe(),
        graph.param_count(),
        graph.units(),
        graph.prunable.len(),
        kind.name(),
        split.train.len(),
        split.test.len(),
        split.train.shape,
        cfg.augment.describe()
    );
    let widths = graph.unit_widths();
    let data_id = DataId { name: kind.name().into(), fingerprint: split.train.fingerprint() };
    let steps_per_epoch = |ck_batch: usize| split.train.len().div_ceil(ck_batch.max(1));
    let (mut session, start) = match &ck_dir {
        Some(cd) if a.resume.is_some() => {
            let (ck, path, skipped) = cd.latest(|ck| {
                ck.progress
                    .check_steps(&ck.config, steps_per_epoch(ck.config.batch))
                    .map_err(|e| sparsetrain::Error::InvalidArgument(format!("progress does not fit the data: {e}")))
            })?;
            for s in skipped {
                eprintln!("warning: skipped a checkpoint that cannot be resumed: {s}");
            }
            ck.check_compatible(&cfg, &graph_spec, &data_id, a.force).map_err(|e| usage(e.to_string()))?;
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
        _ => (
            Session::new(&gpu, cfg.clone(), split.train.shape, split.train.classes)?,
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
    let metrics = match &a.metrics {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening --metrics {}", p.display()))?,
        ),
        None => None,
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
            if !summary.revived.is_empty() {
                println!(
                    "note: the chosen mask kept no unit of {}; their highest-scoring unit was kept (one unit per layer at least)",
                    summary.revived.join(", ")
                );
            }
        }
        if cfg.finetune_epochs > 0 {
            let from = if in_finetune { (start.epoch, start.step_in_epoch) } else { (0, 0) };
            last = run_epochs(&mut session, &split, &mut rep, cfg.finetune_epochs, true, from)?.or(last);
        }
        let test_acc = session.evaluate(&split.test, 0, None)?;
        let join = |v: &[usize]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        println!(
            "final network: kept units per prunable layer {} of {}; parameters {} of {} ({:.1}%); forward FLOPs/sample {:.0} of {:.0} ({:.1}%); test acc {:.2}%",
            join(&summary.kept).join("/"),
            join(&widths).join("/"),
            summary.params.0,
            summary.params.1,
            100.0 * summary.params.0 as f64 / summary.params.1 as f64,
            summary.flops.0,
            summary.flops.1,
            100.0 * summary.flops.0 / summary.flops.1,
            100.0 * test_acc
        );
        if let Some(f) = rep.metrics.as_mut() {
            let line = serde_json::json!({
                "phase": "summary",
                "kept": summary.kept,
                "params": summary.params.0,
                "dense_params": summary.params.1,
                "flops": summary.flops.0,
                "dense_flops": summary.flops.1,
                "test_acc": test_acc,
                "score_hist": summary.score_hist,
            });
            writeln!(f, "{line}").with_context(|| {
                format!("writing --metrics {}", a.metrics.as_ref().map_or(String::new(), |p| p.display().to_string()))
            })?;
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
        let mut net = session.export()?;
        net.describe_input(kind.name(), split.train.shape, &split.train.norm);
        save_export(&net, path, a.force)?;
    }
    if let Some(dir) = &a.plot {
        let m = sparsetrain::plot::Metrics { epochs: rep.history, summary: plot_summary };
        for f in sparsetrain::plot::plot_run(&m, dir).with_context(|| format!("--plot {}", dir.display()))? {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}

/// Writes the export; if that fails now (the disk filled, the directory
/// went away), the trained network is written next to the working
/// directory or the temporary directory instead, and the error says where.
fn save_export(net: &sparsetrain::export::Exported, path: &Path, force: bool) -> anyhow::Result<()> {
    match net.save(path, force) {
        Ok(()) => {
            println!("exported network {} ({} parameters) to {}", net.describe(), net.param_count(), path.display());
            Ok(())
        }
        Err(e) => {
            let name = format!("sparsetrain-export-{}.safetensors", std::process::id());
            for dir in [PathBuf::from("."), std::env::temp_dir()] {
                let rescue = dir.join(&name);
                if net.save(&rescue, false).is_ok() {
                    anyhow::bail!(
                        "could not write --export {}: {e}; the network was saved to {} instead",
                        path.display(),
                        rescue.display()
                    );
                }
            }
            anyhow::bail!("could not write --export {}: {e}; no other place took the network either", path.display())
        }
    }
}
