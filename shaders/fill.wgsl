//#include common

// Fill a buffer with one 32-bit pattern: serves f32 and u32 tensors alike
// (the launcher passes the value's bits).

// Keep in sync with `FillParams` in src/ops/fill.rs.
struct FillParams {
    n: u32,
    bits: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: FillParams;
@group(0) @binding(1) var<storage, read_write> x: array<u32>;

@compute @workgroup_size(WG)
fn fill(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let i = flat_id(wid, nwg, lidx, WG);
    if i >= p.n {
        return;
    }
    x[i] = p.bits;
}
