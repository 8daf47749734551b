//#include common

// Euclidean projection of the scores onto { 0 <= s <= 1, Σ s <= K }
// (method.md, step 6), in one workgroup:
//   if Σ clip(s, 0, 1) <= K: v = 0;
//   else bisect v in [0, max s] on f(v) = Σ clip(s - v, 0, 1) - K until
//   |f| < tol or `iters` steps;
//   then s = clip(s - v, 0, 1).
// Each bisection step is one workgroup reduction. The final v is written to
// shift[0] for inspection and tests.

// Keep in sync with `ProjectParams` in src/ops/project.rs.
struct ProjectParams {
    n: u32,
    iters: u32,
    budget: f32,
    tol: f32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: ProjectParams;
@group(0) @binding(1) var<storage, read_write> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> shift: array<f32>;

var<workgroup> red: array<f32, WG>;

// Σ clip(s_i - v, 0, 1) (or max s when `take_max`) over the workgroup.
fn reduce_clipped(lidx: u32, v: f32, take_max: bool) -> f32 {
    var acc = 0.0;
    for (var i = lidx; i < p.n; i += WG) {
        if take_max {
            acc = max(acc, s[i]);
        } else {
            acc += clamp(s[i] - v, 0.0, 1.0);
        }
    }
    red[lidx] = acc;
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if lidx < stride {
            if take_max {
                red[lidx] = max(red[lidx], red[lidx + stride]);
            } else {
                red[lidx] += red[lidx + stride];
            }
        }
    }
    // A uniform load (it includes the barrier): every thread gets the same
    // total, so the bisection's branches stay in uniform control flow.
    let total = workgroupUniformLoad(&red[0]);
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn project_scores(@builtin(local_invocation_index) lidx: u32) {
    var v = 0.0;
    let f0 = reduce_clipped(lidx, 0.0, false) - p.budget;
    if f0 > 0.0 {
        var lo = 0.0;
        var hi = reduce_clipped(lidx, 0.0, true);
        for (var it = 0u; it < p.iters; it++) {
            v = 0.5 * (lo + hi);
            let f = reduce_clipped(lidx, v, false) - p.budget;
            // Every thread holds the same f, so the branch is uniform.
            if abs(f) < p.tol {
                break;
            }
            if f > 0.0 {
                lo = v;
            } else {
                hi = v;
            }
        }
    }
    for (var i = lidx; i < p.n; i += WG) {
        s[i] = clamp(s[i] - v, 0.0, 1.0);
    }
    if lidx == 0u {
        shift[0] = v;
    }
}
