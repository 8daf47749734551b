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

// Size codes: NONE (common.wgsl) is a size fixed when recorded; a code with
// the top bit set, BATCH_ROWS | k, is the step's batch times k (k rows per
// sample: the pixels of an image); other codes are kernel-specific (indices
// of kept counts).
const BATCH_ROWS: u32 = 0x80000000u;
// The step's batch itself.
const BATCH: u32 = 0x80000001u;

fn is_batch_code(code: u32) -> bool {
    // 0xffffffff is NONE (common.wgsl), which has every bit set.
    return code != 0xffffffffu && (code & BATCH_ROWS) != 0u;
}

// Rows of a kernel whose row count is `fixed`, or, for a batch code, the
// step's batch times the code's rows per sample (never more than `fixed`,
// the capacity).
fn rows_of(fixed: u32, code: u32) -> u32 {
    if is_batch_code(code) {
        return min(st.batch * (code & ~BATCH_ROWS), fixed);
    }
    return fixed;
}
