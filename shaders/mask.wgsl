//#include common
//#include rng

// Bernoulli masks over units: mask[i] = 1 with probability scores[i], drawn
// with the counter-based generator keyed by (seed, step, sample, unit).

// Keep in sync with `MaskParams` in src/ops/mask.rs.
struct MaskParams {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    step: u32,
    sample: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: MaskParams;
@group(0) @binding(1) var<storage, read> scores: array<f32>;
@group(0) @binding(2) var<storage, read_write> mask: array<u32>;

@compute @workgroup_size(WG)
fn mask_sample(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let i = flat_id(wid, nwg, lidx, WG);
    if i >= p.n {
        return;
    }
    let u = rng_unit(rng_u32(p.seed_lo, p.seed_hi, p.step, p.sample, i));
    mask[i] = select(0u, 1u, u < scores[i]);
}
