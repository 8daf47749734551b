//! The built-in procedural dataset: 28×28 digits drawn from a bitmap font
//! with random affine transforms, stroke widths, clutter and noise, so that
//! every command works without data files.

use rand::Rng;
use rand::rngs::StdRng;

use super::{Dataset, DatasetKind, Split, derive_seed, generated_set};

/// Most images one synthetic set holds (3.1 GB of pixels): the command line
/// refuses larger sizes rather than exhausting host memory.
pub const MAX_IMAGES: usize = 4_000_000;

/// Side length of the synthetic images (matches MNIST).
pub const SYNTH_SIDE: usize = 28;
const SYNTH_DIM: usize = SYNTH_SIDE * SYNTH_SIDE;

/// 5x7 bitmap glyphs for 0-9. Strokes are drawn between neighbouring lit cells,
/// so only the shape's skeleton matters, not its pixel weight.
const FONT: [[&[u8; 5]; 7]; 10] = [
    [b".###.", b"#...#", b"#...#", b"#...#", b"#...#", b"#...#", b".###."],
    [b"..#..", b".##..", b"..#..", b"..#..", b"..#..", b"..#..", b".###."],
    [b".###.", b"#...#", b"....#", b"...#.", b"..#..", b".#...", b"#####"],
    [b".###.", b"#...#", b"....#", b"..##.", b"....#", b"#...#", b".###."],
    [b"...#.", b"..##.", b".#.#.", b"#..#.", b"#####", b"...#.", b"...#."],
    [b"#####", b"#....", b"####.", b"....#", b"....#", b"#...#", b".###."],
    [b"..##.", b".#...", b"#....", b"####.", b"#...#", b"#...#", b".###."],
    [b"#####", b"....#", b"...#.", b"..#..", b".#...", b".#...", b".#..."],
    [b".###.", b"#...#", b"#...#", b".###.", b"#...#", b"#...#", b".###."],
    [b".###.", b"#...#", b"#...#", b".####", b"....#", b"...#.", b".##.."],
];
const GLYPH_W: usize = 5;
const GLYPH_H: usize = 7;
/// Pixels per glyph cell at scale 1: a 7-row glyph spans ~20 px like MNIST digits.
const CELL_PX: f32 = 2.9;

const STREAM_TRAIN: u64 = 0x7472_6169_6e00_0001;
const STREAM_TEST: u64 = 0x7465_7374_0000_0002;

fn lit(glyph: &[&[u8; 5]; 7], r: usize, c: usize) -> bool {
    glyph[r][c] == b'#'
}

/// Stroke skeleton of `digit` as pairs of cell coordinates `(row, col)`.
/// Diagonal links are only added where no orthogonal path already joins the two
/// cells, which avoids filled triangles at corners.
fn glyph_segments(digit: usize) -> Vec<((usize, usize), (usize, usize))> {
    let g = &FONT[digit];
    let mut segs = Vec::new();
    for r in 0..GLYPH_H {
        for c in 0..GLYPH_W {
            if !lit(g, r, c) {
                continue;
            }
            if c + 1 < GLYPH_W && lit(g, r, c + 1) {
                segs.push(((r, c), (r, c + 1)));
            }
            if r + 1 < GLYPH_H {
                let down = lit(g, r + 1, c);
                if down {
                    segs.push(((r, c), (r + 1, c)));
                }
                if c + 1 < GLYPH_W && lit(g, r + 1, c + 1) && !down && !lit(g, r, c + 1) {
                    segs.push(((r, c), (r + 1, c + 1)));
                }
                if c > 0 && lit(g, r + 1, c - 1) && !down && !lit(g, r, c - 1) {
                    segs.push(((r, c), (r + 1, c - 1)));
                }
            }
        }
    }
    segs
}

/// Paints an anti-aliased segment of half-width `radius` into `canvas` with
/// max-compositing, so overlapping strokes do not grow brighter than `ink`.
fn draw_segment(canvas: &mut [f32; SYNTH_DIM], a: [f32; 2], b: [f32; 2], radius: f32, ink: f32) {
    let reach = radius + 1.0;
    let last = (SYNTH_SIDE - 1) as f32;
    let x0 = (a[0].min(b[0]) - reach).floor().clamp(0.0, last) as usize;
    let x1 = (a[0].max(b[0]) + reach).ceil().clamp(0.0, last) as usize;
    let y0 = (a[1].min(b[1]) - reach).floor().clamp(0.0, last) as usize;
    let y1 = (a[1].max(b[1]) + reach).ceil().clamp(0.0, last) as usize;
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (px, py) = (x as f32 - a[0], y as f32 - a[1]);
            let t = if len2 > 0.0 { ((px * dx + py * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
            let (ex, ey) = (px - t * dx, py - t * dy);
            let dist = (ex * ex + ey * ey).sqrt();
            let cover = (radius + 0.5 - dist).clamp(0.0, 1.0) * ink;
            let px = &mut canvas[y * SYNTH_SIDE + x];
            *px = px.max(cover);
        }
    }
}

fn draw_blob(canvas: &mut [f32; SYNTH_DIM], centre: [f32; 2], sigma: f32, ink: f32) {
    let reach = 3.0 * sigma;
    let last = (SYNTH_SIDE - 1) as f32;
    let x0 = (centre[0] - reach).floor().clamp(0.0, last) as usize;
    let x1 = (centre[0] + reach).ceil().clamp(0.0, last) as usize;
    let y0 = (centre[1] - reach).floor().clamp(0.0, last) as usize;
    let y1 = (centre[1] + reach).ceil().clamp(0.0, last) as usize;
    let inv = 1.0 / (2.0 * sigma * sigma);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (ex, ey) = (x as f32 - centre[0], y as f32 - centre[1]);
            let v = ink * (-(ex * ex + ey * ey) * inv).exp();
            let px = &mut canvas[y * SYNTH_SIDE + x];
            *px = px.max(v);
        }
    }
}

/// Standard normal pair via Box-Muller; avoids a `rand_distr` dependency.
fn gauss_pair(rng: &mut StdRng) -> (f32, f32) {
    let u1: f32 = 1.0 - rng.random::<f32>(); // (0, 1], so ln is finite
    let u2: f32 = rng.random();
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

/// Renders one digit into `canvas` as intensities in [0, 1].
fn render_digit(rng: &mut StdRng, digit: usize, canvas: &mut [f32; SYNTH_DIM]) {
    canvas.fill(0.0);

    // Per-cell wobble stands in for the variability of handwriting.
    let wobble = rng.random_range(0.05..0.5);
    let mut cells = [[0.0f32; 2]; GLYPH_W * GLYPH_H];
    for (i, cell) in cells.iter_mut().enumerate() {
        let (r, c) = (i / GLYPH_W, i % GLYPH_W);
        *cell = [
            c as f32 - (GLYPH_W as f32 - 1.0) / 2.0 + rng.random_range(-wobble..wobble),
            r as f32 - (GLYPH_H as f32 - 1.0) / 2.0 + rng.random_range(-wobble..wobble),
        ];
    }

    let scale = CELL_PX * rng.random_range(0.8..1.25);
    let aspect: f32 = rng.random_range(0.85..1.15);
    let (sx, sy) = (scale * aspect, scale / aspect);
    let shear: f32 = rng.random_range(-0.3..0.3);
    let (sin, cos) = rng.random_range(-0.25f32..0.25).sin_cos();
    let centre = (SYNTH_SIDE as f32 - 1.0) / 2.0;
    let tx = centre + rng.random_range(-3.0..3.0);
    let ty = centre + rng.random_range(-3.0..3.0);
    // A smooth bend on top of the affine map, so strokes curve instead of only
    // shifting rigidly.
    let bend_x = rng.random_range(-0.6f32..0.6);
    let bend_y = rng.random_range(-0.6f32..0.6);
    let to_image = |[x, y]: [f32; 2]| {
        let (x, y) = (x + bend_x * (y / 3.0).powi(2), y + bend_y * (x / 2.0).powi(2));
        let (x, y) = (x * sx, y * sy);
        let x = x + shear * y;
        [cos * x - sin * y + tx, sin * x + cos * y + ty]
    };

    let radius = rng.random_range(0.5..1.5); // 1-3 px strokes
    let ink = rng.random_range(0.55..1.0);
    // Occasionally broken strokes, as from a dry pen.
    let gap_p = if rng.random_bool(0.4) { 0.1 } else { 0.0 };
    for ((r0, c0), (r1, c1)) in glyph_segments(digit) {
        if rng.random_bool(gap_p) {
            continue;
        }
        let a = to_image(cells[r0 * GLYPH_W + c0]);
        let b = to_image(cells[r1 * GLYPH_W + c1]);
        draw_segment(canvas, a, b, radius, ink);
    }

    // Clutter makes the task non-trivial: stray strokes can mimic the bars that
    // separate e.g. 1/7/4 or 3/8, so memorising the glyph outline is not enough.
    let side = SYNTH_SIDE as f32;
    for _ in 0..rng.random_range(0..=4) {
        let ink = rng.random_range(0.25..0.9);
        if rng.random_bool(0.5) {
            let a = [rng.random_range(0.0..side), rng.random_range(0.0..side)];
            let len = rng.random_range(3.0..10.0);
            let (s, c) = rng.random_range(0.0..std::f32::consts::TAU).sin_cos();
            let b = [a[0] + len * c, a[1] + len * s];
            draw_segment(canvas, a, b, rng.random_range(0.3..0.9), ink);
        } else {
            let at = [rng.random_range(0.0..side), rng.random_range(0.0..side)];
            draw_blob(canvas, at, rng.random_range(0.7..2.0), ink);
        }
    }

    let sigma = rng.random_range(0.02..0.2);
    for pair in canvas.chunks_exact_mut(2) {
        let (n0, n1) = gauss_pair(rng);
        pair[0] = (pair[0] + sigma * n0).clamp(0.0, 1.0);
        pair[1] = (pair[1] + sigma * n1).clamp(0.0, 1.0);
    }
}

fn synthetic_set(n: usize, stream_seed: u64, name: &str) -> Dataset {
    generated_set(n, stream_seed, DatasetKind::Synthetic, name, |rng, digit, canvas| {
        render_digit(rng, digit, canvas.try_into().expect("a 28x28 canvas"))
    })
}

/// Built-in procedural dataset: 28x28 images of the digits 0-9 drawn from a 5x7
/// bitmap font with random affine transform (shift ±3 px, scale 0.8-1.25,
/// rotation, shear), per-cell wobble, 1-3 px strokes, random intensity, clutter
/// (stray strokes and blobs) and additive noise. Normalised with MNIST's
/// constants. Deterministic in `seed`; train and test come from different
/// streams, and image `i` does not depend on the requested set size. Takes
/// about 1.2 s for 60k + 10k images in a release build; holds 784 bytes per
/// image.
pub fn synthetic_digits(n_train: usize, n_test: usize, seed: u64) -> Split {
    Split {
        train: synthetic_set(n_train, derive_seed(seed, STREAM_TRAIN), "synthetic-train"),
        test: synthetic_set(n_test, derive_seed(seed, STREAM_TEST), "synthetic-test"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MNIST_MEAN, MNIST_STD, Norm};
    use super::*;

    #[test]
    fn synthetic_is_deterministic_balanced_and_seed_dependent() {
        let a = synthetic_digits(2000, 300, 7);
        let b = synthetic_digits(2000, 300, 7);
        let c = synthetic_digits(2000, 300, 8);
        assert_eq!(a.train.pixels, b.train.pixels);
        assert_eq!(a.train.labels, b.train.labels);
        assert_eq!(a.test.pixels, b.test.pixels);
        assert_eq!(a.train.fingerprint(), b.train.fingerprint());
        assert_ne!(a.train.pixels, c.train.pixels);
        assert_ne!(a.train.fingerprint(), c.train.fingerprint());
        assert_ne!(a.train.pixels[..300 * 784], a.test.pixels[..]);

        for ds in [&a.train, &a.test] {
            assert_eq!(ds.dim(), 784);
            assert_eq!(ds.classes, 10);
            assert_eq!(ds.pixels.len(), ds.len() * 784);
            assert!(ds.labels.iter().all(|&l| l < 10));
        }
        let mut counts = [0usize; 10];
        for &l in &a.train.labels {
            counts[l as usize] += 1;
        }
        assert!(counts.iter().all(|&n| (140..=260).contains(&n)), "{counts:?}");

        assert_eq!(a.train.norm, Norm::gray(MNIST_MEAN, MNIST_STD));
        let mean_raw = a.train.pixels.iter().map(|&v| f64::from(v) / 255.0).sum::<f64>() / a.train.pixels.len() as f64;
        assert!((0.05..0.3).contains(&mean_raw), "mean intensity {mean_raw}");

        // A smaller set with the same seed is a prefix of a larger one.
        let small = synthetic_digits(50, 0, 7);
        assert_eq!(small.train.pixels[..], a.train.pixels[..50 * 784]);
        assert!(small.test.is_empty());
    }

    fn ascii(image: &[u8]) -> String {
        const RAMP: &[u8] = b" .:-=+*#%@";
        let mut s = String::new();
        for row in image.chunks(SYNTH_SIDE) {
            for &v in row {
                let raw = f32::from(v) / 255.0;
                let k = (raw * (RAMP.len() - 1) as f32).round() as usize;
                s.push(RAMP[k] as char);
                s.push(RAMP[k] as char);
            }
            s.push('\n');
        }
        s
    }

    /// `cargo test ascii_preview -- --nocapture` shows what the synthetic digits look like.
    #[test]
    fn ascii_preview() {
        let ds = synthetic_digits(20, 0, 3).train;
        for i in 0..ds.len() {
            println!("#{i} label {}\n{}", ds.labels[i], ascii(ds.image(i)));
        }
    }

    /// The synthetic task must be learnable but not trivially so: a
    /// nearest-centroid classifier should be well above chance and well below 100%.
    #[test]
    fn synthetic_nearest_centroid_is_hard_but_learnable() {
        let split = synthetic_digits(5000, 1000, 11);
        let dim = split.train.dim();
        let mut centroids = vec![0.0f64; 10 * dim];
        let mut counts = [0usize; 10];
        for i in 0..split.train.len() {
            let c = split.train.labels[i] as usize;
            counts[c] += 1;
            for (acc, &v) in centroids[c * dim..(c + 1) * dim].iter_mut().zip(&split.train.normalised(i)) {
                *acc += f64::from(v);
            }
        }
        for (c, n) in counts.iter().enumerate() {
            centroids[c * dim..(c + 1) * dim].iter_mut().for_each(|v| *v /= *n as f64);
        }
        let correct = (0..split.test.len())
            .filter(|&i| {
                let x = split.test.normalised(i);
                let dist = |c: usize| -> f64 {
                    centroids[c * dim..(c + 1) * dim].iter().zip(&x).map(|(&m, &v)| (m - f64::from(v)).powi(2)).sum()
                };
                let best = (0..10).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
                best == split.test.labels[i] as usize
            })
            .count();
        let acc = correct as f64 / split.test.len() as f64;
        println!("synthetic nearest-centroid test accuracy: {acc:.3}");
        assert!((0.4..0.92).contains(&acc), "nearest-centroid accuracy {acc}");
    }
}
