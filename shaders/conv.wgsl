//#include common
//#include step

// A 2-D convolution as one matrix product per layer, over NHWC activations
// (forward and backward side by side; the products are matmul.wgsl's):
// im2col:  cols[r, q] = X[n, oh·s − pad + kh, ow·s − pad + kw, c]  (0 outside)
//          r = (n, oh, ow) over the step's batch, q = (kh, kw, c) over the
//          stored channels C (all, or the kept ones padded to 4); then
//          Y = cols · Wᵀ with W [out, kh·kw·C] gives Y in NHWC.
// col2im:  dX[n, ih, iw, c] (+)= Σ dcols[(n, oh, ow), (kh, kw, c)] over the
//          (oh, ow, kh, kw) with ih = oh·s − pad + kh, iw = ow·s − pad + kw:
//          a gather, one thread per input pixel, so no atomics; zero where
//          X is a ReLU's output and not positive (GATE). Kernels up to 7×7.
// Every loop strides by the launched threads: the grid is sized on the
// host for the largest case, the work on the device (kept counts, batch).

// Keep in sync with `ConvParams` in src/ops/conv.rs.
struct ConvParams {
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    // Stored channels: c_full, or ceil4(dims[c_code]) when c_code != NONE.
    c_full: u32,
    c_code: u32,
    // Samples: the capacity, and BATCH when the step's batch applies.
    batch: u32,
    batch_code: u32,
    // col2im: add into dX instead of overwriting it; gate by X > 0.
    accumulate: u32,
    gate: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 256u;
// im2col: a thread per row rather than per (row, kernel position).
override PER_ROW: bool = false;
// Most kernel positions (kh · kw) col2im handles: 7×7.
const MAX_TAPS: u32 = 49u;

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> dims: array<u32>;
// Bound as vec4 (tensors are allocated and bound in whole 16-byte groups):
// with a multiple of 4 stored channels (every kept count is padded to 4)
// a channel run moves four floats per access; other counts (an RGB image,
// LeNet's 6 channels) take single floats from the same bindings.
@group(0) @binding(2) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>;
// col2im: X, for the gate.
@group(0) @binding(4) var<storage, read> gate_x: array<vec4<f32>>;

fn src_at(i: u32) -> f32 {
    return src[i >> 2u][i & 3u];
}

fn dst_at(i: u32) -> f32 {
    return dst[i >> 2u][i & 3u];
}

fn dst_set(i: u32, v: f32) {
    dst[i >> 2u][i & 3u] = v;
}

fn channels() -> u32 {
    if p.c_code == NONE {
        return p.c_full;
    }
    return (dims[p.c_code] + 3u) & ~3u;
}

fn stride(nwg: vec3<u32>) -> u32 {
    return nwg.x * nwg.y * WG;
}

// One thread per (row, kernel position), or with PER_ROW per row and all
// its positions (CPU adapters, where the index arithmetic per position
// dominates at a few kept channels; GPUs keep neighbouring threads on
// neighbouring positions): then each position's stored channels, contiguous
// in X and in cols.
@compute @workgroup_size(WG)
fn im2col(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let c = channels();
    let taps = p.kh * p.kw;
    let pixels = p.oh * p.ow;
    let rows = rows_of(p.batch, p.batch_code) * pixels;
    var items = rows * taps;
    if PER_ROW {
        items = rows;
    }
    for (var t = flat_id(wid, nwg, lidx, WG); t < items; t += stride(nwg)) {
        var r = t;
        var k0 = 0u;
        var k1 = taps;
        if !PER_ROW {
            r = t / taps;
            k0 = t - r * taps;
            k1 = k0 + 1u;
        }
        let n = r / pixels;
        let pix = r - n * pixels;
        let oy = pix / p.ow;
        let ox = pix - oy * p.ow;
        var ky = k0 / p.kw;
        var kx = k0 - ky * p.kw;
        for (var kk = k0; kk < k1; kk++) {
            let ih = i32(oy * p.stride + ky) - i32(p.pad);
            let iw = i32(ox * p.stride + kx) - i32(p.pad);
            let out = (r * taps + kk) * c;
            let inside = ih >= 0 && iw >= 0 && u32(ih) < p.h && u32(iw) < p.w;
            let at = ((n * p.h + u32(max(ih, 0))) * p.w + u32(max(iw, 0))) * c;
            if (c & 3u) == 0u {
                for (var q = 0u; q < c / 4u; q++) {
                    var v = vec4(0.0);
                    if inside {
                        v = src[at / 4u + q];
                    }
                    dst[out / 4u + q] = v;
                }
            } else {
                for (var ch = 0u; ch < c; ch++) {
                    var v = 0.0;
                    if inside {
                        v = src_at(at + ch);
                    }
                    dst_set(out + ch, v);
                }
            }
            kx++;
            if kx == p.kw {
                kx = 0u;
                ky++;
            }
        }
    }
}

// One thread per input pixel: the taps that reach it found once, then each
// stored channel summed over them.
@compute @workgroup_size(WG)
fn col2im(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let c = channels();
    let row_len = p.kh * p.kw * c;
    let total = rows_of(p.batch, p.batch_code) * p.h * p.w;
    for (var pix = flat_id(wid, nwg, lidx, WG); pix < total; pix += stride(nwg)) {
        let n = pix / (p.h * p.w);
        let rest = pix - n * p.h * p.w;
        let ih = rest / p.w;
        let iw = rest - ih * p.w;
        // Offsets in dcols of the taps that read this pixel.
        var taps: array<u32, MAX_TAPS>;
        var count = 0u;
        for (var kh = 0u; kh < p.kh; kh++) {
            let th = i32(ih + p.pad) - i32(kh);
            if th < 0 || u32(th) % p.stride != 0u || u32(th) / p.stride >= p.oh {
                continue;
            }
            let oh = u32(th) / p.stride;
            for (var kw = 0u; kw < p.kw; kw++) {
                let tw = i32(iw + p.pad) - i32(kw);
                if tw < 0 || u32(tw) % p.stride != 0u || u32(tw) / p.stride >= p.ow {
                    continue;
                }
                let ow = u32(tw) / p.stride;
                taps[count] = ((n * p.oh + oh) * p.ow + ow) * row_len + (kh * p.kw + kw) * c;
                count++;
            }
        }
        if (c & 3u) == 0u {
            for (var q = 0u; q < c / 4u; q++) {
                let t = pix * (c / 4u) + q;
                var sum = vec4(0.0);
                for (var k = 0u; k < count; k++) {
                    sum += src[taps[k] / 4u + q];
                }
                if p.gate != 0u {
                    sum = select(sum, vec4(0.0), gate_x[t] <= vec4(0.0));
                }
                if p.accumulate != 0u {
                    sum += dst[t];
                }
                dst[t] = sum;
            }
        } else {
            for (var ch = 0u; ch < c; ch++) {
                let t = pix * c + ch;
                var sum = 0.0;
                for (var k = 0u; k < count; k++) {
                    sum += src_at(taps[k] + ch);
                }
                if p.gate != 0u && gate_x[t >> 2u][t & 3u] <= 0.0 {
                    sum = 0.0;
                }
                if p.accumulate != 0u {
                    sum += dst_at(t);
                }
                dst_set(t, sum);
            }
        }
    }
}
