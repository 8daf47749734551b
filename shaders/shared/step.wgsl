// The step block: the values that change from one training step to the next
// (batch size, step counter, learning rates, Adam's bias corrections), in one
// small uniform buffer that the host writes once per step. Every other
// parameter of a recorded step plan is written once, when the plan is built.
// A kernel includes this file with `//#include step` (after `common`).
// Keep in sync with `StepBlock` in src/device/step.rs.
struct StepBlock {
    // Rows of this step's batch (at most the capacity a plan was built for).
    batch: u32,
    // The training phase's step counter: the mask generator's position.
    step: u32,
    // Weight learning rate of this step.
    lr: f32,
    // Score learning rate of this step.
    score_lr: f32,
    // Adam's bias corrections for this step t: 1 - beta1^t, 1 - beta2^t.
    adam_c1: f32,
    adam_c2: f32,
    // Steps of the run so far, all phases: the step recorded for a
    // non-finite loss or gradient.
    global: u32,
    _pad: u32,
}

@group(0) @binding(15) var<uniform> st: StepBlock;

// A size code that means "the rows of this step's batch".
const BATCH: u32 = 0xfffffffeu;

// Rows of a kernel whose row count is `fixed`, or the step's batch (never
// more than `fixed`, the capacity) when `code` is BATCH.
fn rows_of(fixed: u32, code: u32) -> u32 {
    if code == BATCH {
        return min(st.batch, fixed);
    }
    return fixed;
}
