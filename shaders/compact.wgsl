//#include common

// Stream compaction of masks, one workgroup per layer: for layer l with
// units [offsets[l], offsets[l+1]) of the global unit numbering,
//   kept[offsets[l] + j] = local index of the j-th unit with mask = 1,
//   counts[l]            = number of kept units.
// The lists are ordered, so a compacted layer keeps its units' order. Slots
// past the count are left as they were: kernels read only `counts[l]` entries.
// A workgroup scans its layer in chunks of WG with a Hillis-Steele prefix sum.
// Several masks of `units` units each compact in one dispatch (workgroup
// row y = mask s): mask s is at mask[s·units..], its lists at kept[s·units..]
// and its counts at counts[s·layers..].

// Keep in sync with `CompactParams` in src/ops/compact.rs.
struct CompactParams {
    layers: u32,
    // Units per mask: the stride between consecutive masks and lists.
    units: u32,
    _pad0: u32,
    _pad1: u32,
}

// Must be a power of two.
override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: CompactParams;
@group(0) @binding(1) var<storage, read> mask: array<u32>;
// layers + 1 entries.
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read_write> kept: array<u32>;
@group(0) @binding(4) var<storage, read_write> counts: array<u32>;

var<workgroup> scan: array<u32, WG>;

@compute @workgroup_size(WG)
fn compact_kept(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
    let layer = wid.x;
    let sample_base = wid.y * p.units;
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    let begin = offsets[min(layer, p.layers)];
    let end = offsets[min(layer + 1u, p.layers)];
    var total = 0u;
    for (var base = begin; base < end; base += WG) {
        let i = base + lidx;
        var flag = 0u;
        if i < end && mask[sample_base + i] != 0u {
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
        // Inclusive scan: scan[lidx] - flag kept units precede unit i in this chunk.
        if flag == 1u {
            kept[sample_base + begin + total + scan[lidx] - 1u] = i - begin;
        }
        total += scan[WG - 1u];
    }
    if lidx == 0u && layer < p.layers {
        counts[wid.y * p.layers + layer] = total;
    }
}
