//! Where a run's epochs go: the progress bar, the per-epoch lines, the
//! metrics file, the history kept for `--plot`, the checkpoints, and the
//! fault checks at every logging point; and the epoch loop itself.

use sparsetrain::train::checkpoint::{CheckpointDir, DataId, Progress};

use crate::OnNanArg;

pub fn progress_bar() -> indicatif::ProgressBar {
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
pub struct Reporter {
    pub metrics: Option<std::fs::File>,
    pub history: Vec<sparsetrain::plot::Record>,
    pub bar: indicatif::ProgressBar,
    pub ck_dir: Option<CheckpointDir>,
    pub every: u64,
    pub data: DataId,
    pub best: f64,
    pub on_nan: OnNanArg,
    pub faults_seen: u64,
}

impl Reporter {
    /// Reads the device's record of non-finite steps: stops the run, or
    /// reports newly skipped steps, as --on-nan says.
    pub fn check_faults(&mut self, session: &sparsetrain::train::Session) -> anyhow::Result<()> {
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

    pub fn checkpoint(
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
    pub fn report(&mut self, s: &sparsetrain::train::EpochStats, total: usize) -> anyhow::Result<()> {
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
pub fn run_epochs(
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
