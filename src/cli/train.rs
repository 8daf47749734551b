//! `sparsetrain train`: a run from flags to summary — data, device, resume,
//! the epoch loop with progress, checkpoints and fault checks, mask
//! selection, fine-tuning, export and plots.

use anyhow::Context;
use sparsetrain::Gpu;
use sparsetrain::train::checkpoint::{CheckpointDir, DataId, Progress};

use super::eval::load_split;
use crate::{EstimatorArg, OnNanArg, ScoreFnArg, TrainArgs, usage};

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    use sparsetrain::ops::optim::Adam;
    use sparsetrain::ops::vrpge::{Estimator, ScoreFn};
    use sparsetrain::sparse::SparseConfig;
    use sparsetrain::train::{ModelSpec, Session, TrainConfig};
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
        model: ModelSpec::Mlp { hidden: a.hidden.clone() },
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
    let graph_spec = cfg.model.graph(split.train.shape, split.train.classes)?;
    let widths: Vec<usize> = sparsetrain::nn::Graph::from_spec(graph_spec.clone())?.unit_widths();
    let data_id = DataId { name: kind.name().into(), fingerprint: split.train.fingerprint() };
    let ck_dir = a
        .checkpoint_dir
        .clone()
        .or_else(|| a.resume.clone())
        .map(|dir| CheckpointDir { dir, keep_last: a.keep_checkpoints });
    if let (Some(cd), None) = (&ck_dir, &a.resume) {
        // A new run would mix its checkpoints with an old run's.
        if cd.dir.is_dir() && !cd.steps()?.is_empty() && !a.force {
            return Err(usage(format!(
                "--checkpoint-dir {} already holds checkpoints; --resume it, choose another directory, or pass --force",
                cd.dir.display()
            )));
        }
    }
    let (mut session, start) = match &a.resume {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(usage(format!("--resume {} is not a directory", dir.display())));
            }
            let (ck, path, skipped) = CheckpointDir { dir: dir.clone(), keep_last: a.keep_checkpoints }.latest()?;
            for s in skipped {
                eprintln!("warning: skipped an unreadable checkpoint: {s}");
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
        None => (
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
            writeln!(f, "{line}")?;
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
        println!("exported network {} ({} parameters) to {}", net.describe(), net.param_count(), path.display());
    }
    if let Some(dir) = &a.plot {
        let m = sparsetrain::plot::Metrics { epochs: rep.history, summary: plot_summary };
        for f in sparsetrain::plot::plot_run(&m, dir)? {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
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
                let kept = match self.ck_dir.as_ref().map(|cd| (cd, cd.steps().unwrap_or_default())) {
                    Some((_, steps)) if !steps.is_empty() => {
                        format!("; the last good checkpoint, {}, is kept", steps[steps.len() - 1].1.display())
                    }
                    Some((cd, _)) => format!("; no checkpoint had been written to {} yet", cd.dir.display()),
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
        // Callers run `check_faults` first: never checkpoint past a fault
        // that stops the run.
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
    fn report(&mut self, s: &sparsetrain::train::EpochStats, total: usize) -> anyhow::Result<()> {
        use std::io::Write;
        let kept = if s.kept.is_empty() {
            String::new()
        } else {
            format!(
                "  kept {}  scores at 0/1 {:.0}%",
                s.kept.iter().map(|k| k.to_string()).collect::<Vec<_>>().join("/"),
                100.0 * s.polarized.unwrap_or(f64::NAN)
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
        self.history.push(s.into());
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
                rep.check_faults(session)?;
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
