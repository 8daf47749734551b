//! Training: the run's settings (`config`), the trainer that replays the
//! recorded steps of a net (`trainer`), the epoch loop with evaluation,
//! mask selection and fine-tuning (`session`), checkpoints (`checkpoint`)
//! and the figures a run reports (`stats`).

pub mod checkpoint;
pub mod config;
pub mod session;
pub mod stats;
pub mod trainer;

pub use config::{ModelSpec, TrainConfig};
pub use session::{Session, byte_inputs_env, evaluate_net};
pub use stats::{EpochStats, Faults, SparseSummary};
pub use trainer::{LossScaling, MAX_CHUNK, Phase, Trainer};
