//#include common
//#include step

// The residual sum of two NHWC activations whose stored channels may be
// different sets (each input keeps its own layer's channels; the sum keeps
// their union), forward and backward side by side. A side is either all
// channels (map NONE: channel c at column c) or a kept set: its count at
// dims[count], its channel list at maps[map..] and each channel's column,
// or NONE, at ranks[map + c] (compact.wgsl). A kept side stores its count
// padded to 4 columns, or (EXACT: the fixed sets of a compacted network's
// sums) exactly its count.
// add_forward:  out[r, j] = A[r, col_A(c)] + B[r, col_B(c)] [ReLU], c the
//               j-th channel of the sum; a channel an input lacks counts 0;
//               padding columns (past the sum's count) are 0.
// add_backward: dX[r, i] (+)= dOut[r, col_out(c)], c the i-th channel of
//               input X (every channel of an input is in the sum), zero
//               where X is a ReLU's output and not positive (GATE).

// Keep in sync with `AddParams` in src/ops/add.rs.
struct AddParams {
    rows: u32,
    rows_code: u32,
    // Channels when all are stored.
    c_full: u32,
    relu: u32,
    // The sides: output (or the gradient's input, backward), A, B.
    out_count: u32,
    out_map: u32,
    a_count: u32,
    a_map: u32,
    b_count: u32,
    b_map: u32,
    accumulate: u32,
    gate: u32,
    exact: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: AddParams;
@group(0) @binding(1) var<storage, read> dims: array<u32>;
@group(0) @binding(2) var<storage, read> maps: array<u32>;
@group(0) @binding(3) var<storage, read> ranks: array<u32>;
@group(0) @binding(4) var<storage, read> a: array<f32>;
@group(0) @binding(5) var<storage, read> b: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// (stored columns, kept channels) of a side.
fn side(count: u32) -> vec2<u32> {
    if count == NONE {
        return vec2(p.c_full, p.c_full);
    }
    let k = dims[count];
    if p.exact != 0u {
        return vec2(k, k);
    }
    return vec2((k + 3u) & ~3u, k);
}

// The channel at column j of a side (j below its kept count).
fn channel(map: u32, j: u32) -> u32 {
    if map == NONE {
        return j;
    }
    return maps[map + j];
}

// The column of channel c in a side, or NONE where it lacks c.
fn column(map: u32, c: u32) -> u32 {
    if map == NONE {
        return c;
    }
    return ranks[map + c];
}

@compute @workgroup_size(WG)
fn add_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let so = side(p.out_count);
    let sa = side(p.a_count);
    let sb = side(p.b_count);
    let total = rows_of(p.rows, p.rows_code) * so.x;
    for (var w = row_walk(flat_id(wid, nwg, lidx, WG), nwg.x * nwg.y * WG, so.x); w.t < total; row_walk_next(&w, so.x)) {
        let t = w.t;
        let r = w.r;
        let j = w.c;
        var v = 0.0;
        if j < so.y {
            let c = channel(p.out_map, j);
            let ja = column(p.a_map, c);
            let jb = column(p.b_map, c);
            if ja != NONE {
                v += a[r * sa.x + ja];
            }
            if jb != NONE {
                v += b[r * sb.x + jb];
            }
            if p.relu != 0u {
                v = max(v, 0.0);
            }
        }
        out[t] = v;
    }
}

// The input side is (a_count, a_map), the sum's (out_count, out_map); `a`
// holds dOut, `b` the input's activation (for the gate), `out` dX.
@compute @workgroup_size(WG)
fn add_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let so = side(p.out_count);
    let sx = side(p.a_count);
    let total = rows_of(p.rows, p.rows_code) * sx.x;
    for (var w = row_walk(flat_id(wid, nwg, lidx, WG), nwg.x * nwg.y * WG, sx.x); w.t < total; row_walk_next(&w, sx.x)) {
        let t = w.t;
        let r = w.r;
        let i = w.c;
        var g = 0.0;
        if i < sx.y {
            let jo = column(p.out_map, channel(p.a_map, i));
            if jo != NONE {
                g = a[r * so.x + jo];
            }
        }
        if p.gate != 0u && b[t] <= 0.0 {
            g = 0.0;
        }
        if p.accumulate != 0u {
            g += out[t];
        }
        out[t] = g;
    }
}
