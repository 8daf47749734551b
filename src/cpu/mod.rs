//! f64 CPU references: every kernel as the obvious loop, under the same name
//! as its shader. Tests compare the GPU against these; they are written for
//! clarity, never for speed.

// Index loops read like the math they check; iterator chains would not.
#![allow(clippy::needless_range_loop)]

pub mod accuracy;
pub mod add;
pub mod batchnorm;
pub mod bias;
pub mod compact;
pub mod conv;
pub mod decode;
pub mod gather;
pub mod lazy;
pub mod mask;
pub mod matmul;

pub mod optim;
pub mod pool;
pub mod project;
pub mod reduce;
pub mod relu;
pub mod softmax_xent;
pub mod sparse;

pub mod vrpge;
