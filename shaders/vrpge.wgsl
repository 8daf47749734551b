//#include common

// The score gradient of the variance-reduced policy-gradient estimator
// (method.md, step 3) for I = 2 mask samples on the same minibatch:
//   VR (default): δ_i = ((L1 − L2) / 2) · (g1_i − g2_i)
//   plain PGE:    δ_i = (L1·g1_i + L2·g2_i) / 2
// with g_k = (m_k − s) / sqrt(s (1 − s))   (FISHER, the reference code's default)
//   or g_k = (m_k − s) / (s (1 − s))       (exact score function),
// each factor guarded by EPS as in the reference code. Both losses are read
// on the device; nothing is read back.

// Keep in sync with `ScoreGradParams` in src/ops/vrpge.rs.
struct ScoreGradParams {
    n: u32,
    // Slots of `losses` holding L1 and L2.
    l1: u32,
    l2: u32,
    eps: f32,
}

override WG: u32 = 256u;
// true: Fisher-preconditioned g; false: exact score function.
override FISHER: bool = true;
// true: leave-one-out baseline (VR-PGE); false: plain PGE.
override BASELINE: bool = true;

@group(0) @binding(0) var<uniform> p: ScoreGradParams;
@group(0) @binding(1) var<storage, read> losses: array<f32>;
@group(0) @binding(2) var<storage, read> scores: array<f32>;
@group(0) @binding(3) var<storage, read> mask1: array<u32>;
@group(0) @binding(4) var<storage, read> mask2: array<u32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;

fn score_fn(m: u32, s: f32) -> f32 {
    let var_s = (s + p.eps) * (1.0 - s + p.eps);
    var denom = var_s;
    if FISHER {
        denom = sqrt(var_s);
    }
    return (f32(m) - s) / denom;
}

@compute @workgroup_size(WG)
fn score_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let i = flat_id(wid, nwg, lidx, WG);
    if i >= p.n {
        return;
    }
    let s = scores[i];
    let g1 = score_fn(mask1[i], s);
    let g2 = score_fn(mask2[i], s);
    let l1 = losses[p.l1];
    let l2 = losses[p.l2];
    if BASELINE {
        grad[i] = 0.5 * (l1 - l2) * (g1 - g2);
    } else {
        grad[i] = 0.5 * (l1 * g1 + l2 * g2);
    }
}
