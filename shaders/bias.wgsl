//#include common
//#include step

// Bias of a linear layer, forward and backward side by side.
// forward:  y[r, j] += bias[j]           (in place on the layer output)
// backward: dbias[j] (+)= Σ_r dy[r, j]   (column sum of the output gradient)

// Keep in sync with `BiasParams` in src/ops/bias.rs.
struct BiasParams {
    rows: u32,
    cols: u32,
    // backward only: 1 adds into dbias instead of overwriting it.
    accumulate: u32,
    // BATCH: the rows are the step's batch (at most `rows`).
    rows_code: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: BiasParams;

@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;

@compute @workgroup_size(WG)
fn bias_add(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let i = flat_id(wid, nwg, lidx, WG);
    if i >= rows_of(p.rows, p.rows_code) * p.cols {
        return;
    }
    y[i] += bias[i % p.cols];
}

@group(0) @binding(3) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;

// One thread per column: neighbouring threads read neighbouring columns of a
// row, so every step of the loop is one coalesced row read.
@compute @workgroup_size(WG)
fn bias_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let j = flat_id(wid, nwg, lidx, WG);
    if j >= p.cols {
        return;
    }
    var sum = 0.0;
    let rows = rows_of(p.rows, p.rows_code);
    for (var r = 0u; r < rows; r++) {
        sum += dy[r * p.cols + j];
    }
    if p.accumulate != 0u {
        sum += dbias[j];
    }
    dbias[j] = sum;
}
