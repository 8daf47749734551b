// Counter-based random numbers: a value is a pure function of
// (seed, step, sample, unit), so masks are the same on every device and a
// resumed run continues exactly. Each key word passes through the PCG
// output permutation (O'Neill's "pcg_hash") before it is mixed with the next,
// which is enough to decorrelate neighbouring units and steps.
// Keep in sync with `rng` in src/cpu/mask.rs.

fn pcg_hash(x: u32) -> u32 {
    let state = x * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn rng_u32(seed_lo: u32, seed_hi: u32, step: u32, sample: u32, unit: u32) -> u32 {
    var h = pcg_hash(seed_lo ^ 0x9e3779b9u);
    h = pcg_hash(h ^ seed_hi);
    h = pcg_hash(h ^ step);
    h = pcg_hash(h ^ sample);
    return pcg_hash(h ^ unit);
}

// Uniform in [0, 1) with 24 random bits: exactly representable in f32, and
// strictly below 1, so `u < s` keeps a unit with probability s for s = 1 too.
fn rng_unit(bits: u32) -> f32 {
    return f32(bits >> 8u) * (1.0 / 16777216.0);
}
