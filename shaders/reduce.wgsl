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
// block's `global` when tag = NONE. A finite total adds 1 to the u32 (bits)
// in out[out_index + 3]: the count of updates applied (lazy.wgsl's clock).

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

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

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
    scratch[lidx] = sum;
    workgroup_sum(lidx);
    if lidx == 0u {
        var scale = p.scale;
        if p.mean_rows != 0u {
            scale /= f32(max(rows_of(p.mean_rows, p.n_code), 1u));
        }
        var v = scratch[0] * scale;
        if CLIP {
            if non_finite(scratch[0]) {
                v = 0.0;
                let seen = out[p.out_index + 1u];
                if seen == 0.0 {
                    var tag = p.tag;
                    if tag == NONE {
                        tag = st.global;
                    }
                    out[p.out_index + 2u] = bitcast<f32>(tag);
                }
                out[p.out_index + 1u] = seen + 1.0;
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
    }
}

