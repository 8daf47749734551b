//! GPU kernel tests: each kernel against its f64 CPU reference on seeded
//! random inputs of awkward sizes. One test binary, one module per kernel.

mod common;

mod accuracy;
mod add;
mod batchnorm;
mod bias;
mod compact;
mod conv;
mod decode;
mod gather;
mod lazy;
mod mask;
mod matmul;
mod matmul_epilogue;
mod matmul_implicit;
mod matmul_kept;
mod matmul_large;
mod matmul_pack;
mod matmul_pair;
mod matmul_thin;
mod optim;
mod pool;
mod project;
mod reduce;
mod relu;
mod softmax_xent;
mod tensor;
mod vrpge;
