//#include common
//#include step

// Optimizer updates, in place over flat parameter buffers.
// Every gradient is first multiplied by gscale[0]: a factor computed on the
// device (gradient-norm clipping), or a buffer holding 1.0 when unused. This
// keeps the factor on the device: no read-back to decide it. A factor of
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

override WG: u32 = 256u;
override ZERO_GRAD: bool = false;

@group(0) @binding(0) var<uniform> sgd: SgdParams;
@group(0) @binding(1) var<uniform> adam: AdamParams;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;
@group(0) @binding(4) var<storage, read> gscale: array<f32>;
// SGD: the momentum buffer; Adam: the first moment.
@group(0) @binding(5) var<storage, read_write> m1: array<f32>;
// Adam: the second moment.
@group(0) @binding(6) var<storage, read_write> m2: array<f32>;

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
    let gi = gscale[0] * g[i] + adam.weight_decay * w[i];
    let m = adam.beta1 * m1[i] + (1.0 - adam.beta1) * gi;
    let v = adam.beta2 * m2[i] + (1.0 - adam.beta2) * gi * gi;
    m1[i] = m;
    m2[i] = v;
    var lr = adam.lr;
    var c1 = adam.bias_c1;
    var c2 = adam.bias_c2;
    if adam.from_step != 0u {
        lr = st.score_lr;
        c1 = st.adam_c1;
        c2 = st.adam_c2;
    }
    w[i] -= lr * (m / c1) / (sqrt(v / c2) + adam.eps);
}
