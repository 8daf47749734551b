//#include common
//#include step

// The score gradient of the variance-reduced policy-gradient estimator
// (method.md, step 3) for I = 2 mask samples on the same minibatch:
//   VR (default): δ_i = ((L1 − L2) / 2) · (g1_i − g2_i)
//   plain PGE:    δ_i = (L1·g1_i + L2·g2_i) / 2
// with g_k = (m_k − s) / sqrt(s (1 − s))   (FISHER, the reference code's default)
//   or g_k = (m_k − s) / (s (1 − s))       (exact score function),
// each factor guarded by EPS as in the reference code. Both losses are read
// on the device; nothing is read back. With the baseline, a unit where the
// two masks agree gets a gradient of exactly 0 on every device. One thread
// also adds the step's loss (L1 + L2) / 2 into losses[sum] (the running
// sum the log reads), which saved a launch of its own. With LOSS_SCALE
// (mixed precision) δ is multiplied by the loss scale S (a power of two,
// so exactly), like the weight gradients, so that one factor (clip / S)
// unscales and clips both.
// With MEAN_ROWS, L1 and L2 are the batch means of the two passes' per-row
// losses (loss_rows from p.rows1 and p.rows2, the step's batch of each):
// every workgroup reduces them itself, the same way, so all agree, and
// thread 0 stores them in losses[l1], losses[l2] for the log and the loss
// scaler. That folds the two loss-mean launches into this one.
// Under LOSS_SCALE, thread 0 may also copy S into losses[scale_copy]: the
// score optimizer that decides the clip factor (optim.wgsl's adam_clip)
// reads S there in every workgroup while its first workgroup rewrites the
// record's.

// Keep in sync with `ScoreGradParams` in src/ops/vrpge.rs.
struct ScoreGradParams {
    n: u32,
    // Slots of `losses` holding L1 and L2.
    l1: u32,
    l2: u32,
    eps: f32,
    // Where each mask starts in its binding (both may be one buffer).
    m1_off: u32,
    m2_off: u32,
    // Slot of `losses` that accumulates (L1 + L2) / 2, or NONE.
    sum: u32,
    // LOSS_SCALE: a slot of `losses` that receives a copy of S, or NONE.
    scale_copy: u32,
    // MEAN_ROWS: the rows of each pass (at most), their size code (BATCH),
    // and where each pass's rows start in loss_rows.
    rows: u32,
    rows_code: u32,
    rows1: u32,
    rows2: u32,
}

override WG: u32 = 256u;
// true: Fisher-preconditioned g; false: exact score function.
override FISHER: bool = true;
// true: leave-one-out baseline (VR-PGE); false: plain PGE.
override BASELINE: bool = true;

@group(0) @binding(0) var<uniform> p: ScoreGradParams;
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read> scores: array<f32>;
@group(0) @binding(3) var<storage, read> mask1: array<u32>;
@group(0) @binding(4) var<storage, read> mask2: array<u32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;
@group(0) @binding(6) var<storage, read> loss_scale: array<f32>;

override LOSS_SCALE: bool = false;
override MEAN_ROWS: bool = false;

@group(0) @binding(7) var<storage, read> loss_rows: array<f32>;

var<workgroup> wg_sums: array<vec2<f32>, WG>;

// (L1, L2): the two batch means, by a tree over the workgroup (WG is a
// power of two). Called by every thread of the workgroup.
fn mean_losses(lidx: u32) -> vec2<f32> {
    let rows = rows_of(p.rows, p.rows_code);
    var acc = vec2<f32>(0.0);
    for (var r = lidx; r < rows; r += WG) {
        acc += vec2<f32>(loss_rows[p.rows1 + r], loss_rows[p.rows2 + r]);
    }
    wg_sums[lidx] = acc;
    workgroupBarrier();
    for (var hw = WG / 2u; hw > 0u; hw >>= 1u) {
        if lidx < hw {
            wg_sums[lidx] += wg_sums[lidx + hw];
        }
        workgroupBarrier();
    }
    return wg_sums[0] * (1.0 / f32(max(rows, 1u)));
}

fn scaled(g: f32) -> f32 {
    if LOSS_SCALE {
        return g * loss_scale[LOSS_SCALE_SLOT];
    }
    return g;
}

// The denominator of g: sqrt(s (1 − s)) (FISHER) or s (1 − s), guarded.
fn score_denom(s: f32) -> f32 {
    let var_s = (s + p.eps) * (1.0 - s + p.eps);
    if FISHER {
        return sqrt(var_s);
    }
    return var_s;
}

@compute @workgroup_size(WG)
fn score_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let i = flat_id(wid, nwg, lidx, WG);
    var l1: f32;
    var l2: f32;
    if MEAN_ROWS {
        let m = mean_losses(lidx);
        l1 = m.x;
        l2 = m.y;
        if i == 0u {
            losses[p.l1] = l1;
            losses[p.l2] = l2;
        }
    } else {
        l1 = losses[p.l1];
        l2 = losses[p.l2];
    }
    if i == 0u && p.sum != NONE {
        losses[p.sum] += 0.5 * (l1 + l2);
    }
    if LOSS_SCALE && i == 0u && p.scale_copy != NONE {
        losses[p.scale_copy] = loss_scale[LOSS_SCALE_SLOT];
    }
    if i >= p.n {
        return;
    }
    let s = scores[i];
    let denom = score_denom(s);
    if BASELINE {
        // g1 − g2 = (m1 − m2) / denom exactly, so the mask difference is
        // taken first: where the two masks agree it is exactly 0, and the
        // product stays exactly 0 whatever the compiler does (a division
        // turned into a multiply by the reciprocal, a difference of products
        // contracted into a fused multiply-add). Computing g1 and g2 apart
        // left ±1e-9 there on an H100, which Adam turned into real updates.
        let dm = f32(mask1[p.m1_off + i]) - f32(mask2[p.m2_off + i]);
        grad[i] = scaled(0.5 * (l1 - l2) * dm / denom);
    } else {
        // (L1 (m1 − s) + L2 (m2 − s)) / (2 denom): one division, and each
        // term is exactly 0 where m = s (s at 0 or 1).
        let num = l1 * (f32(mask1[p.m1_off + i]) - s) + l2 * (f32(mask2[p.m2_off + i]) - s);
        grad[i] = scaled(0.5 * num / denom);
    }
}
