//! sparsetrain: training sparse neural networks on any GPU that wgpu
//! reaches, with WGSL compute shaders and everything resident on the device.
//!
//! It implements Zhou et al., *Efficient Neural Network Training via Forward
//! and Backward Propagation Sparsification* (NeurIPS 2021): each hidden unit
//! has a keep probability, every step samples masks from them and runs the
//! forward and backward passes on the kept units only, and the probabilities
//! are trained by a variance-reduced policy-gradient estimator.
//!
//! # Example
//!
//! Train a sparse MLP on data from your own memory, read the loss only when
//! you want it, then fix the best mask:
//!
//! ```
//! use sparsetrain::mlp::Mlp;
//! use sparsetrain::ops::optim::Sgd;
//! use sparsetrain::sparse::{SparseConfig, SparseTrainer};
//! use sparsetrain::{Gpu, Recorder, Tensor};
//!
//! # fn main() -> sparsetrain::Result<()> {
//! # let gpu = match Gpu::open() {
//! #     Ok(g) => g,
//! #     // Where no adapter exists and none is required, the example skips.
//! #     Err(e) if std::env::var_os("CI").is_none() && std::env::var_os("SPARSETRAIN_REQUIRE_GPU").is_none() => {
//! #         eprintln!("skipped: {e}");
//! #         return Ok(());
//! #     }
//! #     Err(e) => return Err(e),
//! # };
//! // let gpu = Gpu::open()?;  // or Gpu::from_device(device, queue, &info, &opts)
//! let (batch, dim) = (32, 20);
//! let mlp = Mlp::new(&gpu, &[dim, 64, 64, 3], 7)?;
//! let sgd = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4 };
//! let cfg = SparseConfig { keep: 0.25, ..SparseConfig::default() };
//! let mut trainer = SparseTrainer::new(&gpu, mlp, batch, sgd, cfg)?;
//!
//! // Your data: a class is the sign pattern of the first two inputs.
//! let x: Vec<f32> = (0..batch * dim).map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0).collect();
//! let y: Vec<u32> = (0..batch).map(|r| (x[r * dim] > 0.0) as u32 + (x[r * dim + 1] > 0.0) as u32).collect();
//! let x = Tensor::from_f32(&gpu, "x", &[batch, dim], &x)?;
//! let y = Tensor::from_u32(&gpu, "y", &[batch], &y)?;
//!
//! for _ in 0..20 {
//!     let mut rec = Recorder::new(&gpu);
//!     trainer.step(&mut rec, &x, &y, batch, 0.05)?; // two masks, VR-PGE, updates
//!     rec.submit()?;                                 // nothing is read back
//! }
//! let losses = trainer.loss.download_f32(&gpu)?;     // read back on request
//! assert!(losses[0].is_finite());
//!
//! // Fix a mask drawn from the scores and see what is kept.
//! let mut rec = Recorder::new(&gpu);
//! let key = sparsetrain::ops::mask::MaskKey { seed: 1, step: u32::MAX, sample: 0 };
//! trainer.draw_mask(&mut rec, &trainer.fixed, key)?;
//! rec.finish()?;
//! let kept = trainer.kept_counts(&gpu, &trainer.fixed)?;
//! assert!(kept.iter().all(|&k| k <= 64));
//! # Ok(())
//! # }
//! ```
//!
//! # The pieces, bottom up
//!
//! - [`Gpu`]: the device, its limits, and the counted read-back path.
//! - [`Tensor`]: resident f32/u32 storage with a shape.
//! - [`shader`]: the kernel registry and pipeline cache; [`ops`]: one
//!   launcher per kernel; [`cpu`]: the f64 reference of every kernel.
//! - [`Recorder`]: batches dispatches into one submission.
//! - [`mlp`]: a dense MLP trained on the device; [`sparse`]: the method;
//!   [`train`]: the epoch loop behind the command line; [`data`]: datasets.

pub mod autotune;
pub mod bench;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod error;
pub mod export;
pub mod gpu;
pub mod mlp;
pub mod ops;
pub mod plot;
pub mod record;
pub mod shader;
pub mod sparse;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{AdapterReport, Gpu, GpuOptions, ReadbackStats};
pub use record::Recorder;
pub use tensor::{DType, Tensor};
