//! sparsetrain: training sparse neural networks on any GPU that wgpu
//! reaches, with WGSL compute shaders and everything resident on the device.
//!
//! The pieces, bottom up:
//! - [`Gpu`]: the device, its limits, and the counted read-back path.
//! - [`Tensor`]: resident f32/u32 storage with a shape.
//! - [`shader`]: the kernel registry and pipeline cache; [`ops`]: one
//!   launcher per kernel; [`cpu`]: the f64 reference of every kernel.
//! - [`Recorder`]: batches dispatches into one submission.
//! - [`mlp`]: a dense MLP trained end to end on the device.

pub mod autotune;
pub mod bench;
pub mod cpu;
pub mod data;
pub mod error;
pub mod gpu;
pub mod mlp;
pub mod ops;
pub mod record;
pub mod shader;
pub mod sparse;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{AdapterReport, Gpu, GpuOptions, ReadbackStats};
pub use record::Recorder;
pub use tensor::{DType, Tensor};
