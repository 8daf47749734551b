//! sparsetrain: training sparse neural networks on any GPU that wgpu
//! reaches, with WGSL compute shaders and everything resident on the device.
//!
//! It implements Zhou et al., *Efficient Neural Network Training via Forward
//! and Backward Propagation Sparsification* (NeurIPS 2021): each prunable unit
//! has a keep probability, every step samples masks from them and runs the
//! forward and backward passes on the kept units only, and the probabilities
//! are trained by a variance-reduced policy-gradient estimator.
//!
//! # Example
//!
//! Train a sparse MLP on data from your own memory, read the loss only when
//! you want it, then fix a mask:
//!
//! ```
//! use sparsetrain::nn::{Graph, Net};
//! use sparsetrain::ops::optim::Sgd;
//! use sparsetrain::sparse::SparseConfig;
//! use sparsetrain::train::{Phase, Trainer};
//! use sparsetrain::Gpu;
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
//! let net = Net::new(&gpu, Graph::mlp(dim, &[64, 64], 3)?, 7)?;
//! let sgd = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4 };
//! let cfg = SparseConfig { keep: 0.25, ..SparseConfig::default() };
//! let mut trainer = Trainer::new(&gpu, net, batch, sgd, Some(cfg))?;
//!
//! // Your data: a class is the sign pattern of the first two inputs.
//! let x: Vec<f32> = (0..batch * dim).map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0).collect();
//! let y: Vec<u32> = (0..batch).map(|r| (x[r * dim] > 0.0) as u32 + (x[r * dim + 1] > 0.0) as u32).collect();
//! trainer.set_batch(&gpu, &x, &y)?;
//!
//! for step in 0..20 {
//!     // Two masks, VR-PGE, updates: one recorded plan, replayed; nothing
//!     // is read back. Learning rates: weights 0.05, scores 0.05.
//!     trainer.run(&gpu, Phase::Train, batch, 0.05, 0.05, step)?;
//! }
//! let losses = trainer.loss.download_f32(&gpu)?; // read back on request
//! assert!(losses[0].is_finite());
//!
//! // Fix a mask drawn from the scores and see what is kept.
//! let key = sparsetrain::ops::mask::MaskKey { seed: 1, step: u32::MAX, sample: 0 };
//! trainer.draw_fixed(&gpu, key)?;
//! let kept = trainer.sparse("kept units")?.fixed.kept_counts(&gpu, 0)?;
//! assert!(kept.iter().all(|&k| k <= 64));
//! # Ok(())
//! # }
//! ```
//!
//! # The pieces, bottom up
//!
//! - [`device`]: the GPU and its limits ([`Gpu`]), resident tensors
//!   ([`Tensor`]), the kernel registry, and recording dispatches into
//!   submissions or replayable plans ([`Recorder`], [`Plan`]).
//! - [`ops`]: one launcher per kernel; [`cpu`]: the f64 reference of every kernel.
//! - [`nn`]: layer kinds, model graphs and nets on the device.
//! - [`sparse`]: the method's settings and mask sets; [`train`]: the trainer
//!   (dense and sparse steps as plans), the epoch loop, checkpoints.
//! - [`data`]: datasets; [`export`]: the network of kept units; [`bench`],
//!   [`plot`], [`io`].

pub mod bench;
pub mod cpu;
pub mod data;
pub mod device;
pub mod error;
pub mod export;
pub mod io;
pub mod nn;
pub mod ops;
pub mod plot;
pub mod sparse;
pub mod train;

pub use device::gpu::{AdapterReport, CoopSupport, Gpu, GpuOptions, Precision, ReadbackStats};
pub use device::record::{Plan, Recorder};
pub use device::tensor::{DType, Tensor};
pub use device::{gpu, record, shader, step, tensor};
pub use error::{Error, Result};
