//! Benchmarks. They print the device, the sizes, medians of several runs
//! and the ratio to a baseline measured in the same run; speed is shown
//! here, never in timed tests. `matmul`: every matmul variant on every
//! layout and size, with the share of the fp32 peak. `train`: training
//! steps, dense and sparse, with the fixed cost of a step: host time to
//! encode and submit its plan, dispatches and compute passes, GPU-busy
//! time, and latency against throughput.

mod matmul;
mod train;

pub use matmul::{MatmulRow, bench_matmul, fp32_peak_tflops, mlp_shapes};
pub use train::{ROUNDS, TrainRow, bench_train, family_shares, mlp_model, model_by_name, step_flops};

use crate::error::Error;

fn io_err(e: std::io::Error) -> Error {
    Error::Io { path: "<stdout>".into(), error: e }
}
