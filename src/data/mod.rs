//! Host-side datasets for training: image sets held as bytes (about their
//! payload in host memory) and normalised when a batch is built, with
//! deterministic shuffling and batching. The readers live beside this:
//! `idx` (MNIST-format files), `synthetic` (the built-in procedural digits).
//!
//! Determinism: the synthetic set and the epoch permutations depend only on
//! their seeds (and on `rand` 0.9's `StdRng`, whose stream may change across
//! `rand` major versions), so [`Dataset::fingerprint`] is stable between runs
//! of the same build on the same platform.

pub mod idx;
pub mod synthetic;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

pub use idx::{DataError, load_mnist_dir};
pub use synthetic::synthetic_digits;

use crate::nn::Shape;

/// Mean of MNIST training pixels scaled to [0, 1].
pub const MNIST_MEAN: f32 = 0.1307;
/// Standard deviation of MNIST training pixels scaled to [0, 1].
pub const MNIST_STD: f32 = 0.3081;
/// Mean of Fashion-MNIST training pixels scaled to [0, 1].
pub const FASHION_MNIST_MEAN: f32 = 0.2860;
/// Standard deviation of Fashion-MNIST training pixels scaled to [0, 1].
pub const FASHION_MNIST_STD: f32 = 0.3530;

/// Number of classes in the digit and fashion sets.
pub const NUM_CLASSES: usize = 10;

/// Per-channel input normalisation: a pixel byte x of channel c becomes
/// (x / 255 − mean[c]) / std[c].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Norm {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Norm {
    pub fn gray(mean: f32, std: f32) -> Norm {
        Norm { mean: vec![mean], std: vec![std] }
    }

    /// The normalised value of every byte, per channel: every loader gives
    /// bit-identical inputs at table-lookup cost.
    pub fn tables(&self) -> Vec<[f32; 256]> {
        self.mean.iter().zip(&self.std).map(|(&m, &s)| std::array::from_fn(|x| (x as f32 / 255.0 - m) / s)).collect()
    }
}

/// A labelled image classification set held in host memory as bytes.
#[derive(Clone)]
pub struct Dataset {
    /// `len() * shape.len()` bytes, sample-major, channels first (CHW).
    pub pixels: Vec<u8>,
    /// One label per image, each `< classes`.
    pub labels: Vec<u8>,
    /// One sample's shape (channels × height × width).
    pub shape: Shape,
    pub classes: usize,
    /// How bytes become inputs; one entry per channel.
    pub norm: Norm,
    pub name: String,
}

impl std::fmt::Debug for Dataset {
    // The derived impl would print millions of pixels.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("name", &self.name)
            .field("len", &self.len())
            .field("shape", &self.shape)
            .field("classes", &self.classes)
            .finish_non_exhaustive()
    }
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per sample.
    pub fn dim(&self) -> usize {
        self.shape.len()
    }

    /// The bytes of image `i`. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * self.dim()..(i + 1) * self.dim()]
    }

    /// Image `i` normalised as the model sees it.
    pub fn normalised(&self, i: usize) -> Vec<f32> {
        let mut out = Vec::new();
        let mut labels = Vec::new();
        gather_batch(self, &[i as u32], &mut out, &mut labels);
        out
    }

    /// Identifies the data a checkpoint was trained on: FNV-1a-64 over the
    /// shape, count, labels, normalisation and pixel bytes (8 at a time).
    /// The name is excluded so renaming a set does not orphan its checkpoints.
    pub fn fingerprint(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(PRIME);
        let mut h = OFFSET;
        let s = self.shape;
        for w in [s.c as u64, s.h as u64, s.w as u64, self.classes as u64, self.len() as u64] {
            h = mix(h, w);
        }
        for v in self.norm.mean.iter().chain(&self.norm.std) {
            h = mix(h, u64::from(v.to_bits()));
        }
        h = self.labels.iter().fold(h, |h, &l| mix(h, u64::from(l)));
        let chunks = self.pixels.chunks_exact(8);
        let tail = chunks.remainder();
        h = chunks.fold(h, |h, c| mix(h, u64::from_le_bytes(c.try_into().expect("8 bytes"))));
        tail.iter().fold(h, |h, &b| mix(h, u64::from(b)))
    }
}

/// A train/test pair with identical shapes and classes.
#[derive(Clone, Debug)]
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
}

/// Which data a run uses; decides the normalisation constants and set names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    Synthetic,
    Mnist,
    FashionMnist,
}

impl DatasetKind {
    /// `(mean, std)` of pixels scaled to [0, 1]. The synthetic set borrows
    /// MNIST's constants so that models and learning rates transfer between them.
    pub fn norm(&self) -> (f32, f32) {
        match self {
            DatasetKind::Synthetic | DatasetKind::Mnist => (MNIST_MEAN, MNIST_STD),
            DatasetKind::FashionMnist => (FASHION_MNIST_MEAN, FASHION_MNIST_STD),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            DatasetKind::Synthetic => "synthetic",
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
        }
    }

    /// The kind a `name()` names.
    pub fn parse(name: &str) -> Option<DatasetKind> {
        [DatasetKind::Synthetic, DatasetKind::Mnist, DatasetKind::FashionMnist].into_iter().find(|k| k.name() == name)
    }

    /// One sample's shape (all three are 28×28 grey images).
    pub fn shape(&self) -> Shape {
        Shape { c: 1, h: 28, w: 28 }
    }
}

pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Independent sub-seed for `stream` under `seed`; hashing (rather than adding)
/// keeps e.g. (seed 1, epoch 0) and (seed 0, epoch 1) unrelated.
pub(crate) fn derive_seed(seed: u64, stream: u64) -> u64 {
    splitmix64(seed ^ splitmix64(stream))
}

const STREAM_SHUFFLE: u64 = 0x7368_7566_666c_0003;

/// Sample order for epoch `epoch`: a Fisher-Yates shuffle of `0..n`,
/// deterministic in `(seed, epoch)` so an interrupted run can resume mid-epoch.
/// Panics if `n > u32::MAX` (loaders refuse such sets).
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let n = u32::try_from(n).expect("epoch_permutation: dataset larger than u32::MAX samples");
    let mut order: Vec<u32> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(derive_seed(derive_seed(seed, STREAM_SHUFFLE), epoch));
    order.shuffle(&mut rng);
    order
}

/// Normalises the samples `idx` of `ds` into contiguous buffers (`images`:
/// `idx.len() * dim` f32, `labels`: `idx.len()`), reusing their capacity.
/// Panics if an index is out of range.
pub fn gather_batch(ds: &Dataset, idx: &[u32], images: &mut Vec<f32>, labels: &mut Vec<u32>) {
    let tables = ds.norm.tables();
    let plane = ds.shape.plane();
    images.clear();
    labels.clear();
    images.reserve(idx.len() * ds.dim());
    labels.reserve(idx.len());
    for &i in idx {
        let i = i as usize;
        for (c, channel) in ds.image(i).chunks(plane).enumerate() {
            let table = &tables[c.min(tables.len() - 1)];
            images.extend(channel.iter().map(|&b| table[usize::from(b)]));
        }
        labels.push(u32::from(ds.labels[i]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_permutation_is_a_deterministic_permutation() {
        let n = 1000;
        let p0 = epoch_permutation(n, 42, 0);
        let p1 = epoch_permutation(n, 42, 1);
        assert_eq!(p0, epoch_permutation(n, 42, 0));
        assert_ne!(p0, p1);
        assert_ne!(p0, epoch_permutation(n, 43, 0));
        for p in [&p0, &p1] {
            let mut sorted = p.clone();
            sorted.sort_unstable();
            assert!(sorted.iter().copied().eq(0..n as u32));
        }
        assert_ne!(p0, (0..n as u32).collect::<Vec<_>>());
        assert!(epoch_permutation(0, 1, 1).is_empty());
    }

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
        assert!(imgs.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5), "{imgs:?}");
        assert_eq!(labs, [2, 0, 2]);
        gather_batch(&ds, &[], &mut imgs, &mut labs);
        assert!(imgs.is_empty() && labs.is_empty());
    }

    #[test]
    fn fingerprint_tracks_labels_pixels_shape_and_norm() {
        let ds = synthetic_digits(20, 0, 1).train;
        let base = ds.fingerprint();
        let mut renamed = ds.clone();
        renamed.name = "other".into();
        assert_eq!(renamed.fingerprint(), base);
        let mut relabelled = ds.clone();
        relabelled.labels[3] = (relabelled.labels[3] + 1) % 10;
        assert_ne!(relabelled.fingerprint(), base);
        let mut nudged = ds.clone();
        nudged.pixels[100] ^= 1;
        assert_ne!(nudged.fingerprint(), base);
        let mut tail = ds.clone();
        let last = tail.pixels.len() - 1;
        tail.pixels[last] ^= 1;
        assert_ne!(tail.fingerprint(), base);
        let mut reshaped = ds.clone();
        reshaped.shape = Shape { c: 1, h: 14, w: 56 };
        assert_ne!(reshaped.fingerprint(), base);
        let mut renormed = ds.clone();
        renormed.norm.mean[0] = 0.5;
        assert_ne!(renormed.fingerprint(), base);
    }
}
