//#include common
//#include step

// BatchNorm over the channels of NHWC activations (rows = batch × pixels),
// forward and backward side by side. Channel j of the stored tensor is unit
// u = maps[map + j] of the layer (or j when all channels are stored), whose
// γ, β and running statistics sit at u in the full-size parameters.
// bn_stats (training): mean_j and 1/σ_j = 1/sqrt(var_j + eps) over the rows
//     (two passes: the mean, then the squared deviations), into stats; and
//     the running averages of unit u: r ← (1 − m)·r + m·batch value
//     (variance unbiased, as PyTorch keeps it).
// bn_apply: y = γ_u·(x − mean)/σ + β_u [ReLU], from the batch statistics
//     (training) or the running averages (evaluation). Padding channels
//     (past the kept count) stay exactly 0, not β: a removed channel is
//     removed after BatchNorm too.
// bn_grad_reduce: Σ dy and Σ dy·x̂ per channel into stats, and added into
//     dβ_u, dγ_u.
// bn_grad_apply: dx = γ_u/σ · (dy − Σdy/R − x̂·Σ(dy·x̂)/R) (+ gate, accumulate).
// One workgroup per channel for the reductions (a grid over the largest
// channel count; workgroups past the stored channels leave at once) where
// the rows are few. A batch of pixels (131072 rows for a 32×32 CIFAR batch)
// is too many for one workgroup: with `splits` > 1 (src/ops/batchnorm.rs
// chooses them per adapter) the grid is channel
// groups (of up to WG channels) × splits, workgroup (g, s) sums its chunk
// of rows for each channel of its group into partials (after the four
// statistics in `stats`), reading whole rows at a time (`lanes`), and
// bn_stats_final / bn_grad_final add each channel's partials, several
// threads per channel and a tree (`finals`: up to 256 splits, which one
// thread would add one by one). Split statistics are one pass of shifted sums: Σ(x − K) and
// Σ(x − K)² with K = x[row 0, j], a value near the channel's mean, so that
// the variance does not cancel.

// Keep in sync with `BnParams` in src/ops/batchnorm.rs.
struct BnParams {
    // Rows: the capacity, and a batch code (rows per sample) or NONE.
    rows: u32,
    rows_code: u32,
    // Stored channels: c_full, or ceil4(dims[c_code]) with dims[c_code] real.
    c_full: u32,
    c_code: u32,
    // Where the kept list starts in `maps`, or NONE (all channels).
    map: u32,
    eps: f32,
    momentum: f32,
    // bn_apply: 1 normalises with the batch statistics, 0 with the running ones.
    train: u32,
    relu: u32,
    // bn_grad_apply: add into dx; zero dx where x <= 0.
    accumulate: u32,
    gate: u32,
    // Row chunks of the reductions (1: one workgroup per channel).
    splits: u32,
    // A pair (the grid's z: both mask samples of a sparse step, see
    // `sample`): where sample 1's x, y, dy and statistics start after
    // sample 0's (floats), and its kept count and list (entries).
    stride_x: u32,
    stride_y: u32,
    stride_dy: u32,
    stride_stats: u32,
    stride_dims: u32,
    stride_map: u32,
    // bn_stats_final, bn_grad_final: 2 runs both samples of a pair in one
    // workgroup, sample 0's channels, a barrier, then sample 1's (see
    // `finals`); else the sample is the grid's z.
    seq: u32,
    _pad0: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: BnParams;
@group(0) @binding(1) var<storage, read> dims: array<u32>;
@group(0) @binding(2) var<storage, read> maps: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
// [4 × C]: mean, 1/σ, Σdy, Σdy·x̂ of each stored channel; then, with
// splits, two partial sums per (split, channel).
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
// [2 × C_full]: running mean, running variance (the layer's state).
@group(0) @binding(5) var<storage, read_write> running: array<f32>;
@group(0) @binding(6) var<storage, read> gamma: array<f32>;
@group(0) @binding(7) var<storage, read> beta: array<f32>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;
@group(0) @binding(9) var<storage, read> dy: array<f32>;
@group(0) @binding(10) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(11) var<storage, read_write> dbeta: array<f32>;

// Pairs: one launch over both mask samples of a sparse step, the grid's z
// the sample (strides zero and z = 0 for one). Each kernel calls
// `sample(wid.z)` first (the finals `sample(z)` for each sample they run);
// every read and write of x, y, dy, stats, the kept
// count and the kept list goes through these offsets. The parameters,
// running averages and their gradients are per unit and shared, and a unit
// both samples keep gets sample 0's update first: kernels that write none
// of them (the split first levels, the two applies) run as pairs over z;
// the split finals run both samples in one workgroup, one after the other
// (`seq`, `finals`); the launcher runs the unsplit reductions a
// sample at a time, sample 0's first.
var<private> OX: u32;
var<private> OY: u32;
var<private> ODY: u32;
var<private> OST: u32;
var<private> ODIMS: u32;
var<private> OMAP: u32;

fn sample(s: u32) {
    OX = s * p.stride_x;
    OY = s * p.stride_y;
    ODY = s * p.stride_dy;
    OST = s * p.stride_stats;
    ODIMS = s * p.stride_dims;
    OMAP = s * p.stride_map;
}

var<workgroup> red: array<f32, WG>;
var<workgroup> red2: array<f32, WG>;
var<workgroup> stored: u32;

// (stored channels, kept channels).
fn channels() -> vec2<u32> {
    if p.c_code == NONE {
        return vec2(p.c_full, p.c_full);
    }
    let k = dims[p.c_code + ODIMS];
    return vec2((k + 3u) & ~3u, k);
}

fn unit(j: u32) -> u32 {
    if p.map == NONE {
        return j;
    }
    return maps[p.map + OMAP + j];
}

// Whether workgroup j has a stored channel, made uniform across the
// workgroup (the count is read from a buffer): the workgroups of channels
// a mask removed leave after one barrier, not the reductions' sixteen.
fn has_channel(j: u32, lidx: u32) -> bool {
    if lidx == 0u {
        stored = channels().x;
    }
    return j < workgroupUniformLoad(&stored);
}

// Tree sums of `red` and `red2` over the workgroup, read by every thread.
fn workgroup_sums(lidx: u32) -> vec2<f32> {
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        workgroupBarrier();
        if lidx < s {
            red[lidx] += red[lidx + s];
            red2[lidx] += red2[lidx + s];
        }
    }
    workgroupBarrier();
    let out = vec2(red[0], red2[0]);
    workgroupBarrier();
    return out;
}

// Mean and 1/σ of stored channel j into stats, and the running averages
// of its unit; zeros where j is padding (or there are no rows).
fn finish_stats(j: u32, mean: f32, var_b: f32, live: bool, rows: u32) {
    let c = channels().x;
    if live {
        stats[OST + j] = mean;
        stats[OST + c + j] = 1.0 / sqrt(var_b + p.eps);
        let u = unit(j);
        let unbiased = var_b * f32(rows) / f32(max(rows, 2u) - 1u);
        running[u] = (1.0 - p.momentum) * running[u] + p.momentum * mean;
        running[p.c_full + u] = (1.0 - p.momentum) * running[p.c_full + u] + p.momentum * unbiased;
    } else {
        stats[OST + j] = 0.0;
        stats[OST + c + j] = 0.0;
    }
}

// Where split s of stored channel j keeps its two partial sums.
fn partial_at(s: u32, j: u32) -> u32 {
    let c = channels().x;
    return 4u * c + 2u * (s * c + j);
}

// Rows [x, y) of split s.
fn split_rows(s: u32, rows: u32) -> vec2<u32> {
    let chunk = (rows + p.splits - 1u) / p.splits;
    let r0 = min(s * chunk, rows);
    return vec2(r0, min(r0 + chunk, rows));
}

@compute @workgroup_size(WG)
fn bn_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
    sample(wid.z);
    if p.splits > 1u {
        split_partial(wid.x, wid.y, lidx, false);
        return;
    }
    let j = wid.x;
    if !has_channel(j, lidx) {
        return;
    }
    let ch = channels();
    let rows = rows_of(p.rows, p.rows_code);
    // Uniform per workgroup: the barriers below stay in uniform control flow.
    let live = j < ch.y && rows > 0u;
    var s = 0.0;
    if live {
        for (var r = lidx; r < rows; r += WG) {
            s += x[OX + r * ch.x + j];
        }
    }
    red[lidx] = s;
    red2[lidx] = 0.0;
    let mean = workgroup_sums(lidx).x / f32(max(rows, 1u));
    var d = 0.0;
    if live {
        for (var r = lidx; r < rows; r += WG) {
            let v = x[OX + r * ch.x + j] - mean;
            d += v * v;
        }
    }
    red[lidx] = d;
    red2[lidx] = 0.0;
    let var_b = workgroup_sums(lidx).x / f32(max(rows, 1u));
    if lidx == 0u && j < ch.x {
        finish_stats(j, mean, var_b, live, rows);
    }
}

// The threads of a split reduction's workgroup (grid: channel groups ×
// splits): group g covers stored channels [g·WG, g·WG + width), and its
// threads read `per` rows at a time, consecutive threads consecutive
// channels of a row, so that a GPU's warp reads contiguous memory and a
// CPU's SIMD lanes a contiguous vector (one workgroup per channel would
// read a column, C floats apart). Thread `lidx` sums channel c over the
// rows row0, row0 + per, ...; `per` (a power of two) and `width`
// (`group_shape`) are uniform across the workgroup, so its barriers are too.
struct Lanes {
    c: u32,
    row0: u32,
    busy: bool,
    // (stored, kept) channels, and split s's rows [x, y).
    ch: vec2<u32>,
    range: vec2<u32>,
}

// (width, per) of group g, uniform across the workgroup (from
// workgroupUniformLoad and the workgroup id alone): the barriers below
// depend on nothing else.
fn group_shape(g: u32, lidx: u32) -> vec2<u32> {
    return lane_shape(g, WG, uniform_stored(lidx));
}

// The stored channels, made uniform across the workgroup (read from a
// buffer): the barriers that depend on them stay in uniform control flow.
fn uniform_stored(lidx: u32) -> u32 {
    if lidx == 0u {
        stored = channels().x;
    }
    return workgroupUniformLoad(&stored);
}

// (width, per) of group g of up to `w` of the `all` stored channels: per,
// a power of two, lanes of each channel such that width·per ≤ WG.
fn lane_shape(g: u32, w: u32, all: u32) -> vec2<u32> {
    let first = g * w;
    let width = min(all - min(first, all), w);
    var per = 1u;
    if width > 0u {
        while per * 2u * width <= WG {
            per *= 2u;
        }
    }
    return vec2(width, per);
}

fn lanes(g: u32, s: u32, lidx: u32, shape: vec2<u32>) -> Lanes {
    let w = max(shape.x, 1u);
    let range = split_rows(s, rows_of(p.rows, p.rows_code));
    return Lanes(g * WG + lidx % w, lidx / w, lidx < shape.y * shape.x, channels(), range);
}

// Adds the `per` row sums of each channel in `red` and `red2` down to the
// threads of row0 0, which store them as split s's partials of their
// channel; `shape` is the group's (width, per).
fn store_partials(ln: Lanes, shape: vec2<u32>, s: u32, lidx: u32) {
    fold_lanes(ln.busy, ln.row0, shape, lidx);
    if ln.busy && ln.row0 == 0u {
        let at = partial_at(s, ln.c);
        stats[OST + at] = red[lidx];
        stats[OST + at + 1u] = red2[lidx];
    }
}

// Adds the `per` (shape.y) lanes' values of each of the `width` (shape.x)
// channels in `red` and `red2` down to lane 0 (the thread of lane l and
// channel c at c + l·width), in a tree whose order is fixed.
fn fold_lanes(busy: bool, lane: u32, shape: vec2<u32>, lidx: u32) {
    for (var h = shape.y / 2u; h > 0u; h /= 2u) {
        workgroupBarrier();
        if busy && lane < h {
            red[lidx] += red[lidx + h * shape.x];
            red2[lidx] += red2[lidx + h * shape.x];
        }
    }
}

// The first level of a split reduction, for each channel of group g over
// split s's rows (padding channels sum to zero): the statistics' shifted
// sums Σ(x − K), Σ(x − K)² with K = x[row 0] or, with `grad`, the backward
// sums Σ dy and Σ dy·x̂.
fn split_partial(g: u32, s: u32, lidx: u32, grad: bool) {
    let shape = group_shape(g, lidx);
    if shape.x == 0u {
        return;
    }
    let ln = lanes(g, s, lidx, shape);
    var s1 = 0.0;
    var s2 = 0.0;
    if ln.busy && ln.c < ln.ch.y {
        // The shift, or the batch mean and 1/σ.
        let k = x[OX + ln.c];
        let mean = stats[OST + ln.c];
        let inv = stats[OST + ln.ch.x + ln.c];
        for (var r = ln.range.x + ln.row0; r < ln.range.y; r += shape.y) {
            let at = r * ln.ch.x + ln.c;
            if grad {
                let d = dy[ODY + at];
                s1 += d;
                s2 += d * ((x[OX + at] - mean) * inv);
            } else {
                let d = x[OX + at] - k;
                s1 += d;
                s2 += d * d;
            }
        }
    }
    red[lidx] = s1;
    red2[lidx] = s2;
    store_partials(ln, shape, s, lidx);
}

// Split statistics, second level (see `finals`).
@compute @workgroup_size(WG)
fn bn_stats_final(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    finals(wid, nwg, lidx, false);
}

// The mean, 1/σ and running averages of stored channel j from its sums
// over the splits: Σ(x − K) and Σ(x − K)² with K = x[row 0, j].
fn stats_final(j: u32, sums: vec2<f32>) {
    let ch = channels();
    let rows = rows_of(p.rows, p.rows_code);
    let live = j < ch.y && rows > 0u;
    let n = f32(max(rows, 1u));
    let m1 = sums.x / n;
    var mean = m1;
    if live {
        mean += x[OX + j];
    }
    finish_stats(j, mean, max(sums.y / n - m1 * m1, 0.0), live, rows);
}

// Channels per group of the finals: few, so that each has several lanes
// summing its splits (up to 256 of them on GPUs).
const FINAL_W: u32 = 32u;

// The split finals: each channel's sums of its splits' two partials, then
// (`grad`) the backward sums into stats and dγ, dβ, or the statistics and
// running averages. Channel groups of up to FINAL_W channels, `per` lanes
// of each summing every per-th split, the lanes added in a tree
// (`fold_lanes`); the grid runs over the groups of one sample (the grid's
// z). A pair (seq 2, a grid of one workgroup) runs every group of sample 0,
// a storage barrier, then sample 1's, so that a unit both keep gets sample
// 0's update before sample 1's, as one launch after the other would give.
// The loops' bounds come from the uniform parameters, the workgroup id and
// workgroupUniformLoad: the barriers stay in uniform control flow.
fn finals(wid: vec3<u32>, nwg: vec3<u32>, lidx: u32, grad: bool) {
    var run = vec2(wid.z, wid.z + 1u);
    var first = wid.y * nwg.x + wid.x;
    var stride = nwg.x * nwg.y;
    if p.seq > 1u {
        run = vec2(0u, p.seq);
        first = 0u;
        stride = 1u;
    }
    for (var z = run.x; z < run.y; z++) {
        sample(z);
        let all = uniform_stored(lidx);
        for (var g = first; g * FINAL_W < all; g += stride) {
            let shape = lane_shape(g, FINAL_W, all);
            let w = max(shape.x, 1u);
            let c = g * FINAL_W + lidx % w;
            let lane = lidx / w;
            let busy = lidx < shape.x * shape.y;
            var s1 = 0.0;
            var s2 = 0.0;
            if busy {
                for (var sp = lane; sp < p.splits; sp += shape.y) {
                    let at = partial_at(sp, c);
                    s1 += stats[OST + at];
                    s2 += stats[OST + at + 1u];
                }
            }
            // The previous group's tree is done with `red`.
            workgroupBarrier();
            red[lidx] = s1;
            red2[lidx] = s2;
            fold_lanes(busy, lane, shape, lidx);
            if busy && lane == 0u {
                let sums = vec2(red[lidx], red2[lidx]);
                if grad {
                    grad_final(c, sums);
                } else {
                    stats_final(c, sums);
                }
            }
        }
        storageBarrier();
    }
}

// What bn_apply needs of stored channel j: the statistics it normalises
// with, γ and β of its unit; `live` false for padding.
struct ApplyCh {
    live: bool,
    mean: f32,
    inv: f32,
    gamma: f32,
    beta: f32,
}

fn apply_ch(j: u32, ch: vec2<u32>) -> ApplyCh {
    if j >= ch.y {
        return ApplyCh(false, 0.0, 0.0, 0.0, 0.0);
    }
    let u = unit(j);
    if p.train != 0u {
        return ApplyCh(true, stats[OST + j], stats[OST + ch.x + j], gamma[u], beta[u]);
    }
    return ApplyCh(true, running[u], 1.0 / sqrt(running[p.c_full + u] + p.eps), gamma[u], beta[u]);
}

fn apply_one(k: ApplyCh, t: u32) {
    var out = 0.0;
    if k.live {
        out = k.gamma * ((x[OX + t] - k.mean) * k.inv) + k.beta;
        if p.relu != 0u {
            out = max(out, 0.0);
        }
    }
    y[OY + t] = out;
}

@compute @workgroup_size(WG)
fn bn_apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    sample(wid.z);
    let ch = channels();
    let rows = rows_of(p.rows, p.rows_code);
    let id = flat_id(wid, nwg, lidx, WG);
    let threads = nwg.x * nwg.y * WG;
    if ch.x <= threads {
        let w = col_walk(id, threads, ch.x);
        if w.busy {
            let k = apply_ch(w.c, ch);
            for (var r = w.r; r < rows; r += w.per) {
                apply_one(k, r * ch.x + w.c);
            }
        }
        return;
    }
    for (var w = row_walk(id, threads, ch.x); w.t < rows * ch.x; row_walk_next(&w, ch.x)) {
        apply_one(apply_ch(w.c, ch), w.t);
    }
}

@compute @workgroup_size(WG)
fn bn_grad_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
    sample(wid.z);
    if p.splits > 1u {
        split_partial(wid.x, wid.y, lidx, true);
        return;
    }
    let j = wid.x;
    if !has_channel(j, lidx) {
        return;
    }
    let ch = channels();
    let rows = rows_of(p.rows, p.rows_code);
    let live = j < ch.y;
    var sd = 0.0;
    var sdx = 0.0;
    if live {
        let mean = stats[OST + j];
        let inv = stats[OST + ch.x + j];
        for (var r = lidx; r < rows; r += WG) {
            let g = dy[ODY + r * ch.x + j];
            sd += g;
            sdx += g * ((x[OX + r * ch.x + j] - mean) * inv);
        }
    }
    red[lidx] = sd;
    red2[lidx] = sdx;
    let sums = workgroup_sums(lidx);
    if lidx == 0u && j < ch.x {
        stats[OST + 2u * ch.x + j] = sums.x;
        stats[OST + 3u * ch.x + j] = sums.y;
        if live {
            let u = unit(j);
            dbeta[u] += sums.x;
            dgamma[u] += sums.y;
        }
    }
}

// Split backward sums, second level (see `finals`).
@compute @workgroup_size(WG)
fn bn_grad_final(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    finals(wid, nwg, lidx, true);
}

// Stored channel j's backward sums over the splits into stats, and added
// into dβ, dγ of its unit.
fn grad_final(j: u32, sums: vec2<f32>) {
    let ch = channels();
    stats[OST + 2u * ch.x + j] = sums.x;
    stats[OST + 3u * ch.x + j] = sums.y;
    if j < ch.y {
        let u = unit(j);
        dbeta[u] += sums.x;
        dgamma[u] += sums.y;
    }
}

// What bn_grad_apply needs of stored channel j: γ/σ of its unit, its
// mean and 1/σ, and the two backward sums over the rows.
struct GradCh {
    live: bool,
    scale: f32,
    mean: f32,
    inv: f32,
    sd: f32,
    sdx: f32,
}

fn grad_ch(j: u32, ch: vec2<u32>, inv_rows: f32) -> GradCh {
    if j >= ch.y {
        return GradCh(false, 0.0, 0.0, 0.0, 0.0, 0.0);
    }
    let inv = stats[OST + ch.x + j];
    return GradCh(
        true,
        gamma[unit(j)] * inv,
        stats[OST + j],
        inv,
        stats[OST + 2u * ch.x + j] * inv_rows,
        stats[OST + 3u * ch.x + j] * inv_rows,
    );
}

fn grad_one(k: GradCh, t: u32) {
    var g = 0.0;
    if k.live {
        let xhat = (x[OX + t] - k.mean) * k.inv;
        g = k.scale * (dy[ODY + t] - k.sd - xhat * k.sdx);
    }
    if p.gate != 0u && x[OX + t] <= 0.0 {
        g = 0.0;
    }
    if p.accumulate != 0u {
        g += y[OY + t];
    }
    y[OY + t] = g;
}

@compute @workgroup_size(WG)
fn bn_grad_apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    sample(wid.z);
    let ch = channels();
    let rows = rows_of(p.rows, p.rows_code);
    let inv_rows = 1.0 / f32(max(rows, 1u));
    let id = flat_id(wid, nwg, lidx, WG);
    let threads = nwg.x * nwg.y * WG;
    if ch.x <= threads {
        let w = col_walk(id, threads, ch.x);
        if w.busy {
            let k = grad_ch(w.c, ch, inv_rows);
            for (var r = w.r; r < rows; r += w.per) {
                grad_one(k, r * ch.x + w.c);
            }
        }
        return;
    }
    for (var w = row_walk(id, threads, ch.x); w.t < rows * ch.x; row_walk_next(&w, ch.x)) {
        grad_one(grad_ch(w.c, ch, inv_rows), w.t);
    }
}
