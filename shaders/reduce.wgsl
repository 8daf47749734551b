//#include common
//#include step
//#include clip

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
// With CLIP the final pass decides the training step's update instead:
// the total is the squared norm of the parameter groups' gradients, and the
// clip record at out[out_index..] moves on by shared/clip.wgsl's rule (the
// factor of gradient-norm clipping to norm `scale` in out[out_index], the
// fault record, the clock of lazy updates, and with LOSS_SCALE the loss
// scale), without leaving the device. A fault records `tag`, or the step
// block's `global` when tag = NONE. Dense steps take this launch; the
// sparse step's score optimizer decides the same way itself (optim.wgsl's
// adam_clip), which saves the launch.
//
// Two more inputs save launches: with SQUARES, reduce_final adds the
// squares of x2[0..n2] (a gradient's squared norm, which needed a reduction
// of its own) to the total; with LOSS, the step's loss is the sum of
// loss_in[loss_at..loss_at + loss_n], and under CLIP a non-finite loss is a
// fault as a non-finite total is (under LOSS_SCALE it tells an overflow
// from a fault, and LOSS is then given). A final pass may also add its
// result into out[also] (a mean into a running sum: NONE for none).

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

// The clip record's step (shared/clip.wgsl) on the workgroup's total.
fn clip_step(total: f32) -> f32 {
    let at = p.out_index;
    var old = ClipRecord(out[at], out[at + 1u], bitcast<u32>(out[at + 2u]), bitcast<u32>(out[at + 3u]), 1.0, 0.0);
    if LOSS_SCALE {
        old.scale = out[at + LOSS_SCALE_SLOT];
        old.good = out[at + LOSS_SCALE_SLOT + 1u];
    }
    var tag = p.tag;
    if tag == NONE {
        tag = st.global;
    }
    let loss_bad = LOSS && non_finite(step_loss());
    let r = clip_next(old, total, loss_bad, p.scale, tag, p.growth, LOSS_SCALE);
    out[at + 1u] = r.faults;
    out[at + 2u] = bitcast<f32>(r.first);
    out[at + 3u] = bitcast<f32>(r.clock);
    if LOSS_SCALE {
        out[at + LOSS_SCALE_SLOT] = r.scale;
        out[at + LOSS_SCALE_SLOT + 1u] = r.good;
    }
    return r.factor;
}

@compute @workgroup_size(WG)
fn reduce_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let groups = nwg.x * nwg.y;
    let g = wid.y * nwg.x + wid.x;
    let n = rows_of(p.n, p.n_code);
    let step = groups * WG;
    var i = g * WG + lidx;
    // Four independent loads per pass (each a coalesced row of the grid),
    // then the rest one by one. With one load per pass, each thread waits
    // out a load's latency per element: the dense 784-8192-8192-10 step's
    // gradient norm read its 294 MB at 2.1 TB/s on an H100.
    var sums = vec4(0.0);
    while i + 3u * step < n {
        let v = vec4(x[i], x[i + step], x[i + 2u * step], x[i + 3u * step]);
        if SQUARE {
            sums += v * v;
        } else {
            sums += v;
        }
        i += 4u * step;
    }
    var sum = (sums.x + sums.y) + (sums.z + sums.w);
    for (; i < n; i += step) {
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
        if CLIP {
            v = clip_step(scratch[0]);
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

