//#include common
//#include step

// Sum / mean of a vector in two passes, so that a real GPU uses all of its
// cores on the first pass:
// reduce_partial: workgroup g sums a strided share of x into partials[g].
// reduce_final:   one workgroup sums the partials into out[out_index] · scale
//                 (scale = 1 for a sum, 1/n for a mean).
// With SQUARE the first pass sums x² (a squared norm). A short vector (a
// batch's losses, the scores' gradient, two squared norms) skips the first
// pass: reduce_final reads x itself (SQUARE applies there then) and its
// length may be the step's batch (count_code): one launch instead of two.
// The length of x may be the step's batch (n_code = BATCH), and a mean may
// divide by it (mean_rows != 0: scale / rows_of(mean_rows, n_code)).
// With CLIP the final pass writes min(1, scale / (sqrt(total) + 1e-6)) instead:
// the factor of gradient-norm clipping to norm `scale`, from the squared
// norms of the parameter groups, without leaving the device. A non-finite
// total writes factor 0 — the optimizers then skip the step — adds 1 to
// out[out_index + 1] and, for the first such step, stores `tag` (the step
// number, as u32 bits) in out[out_index + 2]; the number is the step
// block's `global` when tag = NONE. An applied step (finite total, and
// finite loss with LOSS) adds 1 to the u32 (bits) in out[out_index + 3]:
// the count of updates applied (lazy.wgsl's clock).
//
// Two more inputs save launches: with SQUARES, reduce_final adds the
// squares of x2[0..n2] (a gradient's squared norm, which needed a reduction
// of its own) to the total; with LOSS, the step's loss is the sum of
// loss_in[loss_at..loss_at + loss_n], and under CLIP a non-finite loss is a
// fault as a non-finite total is. A final pass may also add its result into
// out[also] (a mean into a running sum: NONE for none).
//
// With CLIP and LOSS_SCALE (mixed precision, dynamic loss scaling as in
// PyTorch's GradScaler; LOSS is then given), the squared norms are of
// gradients that are all scaled by S = out[out_index + LOSS_SCALE_SLOT]
// and the loss tells an overflow from a fault. The factor becomes min(1, scale / (sqrt(total) / S + 1e-6)) / S,
// which unscales and clips at once (S is a power of two: exact). A
// non-finite total with a finite loss is an overflow (of the f16 operands,
// or of the squares): the step is skipped (factor 0), S halves (not below
// 1) and no fault is counted; a non-finite loss, or a non-finite total at
// S = 1, is a fault as without scaling. After `growth` finite steps in a row (counted in
// out[out_index + 5]) S doubles, up to 2^24.

// Keep in sync with `ReduceParams` in src/ops/reduce.rs.
struct ReduceParams {
    // reduce_partial: length of x; reduce_final: number of partials.
    n: u32,
    // Slot of `out` that receives the result.
    out_index: u32,
    scale: f32,
    // 1 adds the result to out[out_index] instead of overwriting it.
    accumulate: u32,
    // CLIP: the step number recorded for the first non-finite total (NONE:
    // the step block's counter).
    tag: u32,
    // reduce_partial: BATCH when n is the step's batch (at most n).
    n_code: u32,
    // reduce_final: nonzero for a mean over rows_of(mean_rows, n_code) rows.
    mean_rows: u32,
    // reduce_final: it sums rows_of(n, count_code) values (NONE: n partials).
    count_code: u32,
    // CLIP with LOSS_SCALE: finite steps before the loss scale doubles.
    growth: u32,
    // SQUARES: the length of x2.
    n2: u32,
    // LOSS: where the loss values start in loss_in, and how many.
    loss_at: u32,
    loss_n: u32,
    // reduce_final: a slot of `out` the result is also added to, or NONE.
    also: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Inf or NaN, tested on the bits: floating-point comparisons may be folded
// away by compilers that assume finite math.
fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// Must be a power of two (tree reduction).
override WG: u32 = 256u;
override SQUARE: bool = false;
override CLIP: bool = false;
override LOSS_SCALE: bool = false;
override SQUARES: bool = false;
override LOSS: bool = false;

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> x2: array<f32>;
@group(0) @binding(4) var<storage, read> loss_in: array<f32>;

// The step's loss (LOSS).
fn step_loss() -> f32 {
    var l = 0.0;
    for (var k = 0u; k < p.loss_n; k++) {
        l += loss_in[p.loss_at + k];
    }
    return l;
}

var<workgroup> scratch: array<f32, WG>;

// Tree-sums `scratch` within the workgroup; the total ends in scratch[0].
fn workgroup_sum(lidx: u32) {
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if lidx < stride {
            scratch[lidx] += scratch[lidx + stride];
        }
    }
    workgroupBarrier();
}

// Records a non-finite step: counted in out[out_index + 1], the first one's
// number in out[out_index + 2].
fn record_fault() {
    let seen = out[p.out_index + 1u];
    if seen == 0.0 {
        var tag = p.tag;
        if tag == NONE {
            tag = st.global;
        }
        out[p.out_index + 2u] = bitcast<f32>(tag);
    }
    out[p.out_index + 1u] = seen + 1.0;
}

// The update factor under dynamic loss scaling (see the header), updating
// the scale and the fault record.
fn clip_scaled(total: f32) -> f32 {
    let at_s = p.out_index + LOSS_SCALE_SLOT;
    let s = out[at_s];
    // A non-finite loss is a fault; so is a non-finite gradient at S = 1,
    // where no overflow of the scaling is left to blame (a NaN that ReLU's
    // max(NaN, 0) hid from the loss).
    let fault = non_finite(step_loss()) || (non_finite(total) && s <= 1.0);
    if fault || non_finite(total) {
        if fault {
            record_fault();
        } else {
            out[at_s] = max(s * 0.5, 1.0);
        }
        out[at_s + 1u] = 0.0;
        return 0.0;
    }
    var good = out[at_s + 1u] + 1.0;
    if good >= f32(p.growth) {
        out[at_s] = min(s * 2.0, 16777216.0);
        good = 0.0;
    }
    out[at_s + 1u] = good;
    out[p.out_index + 3u] = bitcast<f32>(bitcast<u32>(out[p.out_index + 3u]) + 1u);
    return min(1.0, p.scale / (sqrt(total) / s + 1e-6)) / s;
}

@compute @workgroup_size(WG)
fn reduce_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let groups = nwg.x * nwg.y;
    let g = wid.y * nwg.x + wid.x;
    var sum = 0.0;
    let n = rows_of(p.n, p.n_code);
    for (var i = g * WG + lidx; i < n; i += groups * WG) {
        let v = x[i];
        if SQUARE {
            sum += v * v;
        } else {
            sum += v;
        }
    }
    scratch[lidx] = sum;
    workgroup_sum(lidx);
    if lidx == 0u {
        out[g] = scratch[0];
    }
}

@compute @workgroup_size(WG)
fn reduce_final(@builtin(local_invocation_index) lidx: u32) {
    var sum = 0.0;
    let n = rows_of(p.n, p.count_code);
    for (var i = lidx; i < n; i += WG) {
        let v = x[i];
        if SQUARE {
            sum += v * v;
        } else {
            sum += v;
        }
    }
    if SQUARES {
        for (var i = lidx; i < p.n2; i += WG) {
            sum += x2[i] * x2[i];
        }
    }
    scratch[lidx] = sum;
    workgroup_sum(lidx);
    if lidx == 0u {
        var scale = p.scale;
        if p.mean_rows != 0u {
            scale /= f32(max(rows_of(p.mean_rows, p.n_code), 1u));
        }
        var v = scratch[0] * scale;
        if CLIP && LOSS_SCALE {
            v = clip_scaled(scratch[0]);
        } else if CLIP {
            if non_finite(scratch[0]) || (LOSS && non_finite(step_loss())) {
                v = 0.0;
                record_fault();
            } else {
                v = min(1.0, p.scale / (sqrt(scratch[0]) + 1e-6));
                // The clock of lazy updates (lazy.wgsl): updates applied.
                out[p.out_index + 3u] = bitcast<f32>(bitcast<u32>(out[p.out_index + 3u]) + 1u);
            }
        }
        if p.accumulate != 0u {
            v += out[p.out_index];
        }
        out[p.out_index] = v;
        if p.also != NONE {
            out[p.also] += v;
        }
    }
}

