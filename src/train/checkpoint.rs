//! Checkpoints: everything a run needs to continue exactly where it stopped,
//! in one safetensors file — weights, SGD momentum, scores and their Adam
//! moments, the fixed mask (once chosen), the step counter (which is also
//! the mask generator's position), epoch and position in it, the full
//! training config, the graph's description and a fingerprint of the data.
//!
//! Files are written atomically (`io::write_atomic`), so a crash while
//! writing leaves the previous checkpoint intact, and they are read as
//! untrusted input: every header value is checked before it sizes anything,
//! the tensor data must match its CRC-32C checksum, and the progress must
//! fit the run's configuration. A checkpoint holding non-finite values is
//! never written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use crate::error::{Error, Result};
use crate::io::{MAX_FILE_BYTES, read_limited, write_atomic};
use crate::nn::{Graph, GraphSpec};

pub const FORMAT: &str = "sparsetrain-checkpoint";
/// Version 2 describes the model as a graph (version 1 had MLP sizes).
pub const VERSION: &str = "2";

/// Phases a checkpoint may be taken in.
pub const PHASES: [&str; 2] = ["train", "finetune"];

/// Where in the run a checkpoint was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// "train" or "finetune".
    pub phase: String,
    /// Epoch (0-based) in progress, within the phase.
    pub epoch: usize,
    /// Steps of that epoch already taken.
    pub step_in_epoch: usize,
    /// Steps taken in all phases (names the checkpoint file).
    pub global_step: u64,
    /// The trainer's step counter: for sparse runs the mask generator's
    /// position and Adam's t.
    pub mask_step: u64,
    /// Best test accuracy at an epoch end so far (negative: none yet).
    pub best_test_acc: f64,
}

impl Progress {
    /// Checks what can be checked without the data: a known phase, an epoch
    /// within the configured ones, counters that agree with each other.
    pub fn validate(&self, config: &TrainConfig) -> std::result::Result<(), String> {
        let epochs = match self.phase.as_str() {
            "train" => config.epochs,
            "finetune" => config.finetune_epochs,
            other => return Err(format!("unknown phase {other:?} (expected train or finetune)")),
        };
        if self.epoch > epochs || (self.epoch == epochs && self.step_in_epoch > 0) {
            return Err(format!("{} epoch {} is beyond the run's {epochs}", self.phase, self.epoch + 1));
        }
        if self.mask_step > self.global_step {
            return Err(format!("mask step {} exceeds the global step {}", self.mask_step, self.global_step));
        }
        if self.global_step > MAX_STEPS {
            return Err(format!("global step {} is beyond any run ({MAX_STEPS})", self.global_step));
        }
        if !(self.best_test_acc.is_finite() && (-1.0..=1.0).contains(&self.best_test_acc)) {
            return Err(format!("best test accuracy {} is not a fraction", self.best_test_acc));
        }
        Ok(())
    }

    /// Checks the counters against the run, with `steps` steps per epoch:
    /// the global step is exactly the steps of the epochs before plus the
    /// steps of this one, and the mask step the training steps among them.
    pub fn check_steps(&self, config: &TrainConfig, steps: usize) -> std::result::Result<(), String> {
        if self.step_in_epoch > steps {
            return Err(format!("step {} of an epoch of {steps} steps", self.step_in_epoch));
        }
        let (steps, epoch, done) = (steps as u64, self.epoch as u64, self.step_in_epoch as u64);
        let train_steps = config.epochs as u64 * steps;
        let (global, mask) = match self.phase.as_str() {
            "train" => (epoch * steps + done, epoch * steps + done),
            _ => (train_steps + epoch * steps + done, train_steps),
        };
        if (self.global_step, self.mask_step) != (global, mask) {
            return Err(format!(
                "step counters (global {}, mask {}) do not match {} epoch {} step {} of {steps}-step epochs (expected {global}, {mask})",
                self.global_step,
                self.mask_step,
                self.phase,
                self.epoch + 1,
                self.step_in_epoch
            ));
        }
        Ok(())
    }
}

/// No run takes more steps (2^40): counters beyond it are corrupt.
pub const MAX_STEPS: u64 = 1 << 40;

/// The data a run trains on, to refuse resuming on other data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataId {
    pub name: String,
    pub fingerprint: u64,
}

/// A checkpoint in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub config: TrainConfig,
    pub graph: GraphSpec,
    pub data: DataId,
    pub progress: Progress,
    /// Named f32 state: params, momentum, state (running statistics),
    /// scores, score_m, score_v, lazy_rate (lazy SGD's pending rate).
    pub f32s: Vec<(String, Vec<f32>)>,
    /// Named u32 state: fixed_mask (when chosen); lazy_last (each weight's
    /// clock) and lazy_clock ([updates applied, updates pending]) of lazy SGD.
    pub u32s: Vec<(String, Vec<u32>)>,
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::InvalidArgument(format!("encoding checkpoint metadata: {e}")))
}

impl Checkpoint {
    pub fn f32(&self, name: &str) -> Option<&[f32]> {
        self.f32s.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    pub fn u32(&self, name: &str) -> Option<&[u32]> {
        self.u32s.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// CRC-32C of every tensor's name and data, in name order.
    fn checksum(&self) -> u32 {
        let mut parts: Vec<(&str, &[u8])> = self
            .f32s
            .iter()
            .map(|(n, v)| (n.as_str(), bytemuck::cast_slice(v)))
            .chain(self.u32s.iter().map(|(n, v)| (n.as_str(), bytemuck::cast_slice(v))))
            .collect();
        parts.sort_by(|a, b| a.0.cmp(b.0));
        parts
            .iter()
            .fold(0u32, |crc, (name, data)| crc32c::crc32c_append(crc32c::crc32c_append(crc, name.as_bytes()), data))
    }

    /// Refuses a checkpoint holding non-finite values: it could only replace
    /// a good one with a broken one.
    pub fn check_finite(&self) -> Result<()> {
        for (name, v) in &self.f32s {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::InvalidArgument(format!(
                    "the run's {name} hold non-finite values (first at index {i}); a checkpoint of it would be useless"
                )));
            }
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bad = |e: safetensors::SafeTensorError| Error::InvalidArgument(format!("serialising a checkpoint: {e}"));
        let mut views = Vec::new();
        for (name, v) in &self.f32s {
            views.push((
                name.clone(),
                TensorView::new(Dtype::F32, vec![v.len()], bytemuck::cast_slice(v)).map_err(bad)?,
            ));
        }
        for (name, v) in &self.u32s {
            views.push((
                name.clone(),
                TensorView::new(Dtype::U32, vec![v.len()], bytemuck::cast_slice(v)).map_err(bad)?,
            ));
        }
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("version".to_string(), VERSION.to_string());
        meta.insert("config".to_string(), json(&self.config)?);
        meta.insert("graph".to_string(), json(&self.graph)?);
        meta.insert("data".to_string(), json(&self.data)?);
        meta.insert("progress".to_string(), json(&self.progress)?);
        meta.insert("checksum".to_string(), format!("crc32c:{:08x}", self.checksum()));
        safetensors::serialize(views, Some(meta)).map_err(bad)
    }

    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
        let bad = |reason: String| Error::BadFile { path: path.into(), reason };
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file ({e})")))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("unreadable header ({e})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad("not a sparsetrain checkpoint".into()));
        }
        if meta.get("version").map(String::as_str) != Some(VERSION) {
            return Err(bad(format!("checkpoint version {:?}, this build reads {VERSION}", meta.get("version"))));
        }
        fn field<T: for<'de> Deserialize<'de>>(
            meta: &HashMap<String, String>,
            key: &str,
        ) -> std::result::Result<T, String> {
            let text = meta.get(key).ok_or_else(|| format!("metadata lacks `{key}`"))?;
            serde_json::from_str(text).map_err(|e| format!("metadata `{key}` is malformed ({e})"))
        }
        let config: TrainConfig = field(&meta, "config").map_err(bad)?;
        let graph: GraphSpec = field(&meta, "graph").map_err(bad)?;
        let data: DataId = field(&meta, "data").map_err(bad)?;
        let progress: Progress = field(&meta, "progress").map_err(bad)?;
        let (mut f32s, mut u32s) = (Vec::new(), Vec::new());
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        for name in names {
            let t = st.tensor(&name).map_err(|e| bad(format!("tensor {name}: {e}")))?;
            if t.shape().len() != 1 {
                return Err(bad(format!("tensor {name} has shape {:?}, expected one dimension", t.shape())));
            }
            let words = t.data().chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
            match t.dtype() {
                Dtype::F32 => f32s.push((name, words.map(f32::from_le_bytes).collect())),
                Dtype::U32 => u32s.push((name, words.map(u32::from_le_bytes).collect())),
                other => return Err(bad(format!("tensor {name} has dtype {other:?}"))),
            }
        }
        let ck = Checkpoint { config, graph, data, progress, f32s, u32s };
        let want = meta.get("checksum").ok_or_else(|| bad("metadata lacks `checksum`".into()))?;
        let got = format!("crc32c:{:08x}", ck.checksum());
        if *want != got {
            return Err(bad(format!(
                "tensor data does not match its checksum ({got}, stored {want}): the file is damaged"
            )));
        }
        ck.progress.validate(&ck.config).map_err(|e| bad(format!("progress: {e}")))?;
        ck.config.validate().map_err(|e| bad(format!("config: {e}")))?;
        ck.check_shapes().map_err(bad)?;
        Ok(ck)
    }

    /// The state tensors a run of this architecture and config must hold
    /// (`load` checks it; `Session::restore` again, for checkpoints built
    /// in memory).
    pub(crate) fn check_shapes(&self) -> std::result::Result<(), String> {
        let graph = Graph::from_spec(self.graph.clone()).map_err(|e| format!("invalid graph: {e}"))?;
        let units = graph.units();
        let mut need = vec![("params", graph.param_total), ("momentum", graph.param_total)];
        if graph.state_total > 0 {
            need.push(("state", graph.state_total));
        }
        if self.config.sparse.is_some() {
            need.extend([("scores", units), ("score_m", units), ("score_v", units)]);
        }
        for (name, len) in need {
            match self.f32(name) {
                Some(v) if v.len() == len => {
                    if v.iter().any(|x| !x.is_finite()) {
                        return Err(format!("tensor {name} holds non-finite values"));
                    }
                }
                Some(v) => return Err(format!("tensor {name} has {} values, the architecture needs {len}", v.len())),
                None => return Err(format!("missing tensor {name}")),
            }
        }
        if let Some(m) = self.u32("fixed_mask")
            && (m.len() != units || m.iter().any(|&b| b > 1))
        {
            return Err("tensor fixed_mask is not a 0/1 mask over the prunable units".into());
        }
        match (self.u32("lazy_last"), self.u32("lazy_clock"), self.f32("lazy_rate")) {
            (None, None, None) => {}
            (Some(last), Some(&[clock, pending]), Some(&[rate])) => {
                if last.len() != graph.param_total || last.iter().any(|&l| l > clock) || pending > 1 {
                    return Err("lazy SGD clocks do not fit the parameters or the update count".into());
                }
                if !rate.is_finite() {
                    return Err("lazy SGD's pending rate is not finite".into());
                }
            }
            _ => return Err("lazy SGD state is incomplete (lazy_last, lazy_clock, lazy_rate)".into()),
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        self.check_finite()?;
        write_atomic(path, &self.to_bytes()?, true)
    }

    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = read_limited(path, MAX_FILE_BYTES)?;
        Checkpoint::from_bytes(&bytes, path)
    }

    /// Refuses to continue this checkpoint with another architecture or
    /// config, or (unless `force_data`) on other data; the message names
    /// what differs.
    pub fn check_compatible(
        &self,
        config: &TrainConfig,
        graph: &GraphSpec,
        data: &DataId,
        force_data: bool,
    ) -> Result<()> {
        let mismatch = |what: String| Err(Error::InvalidArgument(format!("cannot resume: {what}")));
        if &self.graph != graph {
            return mismatch(format!(
                "the checkpoint's architecture ({} on input {}) differs from this run's ({} on input {})",
                describe(&self.graph),
                self.graph.input,
                describe(graph),
                graph.input
            ));
        }
        if &self.config != config {
            let a = serde_json::to_value(&self.config).unwrap_or_default();
            let b = serde_json::to_value(config).unwrap_or_default();
            let mut diff = Vec::new();
            json_diff("", &a, &b, &mut diff);
            if diff.is_empty() {
                diff.push("the configs differ".into());
            }
            return mismatch(format!("the training config differs: {}; resume with the same flags", diff.join("; ")));
        }
        if &self.data != data && !force_data {
            return mismatch(format!(
                "the checkpoint was trained on {} (fingerprint {:016x}), this run uses {} ({:016x}); pass --force to continue on other data",
                self.data.name, self.data.fingerprint, data.name, data.fingerprint
            ));
        }
        Ok(())
    }
}

/// Checkpoint files of a run directory: `step-NNNNNNNNNNNN.safetensors` for
/// the last few, `best.safetensors` for the best test accuracy so far.
pub struct CheckpointDir {
    pub dir: PathBuf,
    pub keep_last: usize,
}

impl CheckpointDir {
    pub fn step_path(&self, global_step: u64) -> PathBuf {
        self.dir.join(format!("step-{global_step:012}.safetensors"))
    }

    pub fn best_path(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }

    /// Step checkpoints present, oldest first.
    pub fn steps(&self) -> Result<Vec<(u64, PathBuf)>> {
        let rd = std::fs::read_dir(&self.dir).map_err(|error| Error::Io { path: self.dir.clone(), error })?;
        let mut out: Vec<(u64, PathBuf)> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let step = name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()?;
                Some((step, e.path()))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Saves a step checkpoint and deletes all but the newest `keep_last`;
    /// nothing is deleted unless the new one was written.
    pub fn save_step(&self, ck: &Checkpoint) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(|error| Error::Io { path: self.dir.clone(), error })?;
        let path = self.step_path(ck.progress.global_step);
        ck.save(&path)?;
        let steps = self.steps()?;
        for (_, old) in steps.iter().take(steps.len().saturating_sub(self.keep_last.max(1))).filter(|(_, p)| *p != path)
        {
            let _ = std::fs::remove_file(old);
        }
        Ok(path)
    }

    pub fn save_best(&self, ck: &Checkpoint) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(|error| Error::Io { path: self.dir.clone(), error })?;
        let path = self.best_path();
        ck.save(&path)?;
        Ok(path)
    }

    /// The newest step checkpoint that loads and passes `check` (e.g. its
    /// progress against the data); unreadable or failing newer ones are
    /// reported and skipped, so a torn or damaged file costs one interval.
    pub fn latest(&self, check: impl Fn(&Checkpoint) -> Result<()>) -> Result<(Checkpoint, PathBuf, Vec<String>)> {
        let mut skipped = Vec::new();
        for (_, path) in self.steps()?.into_iter().rev() {
            match Checkpoint::load(&path).and_then(|ck| check(&ck).map(|_| ck)) {
                Ok(ck) => return Ok((ck, path, skipped)),
                Err(e) => skipped.push(format!("{}: {e}", path.display())),
            }
        }
        Err(Error::BadFile {
            path: self.dir.clone(),
            reason: if skipped.is_empty() {
                "no checkpoint (step-*.safetensors) in this directory".into()
            } else {
                format!("no readable checkpoint: {}", skipped.join("; "))
            },
        })
    }
}

/// "linear 256, relu, linear 10" for messages.
fn describe(g: &GraphSpec) -> String {
    g.nodes
        .iter()
        .map(|n| match n.settings.get("out") {
            Some(o) => format!("{} {o}", n.kind),
            None => n.kind.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The leaves where two JSON values differ, as "path = a in the checkpoint,
/// b now" (so a differing seed names `seed`, not a whole nested object).
fn json_diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let null = serde_json::Value::Null;
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                json_diff(&p, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
            }
        }
        _ if a != b => out.push(format!("{path} = {a} in the checkpoint, {b} now")),
        _ => {}
    }
}
