//#include common
//#include step

// Training inputs from bytes. The host uploads a batch's pixel bytes, four
// to a u32 (little-endian: value i is bits 8·(i % 4) of word i / 4), a
// quarter of the floats' traffic; this kernel builds the float inputs
//     x[i] = table[(i % channels) · 256 + byte i]
// over the step's rows × dim values (NHWC, so value i is of channel
// i % channels). The tables are the loaders' own (`Norm::tables`), so x is
// bit for bit what the host would have built.

// Keep in sync with `DecodeParams` in src/ops/decode.rs.
struct DecodeParams {
    // x is [rows, dim]; BATCH: the rows are the step's batch (at most `rows`).
    rows: u32,
    rows_code: u32,
    dim: u32,
    channels: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: DecodeParams;
@group(0) @binding(1) var<storage, read> bytes: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

// One thread per word: four values.
@compute @workgroup_size(WG)
fn decode_bytes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let t = flat_id(wid, nwg, lidx, WG);
    let n = rows_of(p.rows, p.rows_code) * p.dim;
    if 4u * t >= n {
        return;
    }
    let word = bytes[t];
    for (var q = 0u; q < 4u; q++) {
        let i = 4u * t + q;
        if i < n {
            x[i] = table[(i % p.channels) * 256u + ((word >> (8u * q)) & 0xffu)];
        }
    }
}
