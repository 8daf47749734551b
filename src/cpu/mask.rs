//! Reference of shaders/mask.wgsl and shaders/shared/rng.wgsl (bit-exact:
//! the same key gives the same mask here and on every device).

use crate::ops::mask::MaskKey;

/// Keep in sync with `pcg_hash` in shaders/shared/rng.wgsl.
pub fn pcg_hash(x: u32) -> u32 {
    let state = x.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// Keep in sync with `rng_u32` in shaders/shared/rng.wgsl.
pub fn rng(key: MaskKey, unit: u32) -> u32 {
    let mut h = pcg_hash(key.seed as u32 ^ 0x9e37_79b9);
    h = pcg_hash(h ^ (key.seed >> 32) as u32);
    h = pcg_hash(h ^ key.step);
    h = pcg_hash(h ^ key.sample);
    pcg_hash(h ^ unit)
}

/// Uniform in [0, 1) with 24 bits, as `rng_unit`.
pub fn unit_uniform(bits: u32) -> f64 {
    (bits >> 8) as f64 / 16_777_216.0
}

pub fn mask_sample(scores: &[f64], key: MaskKey) -> Vec<u32> {
    scores.iter().enumerate().map(|(i, &s)| u32::from(unit_uniform(rng(key, i as u32)) < s)).collect()
}
