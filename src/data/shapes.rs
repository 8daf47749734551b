//! The built-in procedural colour dataset: 32×32 RGB images of ten kinds of
//! shape (disk, ring, square, frame, triangle, plus, cross, horizontal bars,
//! vertical bars, diamond) in random colours, positions, sizes and slight
//! rotations, on a shaded background with clutter and noise. It is the
//! no-files default of the 32×32 models (ResNet, VGG): colour, position and
//! size carry no class information, so a network has to see the shape.

use rand::Rng;
use rand::rngs::StdRng;

use super::{Dataset, DatasetKind, Split, derive_seed, generated_set};
#[cfg(test)]
use crate::nn::Shape;

/// Most images one shapes set holds (3 GB of pixels): the command line
/// refuses larger sizes rather than exhausting host memory.
pub const MAX_IMAGES: usize = 1_000_000;
/// Side length of the images (matches CIFAR).
pub const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;

const STREAM_TRAIN: u64 = 0x7368_6170_6500_0001;
const STREAM_TEST: u64 = 0x7368_6170_6500_0002;

/// Class names, by label.
pub const CLASSES: [&str; 10] =
    ["disk", "ring", "square", "frame", "triangle", "plus", "cross", "horizontal bars", "vertical bars", "diamond"];

/// Whether the point (u, v) of the shape's own frame (radius 1) is inside
/// shape `class`.
fn inside(class: usize, u: f32, v: f32) -> bool {
    let bar = |a: f32, b: f32| (a.abs() <= 0.22 && b.abs() <= 0.9) || (b.abs() <= 0.22 && a.abs() <= 0.9);
    let bands = |a: f32, b: f32| a.abs() <= 0.85 && b.abs() <= 0.85 && ((b + 0.85) / 0.34).floor() as i32 % 2 == 0;
    let r2 = u * u + v * v;
    let box_r = u.abs().max(v.abs());
    match class {
        0 => r2 <= 0.81,
        1 => (0.3..=0.9).contains(&r2),
        2 => box_r <= 0.75,
        3 => (0.45..=0.8).contains(&box_r),
        4 => (-0.85..=0.7).contains(&v) && u.abs() <= (v + 0.85) / 1.55 * 0.85,
        5 => bar(u, v),
        6 => bar((u + v) * std::f32::consts::FRAC_1_SQRT_2, (u - v) * std::f32::consts::FRAC_1_SQRT_2),
        7 => bands(u, v),
        8 => bands(v, u),
        _ => u.abs() + v.abs() <= 0.95,
    }
}

fn colour(rng: &mut StdRng) -> [f32; 3] {
    std::array::from_fn(|_| rng.random_range(0.05..0.95))
}

fn gauss(rng: &mut StdRng) -> f32 {
    // Box-Muller; u1 is kept away from 0.
    let (u1, u2): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random());
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// One image of `class` as CHW values in [0, 1].
fn render(rng: &mut StdRng, class: usize, out: &mut [f32; 3 * PLANE]) {
    // A foreground whose brightness stands out from the background's
    // (either way round), in any hue.
    let lum = |c: &[f32; 3]| 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2];
    let (mut bg, mut fg) = (colour(rng), colour(rng));
    while (lum(&fg) - lum(&bg)).abs() < 0.3 {
        (bg, fg) = (colour(rng), colour(rng));
    }
    let shade: [f32; 2] = [rng.random_range(-0.1..0.1), rng.random_range(-0.1..0.1)];
    let r = rng.random_range(8.5..13.0f32);
    let (cx, cy) = (rng.random_range(12.0..20.0f32), rng.random_range(12.0..20.0f32));
    let (sin, cos) = rng.random_range(-0.2..0.2f32).sin_cos();
    // A small blob of clutter in some images.
    let blob = rng.random_bool(0.3).then(|| {
        let c = colour(rng);
        (rng.random_range(0.0..32.0f32), rng.random_range(0.0..32.0f32), rng.random_range(1.0..2.0f32), c)
    });
    let noise = rng.random_range(0.01..0.04f32);
    for y in 0..SIDE {
        for x in 0..SIDE {
            // Coverage from 2×2 samples per pixel.
            let mut cover = 0.0;
            for (oy, ox) in [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)] {
                let (dx, dy) = ((x as f32 + ox - cx) / r, (y as f32 + oy - cy) / r);
                let (u, v) = (cos * dx + sin * dy, -sin * dx + cos * dy);
                cover += if inside(class, u, v) { 0.25 } else { 0.0 };
            }
            let (fx, fy) = (x as f32 / SIDE as f32 - 0.5, y as f32 / SIDE as f32 - 0.5);
            let light = shade[0] * fx + shade[1] * fy;
            let blob_a = blob.map_or(0.0, |(bx, by, s, _)| {
                let d2 = (x as f32 - bx).powi(2) + (y as f32 - by).powi(2);
                (-d2 / (2.0 * s * s)).exp()
            });
            for ch in 0..3 {
                let mut v = bg[ch] + light;
                if let Some((_, _, _, c)) = blob {
                    v += (c[ch] - v) * blob_a;
                }
                v += (fg[ch] - v) * cover;
                out[ch * PLANE + y * SIDE + x] = v + noise * gauss(rng);
            }
        }
    }
}

fn shapes_set(n: usize, stream_seed: u64, name: &str) -> Dataset {
    generated_set(n, stream_seed, DatasetKind::Shapes, name, |rng, class, canvas| {
        render(rng, class, canvas.try_into().expect("a 3x32x32 canvas"))
    })
}

/// The procedural colour set, deterministic in `seed`; train and test come
/// from different streams, and a smaller set is a prefix of a larger one.
/// About 3 KB and 40 µs per image in a release build.
pub fn synthetic_shapes(n_train: usize, n_test: usize, seed: u64) -> Split {
    Split {
        train: shapes_set(n_train, derive_seed(seed, STREAM_TRAIN), "shapes-train"),
        test: shapes_set(n_test, derive_seed(seed, STREAM_TEST), "shapes-test"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_deterministic_balanced_and_seed_dependent() {
        let a = synthetic_shapes(1000, 100, 5);
        let b = synthetic_shapes(1000, 100, 5);
        assert_eq!(a.train.pixels, b.train.pixels);
        assert_eq!(a.train.labels, b.train.labels);
        assert_ne!(a.train.pixels, synthetic_shapes(1000, 0, 6).train.pixels);
        assert_ne!(a.train.pixels[..100 * 3 * PLANE], a.test.pixels[..]);
        assert_eq!(a.train.shape, Shape { c: 3, h: 32, w: 32 });
        assert_eq!(a.train.pixels.len(), 1000 * 3072);
        let mut counts = [0usize; 10];
        a.train.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert!(counts.iter().all(|&n| (60..=140).contains(&n)), "{counts:?}");
        let small = synthetic_shapes(20, 0, 5);
        assert_eq!(small.train.pixels[..], a.train.pixels[..20 * 3072]);
        // Not blank: pixels spread over the range in every channel.
        for ch in 0..3 {
            let vals: Vec<u8> =
                (0..200).flat_map(|i| a.train.image(i)[ch * PLANE..(ch + 1) * PLANE].to_vec()).collect();
            let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / vals.len() as f64;
            assert!((80.0..180.0).contains(&mean), "channel {ch} mean {mean}");
        }
    }

    /// Each shape covers a plausible share of its box, and the shapes'
    /// footprints differ from one another.
    #[test]
    fn shapes_have_distinct_footprints() {
        let grid: Vec<(f32, f32)> =
            (0..40).flat_map(|i| (0..40).map(move |j| (i as f32 / 20.0 - 1.0, j as f32 / 20.0 - 1.0))).collect();
        let masks: Vec<Vec<bool>> = (0..10).map(|c| grid.iter().map(|&(u, v)| inside(c, u, v)).collect()).collect();
        for (c, m) in masks.iter().enumerate() {
            let area = m.iter().filter(|&&b| b).count() as f64 / m.len() as f64;
            assert!((0.1..0.7).contains(&area), "{}: area {area}", CLASSES[c]);
        }
        for a in 0..10 {
            for b in a + 1..10 {
                let differ = masks[a].iter().zip(&masks[b]).filter(|(x, y)| x != y).count();
                assert!(differ > 100, "{} and {} differ in {differ} of 1600 points", CLASSES[a], CLASSES[b]);
            }
        }
    }
}

#[cfg(test)]
mod preview {
    use super::*;

    /// `cargo test shapes_preview -- --nocapture` shows the shapes' brightness.
    #[test]
    fn shapes_preview() {
        const RAMP: &[u8] = b" .:-=+*#%@";
        let ds = synthetic_shapes(6, 0, 3).train;
        for i in 0..ds.len() {
            let img = ds.image(i);
            let mut s = String::new();
            for y in 0..SIDE {
                for x in 0..SIDE {
                    let l: f32 = (0..3).map(|c| img[c * PLANE + y * SIDE + x] as f32 / 255.0).sum::<f32>() / 3.0;
                    let k = (l * (RAMP.len() - 1) as f32).round() as usize;
                    s.push(RAMP[k] as char);
                    s.push(RAMP[k] as char);
                }
                s.push('\n');
            }
            println!("#{i} {}\n{s}", CLASSES[ds.labels[i] as usize]);
        }
    }
}
