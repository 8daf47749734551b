//! What defines a run: the model, the schedule and optimizer settings, the
//! sparse method's settings (or none, for the dense baseline), and the
//! method's ending (mask selection and fine-tuning).

use serde::{Deserialize, Serialize};

use crate::data::Augment;
use crate::device::gpu::Precision;
use crate::error::{Error, Result};
use crate::nn::{GraphSpec, Shape, models};
use crate::sparse::SparseConfig;

/// The architecture of a run, sized to the data when the run starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSpec {
    /// Linear layers of these widths with ReLUs, then the classifier.
    Mlp { hidden: Vec<usize> },
    /// LeNet-5 (`nn::models::lenet5`).
    Lenet5,
    /// A CIFAR ResNet of 6n + 2 layers with base width `width`.
    Resnet { depth: usize, width: usize },
    /// VGG-11/16/19 with first-stage width `width`.
    Vgg { depth: usize, width: usize },
}

impl ModelSpec {
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelSpec::Mlp { hidden } if hidden.contains(&0) => {
                Err(Error::InvalidArgument(format!("hidden layer widths must be positive, got {hidden:?}")))
            }
            // The builders check their own settings against a nominal image.
            ModelSpec::Resnet { .. } | ModelSpec::Vgg { .. } => {
                self.graph(Shape { c: 3, h: 32, w: 32 }, 10).map(|_| ())
            }
            ModelSpec::Mlp { .. } | ModelSpec::Lenet5 => Ok(()),
        }
    }

    /// Whether the model has units to prune.
    pub fn has_prunable_layers(&self) -> bool {
        match self {
            ModelSpec::Mlp { hidden } => !hidden.is_empty(),
            _ => true,
        }
    }

    /// Whether the model convolves images (and so needs their shape).
    pub fn is_convolutional(&self) -> bool {
        !matches!(self, ModelSpec::Mlp { .. })
    }

    /// The graph for data of `input` shape and `classes` classes.
    pub fn graph(&self, input: Shape, classes: usize) -> Result<GraphSpec> {
        match self {
            ModelSpec::Mlp { hidden } => Ok(GraphSpec::mlp(input.len(), hidden, classes)),
            ModelSpec::Lenet5 => models::lenet5(input, classes),
            ModelSpec::Resnet { depth, width } => models::resnet(*depth, *width, input, classes),
            ModelSpec::Vgg { depth, width } => models::vgg(*depth, *width, input, classes),
        }
    }

    /// A short name for reports: "mlp 256-256", "resnet20 (width 16)".
    pub fn describe(&self) -> String {
        match self {
            ModelSpec::Mlp { hidden } => {
                format!("mlp {}", hidden.iter().map(|h| h.to_string()).collect::<Vec<_>>().join("-"))
            }
            ModelSpec::Lenet5 => "lenet5".into(),
            ModelSpec::Resnet { depth, width } => format!("resnet{depth} (width {width})"),
            ModelSpec::Vgg { depth, width } => format!("vgg{depth} (width {width})"),
        }
    }
}

/// Everything that defines a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The architecture; input and output sizes come from the data.
    pub model: ModelSpec,
    /// Training-time augmentation of the images.
    #[serde(default)]
    pub augment: Augment,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// Cosine decay of the learning rates over the run, per epoch.
    pub cosine: bool,
    pub seed: u64,
    /// None trains the dense baseline (one pass per step, no masks).
    pub sparse: Option<SparseConfig>,
    /// Masks drawn from the final scores to pick the best one from.
    pub select_draws: usize,
    /// Training images the candidate masks are scored on (0: all).
    pub select_on: usize,
    pub finetune_epochs: usize,
    pub finetune_lr: f32,
    /// Cosine decay of the fine-tuning rate over its epochs (off: constant).
    #[serde(default)]
    pub finetune_cosine: bool,
    /// f32, or mixed (f16 operands on tensor cores, f32 accumulation,
    /// master weights and optimizer state; dynamic loss scaling).
    #[serde(default)]
    pub precision: Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelSpec::Mlp { hidden: vec![256, 256] },
            augment: Augment::NONE,
            epochs: 3,
            batch: 128,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            cosine: true,
            seed: 1,
            sparse: Some(SparseConfig::default()),
            select_draws: 10,
            select_on: 0,
            finetune_epochs: 1,
            finetune_lr: 0.01,
            finetune_cosine: false,
            precision: Precision::F32,
        }
    }
}

impl TrainConfig {
    /// Rejects settings that cannot train, with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.batch == 0 {
            return bad("batch size must be at least 1".into());
        }
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        self.model.validate()?;
        for (name, v) in [
            ("learning rate", self.lr),
            ("momentum", self.momentum),
            ("weight decay", self.weight_decay),
            ("fine-tuning learning rate", self.finetune_lr),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(format!("{name} must be finite and non-negative, got {v}"));
            }
        }
        if let Some(s) = &self.sparse {
            s.validate()?;
            if !self.model.has_prunable_layers() {
                return bad("sparse training needs at least one hidden layer (or use --dense)".into());
            }
            if self.select_draws == 0 {
                return bad("at least one mask must be drawn for selection".into());
            }
        }
        Ok(())
    }

    /// Cosine factor in `epoch` (0-based): from 1 towards 0 over the run.
    pub fn decay(&self, epoch: usize) -> f32 {
        if !self.cosine {
            return 1.0;
        }
        let t = epoch as f64 / self.epochs as f64;
        (0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
    }

    /// Fine-tuning's weight learning rate in its epoch `epoch`.
    pub fn finetune_lr_at(&self, epoch: usize) -> f32 {
        if !self.finetune_cosine || self.finetune_epochs == 0 {
            return self.finetune_lr;
        }
        let t = epoch as f64 / self.finetune_epochs as f64;
        self.finetune_lr * (0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
    }

    /// Weight learning rate in `epoch`.
    pub fn lr_at(&self, epoch: usize) -> f32 {
        self.lr * self.decay(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finetune_rate_is_constant_unless_cosine() {
        let c = TrainConfig { finetune_epochs: 4, finetune_lr: 0.008, ..TrainConfig::default() };
        assert!((0..4).all(|e| c.finetune_lr_at(e) == 0.008));
        let c = TrainConfig { finetune_cosine: true, ..c };
        let rates: Vec<f32> = (0..4).map(|e| c.finetune_lr_at(e)).collect();
        let want = [0.008, 0.008 * 0.853_553_4, 0.004, 0.008 * 0.146_446_6];
        for (got, want) in rates.iter().zip(want) {
            assert!((got - want).abs() < 1e-7, "rates {rates:?}, want {want}");
        }
    }

    #[test]
    fn configs_written_before_finetune_cosine_still_load() {
        let mut v = serde_json::to_value(TrainConfig::default()).unwrap();
        v.as_object_mut().unwrap().remove("finetune_cosine");
        let c: TrainConfig = serde_json::from_value(v).unwrap();
        assert!(!c.finetune_cosine);
    }
}
