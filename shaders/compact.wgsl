//#include common
//#include rng
//#include step

// Stream compaction of masks into channel sets, one workgroup per (set,
// mask sample). A set is either a prunable layer's units (its slice of the
// mask) or the union of several such sets over the same channels (the
// channels a residual sum carries: kept in either branch). For set k with
// slots [off_k, off_k + len_k) of a sample's slot space:
//   kept[off_k + j]  = the j-th channel c of the set (ascending),
//   ranks[off_k + c] = the position j of channel c, or NONE if not in the set,
//   counts[k]        = the number of channels in the set.
// The lists are ordered, so a compacted layer keeps its channels' order.
// Slots of `kept` past the count are left as they were: kernels read only
// `counts[k]` entries. A workgroup scans its set in chunks of WG with a
// Hillis-Steele prefix sum. Sample s reads its mask at mask[s·mask_stride..]
// and writes kept[s·slot_stride..], ranks[s·slot_stride..], counts[s·sets..].
//
// The set table, one 4-word record per set, then the member lists:
//   [slot offset, length, first member record, member count]
// A set without members is a base set: its channel c is kept where
// mask[slot offset + c] is 1. A union's members are the mask offsets of its
// base sets: channel c is kept where any of them keeps it.
//
// With DRAW the masks are drawn here rather than read (one launch instead
// of mask.wgsl's and this one): unit u of sample s is kept where
// rng_unit(rng_u32(seed, step, sample + s, u)) < scores[u], the draw of
// mask_sample, bit for bit; base sets also store their bits in `mask` (for
// the score gradient), unions draw their members' bits again.

// Keep in sync with `CompactParams` in src/ops/compact.rs.
struct CompactParams {
    sets: u32,
    // Units per mask sample in `mask`, and slots per sample in `kept`/`ranks`.
    mask_stride: u32,
    slot_stride: u32,
    _pad: u32,
    // DRAW: the key of sample 0 (as mask.wgsl's MaskParams); the step is
    // the step block's counter where step_from_block is nonzero.
    seed_lo: u32,
    seed_hi: u32,
    step: u32,
    sample: u32,
    step_from_block: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

// Must be a power of two.
override WG: u32 = 256u;
override DRAW: bool = false;

@group(0) @binding(0) var<uniform> p: CompactParams;
// Read, or with DRAW written by base sets.
@group(0) @binding(1) var<storage, read_write> mask: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> kept: array<u32>;
@group(0) @binding(4) var<storage, read_write> counts: array<u32>;
@group(0) @binding(5) var<storage, read_write> ranks: array<u32>;

@group(0) @binding(6) var<storage, read> scores: array<f32>;

var<workgroup> scan: array<u32, WG>;

// Whether unit u of sample s (whose mask starts at `base`) is kept.
fn unit_kept(base: u32, s: u32, u: u32) -> bool {
    if DRAW {
        var step = p.step;
        if p.step_from_block != 0u {
            step = st.step;
        }
        return rng_unit(rng_u32(p.seed_lo, p.seed_hi, step, p.sample + s, u)) < scores[u];
    }
    return mask[base + u] != 0u;
}

// Whether channel c of set `set` is kept in sample s.
fn in_set(sid: u32, base: u32, s: u32, c: u32) -> bool {
    let off = table[4u * sid];
    let first = table[4u * sid + 2u];
    let members = table[4u * sid + 3u];
    if members == 0u {
        return unit_kept(base, s, off + c);
    }
    var any = false;
    for (var m = 0u; m < members; m++) {
        any = any || unit_kept(base, s, table[first + m] + c);
    }
    return any;
}

@compute @workgroup_size(WG)
fn compact_kept(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    let sid = min(wid.x, p.sets - 1u);
    let off = table[4u * sid];
    let len = table[4u * sid + 1u];
    let mask_base = wid.y * p.mask_stride;
    let slot_base = wid.y * p.slot_stride + off;
    var total = 0u;
    for (var chunk = 0u; chunk < len; chunk += WG) {
        let c = chunk + lidx;
        var flag = 0u;
        if c < len && in_set(sid, mask_base, wid.y, c) {
            flag = 1u;
        }
        if DRAW && c < len && table[4u * sid + 3u] == 0u && wid.x < p.sets {
            mask[mask_base + off + c] = flag;
        }
        workgroupBarrier();
        scan[lidx] = flag;
        for (var stride = 1u; stride < WG; stride *= 2u) {
            workgroupBarrier();
            var add = 0u;
            if lidx >= stride {
                add = scan[lidx - stride];
            }
            workgroupBarrier();
            scan[lidx] += add;
        }
        workgroupBarrier();
        // Inclusive scan: scan[lidx] - flag kept channels precede c in this chunk.
        if c < len {
            let pos = total + scan[lidx] - flag;
            if flag == 1u {
                kept[slot_base + pos] = c;
                ranks[slot_base + c] = pos;
            } else {
                ranks[slot_base + c] = NONE;
            }
        }
        total += scan[WG - 1u];
    }
    if lidx == 0u && wid.x < p.sets {
        counts[wid.y * p.sets + sid] = total;
    }
}
