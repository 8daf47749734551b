//#include common
//#include step

// ReLU, forward and backward side by side, both in place.
// forward:  x[i] = max(x[i], 0)
// backward: dy[i] = dy[i] if y[i] > 0 else 0   (y is the forward output)

// Keep in sync with `ReluParams` in src/ops/relu.rs.
struct ReluParams {
    // The tensor is [rows, cols].
    rows: u32,
    cols: u32,
    // BATCH: the rows are the step's batch (at most `rows`).
    rows_code: u32,
    _pad: u32,
}

fn len() -> u32 {
    return rows_of(p.rows, p.rows_code) * p.cols;
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: ReluParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(WG)
fn relu_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let i = flat_id(wid, nwg, lidx, WG);
    if i >= len() {
        return;
    }
    x[i] = max(x[i], 0.0);
}

@group(0) @binding(2) var<storage, read_write> dy: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;

@compute @workgroup_size(WG)
fn relu_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let i = flat_id(wid, nwg, lidx, WG);
    if i >= len() {
        return;
    }
    dy[i] = select(0.0, dy[i], y[i] > 0.0);
}
