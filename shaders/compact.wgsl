//#include common

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

// Keep in sync with `CompactParams` in src/ops/compact.rs.
struct CompactParams {
    sets: u32,
    // Units per mask sample in `mask`, and slots per sample in `kept`/`ranks`.
    mask_stride: u32,
    slot_stride: u32,
    _pad: u32,
}

// Must be a power of two.
override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: CompactParams;
@group(0) @binding(1) var<storage, read> mask: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> kept: array<u32>;
@group(0) @binding(4) var<storage, read_write> counts: array<u32>;
@group(0) @binding(5) var<storage, read_write> ranks: array<u32>;

var<workgroup> scan: array<u32, WG>;

// Whether channel c of set `set` is kept in the sample whose mask starts at `base`.
fn in_set(sid: u32, base: u32, c: u32) -> bool {
    let off = table[4u * sid];
    let first = table[4u * sid + 2u];
    let members = table[4u * sid + 3u];
    if members == 0u {
        return mask[base + off + c] != 0u;
    }
    var any = false;
    for (var m = 0u; m < members; m++) {
        any = any || mask[base + table[first + m] + c] != 0u;
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
        if c < len && in_set(sid, mask_base, c) {
            flag = 1u;
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
