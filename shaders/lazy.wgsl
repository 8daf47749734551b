//#include common
//#include step

// SGD in O(kept): the gradient norm and the update touch only the weights a
// step's two masks can give a gradient, and the weights no gradient reached
// catch up exactly when next touched.
//
// Why it is exact: under SGD with momentum μ and weight decay wd (the
// convention of optim.wgsl), a weight whose gradient is 0 moves by
//     v' = μ·v + wd·w;  w' = w − lr·v'
// a fixed linear map of (w, v):  A = [[1 − lr·wd, −lr·μ], [wd, μ]],
// constant while lr is (within an epoch). Each weight remembers the update
// count at which it was last brought up to date (`last`); before a step
// reads it (its masks reach it), the k skipped updates are applied at once
// as A^k (repeated squaring); then the step's passes and its own update.
//
// Touched weights: a parameter is [rows, blocks × cols_full]; its rows
// follow a channel set (a layer's units) or are all kept, likewise its
// columns (a linear layer's inputs, a convolution's input channels per
// kernel position). The gradient of a step is zero outside kept rows ×
// kept columns of either mask sample. Workgroup row y handles (slot, sample)
// y / 2, y % 2; sample 1 skips what sample 0 covered (ranks of sample 0).
//
// lazy_refresh:  before a step's passes read them: the weights it can
//                reach caught up to the clock (its passes must see the
//                weights eager SGD would hold). Slots whose layer gathers
//                them (lazy_gather) are left to it.
// lazy_gather:   a layer's gather of its kept weights and bias for one mask
//                sample (gather.wgsl's gather_weights), each weight brought
//                up to date as it is read: one pass over them, not two.
//                A pair (p.pair): both samples' gathers in one launch; a
//                weight both read is brought up to date once, by sample
//                0's thread, which writes it into both outputs.
// lazy_norm:     partials[y·X·WG + x·WG + lidx] = Σ g² over the thread's share
// lazy_sgd:      v = μ·v + (s·g + wd·w); w −= lr·v; g = 0 (after the
//                weights were brought up to date). A factor s of 0 (a
//                non-finite step) updates nothing and only clears g.
//                Not launched where updates are deferred (below).
// lazy_finish:   where updates are deferred, what is left of lazy_sgd:
//                a finite step's factor noted in the ring; a non-finite
//                step's gradient dropped and its clocks stamped back.
// lazy_catch_up: every weight: a deferred update applied, then
//                (w, v) ← A^(clock − last)·(w, v); last = clock.
// lazy_settle:   every weight: a deferred update applied, nothing more
//                (before a checkpoint, and before the ring runs out).
// lazy_stamp:    every weight: last = clock, the weights untouched: where
//                every weight is up to date but the clocks lag (fine-tuning's
//                eager steps advance the clock and leave the clocks).
//
// The clock (updates applied so far) is clip[3] (u32 bits), advanced on
// every finite step by the launch that decides the clip record
// (shared/clip.wgsl: the sparse step's score optimizer, optim.wgsl's
// adam_clip); the factor is clip[0]. lr is the step block's.
//
// Deferred updates (p.defer; by default on CPU adapters only, see
// `defer_rule` in src/train/trainer/lazy.rs): the step's update of a weight
// waits for the next launch that brings it up to date, which reads and
// writes its weight, momentum and clock anyway: one pass over the reached
// weights per step fewer. Its gradient stays in g, its clock carries PEND,
// and the step's factor is kept in a ring in the clip record:
// clip[ring_at + c % ring_len] for the update that made the clock c
// (written by lazy_finish). The arithmetic is lazy_sgd's, in the same
// order, so deferring changes no bit; the host settles every weight
// before the ring could wrap on a deferred one (ring_len steps). Where
// last = c | PEND, (w, v) are as of clock c − 1 and g holds update c's
// gradient; elsewhere g is 0.
//
// Within a step, a weight brought up to date is stamped last = clock + 1:
// the clock its update will have made it. So lazy_sgd need not touch the
// clocks (one scattered array fewer per weight) but on a non-finite step,
// where the clock stays and it (or lazy_finish) stamps them back to clock;
// and a weight both samples reach is caught up once (the second sees
// clock + 1). Between steps last ≤ clock for every weight (PEND aside).

// Keep in sync with `LazyParams` in src/ops/lazy.rs.
struct LazyParams {
    // Parameter slots in `table`, and workgroups per (slot, sample).
    slots: u32,
    groups: u32,
    // Kept sets per sample (S) and list entries per sample (T): sample s's
    // count of set k is at counts_at + s·S + k, its list at kept_at + s·T + slot_k.
    sets: u32,
    entries: u32,
    momentum: f32,
    weight_decay: f32,
    // lazy_catch_up: number of weights.
    n: u32,
    // Where the kept lists, ranks and counts start in `sets` (a mask set's
    // one buffer, sparse::MaskSet).
    kept_at: u32,
    ranks_at: u32,
    counts_at: u32,
    // lazy_gather: the mask sample, the weight's slot and the bias's (or
    // NONE).
    sample: u32,
    gather_slot: u32,
    gather_bias: u32,
    // PEND where updates are deferred, else 0; where the ring of factors
    // starts in `clip`, and its length.
    defer: u32,
    ring_at: u32,
    ring_len: u32,
    // lazy_gather of a pair: 1, and where sample 1's Wc and bc start after
    // sample 0's in the bound wc and bc (floats); else 0.
    pair: u32,
    stride_wc: u32,
    stride_bc: u32,
    _pad: u32,
}

// A weight's clock with this bit: its last update waits in g (see above).
const PEND: u32 = 0x80000000u;

// One parameter slot, 8 words in `table` (SLOT_WORDS in src/ops/lazy.rs).
struct Slot {
    offset: u32,
    rows: u32,
    // Set index and list offset (within a sample) of the rows, or NONE.
    row_set: u32,
    row_slot: u32,
    cols: u32,
    col_set: u32,
    col_slot: u32,
    blocks: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: LazyParams;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read> sets: array<u32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> w: array<f32>;
// The momentum.
@group(0) @binding(5) var<storage, read_write> mom: array<f32>;
@group(0) @binding(6) var<storage, read_write> last: array<u32>;
// The clip record, and the ring of deferred updates' factors (lazy_finish
// writes it).
@group(0) @binding(7) var<storage, read_write> clip: array<f32>;
@group(0) @binding(8) var<storage, read_write> partials: array<f32>;
// lazy_gather: the compacted weights [padded kept rows, blocks × padded kept
// cols] and bias [padded kept rows] (bound to wc again without a bias).
@group(0) @binding(9) var<storage, read_write> wc: array<f32>;
@group(0) @binding(10) var<storage, read_write> bc: array<f32>;

fn slot_at(i: u32) -> Slot {
    let b = 8u * i;
    return Slot(table[b], table[b + 1u], table[b + 2u], table[b + 3u], table[b + 4u], table[b + 5u], table[b + 6u], table[b + 7u]);
}

// Kept count of a side in sample s (all of them where the side follows no set).
fn kept_count(full: u32, kset: u32, s: u32) -> u32 {
    if kset == NONE {
        return full;
    }
    return sets[p.counts_at + s * p.sets + kset];
}

// The index of the j-th kept element of a side in sample s.
fn kept_at(kset: u32, slot: u32, s: u32, j: u32) -> u32 {
    if kset == NONE {
        return j;
    }
    return sets[p.kept_at + s * p.entries + slot + j];
}

// The position of element i of a side in sample s's kept list, or NONE.
fn rank_in(kset: u32, slot: u32, s: u32, i: u32) -> u32 {
    if kset == NONE {
        return i;
    }
    return sets[p.ranks_at + s * p.entries + slot + i];
}

// Whether sample 0 keeps element i of a side.
fn kept_in_first(kset: u32, slot: u32, i: u32) -> bool {
    return kset == NONE || sets[p.ranks_at + slot + i] != NONE;
}

// Kept row j of (slot, sample s): its first weight's index, and whether
// sample 1 must skip the columns sample 0 covered in it.
fn row_of(sl: Slot, s: u32, j: u32) -> vec2<u32> {
    let row = kept_at(sl.row_set, sl.row_slot, s, j);
    let covered = s == 1u && kept_in_first(sl.row_set, sl.row_slot, row);
    return vec2(sl.offset + row * sl.blocks * sl.cols, u32(covered));
}

// The weight at item q of a row (kc kept columns per block), or NONE where
// sample 0 covered it.
fn item(sl: Slot, s: u32, r: vec2<u32>, q: u32, kc: u32) -> u32 {
    var b = 0u;
    var qc = q;
    if sl.blocks > 1u {
        b = q / kc;
        qc = q - b * kc;
    }
    let col = kept_at(sl.col_set, sl.col_slot, s, qc);
    if r.y != 0u && kept_in_first(sl.col_set, sl.col_slot, col) {
        return NONE;
    }
    return r.x + b * sl.cols + col;
}

// How a workgroup walks the kept rectangle of (slot, sample): whole rows to
// workgroups and a row's items to threads; a vector's (one item per row)
// items to every thread. No division per item but the block's.
struct Walk {
    kr: u32,
    kc: u32,
    per_row: u32,
    j0: u32,
    dj: u32,
    q0: u32,
    dq: u32,
}

fn walk(sl: Slot, s: u32, x: u32, lidx: u32) -> Walk {
    let kr = kept_count(sl.rows, sl.row_set, s);
    let kc = kept_count(sl.cols, sl.col_set, s);
    let per_row = sl.blocks * kc;
    if per_row == 1u {
        return Walk(kr, kc, per_row, x * WG + lidx, p.groups * WG, 0u, 1u);
    }
    return Walk(kr, kc, per_row, x, p.groups, lidx, WG);
}

@compute @workgroup_size(WG)
fn lazy_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
    let sl = slot_at(wid.y / 2u);
    let s = wid.y % 2u;
    let wk = walk(sl, s, wid.x, lidx);
    var sum = 0.0;
    for (var j = wk.j0; j < wk.kr; j += wk.dj) {
        let r = row_of(sl, s, j);
        for (var q = wk.q0; q < wk.per_row; q += wk.dq) {
            let i = item(sl, s, r, q, wk.kc);
            if i != NONE {
                sum += g[i] * g[i];
            }
        }
    }
    partials[(wid.y * p.groups + wid.x) * WG + lidx] = sum;
}

// (w, v) ← A^k·(w, v) for A = [[1 − lr·wd, −lr·μ], [wd, μ]].
fn catch_up(wv: vec2<f32>, k: u32, lr: f32) -> vec2<f32> {
    if k == 0u {
        return wv;
    }
    // Column-major 2×2: a = (a00, a10, a01, a11).
    var a = vec4(1.0 - lr * p.weight_decay, p.weight_decay, -lr * p.momentum, p.momentum);
    var r = vec4(1.0, 0.0, 0.0, 1.0);
    var e = k;
    loop {
        if (e & 1u) != 0u {
            r = vec4(r.x * a.x + r.z * a.y, r.y * a.x + r.w * a.y, r.x * a.z + r.z * a.w, r.y * a.z + r.w * a.w);
        }
        e = e >> 1u;
        if e == 0u {
            break;
        }
        a = vec4(a.x * a.x + a.z * a.y, a.y * a.x + a.w * a.y, a.x * a.z + a.z * a.w, a.y * a.z + a.w * a.w);
    }
    return vec2(r.x * wv.x + r.z * wv.y, r.y * wv.x + r.w * wv.y);
}

// One SGD update of (w, v) = wv with gradient gi scaled by factor, at the
// step block's rate: lazy_sgd's and every deferred update's arithmetic,
// written once so that deferring cannot change a bit.
fn sgd_update(wv: vec2<f32>, gi: f32, factor: f32) -> vec2<f32> {
    let v = p.momentum * wv.y + (factor * gi + p.weight_decay * wv.x);
    return vec2(wv.x - st.lr * v, v);
}

// Weight i's (w, v) with its deferred update applied where its clock l
// carries PEND (the factor of update l & ~PEND from the ring; the gradient
// cleared).
fn settled(i: u32, l: u32) -> vec2<f32> {
    let wv = vec2(w[i], mom[i]);
    let c = l & ~PEND;
    if l == c {
        return wv;
    }
    let gi = g[i];
    g[i] = 0.0;
    return sgd_update(wv, gi, clip[p.ring_at + c % p.ring_len]);
}

// Weight i brought up to date within a step (see the header): its value.
// Reads the momentum and writes the weight only where an update is
// deferred or some were skipped, and the clock only where it changes: a
// weight the other mask sample reached in this step (late in training,
// nearly all of them) keeps its stamp, and a scattered store per weight
// is spared.
fn fresh(i: u32, clock: u32) -> f32 {
    let l = last[i];
    let stamp = (clock + 1u) | p.defer;
    if l == stamp {
        return w[i];
    }
    last[i] = stamp;
    if l == clock {
        return w[i];
    }
    let wv = catch_up(settled(i, l), clock - (l & ~PEND), st.lr);
    w[i] = wv.x;
    mom[i] = wv.y;
    return wv.x;
}

@compute @workgroup_size(WG)
fn lazy_refresh(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
    let sl = slot_at(wid.y / 2u);
    let s = wid.y % 2u;
    let wk = walk(sl, s, wid.x, lidx);
    let clock = bitcast<u32>(clip[3]);
    for (var j = wk.j0; j < wk.kr; j += wk.dj) {
        let r = row_of(sl, s, j);
        for (var q = wk.q0; q < wk.per_row; q += wk.dq) {
            let i = item(sl, s, r, q, wk.kc);
            if i != NONE {
                _ = fresh(i, clock);
            }
        }
    }
}

// Sample s's gather of a slot: kept rows and columns, padded columns, a
// row's floats (blocks of padded columns) and all its floats in Wc.
struct Kept {
    kr: u32,
    kc: u32,
    pc: u32,
    row_len: u32,
    n: u32,
}

fn kept_shape(sl: Slot, s: u32) -> Kept {
    let kr = kept_count(sl.rows, sl.row_set, s);
    let kc = kept_count(sl.cols, sl.col_set, s);
    let pc = side_len(kc, sl.col_set);
    let row_len = pc * sl.blocks;
    return Kept(kr, kc, pc, row_len, side_len(kr, sl.row_set) * row_len);
}

// Float t of a gathered Wc: its weight's index in w, or NONE for padding,
// and its block (y).
fn gathered_at(sl: Slot, k: Kept, s: u32, t: u32) -> vec2<u32> {
    let j = t / k.row_len;
    var b = 0u;
    var q = t - j * k.row_len;
    if sl.blocks > 1u {
        b = q / k.pc;
        q -= b * k.pc;
    }
    if j >= k.kr || q >= k.kc {
        return vec2(NONE, b);
    }
    let row = kept_at(sl.row_set, sl.row_slot, s, j);
    let col = kept_at(sl.col_set, sl.col_slot, s, q);
    return vec2(sl.offset + (row * sl.blocks + b) * sl.cols + col, b);
}

// Where a pair's sample 1 holds weight i of slot sl (block b) in its Wc,
// or NONE where it does not keep both its row and its column.
fn second_place(sl: Slot, k1: Kept, i: u32, b: u32) -> u32 {
    let e = i - sl.offset;
    let row = e / (sl.blocks * sl.cols);
    let col = e % sl.cols;
    let r1 = rank_in(sl.row_set, sl.row_slot, 1u, row);
    let c1 = rank_in(sl.col_set, sl.col_slot, 1u, col);
    if r1 == NONE || c1 == NONE {
        return NONE;
    }
    return p.stride_wc + r1 * k1.row_len + b * k1.pc + c1;
}

// Whether sample 0 keeps the row and the column of weight i of slot sl:
// then a pair's sample 0 thread gathers it for both samples.
fn first_keeps(sl: Slot, i: u32) -> bool {
    let e = i - sl.offset;
    let row = e / (sl.blocks * sl.cols);
    return kept_in_first(sl.row_set, sl.row_slot, row) && kept_in_first(sl.col_set, sl.col_slot, e % sl.cols);
}

// One thread per float of Wc, then of bc, with a stride of the launched
// threads (the grid is sized on the host). A pair's threads run over
// sample 0's floats, then sample 1's; sample 0's also write what sample 1
// keeps of their weight, and sample 1's skip those.
@compute @workgroup_size(WG)
fn lazy_gather(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let clock = bitcast<u32>(clip[3]);
    let stride = nwg.x * nwg.y * WG;
    let id = flat_id(wid, nwg, lidx, WG);
    let sl = slot_at(p.gather_slot);
    // Sample 0's gather (or the one sample's), then sample 1's of a pair.
    let s0 = p.sample * (1u - p.pair);
    let k0 = kept_shape(sl, s0);
    var k1 = Kept(0u, 0u, 0u, 0u, 0u);
    if p.pair != 0u {
        k1 = kept_shape(sl, 1u);
    }
    for (var t = id; t < k0.n + k1.n; t += stride) {
        if t < k0.n {
            let at = gathered_at(sl, k0, s0, t);
            var v = 0.0;
            if at.x != NONE {
                v = fresh(at.x, clock);
                if p.pair != 0u {
                    let o = second_place(sl, k1, at.x, at.y);
                    if o != NONE {
                        wc[o] = v;
                    }
                }
            }
            wc[t] = v;
        } else {
            let at = gathered_at(sl, k1, 1u, t - k0.n);
            if at.x == NONE {
                wc[p.stride_wc + t - k0.n] = 0.0;
            } else if !first_keeps(sl, at.x) {
                wc[p.stride_wc + t - k0.n] = fresh(at.x, clock);
            }
        }
    }
    if p.gather_bias == NONE {
        return;
    }
    // The bias follows the weight's rows.
    let bs = slot_at(p.gather_bias);
    let kb0 = kept_count(bs.rows, bs.row_set, s0);
    let nb0 = side_len(kb0, bs.row_set);
    var kb1 = 0u;
    var nb1 = 0u;
    if p.pair != 0u {
        kb1 = kept_count(bs.rows, bs.row_set, 1u);
        nb1 = side_len(kb1, bs.row_set);
    }
    for (var j = id; j < nb0 + nb1; j += stride) {
        if j < nb0 {
            var v = 0.0;
            if j < kb0 {
                let row = kept_at(bs.row_set, bs.row_slot, s0, j);
                v = fresh(bs.offset + row, clock);
                if p.pair != 0u {
                    let r1 = rank_in(bs.row_set, bs.row_slot, 1u, row);
                    if r1 != NONE {
                        bc[p.stride_bc + r1] = v;
                    }
                }
            }
            bc[j] = v;
        } else {
            let j1 = j - nb0;
            if j1 >= kb1 {
                bc[p.stride_bc + j1] = 0.0;
            } else {
                let row = kept_at(bs.row_set, bs.row_slot, 1u, j1);
                if !kept_in_first(bs.row_set, bs.row_slot, row) {
                    bc[p.stride_bc + j1] = fresh(bs.offset + row, clock);
                }
            }
        }
    }
}

@compute @workgroup_size(WG)
fn lazy_sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
    let sl = slot_at(wid.y / 2u);
    let s = wid.y % 2u;
    let wk = walk(sl, s, wid.x, lidx);
    let factor = clip[0];
    let clock = bitcast<u32>(clip[3]);
    for (var j = wk.j0; j < wk.kr; j += wk.dj) {
        let r = row_of(sl, s, j);
        for (var q = wk.q0; q < wk.per_row; q += wk.dq) {
            let i = item(sl, s, r, q, wk.kc);
            if i == NONE {
                continue;
            }
            // Fresh, and stamped clock (the advanced clock) when brought
            // up to date: a finite step leaves the stamp as it is.
            if factor != 0.0 {
                let wv = sgd_update(vec2(w[i], mom[i]), g[i], factor);
                w[i] = wv.x;
                mom[i] = wv.y;
            } else {
                last[i] = clock;
            }
            g[i] = 0.0;
        }
    }
}

// Where updates are deferred, after the launch that decides the clip
// record: a finite step's factor goes to the ring (one thread); a
// non-finite step (factor 0, the clock kept) drops the gradient of every
// weight its masks reached and stamps them back, as lazy_sgd does.
@compute @workgroup_size(WG)
fn lazy_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
    let factor = clip[0];
    let clock = bitcast<u32>(clip[3]);
    if factor != 0.0 {
        if wid.x == 0u && wid.y == 0u && lidx == 0u {
            clip[p.ring_at + clock % p.ring_len] = factor;
        }
        return;
    }
    let sl = slot_at(wid.y / 2u);
    let s = wid.y % 2u;
    let wk = walk(sl, s, wid.x, lidx);
    for (var j = wk.j0; j < wk.kr; j += wk.dj) {
        let r = row_of(sl, s, j);
        for (var q = wk.q0; q < wk.per_row; q += wk.dq) {
            let i = item(sl, s, r, q, wk.kc);
            if i != NONE {
                g[i] = 0.0;
                last[i] = clock;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn lazy_catch_up(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let clock = bitcast<u32>(clip[3]);
    for (var i = flat_id(wid, nwg, lidx, WG); i < p.n; i += nwg.x * nwg.y * WG) {
        let l = last[i];
        let wv = catch_up(settled(i, l), clock - (l & ~PEND), st.lr);
        w[i] = wv.x;
        mom[i] = wv.y;
        last[i] = clock;
    }
}

@compute @workgroup_size(WG)
fn lazy_settle(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    for (var i = flat_id(wid, nwg, lidx, WG); i < p.n; i += nwg.x * nwg.y * WG) {
        let l = last[i];
        if (l & PEND) != 0u {
            let wv = settled(i, l);
            w[i] = wv.x;
            mom[i] = wv.y;
            last[i] = l & ~PEND;
        }
    }
}

@compute @workgroup_size(WG)
fn lazy_stamp(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let clock = bitcast<u32>(clip[3]);
    for (var i = flat_id(wid, nwg, lidx, WG); i < p.n; i += nwg.x * nwg.y * WG) {
        last[i] = clock;
    }
}
