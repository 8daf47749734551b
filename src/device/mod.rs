//! The device layer: the GPU and its limits (`gpu`), resident tensors
//! (`tensor`), the kernel registry (`shader`), the pipeline cache
//! (`pipeline`) with layouts read from the shaders (`layout`), the matmul
//! variants and the device's choice between them (`variant`), the
//! per-step values every plan reads (`step`), recording dispatches into
//! submissions or replayable plans (`record`), and what to say when no
//! adapter is found (`icd`). Nothing here knows about
//! layers or training.

pub mod gpu;
pub mod icd;
pub mod layout;
pub mod pipeline;
pub mod record;
pub mod report;
pub mod shader;
pub mod step;
pub mod tensor;
pub mod variant;
