//! The sparse method's own pieces: its settings (`config`) and the mask
//! sets drawn from the scores (`mask`). The step itself, which reads top to
//! bottom, is `train::Trainer`'s (`train/trainer.rs`).

pub mod config;
pub mod mask;

pub use config::{LAZY_MAX_KEEP, SparseConfig, Updates};
pub use mask::MaskSet;
