//! Batches from a dataset: bytes normalised per channel into NHWC floats,
//! optionally augmented (random crop of the padded image, horizontal flip)
//! with draws that depend only on a seed, so resumed runs match.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Dataset, derive_seed};
use crate::nn::Shape;

/// Training-time augmentation of 32×32-style images, as the CIFAR recipes
/// do it: a random crop of the image padded by `crop_pad` black pixels on
/// every side, and a horizontal flip with probability ½; drawn per sample
/// from the run's seed and the step, so a resumed run sees the same images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    pub crop_pad: usize,
    pub flip: bool,
}

impl Augment {
    /// No augmentation.
    pub const NONE: Augment = Augment { crop_pad: 0, flip: false };
    /// The CIFAR recipe: pad 4, crop, flip.
    pub const CROP_FLIP: Augment = Augment { crop_pad: 4, flip: true };

    pub fn is_none(&self) -> bool {
        self.crop_pad == 0 && !self.flip
    }

    pub fn describe(&self) -> String {
        match (self.crop_pad, self.flip) {
            (0, false) => "none".into(),
            (0, true) => "horizontal flip".into(),
            (p, false) => format!("random crop (pad {p})"),
            (p, true) => format!("random crop (pad {p}) and horizontal flip"),
        }
    }
}

const STREAM_AUGMENT: u64 = 0x6175_676d_656e_0004;

/// Normalises the samples `idx` of `ds` into contiguous NHWC buffers
/// (`images`: `idx.len() * dim` f32, `labels`: `idx.len()`), reusing their
/// capacity. Panics if an index is out of range.
pub fn gather_batch(ds: &Dataset, idx: &[u32], images: &mut Vec<f32>, labels: &mut Vec<u32>) {
    images.clear();
    labels.clear();
    append_batch(ds, idx, images, labels);
}

/// [`gather_batch`] appending after what `images` and `labels` hold: the
/// batches of a run of steps, packed one after the other.
pub fn append_batch(ds: &Dataset, idx: &[u32], images: &mut Vec<f32>, labels: &mut Vec<u32>) {
    gather(ds, idx, images, labels, |_| View::default());
}

/// [`append_batch`] with augmentation: sample j of the batch is cropped and
/// flipped as drawn from `(seed, j)`; give each step its own seed.
pub fn append_augmented(
    ds: &Dataset,
    idx: &[u32],
    aug: Augment,
    seed: u64,
    images: &mut Vec<f32>,
    labels: &mut Vec<u32>,
) {
    gather(ds, idx, images, labels, augment_view(aug, seed));
}

/// Sample j's crop and flip, drawn from `(seed, j)`.
fn augment_view(aug: Augment, seed: u64) -> impl Fn(usize) -> View {
    let base = derive_seed(seed, STREAM_AUGMENT);
    move |j| {
        let mut rng = StdRng::seed_from_u64(derive_seed(base, j as u64));
        let pad = aug.crop_pad as i64;
        let (dy, dx) = (rng.random_range(-pad..=pad) as isize, rng.random_range(-pad..=pad) as isize);
        View { dy, dx, flip: aug.flip && rng.random_bool(0.5) }
    }
}

/// Where an output image reads its input: pixel (y, x) comes from
/// (y + dy, x' + dx), x' = x or its mirror; outside the image is byte 0.
#[derive(Clone, Copy, Default)]
struct View {
    dy: isize,
    dx: isize,
    flip: bool,
}

fn gather(ds: &Dataset, idx: &[u32], images: &mut Vec<f32>, labels: &mut Vec<u32>, view: impl Fn(usize) -> View) {
    let tables = ds.norm.tables();
    let table = |ch: usize| &tables[ch.min(tables.len() - 1)];
    images.reserve(idx.len() * ds.dim());
    walk(ds, idx, labels, view, |v| match v {
        Values::Image(img) => images.extend(img.iter().map(|&b| table(0)[usize::from(b)])),
        Values::One(ch, b) => images.push(table(ch)[usize::from(b)]),
    });
}

/// [`append_batch`] as bytes: each value's pixel byte, NHWC, which
/// [`Norm::tables`](super::Norm::tables) (per channel, the last table for
/// channels past it) turns into [`append_batch`]'s floats: the batches a
/// trainer takes as bytes (`Trainer::stage_byte_batches`), a quarter of
/// the upload.
pub fn append_batch_bytes(ds: &Dataset, idx: &[u32], images: &mut Vec<u8>, labels: &mut Vec<u32>) {
    gather_bytes(ds, idx, images, labels, |_| View::default());
}

/// [`append_augmented`] as bytes (see [`append_batch_bytes`]): the same
/// crops and flips, outside the image byte 0.
pub fn append_augmented_bytes(
    ds: &Dataset,
    idx: &[u32],
    aug: Augment,
    seed: u64,
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) {
    gather_bytes(ds, idx, images, labels, augment_view(aug, seed));
}

fn gather_bytes(ds: &Dataset, idx: &[u32], images: &mut Vec<u8>, labels: &mut Vec<u32>, view: impl Fn(usize) -> View) {
    images.reserve(idx.len() * ds.dim());
    walk(ds, idx, labels, view, |v| match v {
        Values::Image(img) => images.extend_from_slice(img),
        Values::One(_, b) => images.push(b),
    });
}

/// What `walk` hands on: a grey, unaugmented image at once (NHWC is the
/// file's order), or one value as (channel, byte).
enum Values<'a> {
    Image(&'a [u8]),
    One(usize, u8),
}

/// Visits the samples `idx` of `ds` in NHWC order through `view`, handing
/// their values to `emit`; appends the labels.
fn walk(ds: &Dataset, idx: &[u32], labels: &mut Vec<u32>, view: impl Fn(usize) -> View, mut emit: impl FnMut(Values)) {
    let Shape { c, h, w } = ds.shape;
    let plane = h * w;
    labels.reserve(idx.len());
    for (j, &i) in idx.iter().enumerate() {
        let (i, v) = (i as usize, view(j));
        let img = ds.image(i);
        if c == 1 && v.dy == 0 && v.dx == 0 && !v.flip {
            emit(Values::Image(img));
        } else {
            for y in 0..h as isize {
                for x in 0..w as isize {
                    let (sy, sx) = (y + v.dy, if v.flip { w as isize - 1 - x } else { x } + v.dx);
                    let inside = sy >= 0 && sx >= 0 && sy < h as isize && sx < w as isize;
                    let at = if inside { sy as usize * w + sx as usize } else { 0 };
                    for ch in 0..c {
                        emit(Values::One(ch, if inside { img[ch * plane + at] } else { 0 }));
                    }
                }
            }
        }
        labels.push(u32::from(ds.labels[i]));
    }
}

#[cfg(test)]
mod tests {
    use super::super::Norm;
    use super::*;

    #[test]
    fn gather_batch_normalises_rows_per_channel_and_reuses_buffers() {
        let ds = Dataset {
            pixels: (0..12).collect(),
            labels: vec![0, 1, 2, 3],
            shape: Shape { c: 3, h: 1, w: 1 },
            classes: 10,
            norm: Norm { mean: vec![0.0, 0.0, 1.0], std: vec![1.0 / 255.0, 2.0 / 255.0, 1.0] },
            name: "t".into(),
        };
        let (mut imgs, mut labs) = (vec![99.0; 50], vec![7; 9]);
        gather_batch(&ds, &[2, 0, 2], &mut imgs, &mut labs);
        let c2 = |b: f32| b / 255.0 - 1.0;
        let want = [6.0, 3.5, c2(8.0), 0.0, 0.5, c2(2.0), 6.0, 3.5, c2(8.0)];
        // (1×1 images: NHWC and CHW agree.)
        assert!(imgs.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5), "{imgs:?}");
        assert_eq!(labs, [2, 0, 2]);
        gather_batch(&ds, &[], &mut imgs, &mut labs);
        assert!(imgs.is_empty() && labs.is_empty());
        // Appending packs batches one after the other: the same as one
        // gather of all their samples.
        append_batch(&ds, &[2, 0], &mut imgs, &mut labs);
        append_batch(&ds, &[2], &mut imgs, &mut labs);
        let (mut all, mut all_labs) = (Vec::new(), Vec::new());
        gather_batch(&ds, &[2, 0, 2], &mut all, &mut all_labs);
        assert_eq!((imgs, labs), (all, all_labs));
    }

    /// A 3-channel set whose byte at (image, ch, y, x) encodes all four.
    fn coded(n: usize, h: usize, w: usize) -> Dataset {
        let mut pixels = Vec::new();
        for i in 0..n {
            for ch in 0..3 {
                for p in 0..h * w {
                    pixels.push((1 + i * 97 + ch * 41 + p) as u8);
                }
            }
        }
        Dataset {
            pixels,
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            shape: Shape { c: 3, h, w },
            classes: 10,
            // Identity on bytes: value = byte.
            norm: Norm { mean: vec![0.0; 3], std: vec![1.0 / 255.0; 3] },
            name: "coded".into(),
        }
    }

    /// Byte batches through the loader's tables are the float batches bit
    /// for bit: plain and augmented, colour and grey (one table for every
    /// channel), appended after another.
    #[test]
    fn byte_batches_decode_to_the_float_batches() {
        let mut grey = coded(5, 4, 6);
        grey.shape.c = 1;
        grey.norm = Norm::gray(0.1307, 0.3081);
        let mut colour = coded(5, 4, 6);
        colour.norm = Norm::rgb([0.49, 0.48, 0.45], [0.25, 0.24, 0.26]);
        let idx = [3u32, 0, 4, 4, 1];
        let aug = Augment { crop_pad: 2, flip: true };
        for ds in [&grey, &colour] {
            let tables = ds.norm.tables();
            for augmented in [false, true] {
                let (mut x, mut y) = (vec![1.5f32], vec![9]);
                let (mut b, mut yb) = (vec![7u8], vec![9]);
                if augmented {
                    append_augmented(ds, &idx, aug, 11, &mut x, &mut y);
                    append_augmented_bytes(ds, &idx, aug, 11, &mut b, &mut yb);
                } else {
                    append_batch(ds, &idx, &mut x, &mut y);
                    append_batch_bytes(ds, &idx, &mut b, &mut yb);
                }
                assert_eq!(y, yb);
                assert_eq!(x.len(), b.len());
                let c = ds.shape.c;
                let decoded: Vec<f32> = b[1..]
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| tables[(i % c).min(tables.len() - 1)][usize::from(v)])
                    .collect();
                let same = decoded.iter().zip(&x[1..]).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{} augmented {augmented}", ds.name);
            }
        }
    }

    #[test]
    fn batches_are_nhwc() {
        let ds = coded(2, 3, 5);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        gather_batch(&ds, &[1, 0], &mut x, &mut y);
        assert_eq!(y, [1, 0]);
        assert_eq!(x.len(), 2 * 15 * 3);
        for (j, &i) in [1usize, 0].iter().enumerate() {
            for p in 0..15 {
                for ch in 0..3 {
                    let want = ds.image(i)[ch * 15 + p] as f32;
                    assert_eq!(x[(j * 15 + p) * 3 + ch].round(), want, "image {i} pixel {p} channel {ch}");
                }
            }
        }
    }

    /// Every augmented pixel is the padded image's pixel at the drawn
    /// offset (mirrored when flipped); draws are deterministic in the seed,
    /// cover every offset and flip about half the images.
    #[test]
    fn augmentation_crops_and_flips_from_the_seed() {
        let (h, w, pad) = (4, 6, 2);
        let n = 400;
        let ds = coded(n, h, w);
        let idx: Vec<u32> = (0..n as u32).collect();
        let aug = Augment { crop_pad: pad, flip: true };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        append_augmented(&ds, &idx, aug, 7, &mut x, &mut y);
        let (mut x2, mut y2) = (Vec::new(), Vec::new());
        append_augmented(&ds, &idx, aug, 7, &mut x2, &mut y2);
        assert_eq!(x, x2, "same seed, same batch");
        x2.clear();
        y2.clear();
        append_augmented(&ds, &idx, aug, 8, &mut x2, &mut y2);
        assert_ne!(x, x2, "another seed, other crops");
        // Appended after another batch: the same images, after it.
        let (mut x3, mut y3) = (x2.clone(), y2.clone());
        append_augmented(&ds, &idx, aug, 7, &mut x3, &mut y3);
        assert_eq!((&x3[x2.len()..], &y3[y2.len()..]), (&x[..], &y[..]), "appended batch");
        let mut seen = std::collections::HashSet::new();
        let mut flips = 0;
        for i in 0..n {
            let out = &x[i * h * w * 3..(i + 1) * h * w * 3];
            let src = |y: isize, x: isize, ch: usize| -> f32 {
                if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                    0.0
                } else {
                    ds.image(i)[ch * h * w + y as usize * w + x as usize] as f32
                }
            };
            // The one (dy, dx, flip) that explains every pixel.
            let mut found = Vec::new();
            for dy in -(pad as isize)..=pad as isize {
                for dx in -(pad as isize)..=pad as isize {
                    for flip in [false, true] {
                        let ok = (0..h as isize).all(|yy| {
                            (0..w as isize).all(|xx| {
                                let sx = if flip { w as isize - 1 - xx } else { xx } + dx;
                                (0..3).all(|ch| {
                                    out[((yy as usize) * w + xx as usize) * 3 + ch].round() == src(yy + dy, sx, ch)
                                })
                            })
                        });
                        if ok {
                            found.push((dy, dx, flip));
                        }
                    }
                }
            }
            assert_eq!(found.len(), 1, "image {i}: crops explaining it: {found:?}");
            let (dy, dx, flip) = found[0];
            seen.insert((dy, dx));
            flips += usize::from(flip);
        }
        assert_eq!(seen.len(), (2 * pad + 1) * (2 * pad + 1), "every offset is drawn");
        assert!((150..250).contains(&flips), "{flips} of {n} flipped");
        // No augmentation: the plain batch.
        x2.clear();
        y2.clear();
        append_augmented(&ds, &idx, Augment::NONE, 7, &mut x2, &mut y2);
        gather_batch(&ds, &idx, &mut x, &mut y);
        assert_eq!(x, x2);
    }
}
