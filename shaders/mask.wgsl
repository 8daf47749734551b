//#include common
//#include rng
//#include step

// Bernoulli masks over units: mask[i] = 1 with probability scores[i], drawn
// with the counter-based generator keyed by (seed, step, sample, unit). The
// step is fixed when recorded, or the step block's counter (step_from_block).
// One pass draws one or more samples: sample s of `samples` writes
// mask[s * n + i] with sample number `sample + s`.

// Keep in sync with `MaskParams` in src/ops/mask.rs.
struct MaskParams {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    step: u32,
    sample: u32,
    // Samples drawn by this dispatch, into consecutive masks of n units.
    samples: u32,
    // Nonzero: the key's step is the step block's counter, not `step`.
    step_from_block: u32,
    _pad: u32,
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
    let t = flat_id(wid, nwg, lidx, WG);
    if t >= p.n * p.samples {
        return;
    }
    let s = t / p.n;
    let i = t % p.n;
    var step = p.step;
    if p.step_from_block != 0u {
        step = st.step;
    }
    let u = rng_unit(rng_u32(p.seed_lo, p.seed_hi, step, p.sample + s, i));
    mask[t] = select(0u, 1u, u < scores[i]);
}
