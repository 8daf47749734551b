// Implicit convolution operands of matmul.wgsl (its IMPLICIT constant):
// im2col's columns read from X, and the input gradient's gather of dY,
// without materialised columns; a pair's sample reads its own X or dY (and
// W) at its offsets (OFF_A, OFF_B). Included by matmul.wgsl only; uses its
// bindings, sizes (M, N, K), params `p` and block loaders.

// Where column q of im2col row `row` reads X, with c stored channels per
// pixel; NONE in the padding.
fn im_index(row: u32, q: u32, c: u32) -> u32 {
    let o = pixel_of(row, p.im_oh, p.im_ow);
    let tap = q / c;
    let ch = q - tap * c;
    let ky = tap / p.im_kw;
    let kx = tap - ky * p.im_kw;
    let ih = i32(o.y * p.im_stride + ky) - i32(p.im_pad);
    let iw = i32(o.x * p.im_stride + kx) - i32(p.im_pad);
    if ih < 0 || iw < 0 || u32(ih) >= p.im_h || u32(iw) >= p.im_w {
        return NONE;
    }
    return ((o.n * p.im_h + u32(ih)) * p.im_w + u32(iw)) * c + ch;
}

// IMPLICIT 3: where A's column q (kernel position, output channel of
// cout) of X's pixel `row` reads dY; NONE where no output pixel reads the
// input pixel through that position.
fn im_back_index(row: u32, q: u32, cout: u32) -> u32 {
    let i = pixel_of(row, p.im_h, p.im_w);
    let tap = q / cout;
    let co = q - tap * cout;
    let ky = tap / p.im_kw;
    let kx = tap - ky * p.im_kw;
    let th = i32(i.y + p.im_pad) - i32(ky);
    let tw = i32(i.x + p.im_pad) - i32(kx);
    if th < 0 || tw < 0 || u32(th) % p.im_stride != 0u || u32(tw) % p.im_stride != 0u {
        return NONE;
    }
    let oy = u32(th) / p.im_stride;
    let ox = u32(tw) / p.im_stride;
    if oy >= p.im_oh || ox >= p.im_ow {
        return NONE;
    }
    return ((i.n * p.im_oh + oy) * p.im_ow + ox) * cout + co;
}

// Pixel (y, x) of sample n in an h × w plane; a row index of NHWC data
// divided out once (`pixel_of`), then stepped to the next row
// (`next_pixel`) without dividing: integer division has no vector
// instruction on CPUs, and with few channels the setup weighs as much as
// the products.
struct Pixel {
    n: u32,
    y: u32,
    x: u32,
}

fn pixel_of(row: u32, h: u32, w: u32) -> Pixel {
    let n = row / (h * w);
    let pix = row - n * h * w;
    let y = pix / w;
    return Pixel(n, y, pix - y * w);
}

fn next_pixel(q: ptr<function, Pixel>, h: u32, w: u32) {
    (*q).x++;
    if (*q).x == w {
        (*q).x = 0u;
        (*q).y++;
        if (*q).y == h {
            (*q).y = 0u;
            (*q).n++;
        }
    }
}

// The C tile at (r0, c0) when A is im2col(X): a loop over kernel positions,
// where each of the thread's four rows finds its window's pixel once, then
// over the stored channels in fours. Nothing is divided inside the loops.
fn regtile_implicit_a(r0: u32, c0: u32) -> mat4x4<f32> {
    let c = K / (p.im_kh * p.im_kw);
    // Per row: its sample's first row of X, and its window's top-left corner.
    var first: vec4<u32>;
    var top: vec4<i32>;
    var left: vec4<i32>;
    var live: vec4<bool>;
    var q = pixel_of(r0, p.im_oh, p.im_ow);
    for (var i = 0u; i < 4u; i++) {
        first[i] = q.n * p.im_h;
        top[i] = i32(q.y * p.im_stride) - i32(p.im_pad);
        left[i] = i32(q.x * p.im_stride) - i32(p.im_pad);
        live[i] = r0 + i < M;
        next_pixel(&q, p.im_oh, p.im_ow);
    }
    var acc = mat4x4<f32>();
    let quads = c / 4u;
    let h = i32(p.im_h);
    let w = i32(p.im_w);
    for (var ky = 0u; ky < p.im_kh; ky++) {
        // Per row, once per kernel row: whether its input row is inside,
        // and that row's first pixel (column 0).
        let ih = top + vec4(i32(ky));
        let row_in = live & (ih >= vec4(0)) & (ih < vec4(h));
        let row_px = (vec4<i32>(first) + max(ih, vec4(0))) * w;
        for (var kx = 0u; kx < p.im_kw; kx++) {
            // Where each row reads this kernel position (vec4 index), NONE
            // in the padding.
            let iw = left + vec4(i32(kx));
            let inside = row_in & (iw >= vec4(0)) & (iw < vec4(w));
            let at = select(vec4(NONE), vec4<u32>(row_px + max(iw, vec4(0))) * quads, inside);
            // This split's channel quads of the position (all of them
            // unsplit).
            let base = (ky * p.im_kw + kx) * c;
            let qs = quad_range(base, c);
            for (var q = qs.x; q < qs.y; q++) {
                var blk: mat4x4<f32>;
                for (var i = 0u; i < 4u; i++) {
                    if at[i] != NONE {
                        blk[i] = a[at[i] + q + (OFF_A >> 2u)];
                    }
                }
                acc += b_block(base + 4u * q, c0) * blk;
            }
        }
    }
    return acc;
}

// The C tile at (r0, c0) when B is im2col(X) (a weight gradient, K running
// over output pixels): the thread's four columns are four channels of one
// kernel position, and the pixel of each row of B is stepped, not divided.
fn regtile_implicit_b(r0: u32, c0: u32) -> mat4x4<f32> {
    let c = N / (p.im_kh * p.im_kw);
    let tap = c0 / c;
    let ch4 = (c0 - tap * c) / 4u;
    let ky = tap / p.im_kw;
    let kx = tap - ky * p.im_kw;
    // The output pixel of row k of B, from this split's first row on.
    var q = pixel_of(KB, p.im_oh, p.im_ow);
    var acc = mat4x4<f32>();
    for (var k0 = KB; k0 < KE; k0 += 4u) {
        var blk: mat4x4<f32>;
        for (var kk = 0u; kk < 4u; kk++) {
            let ih = i32(q.y * p.im_stride + ky) - i32(p.im_pad);
            let iw = i32(q.x * p.im_stride + kx) - i32(p.im_pad);
            if k0 + kk < K && ih >= 0 && iw >= 0 && u32(ih) < p.im_h && u32(iw) < p.im_w {
                blk[kk] = b[((q.n * p.im_h + u32(ih)) * p.im_w + u32(iw)) * (c / 4u) + ch4 + (OFF_B >> 2u)];
            }
            next_pixel(&q, p.im_oh, p.im_ow);
        }
        // Column i of (B-block · A-block) is row i of the C tile, as in the
        // plain loop.
        acc += blk * a_block(r0, k0);
    }
    return acc;
}

// The dX tile at (r0, c0) (IMPLICIT 3): for each kernel position, each of
// the thread's four input pixels finds the output pixel that reads it
// through that position (or none), then the output channels in fours. The
// output row is found once per kernel row and the column once per kernel
// position, four pixels at a time: with few kept output channels (one or
// two quads per position) the lookup weighs as much as the products.
fn regtile_implicit_dx(r0: u32, c0: u32) -> mat4x4<f32> {
    let taps = p.im_kh * p.im_kw;
    let quads = K / taps / 4u;
    // Per row: its sample's first row of dY, and its pixel plus the padding.
    var first: vec4<u32>;
    var py: vec4<i32>;
    var px: vec4<i32>;
    var live: vec4<bool>;
    var q = pixel_of(r0, p.im_h, p.im_w);
    for (var i = 0u; i < 4u; i++) {
        first[i] = q.n * p.im_oh;
        py[i] = i32(q.y + p.im_pad);
        px[i] = i32(q.x + p.im_pad);
        live[i] = r0 + i < M;
        next_pixel(&q, p.im_h, p.im_w);
    }
    let s = vec4(p.im_stride);
    var acc = mat4x4<f32>();
    for (var ky = 0u; ky < p.im_kh; ky++) {
        // The output row reading each pixel through this kernel row, if any.
        let th = py - vec4(i32(ky));
        let uh = vec4<u32>(max(th, vec4(0)));
        let oy = stride_div(uh);
        let row_hit = live & (th >= vec4(0)) & (oy * s == uh) & (oy < vec4(p.im_oh));
        let row_px = (first + oy) * p.im_ow;
        for (var kx = 0u; kx < p.im_kw; kx++) {
            let tw = px - vec4(i32(kx));
            let uw = vec4<u32>(max(tw, vec4(0)));
            let ox = stride_div(uw);
            let hit = row_hit & (tw >= vec4(0)) & (ox * s == uw) & (ox < vec4(p.im_ow));
            let at = select(vec4(NONE), (row_px + ox) * quads, hit);
            let tap = ky * p.im_kw + kx;
            // This split's output-channel quads of the position.
            let qs = quad_range(tap * 4u * quads, 4u * quads);
            for (var q = qs.x; q < qs.y; q++) {
                var ablk: mat4x4<f32>;
                for (var i = 0u; i < 4u; i++) {
                    if at[i] != NONE {
                        ablk[i] = a[at[i] + q + (OFF_A >> 2u)];
                    }
                }
                // Rows (tap, 4q + kk) of B: W[4q + kk, tap, c0..c0+4].
                var bblk: mat4x4<f32>;
                for (var kk = 0u; kk < 4u; kk++) {
                    bblk[kk] = b[((((4u * q + kk) * taps + tap) * N + c0) + OFF_B) >> 2u];
                }
                acc += bblk * ablk;
            }
        }
    }
    return acc;
}

// v / stride, four at a time: a shift where the stride is a power of two
// (IM_POW2, all of the zoo's), else a division (CPUs divide lane by lane).
fn stride_div(v: vec4<u32>) -> vec4<u32> {
    if IM_POW2 {
        return v >> vec4(countTrailingZeros(p.im_stride));
    }
    return v / vec4(p.im_stride);
}
