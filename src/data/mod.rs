//! Host-side datasets for training: image sets held as bytes (about their
//! payload in host memory) and normalised when a batch is built, with
//! deterministic shuffling, batching and augmentation. The readers live
//! beside this: `idx` (MNIST-format files), `cifar` (CIFAR-10/100 binary
//! files), `synthetic` (the built-in procedural digits) and `shapes` (the
//! built-in procedural 32×32 colour set).
//!
//! Layout: sets keep their files' channel planes (CHW bytes); batches are
//! NHWC floats, the engine's activation layout (see `nn::conv` for why).
//!
//! Determinism: the procedural sets, the epoch permutations and the
//! augmentations depend only on their seeds (and on `rand` 0.9's `StdRng`,
//! whose stream may change across `rand` major versions), so
//! [`Dataset::fingerprint`] is stable between runs of the same build on the
//! same platform.

mod batch;
pub mod cifar;
pub mod idx;
pub mod shapes;
pub mod synthetic;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

pub use batch::{Augment, append_augmented, append_augmented_bytes, append_batch, append_batch_bytes, gather_batch};
pub use cifar::load_cifar_dir;
pub use idx::{DataError, load_mnist_dir};
pub use shapes::synthetic_shapes;
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
/// Per-channel (R, G, B) mean of CIFAR-10 training pixels scaled to [0, 1].
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// Per-channel standard deviation of CIFAR-10 training pixels.
pub const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];
/// Per-channel mean of CIFAR-100 training pixels scaled to [0, 1].
pub const CIFAR100_MEAN: [f32; 3] = [0.5071, 0.4865, 0.4409];
/// Per-channel standard deviation of CIFAR-100 training pixels.
pub const CIFAR100_STD: [f32; 3] = [0.2673, 0.2564, 0.2762];

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

    pub fn rgb(mean: [f32; 3], std: [f32; 3]) -> Norm {
        Norm { mean: mean.to_vec(), std: std.to_vec() }
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
    /// `len() * shape.len()` bytes, sample-major, channel planes (CHW) as
    /// the files store them; batches are built NHWC.
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
    /// The built-in procedural digits (28×28 grey).
    Synthetic,
    /// The built-in procedural coloured shapes (32×32 colour).
    Shapes,
    Mnist,
    FashionMnist,
    Cifar10,
    Cifar100,
}

impl DatasetKind {
    pub const ALL: [DatasetKind; 6] = [
        DatasetKind::Synthetic,
        DatasetKind::Shapes,
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::Cifar10,
        DatasetKind::Cifar100,
    ];

    /// Per-channel normalisation of pixels scaled to [0, 1]. The synthetic
    /// digits borrow MNIST's constants so that models and learning rates
    /// transfer between them; the shapes set is normalised around grey.
    pub fn norm(&self) -> Norm {
        match self {
            DatasetKind::Synthetic | DatasetKind::Mnist => Norm::gray(MNIST_MEAN, MNIST_STD),
            DatasetKind::FashionMnist => Norm::gray(FASHION_MNIST_MEAN, FASHION_MNIST_STD),
            DatasetKind::Shapes => Norm::rgb([0.5; 3], [0.25; 3]),
            DatasetKind::Cifar10 => Norm::rgb(CIFAR10_MEAN, CIFAR10_STD),
            DatasetKind::Cifar100 => Norm::rgb(CIFAR100_MEAN, CIFAR100_STD),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            DatasetKind::Synthetic => "synthetic",
            DatasetKind::Shapes => "shapes",
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
        }
    }

    /// The kind a `name()` names.
    pub fn parse(name: &str) -> Option<DatasetKind> {
        DatasetKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// One sample's shape.
    pub fn shape(&self) -> Shape {
        match self {
            DatasetKind::Synthetic | DatasetKind::Mnist | DatasetKind::FashionMnist => Shape { c: 1, h: 28, w: 28 },
            DatasetKind::Shapes | DatasetKind::Cifar10 | DatasetKind::Cifar100 => Shape { c: 3, h: 32, w: 32 },
        }
    }

    pub fn classes(&self) -> usize {
        match self {
            DatasetKind::Cifar100 => 100,
            _ => NUM_CLASSES,
        }
    }

    /// Generated rather than read from files.
    pub fn is_builtin(&self) -> bool {
        matches!(self, DatasetKind::Synthetic | DatasetKind::Shapes)
    }

    /// The augmentation its usual recipe trains with: crops and flips for
    /// natural (and shape) images, none for digits, where a flip changes
    /// the class.
    pub fn default_augment(&self) -> Augment {
        match self {
            DatasetKind::Shapes | DatasetKind::Cifar10 | DatasetKind::Cifar100 => Augment::CROP_FLIP,
            _ => Augment::NONE,
        }
    }
}

/// A procedural set of `n` images of `kind` (its shape, classes and
/// normalisation), image i drawn by `render(rng, class, canvas)` into
/// values in [0, 1] (CHW) with a generator of its own: image i does not
/// depend on n, so a smaller set is a prefix of a larger one. Pixels are
/// kept as bytes, like the files'.
pub(crate) fn generated_set(
    n: usize,
    stream_seed: u64,
    kind: DatasetKind,
    name: &str,
    mut render: impl FnMut(&mut StdRng, usize, &mut [f32]),
) -> Dataset {
    let shape = kind.shape();
    let mut pixels = Vec::with_capacity(n.min(MAX_GENERATED) * shape.len());
    let mut labels = Vec::with_capacity(n.min(MAX_GENERATED));
    let mut canvas = vec![0.0f32; shape.len()];
    for i in 0..n {
        let mut rng = StdRng::seed_from_u64(derive_seed(stream_seed, i as u64));
        let class = rng.random_range(0..kind.classes());
        render(&mut rng, class, &mut canvas);
        pixels.extend(canvas.iter().map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8));
        labels.push(class as u8);
    }
    Dataset { pixels, labels, shape, classes: kind.classes(), norm: kind.norm(), name: name.to_string() }
}

/// Images reserved up front when generating (more are added as they come).
const MAX_GENERATED: usize = 1 << 16;

pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Independent sub-seed for `stream` under `seed`; hashing (rather than adding)
/// keeps e.g. (seed 1, epoch 0) and (seed 0, epoch 1) unrelated.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
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
