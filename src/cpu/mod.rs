//! f64 CPU references: every kernel as the obvious loop, under the same name
//! as its shader. Tests compare the GPU against these; they are written for
//! clarity, never for speed.

pub mod accuracy;
pub mod bias;
pub mod matmul;
pub mod mlp;
pub mod optim;
pub mod reduce;
pub mod relu;
pub mod softmax_xent;
