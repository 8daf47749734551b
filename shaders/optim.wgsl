//#include common
//#include step
//#include clip

// Optimizer updates, in place over flat parameter buffers.
// Every gradient is first multiplied by a factor computed on the device
// (gradient-norm clipping): gscale[0], or a buffer holding 1.0 when unused;
// adam_clip decides its own (below). This keeps the factor on the device:
// no read-back to decide it. A factor of
// exactly 0 marks a step whose loss or gradient was not finite: nothing is
// updated (SGD still clears the gradient when asked to).
//
// The learning rate (and Adam's bias corrections) are fixed when recorded,
// or read from the step block (from_step != 0), which a replayed plan's
// schedule changes every step.
//
// sgd_step  (PyTorch convention): g' = s·g + wd·w;  v = μ·v + g';  w -= lr·v
//           With ZERO_GRAD it also clears g, so that the next step's
//           scatter-adds start from zero without a separate pass over memory.
// adam_step (Kingma & Ba, optional L2 decay folded into g):
//   m = β1·m + (1-β1)·g';  v = β2·v + (1-β2)·g'²;
//   w -= lr · (m / bc1) / (sqrt(v / bc2) + eps),  bc_i = 1 - β_i^t
// adam_clip: adam_step that decides the step's clip factor itself, in place
//           of reduce.wgsl's launch (the sparse step's score optimizer: it
//           runs first, and the weights' SGD then reads the factor it wrote).
//           Every workgroup sums the squared norms norms[0..n_norms] (with
//           SQUARES also g[0..n]², the scores' own gradient) and the loss,
//           in reduce_final's order, and applies shared/clip.wgsl's rule;
//           so all of them get the same factor, and workgroup 0's first
//           thread alone writes the clip record. Under LOSS_SCALE every
//           workgroup reads S from the copy the score gradient made this
//           step (losses[scale_at]): the record's S is what it rewrites.

// Keep in sync with `SgdParams` in src/ops/optim.rs.
struct SgdParams {
    n: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    // Nonzero: lr is the step block's `lr`.
    from_step: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Keep in sync with `AdamParams` in src/ops/optim.rs.
struct AdamParams {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    // 1 - beta1^t and 1 - beta2^t for the step t being taken.
    bias_c1: f32,
    bias_c2: f32,
    weight_decay: f32,
    // Nonzero: lr, bias_c1 and bias_c2 are the step block's `score_lr`,
    // `adam_c1` and `adam_c2`.
    from_step: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Keep in sync with `ClipParams` in src/ops/optim.rs.
struct ClipParams {
    n_norms: u32,
    // The step's loss: the sum of losses[loss_at..loss_at + loss_n].
    loss_at: u32,
    loss_n: u32,
    // LOSS_SCALE: where this step's S was copied in `losses`.
    scale_at: u32,
    // The step number a first fault records (NONE: the step block's).
    tag: u32,
    // LOSS_SCALE: finite steps before S doubles.
    growth: u32,
    max_norm: f32,
    _pad: u32,
}

// adam_clip's parameters: Adam's and the clip decision's.
struct AdamClipParams {
    adam: AdamParams,
    clip: ClipParams,
}

override WG: u32 = 256u;
override ZERO_GRAD: bool = false;
override SQUARES: bool = false;
override LOSS_SCALE: bool = false;

@group(0) @binding(0) var<uniform> sgd: SgdParams;
@group(0) @binding(1) var<uniform> adam: AdamParams;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;
@group(0) @binding(4) var<storage, read> gscale: array<f32>;
// SGD: the momentum buffer; Adam: the first moment.
@group(0) @binding(5) var<storage, read_write> m1: array<f32>;
// Adam: the second moment.
@group(0) @binding(6) var<storage, read_write> m2: array<f32>;
// adam_clip: the clip record (shared/clip.wgsl), the squared norms of the
// other parameter groups, the losses, and where to find them.
@group(0) @binding(7) var<storage, read_write> record: array<f32>;
@group(0) @binding(8) var<storage, read> norms: array<f32>;
@group(0) @binding(9) var<storage, read> losses: array<f32>;
@group(0) @binding(10) var<uniform> ac: AdamClipParams;

var<workgroup> clip_sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn sgd_step(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let i = flat_id(wid, nwg, lidx, WG);
    if i >= sgd.n {
        return;
    }
    if gscale[0] == 0.0 {
        if ZERO_GRAD {
            g[i] = 0.0;
        }
        return;
    }
    var lr = sgd.lr;
    if sgd.from_step != 0u {
        lr = st.lr;
    }
    let gi = gscale[0] * g[i] + sgd.weight_decay * w[i];
    let v = sgd.momentum * m1[i] + gi;
    m1[i] = v;
    w[i] -= lr * v;
    if ZERO_GRAD {
        g[i] = 0.0;
    }
}

// Adam on element i with hyper-parameters `hp`, its gradient scaled by `s`.
fn adam_update(i: u32, s: f32, hp: AdamParams) {
    let gi = s * g[i] + hp.weight_decay * w[i];
    let m = hp.beta1 * m1[i] + (1.0 - hp.beta1) * gi;
    let v = hp.beta2 * m2[i] + (1.0 - hp.beta2) * gi * gi;
    m1[i] = m;
    m2[i] = v;
    var lr = hp.lr;
    var c1 = hp.bias_c1;
    var c2 = hp.bias_c2;
    if hp.from_step != 0u {
        lr = st.score_lr;
        c1 = st.adam_c1;
        c2 = st.adam_c2;
    }
    w[i] -= lr * (m / c1) / (sqrt(v / c2) + hp.eps);
}

@compute @workgroup_size(WG)
fn adam_step(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let i = flat_id(wid, nwg, lidx, WG);
    if i >= adam.n {
        return;
    }
    if gscale[0] == 0.0 {
        return;
    }
    adam_update(i, gscale[0], adam);
}

@compute @workgroup_size(WG)
fn adam_clip(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    // The squared norm, summed as reduce_final sums it.
    var sum = 0.0;
    for (var k = lidx; k < ac.clip.n_norms; k += WG) {
        sum += norms[k];
    }
    if SQUARES {
        for (var k = lidx; k < ac.adam.n; k += WG) {
            sum += g[k] * g[k];
        }
    }
    clip_sums[lidx] = sum;
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if lidx < stride {
            clip_sums[lidx] += clip_sums[lidx + stride];
        }
    }
    workgroupBarrier();
    let total = clip_sums[0];
    var loss = 0.0;
    for (var k = 0u; k < ac.clip.loss_n; k++) {
        loss += losses[ac.clip.loss_at + k];
    }
    var tag = ac.clip.tag;
    if tag == NONE {
        tag = st.global;
    }
    // The factor depends on the old record's S alone; the writer reads the
    // rest, which no other thread reads while it writes.
    var old = ClipRecord(0.0, 0.0, 0u, 0u, 1.0, 0.0);
    if LOSS_SCALE {
        old.scale = losses[ac.clip.scale_at];
    }
    let writer = wid.x == 0u && wid.y == 0u && lidx == 0u;
    if writer {
        old.faults = record[1];
        old.first = bitcast<u32>(record[2]);
        old.clock = bitcast<u32>(record[3]);
        if LOSS_SCALE {
            old.good = record[LOSS_SCALE_SLOT + 1u];
        }
    }
    let r = clip_next(old, total, non_finite(loss), ac.clip.max_norm, tag, ac.clip.growth, LOSS_SCALE);
    if writer {
        record[0] = r.factor;
        record[1] = r.faults;
        record[2] = bitcast<f32>(r.first);
        record[3] = bitcast<f32>(r.clock);
        if LOSS_SCALE {
            record[LOSS_SCALE_SLOT] = r.scale;
            record[LOSS_SCALE_SLOT + 1u] = r.good;
        }
    }
    let i = flat_id(wid, nwg, lidx, WG);
    if i < ac.adam.n && r.factor != 0.0 {
        adam_update(i, r.factor, ac.adam);
    }
}
