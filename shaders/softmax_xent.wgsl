//#include common
//#include step

// Softmax cross-entropy over rows of logits: the forward alone (evaluation)
// and the training head, which adds the backward in the same launch.
// forward:  probs[r, :] = softmax(logits[r, :]);  loss_rows[r] = -log probs[r, label[r]]
//           (the batch mean is then reduced on the device by reduce.wgsl)
// backward: dlogits[r, c] = (scale / rows) · (probs[r, c] - [c == label[r]]),
//           the gradient of scale · (batch-mean loss)
// One thread per row: the class count is small (10) and rows are independent.
// With LOSS_SCALE (mixed precision) the backward also multiplies by the loss
// scale S = loss_scale[LOSS_SCALE_SLOT], so that every gradient below it
// is S times the true one (exactly: S is a power of two) and small
// gradients keep their digits when the matmuls round them to f16.

// Keep in sync with `SoftmaxXentParams` in src/ops/softmax_xent.rs.
struct SoftmaxXentParams {
    rows: u32,
    cols: u32,
    // backward: the factor of the batch-mean loss (1, or 1/2 for each of two samples).
    scale: f32,
    // BATCH: the rows are the step's batch (at most `rows`).
    rows_code: u32,
    // softmax_xent_train: where the rows' losses start in loss_rows.
    loss_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: SoftmaxXentParams;
@group(0) @binding(1) var<storage, read> labels: array<u32>;

@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss_rows: array<f32>;
@group(0) @binding(4) var<storage, read> logits: array<f32>;

@compute @workgroup_size(WG)
fn softmax_xent_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let r = flat_id(wid, nwg, lidx, WG);
    if r >= rows_of(p.rows, p.rows_code) {
        return;
    }
    let base = r * p.cols;
    var mx = logits[base];
    for (var c = 1u; c < p.cols; c++) {
        mx = max(mx, logits[base + c]);
    }
    var sum = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let e = exp(logits[base + c] - mx);
        probs[base + c] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for (var c = 0u; c < p.cols; c++) {
        probs[base + c] *= inv;
    }
    // log-sum-exp form: exact even when the label's probability underflows.
    let label = min(labels[r], p.cols - 1u);
    loss_rows[r] = log(sum) + mx - logits[base + label];
}

@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(7) var<storage, read> loss_scale: array<f32>;

override LOSS_SCALE: bool = false;

// The training head: forward and backward in one launch (no probs buffer,
// no second pass over the logits). Per row r of the step's batch:
//   loss_rows[loss_off + r] = −log softmax(logits[r, :])[label[r]]
//   dlogits[r, c]           = (scale / rows) · (probs[r, c] − [c == label[r]]) (· S)
//   with COUNT, count[0]   += [argmax logits[r, :] == label[r]] (ties to the
//                             lowest class, as accuracy.wgsl)
// The formulas are the forward's and the backward's, in the same order (a
// compiler may still round the probability differently, kept in a register
// rather than stored). `loss_off` lets the sparse step keep both passes'
// rows for VR-PGE (vrpge.wgsl reduces them).

override COUNT: bool = false;

@group(0) @binding(8) var<storage, read_write> count: array<atomic<u32>>;

var<workgroup> wg_count: atomic<u32>;

@compute @workgroup_size(WG)
fn softmax_xent_train(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    // Workgroup memory is not zeroed for us (see accuracy.wgsl).
    if COUNT {
        if lidx == 0u {
            atomicStore(&wg_count, 0u);
        }
        workgroupBarrier();
    }
    let rows = rows_of(p.rows, p.rows_code);
    let r = flat_id(wid, nwg, lidx, WG);
    if r < rows {
        let base = r * p.cols;
        let label = labels[r];
        var mx = logits[base];
        var best = 0u;
        var best_v = mx;
        for (var c = 1u; c < p.cols; c++) {
            let v = logits[base + c];
            mx = max(mx, v);
            // Strictly greater: ties go to the lowest index.
            if v > best_v {
                best_v = v;
                best = c;
            }
        }
        // The exponentials wait in dlogits for the normalising sum.
        var sum = 0.0;
        for (var c = 0u; c < p.cols; c++) {
            let e = exp(logits[base + c] - mx);
            dlogits[base + c] = e;
            sum += e;
        }
        let inv = 1.0 / sum;
        loss_rows[p.loss_off + r] = log(sum) + mx - logits[base + min(label, p.cols - 1u)];
        var k = p.scale / f32(rows);
        if LOSS_SCALE {
            k *= loss_scale[LOSS_SCALE_SLOT];
        }
        for (var c = 0u; c < p.cols; c++) {
            let prob = dlogits[base + c] * inv;
            let hot = select(0.0, 1.0, c == label);
            dlogits[base + c] = k * (prob - hot);
        }
        if COUNT && best == label {
            atomicAdd(&wg_count, 1u);
        }
    }
    if COUNT {
        workgroupBarrier();
        // One global atomic per workgroup instead of one per row.
        if lidx == 0u {
            let n = atomicLoad(&wg_count);
            if n > 0u {
                atomicAdd(&count[0], n);
            }
        }
    }
}
