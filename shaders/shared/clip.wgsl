// The clip record's transition: what a training step does with the squared
// norm of its gradient and its loss, decided on the device. Two kernels
// decide it: reduce.wgsl's reduce_final (CLIP: a launch of its own, for
// dense steps) and optim.wgsl's adam_clip (the sparse step's score
// optimizer, every workgroup the same way). Keeping the rule here, as one
// pure function, makes both give the same factor to the bit.
//
// The record, at a kernel's `out_index`:
//   [0] factor: multiplies every gradient; exactly 0 skips the update
//   [1] non-finite steps counted (faults)
//   [2] the first fault's step number (u32 bits)
//   [3] the clock of lazy updates (lazy.wgsl): updates applied (u32 bits)
//   [LOSS_SCALE_SLOT] S, [LOSS_SCALE_SLOT + 1] finite steps in a row
//       (loss scaling only)
//
// Plain: factor = min(1, max_norm / (sqrt(total) + 1e-6)); a non-finite
// total or loss is a fault (factor 0). Under loss scaling every gradient is
// scaled by S (a power of two), and factor = min(1, max_norm / (sqrt(total)
// / S + 1e-6)) / S unscales and clips at once. A non-finite total with a
// finite loss is an overflow (of the f16 operands, or of the squares): the
// step is skipped, S halves (not below 1) and no fault is counted; a
// non-finite loss, or a non-finite total at S = 1, is a fault. After
// `growth` finite steps in a row S doubles, up to 2^24.

struct ClipRecord {
    factor: f32,
    faults: f32,
    first: u32,
    clock: u32,
    scale: f32,
    good: f32,
}

// Inf or NaN, tested on the bits: floating-point comparisons may be folded
// away by compilers that assume finite math.
fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

fn clip_fault(old: ClipRecord, tag: u32) -> ClipRecord {
    var r = old;
    if old.faults == 0.0 {
        r.first = tag;
    }
    r.faults = old.faults + 1.0;
    r.factor = 0.0;
    return r;
}

// The record after a step whose squared gradient norm is `total` (of the
// S-scaled gradients when `scaled`) and whose loss is non-finite when
// `loss_bad`; `tag` is the step number a first fault records.
fn clip_next(old: ClipRecord, total: f32, loss_bad: bool, max_norm: f32, tag: u32, growth: u32, scaled: bool) -> ClipRecord {
    var r = old;
    if !scaled {
        if non_finite(total) || loss_bad {
            return clip_fault(old, tag);
        }
        r.factor = min(1.0, max_norm / (sqrt(total) + 1e-6));
        r.clock = old.clock + 1u;
        return r;
    }
    let s = old.scale;
    // A non-finite loss is a fault; so is a non-finite gradient at S = 1,
    // where no overflow of the scaling is left to blame (a NaN that ReLU's
    // max(NaN, 0) hid from the loss).
    let fault = loss_bad || (non_finite(total) && s <= 1.0);
    if fault || non_finite(total) {
        if fault {
            r = clip_fault(old, tag);
        } else {
            r.scale = max(s * 0.5, 1.0);
            r.factor = 0.0;
        }
        r.good = 0.0;
        return r;
    }
    r.good = old.good + 1.0;
    if r.good >= f32(growth) {
        r.scale = min(s * 2.0, 16777216.0);
        r.good = 0.0;
    }
    r.clock = old.clock + 1u;
    r.factor = min(1.0, max_norm / (sqrt(total) / s + 1e-6)) / s;
    return r;
}
