//#include common
//#include step

// Pooling over NHWC activations, forward and backward side by side. Windows
// of kh × kw with strides sh, sw that do not overlap (s ≥ k), so every input
// value is in at most one window and the backward is a gather, one thread
// per input value (or per input pixel, PER_PIXEL): no atomics. Global
// average pooling is a window of the whole image.
// pool_forward:  y[n, oh, ow, c] = max or mean of x over the window
// pool_backward: dx[n, ih, iw, c] (+)= dy of its window · (max: 1 for the
//                window's first maximum, else 0; mean: 1 / (kh·kw)), zero
//                where x is a ReLU's output and not positive (GATE)

// Keep in sync with `PoolParams` in src/ops/pool.rs.
struct PoolParams {
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    // Stored channels: c_full, or ceil4(dims[c_code]) when c_code != NONE.
    c_full: u32,
    c_code: u32,
    batch: u32,
    batch_code: u32,
    // 0: max, 1: mean.
    mode: u32,
    accumulate: u32,
    gate: u32,
    _pad: u32,
}

override WG: u32 = 256u;
// A thread per pixel looping over its channels (CPU adapters: integer
// division has no vector instruction there, and a thread per value divides
// five to seven times per value), else a thread per value (GPUs: a global
// pooling has few pixels and many values).
override PER_PIXEL: bool = false;

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> dims: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;

fn channels() -> u32 {
    if p.c_code == NONE {
        return p.c_full;
    }
    return (dims[p.c_code] + 3u) & ~3u;
}

struct Win {
    value: f32,
    // Max: the flat index of the window's first input that attains it.
    at: u32,
}

// The window's maximum or mean.
fn window(n: u32, oh: u32, ow: u32, ch: u32, c: u32) -> Win {
    var best = 0.0;
    var at = 0u;
    var sum = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        for (var j = 0u; j < p.kw; j++) {
            let idx = ((n * p.h + oh * p.sh + i) * p.w + ow * p.sw + j) * c + ch;
            let v = x[idx];
            sum += v;
            if (i == 0u && j == 0u) || v > best {
                best = v;
                at = idx;
            }
        }
    }
    if p.mode == 1u {
        return Win(sum / f32(p.kh * p.kw), 0u);
    }
    return Win(best, at);
}

// Sample, row and column of pixel q of an h × w plane.
fn pixel(q: u32, h: u32, w: u32) -> vec3<u32> {
    let n = q / (h * w);
    let rem = q - n * h * w;
    let y = rem / w;
    return vec3(n, y, rem - y * w);
}

@compute @workgroup_size(WG)
fn pool_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let c = channels();
    let pixels = rows_of(p.batch, p.batch_code) * p.oh * p.ow;
    let stride = nwg.x * nwg.y * WG;
    if PER_PIXEL {
        for (var q = flat_id(wid, nwg, lidx, WG); q < pixels; q += stride) {
            let o = pixel(q, p.oh, p.ow);
            for (var ch = 0u; ch < c; ch++) {
                y[q * c + ch] = window(o.x, o.y, o.z, ch, c).value;
            }
        }
        return;
    }
    for (var t = flat_id(wid, nwg, lidx, WG); t < pixels * c; t += stride) {
        let o = pixel(t / c, p.oh, p.ow);
        y[t] = window(o.x, o.y, o.z, t % c, c).value;
    }
}

// dX at value t (pixel q of the input, channel ch).
fn backward_one(q: u32, i: vec3<u32>, ch: u32, c: u32) {
    let t = q * c + ch;
    let oh = i.y / p.sh;
    let ow = i.z / p.sw;
    var g = 0.0;
    // Whether a window holds this pixel.
    if oh < p.oh && ow < p.ow && i.y - oh * p.sh < p.kh && i.z - ow * p.sw < p.kw {
        let d = dy[((i.x * p.oh + oh) * p.ow + ow) * c + ch];
        if p.mode == 1u {
            g = d / f32(p.kh * p.kw);
        } else if window(i.x, oh, ow, ch, c).at == t {
            g = d;
        }
    }
    if p.gate != 0u && x[t] <= 0.0 {
        g = 0.0;
    }
    if p.accumulate != 0u {
        g += y[t];
    }
    y[t] = g;
}

@compute @workgroup_size(WG)
fn pool_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let c = channels();
    let pixels = rows_of(p.batch, p.batch_code) * p.h * p.w;
    let stride = nwg.x * nwg.y * WG;
    if PER_PIXEL {
        for (var q = flat_id(wid, nwg, lidx, WG); q < pixels; q += stride) {
            let i = pixel(q, p.h, p.w);
            for (var ch = 0u; ch < c; ch++) {
                backward_one(q, i, ch, c);
            }
        }
        return;
    }
    for (var t = flat_id(wid, nwg, lidx, WG); t < pixels * c; t += stride) {
        let q = t / c;
        backward_one(q, pixel(q, p.h, p.w), t % c, c);
    }
}
