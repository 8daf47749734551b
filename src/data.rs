//! Host-side datasets for training: MNIST-format loading, a procedural digits
//! set, and deterministic shuffling/batching.
//!
//! Everything here runs on the CPU before data is uploaded to the GPU. IDX files
//! (raw or gzip) are treated as untrusted input: every header value is checked
//! against the bytes actually present before it sizes an allocation, so a corrupt
//! download, a lying header or a gzip bomb produces a [`DataError`] that says what
//! to do, never a panic or an out-of-memory abort.
//!
//! Determinism: the synthetic set and the epoch permutations depend only on their
//! seeds (and on `rand` 0.9's `StdRng`, whose stream may change across `rand`
//! major versions), so [`Dataset::fingerprint`] is stable between runs of the
//! same build on the same platform.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Mean of MNIST training pixels scaled to [0, 1].
pub const MNIST_MEAN: f32 = 0.1307;
/// Standard deviation of MNIST training pixels scaled to [0, 1].
pub const MNIST_STD: f32 = 0.3081;
/// Mean of Fashion-MNIST training pixels scaled to [0, 1].
pub const FASHION_MNIST_MEAN: f32 = 0.2860;
/// Standard deviation of Fashion-MNIST training pixels scaled to [0, 1].
pub const FASHION_MNIST_STD: f32 = 0.3530;

/// IDX magic for unsigned-byte data with three dimensions (count, rows, cols).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic for unsigned-byte data with one dimension (count).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Upper bound on the pixel/label payload of one IDX file. MNIST's largest file
/// is 47 MB; the cap only exists so that a corrupt header cannot make us try to
/// read (or let a gzip bomb inflate) tens of gigabytes.
pub const MAX_IDX_PAYLOAD_BYTES: u64 = 4 << 30;

/// Number of classes in every dataset this module produces.
pub const NUM_CLASSES: usize = 10;

/// Side length of the synthetic images (matches MNIST).
pub const SYNTH_SIDE: usize = 28;
const SYNTH_DIM: usize = SYNTH_SIDE * SYNTH_SIDE;

const MNIST_STEMS: [(&str, &str); 2] =
    [("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")];

/// Everything that can go wrong while loading a dataset from disk.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {source}; check that the path exists and is readable", .path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error(
        "{} looks gzip-compressed but does not decompress ({source}); the file is corrupt, delete it and download it again",
        .path.display()
    )]
    Gzip { path: PathBuf, source: io::Error },

    #[error("{} is not a regular file (is it a directory?); pass the path of an IDX file", .path.display())]
    NotAFile { path: PathBuf },

    #[error(
        "dataset directory {} does not exist; create it and put the four IDX files there \
         (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally .gz)",
        .path.display()
    )]
    MissingDir { path: PathBuf },

    #[error("{} is not a directory; pass the directory that holds the IDX files", .path.display())]
    NotADir { path: PathBuf },

    #[error(
        "{} has neither {name}.gz nor {name}; download that file into this directory (keep the published file name)",
        .dir.display()
    )]
    MissingFile { dir: PathBuf, name: String },

    #[error("{} is empty; the download probably failed, delete it and download it again", .path.display())]
    Empty { path: PathBuf },

    #[error(
        "{} has IDX magic {found:#010x} but {expected:#010x} ({}) was expected; {}",
        .path.display(), magic_name(*.expected), magic_hint(*.expected, *.found)
    )]
    BadMagic { path: PathBuf, expected: u32, found: u32 },

    #[error(
        "{} is truncated: its header requires {expected_bytes} bytes (uncompressed) but only {found_bytes} are present; \
         the download was probably cut short, delete it and download it again",
        .path.display()
    )]
    Truncated { path: PathBuf, expected_bytes: u64, found_bytes: u64 },

    #[error(
        "{} holds more data than the {expected_bytes} bytes (uncompressed) its header describes; \
         the header is wrong or files were concatenated, delete it and download it again",
        .path.display()
    )]
    TrailingBytes { path: PathBuf, expected_bytes: u64 },

    #[error(
        "{} has header dimensions {dims:?}, which describe more than the {limit}-byte limit; \
         the header is corrupt or this is not an IDX file, delete it and download it again",
        .path.display()
    )]
    TooLarge { path: PathBuf, dims: Vec<u32>, limit: u64 },

    #[error("{}: unusable image dimensions: {reason}", .path.display())]
    BadDims { path: PathBuf, reason: String },

    #[error(
        "{} holds {images} images but {} holds {labels} labels; the two files must come from the same set, re-download them",
        .images_path.display(), .labels_path.display()
    )]
    CountMismatch { images_path: PathBuf, images: usize, labels_path: PathBuf, labels: usize },

    #[error(
        "{}: label {label} at index {index} is not below the class count {classes}; \
         this is not a {classes}-class label file or it is corrupt",
        .path.display()
    )]
    LabelOutOfRange { path: PathBuf, index: usize, label: u8, classes: usize },
}

fn magic_name(magic: u32) -> &'static str {
    match magic {
        IDX_IMAGES_MAGIC => "ubyte images: count x rows x cols",
        IDX_LABELS_MAGIC => "ubyte labels: count",
        _ => "unknown IDX layout",
    }
}

fn magic_hint(expected: u32, found: u32) -> &'static str {
    match (expected, found) {
        (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC) | (IDX_LABELS_MAGIC, IDX_IMAGES_MAGIC) => {
            "the images and labels files appear to be swapped"
        }
        (_, 0x0308_0000) | (_, 0x0108_0000) => {
            "the header is little-endian; IDX files are big-endian, re-download the original file"
        }
        _ => "this is not an MNIST-format IDX file (or it is corrupt), download it again",
    }
}

/// A labelled image classification set held in host memory, pixels normalised.
#[derive(Clone)]
pub struct Dataset {
    /// `len() * dim` values, row-major, normalised as `(x / 255 - mean) / std`.
    pub images: Vec<f32>,
    /// One label per image, each `< classes`.
    pub labels: Vec<u32>,
    /// Values per image (784 for 28x28).
    pub dim: usize,
    pub classes: usize,
    pub name: String,
}

impl std::fmt::Debug for Dataset {
    // The derived impl would print millions of pixels.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("name", &self.name)
            .field("len", &self.len())
            .field("dim", &self.dim)
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

    /// The normalised pixels of image `i`. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * self.dim..(i + 1) * self.dim]
    }

    /// Identifies the data a checkpoint was trained on. FNV-1a-64 applied to
    /// 32-bit words (dims, count, labels, pixel bit patterns) rather than bytes:
    /// four times fewer multiplies, which matters for 47M pixels, and collision
    /// resistance against accidental changes is all that is needed. The name is
    /// deliberately excluded so renaming a set does not orphan its checkpoints.
    pub fn fingerprint(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(PRIME);
        let mut h = OFFSET;
        for w in [self.dim as u64, self.classes as u64, self.len() as u64] {
            h = mix(h, w);
        }
        h = self.labels.iter().fold(h, |h, &l| mix(h, u64::from(l)));
        self.images.iter().fold(h, |h, &p| mix(h, u64::from(p.to_bits())))
    }
}

/// A train/test pair with identical `dim` and `classes`.
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
}

/// Reads an IDX image file (magic `0x00000803`), gzip-compressed (detected by
/// the `1f 8b` magic) or raw. Returns `(count, rows, cols, pixels)` with
/// `pixels.len() == count * rows * cols`.
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let (dims, pixels) = read_idx(path, IDX_IMAGES_MAGIC)?;
    let [count, rows, cols] = [dims[0], dims[1], dims[2]].map(|d| d as usize);
    if rows == 0 || cols == 0 {
        return Err(DataError::BadDims {
            path: path.to_path_buf(),
            reason: format!("header says images are {rows}x{cols}; both sides must be non-zero"),
        });
    }
    Ok((count, rows, cols, pixels))
}

/// Reads an IDX label file (magic `0x00000801`), gzip-compressed or raw.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    read_idx(path, IDX_LABELS_MAGIC).map(|(_, labels)| labels)
}

/// Reads until `buf` is full or EOF, returning how much was read, so that a short
/// header can be reported as truncation with exact byte counts.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads an unsigned-byte IDX file whose magic must equal `magic`; returns the
/// header dimensions and the payload, whose length equals their product.
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<u32>, Vec<u8>), DataError> {
    let p = || path.to_path_buf();
    let io_err = |source| DataError::Io { path: p(), source };

    let meta = fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(DataError::NotAFile { path: p() });
    }
    let file_len = meta.len();
    if file_len == 0 {
        return Err(DataError::Empty { path: p() });
    }

    let mut file = File::open(path).map_err(io_err)?;
    let mut sniff = [0u8; 2];
    let sniffed = read_full(&mut file, &mut sniff).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    let gzip = sniffed == 2 && sniff == [0x1f, 0x8b];
    // Multi-member so that `cat a.gz b.gz`-style files (legal gzip) decode fully.
    let mut reader: Box<dyn Read> =
        if gzip { Box::new(MultiGzDecoder::new(BufReader::new(file))) } else { Box::new(BufReader::new(file)) };
    let read_err = |source| {
        if gzip { DataError::Gzip { path: p(), source } } else { DataError::Io { path: p(), source } }
    };

    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let mut header_buf = [0u8; 4 + 4 * 255];
    let header = &mut header_buf[..header_len];
    let got = read_full(&mut reader, header).map_err(read_err)?;
    if got == 0 {
        // Only reachable for a gzip stream that decompresses to nothing.
        return Err(DataError::Empty { path: p() });
    }
    if got >= 4 {
        let found = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if found != magic {
            return Err(DataError::BadMagic { path: p(), expected: magic, found });
        }
    }
    if got < header_len {
        return Err(DataError::Truncated { path: p(), expected_bytes: header_len as u64, found_bytes: got as u64 });
    }

    let dims: Vec<u32> = header[4..].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
    let too_large = || DataError::TooLarge { path: p(), dims: dims.clone(), limit: MAX_IDX_PAYLOAD_BYTES };
    let payload = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .filter(|&n| n <= MAX_IDX_PAYLOAD_BYTES)
        .ok_or_else(too_large)?;
    let payload_usize = usize::try_from(payload).map_err(|_| too_large())?;
    let expected_total = header_len as u64 + payload;

    let initial_capacity = if gzip {
        // The decompressed size is unknown until read; bounding the guess by the
        // compressed size keeps a lying header from reserving memory up front
        // (MNIST compresses ~5x, so real files still get one allocation).
        payload.min(file_len.saturating_mul(8))
    } else {
        // A raw file's size is known, so a header/size disagreement is reported
        // before anything is read or reserved.
        if file_len < expected_total {
            return Err(DataError::Truncated { path: p(), expected_bytes: expected_total, found_bytes: file_len });
        }
        if file_len > expected_total {
            return Err(DataError::TrailingBytes { path: p(), expected_bytes: expected_total });
        }
        payload
    };
    let mut data = Vec::with_capacity(initial_capacity as usize);
    // One byte past the payload is enough to detect trailing data without letting
    // a gzip bomb inflate beyond what the (already capped) header allows.
    reader.take(payload + 1).read_to_end(&mut data).map_err(read_err)?;
    match data.len().cmp(&payload_usize) {
        std::cmp::Ordering::Less => Err(DataError::Truncated {
            path: p(),
            expected_bytes: expected_total,
            found_bytes: header_len as u64 + data.len() as u64,
        }),
        std::cmp::Ordering::Greater => Err(DataError::TrailingBytes { path: p(), expected_bytes: expected_total }),
        std::cmp::Ordering::Equal => Ok((dims, data)),
    }
}

/// Maps every possible byte to its normalised value so that all loaders produce
/// bit-identical pixels (fingerprints depend on it) at table-lookup cost.
fn norm_table(mean: f32, std: f32) -> [f32; 256] {
    std::array::from_fn(|x| (x as f32 / 255.0 - mean) / std)
}

/// Picks `dir/stem.gz` if present, else `dir/stem`.
fn find_idx_file(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.exists() {
        return Ok(gz);
    }
    let raw = dir.join(stem);
    if raw.exists() {
        return Ok(raw);
    }
    Err(DataError::MissingFile { dir: dir.to_path_buf(), name: stem.to_string() })
}

fn load_idx_pair(
    dir: &Path,
    (image_stem, label_stem): (&str, &str),
    table: &[f32; 256],
    name: String,
) -> Result<(Dataset, PathBuf, usize, usize), DataError> {
    let images_path = find_idx_file(dir, image_stem)?;
    let labels_path = find_idx_file(dir, label_stem)?;
    let (count, rows, cols, pixels) = read_idx_images(&images_path)?;
    let raw_labels = read_idx_labels(&labels_path)?;
    if raw_labels.len() != count {
        return Err(DataError::CountMismatch { images_path, images: count, labels_path, labels: raw_labels.len() });
    }
    if let Some((index, &label)) = raw_labels.iter().enumerate().find(|&(_, &l)| usize::from(l) >= NUM_CLASSES) {
        return Err(DataError::LabelOutOfRange { path: labels_path, index, label, classes: NUM_CLASSES });
    }
    let dataset = Dataset {
        images: pixels.iter().map(|&x| table[usize::from(x)]).collect(),
        labels: raw_labels.iter().map(|&l| u32::from(l)).collect(),
        dim: rows * cols,
        classes: NUM_CLASSES,
        name,
    };
    Ok((dataset, images_path, rows, cols))
}

/// Loads `dir/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]` (the `.gz` name
/// wins when both exist), checks that image and label counts match, that labels
/// are below 10 and that train and test images have the same size, and
/// normalises pixels with `kind.norm()`.
pub fn load_mnist_dir(dir: &Path, kind: DatasetKind) -> Result<Split, DataError> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DataError::MissingDir { path: dir.to_path_buf() });
        }
        Err(source) => {
            return Err(DataError::Io { path: dir.to_path_buf(), source });
        }
        Ok(m) if !m.is_dir() => {
            return Err(DataError::NotADir { path: dir.to_path_buf() });
        }
        Ok(_) => {}
    }
    let (mean, std) = kind.norm();
    let table = norm_table(mean, std);
    let (train, _, train_rows, train_cols) =
        load_idx_pair(dir, MNIST_STEMS[0], &table, format!("{}-train", kind.name()))?;
    let (test, test_path, test_rows, test_cols) =
        load_idx_pair(dir, MNIST_STEMS[1], &table, format!("{}-test", kind.name()))?;
    if (train_rows, train_cols) != (test_rows, test_cols) {
        return Err(DataError::BadDims {
            path: test_path,
            reason: format!(
                "test images are {test_rows}x{test_cols} but train images are {train_rows}x{train_cols}; \
                 both files must come from the same dataset"
            ),
        });
    }
    Ok(Split { train, test })
}

// ---------------------------------------------------------------------------
// Synthetic digits
// ---------------------------------------------------------------------------

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
const STREAM_SHUFFLE: u64 = 0x7368_7566_666c_0003;

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Independent sub-seed for `stream` under `seed`; hashing (rather than adding)
/// keeps e.g. (seed 1, epoch 0) and (seed 0, epoch 1) unrelated.
fn derive_seed(seed: u64, stream: u64) -> u64 {
    splitmix64(seed ^ splitmix64(stream))
}

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
    let (mean, std) = DatasetKind::Synthetic.norm();
    let table = norm_table(mean, std);
    let mut images = Vec::with_capacity(n * SYNTH_DIM);
    let mut labels = Vec::with_capacity(n);
    let mut canvas = [0.0f32; SYNTH_DIM];
    for i in 0..n {
        // A generator per image makes image i independent of n, so a smaller
        // set is a prefix of a larger one with the same seed.
        let mut rng = StdRng::seed_from_u64(derive_seed(stream_seed, i as u64));
        let digit = rng.random_range(0..NUM_CLASSES);
        render_digit(&mut rng, digit, &mut canvas);
        // Quantising to bytes makes synthetic pixels statistically like IDX pixels.
        images.extend(canvas.iter().map(|&v| table[(v * 255.0).round().clamp(0.0, 255.0) as usize]));
        labels.push(digit as u32);
    }
    Dataset { images, labels, dim: SYNTH_DIM, classes: NUM_CLASSES, name: name.to_string() }
}

/// Built-in procedural dataset: 28x28 images of the digits 0-9 drawn from a 5x7
/// bitmap font with random affine transform (shift ±3 px, scale 0.8-1.25,
/// rotation, shear), per-cell wobble, 1-3 px strokes, random intensity, clutter
/// (stray strokes and blobs) and additive noise. Normalised with MNIST's
/// constants. Deterministic in `seed`; train and test come from different
/// streams, and image `i` does not depend on the requested set size. Takes
/// about 1.2 s for 60k + 10k images in a release build; holds `4 * 784` bytes
/// per image.
pub fn synthetic_digits(n_train: usize, n_test: usize, seed: u64) -> Split {
    Split {
        train: synthetic_set(n_train, derive_seed(seed, STREAM_TRAIN), "synthetic-train"),
        test: synthetic_set(n_test, derive_seed(seed, STREAM_TEST), "synthetic-test"),
    }
}

/// Sample order for epoch `epoch`: a Fisher-Yates shuffle of `0..n`,
/// deterministic in `(seed, epoch)` so an interrupted run can resume mid-epoch.
/// Panics if `n > u32::MAX` (far beyond any dataset that fits in memory).
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let n = u32::try_from(n).expect("epoch_permutation: dataset larger than u32::MAX samples");
    let mut order: Vec<u32> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(derive_seed(derive_seed(seed, STREAM_SHUFFLE), epoch));
    order.shuffle(&mut rng);
    order
}

/// Copies the samples `idx` of `ds` into contiguous buffers (`images`:
/// `idx.len() * dim`, `labels`: `idx.len()`), reusing their capacity.
/// Panics if an index is out of range.
pub fn gather_batch(ds: &Dataset, idx: &[u32], images: &mut Vec<f32>, labels: &mut Vec<u32>) {
    images.clear();
    labels.clear();
    images.reserve(idx.len() * ds.dim);
    labels.reserve(idx.len());
    for &i in idx {
        let i = i as usize;
        images.extend_from_slice(ds.image(i));
        labels.push(ds.labels[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// A per-test scratch directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "sparsetrain-data-test-{}-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                tag
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut b = IDX_IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [count, rows, cols] {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(pixels);
        b
    }

    fn idx_labels(count: u32, labels: &[u8]) -> Vec<u8> {
        let mut b = IDX_LABELS_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(labels);
        b
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn write(path: &Path, bytes: &[u8]) -> PathBuf {
        fs::write(path, bytes).unwrap();
        path.to_path_buf()
    }

    /// Writes a complete, valid four-file set into `dir` (train: `n_train`
    /// images of 2x3, test: `n_test`), gzipped or raw.
    fn write_set(dir: &Path, n_train: u8, n_test: u8, gzip: bool) {
        for (stem, n) in [("train", n_train), ("t10k", n_test)] {
            let pixels: Vec<u8> = (0..u32::from(n) * 6).map(|i| (i * 37 % 256) as u8).collect();
            let labels: Vec<u8> = (0..n).map(|i| i % 10).collect();
            let img = idx_images(u32::from(n), 2, 3, &pixels);
            let lab = idx_labels(u32::from(n), &labels);
            let (img, lab, ext) = if gzip { (gz(&img), gz(&lab), ".gz") } else { (img, lab, "") };
            write(&dir.join(format!("{stem}-images-idx3-ubyte{ext}")), &img);
            write(&dir.join(format!("{stem}-labels-idx1-ubyte{ext}")), &lab);
        }
    }

    #[test]
    fn idx_round_trip_raw_and_gzip() {
        let tmp = TempDir::new("roundtrip");
        let pixels: Vec<u8> = (0..3 * 4 * 5).map(|i| (i * 7) as u8).collect();
        let labels = [3u8, 1, 4];
        let img = idx_images(3, 4, 5, &pixels);
        let lab = idx_labels(3, &labels);
        for (tag, img, lab) in [("raw", img.clone(), lab.clone()), ("gz", gz(&img), gz(&lab))] {
            let ip = write(&tmp.path(&format!("img.{tag}")), &img);
            let lp = write(&tmp.path(&format!("lab.{tag}")), &lab);
            let (n, rows, cols, got) = read_idx_images(&ip).unwrap();
            assert_eq!((n, rows, cols), (3, 4, 5), "{tag}");
            assert_eq!(got, pixels, "{tag}");
            assert_eq!(read_idx_labels(&lp).unwrap(), labels, "{tag}");
        }
    }

    #[test]
    fn zero_count_file_is_valid_and_empty() {
        let tmp = TempDir::new("zero");
        let p = write(&tmp.path("img"), &idx_images(0, 28, 28, &[]));
        assert_eq!(read_idx_images(&p).unwrap(), (0, 28, 28, vec![]));
    }

    #[test]
    fn wrong_magic_is_reported_with_hint() {
        let tmp = TempDir::new("magic");
        let lp = write(&tmp.path("labels"), &idx_labels(2, &[1, 2]));
        let err = read_idx_images(&lp).unwrap_err();
        assert!(
            matches!(err, DataError::BadMagic { expected: IDX_IMAGES_MAGIC, found: IDX_LABELS_MAGIC, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("swapped"), "{err}");

        let junk = write(&tmp.path("junk"), b"<html>not found</html>");
        let err = read_idx_labels(&junk).unwrap_err();
        assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
        assert!(err.to_string().contains("download it again"), "{err}");
    }

    #[test]
    fn truncated_payload_raw_and_gzip() {
        let tmp = TempDir::new("trunc");
        let img = idx_images(100, 28, 28, &vec![9u8; 3 * 784]);
        for (tag, bytes) in [("raw", img.clone()), ("gz", gz(&img))] {
            let p = write(&tmp.path(tag), &bytes);
            match read_idx_images(&p).unwrap_err() {
                DataError::Truncated { expected_bytes, found_bytes, .. } => {
                    assert_eq!(expected_bytes, 16 + 100 * 784, "{tag}");
                    assert_eq!(found_bytes, 16 + 3 * 784, "{tag}");
                }
                e => panic!("{tag}: expected Truncated, got {e:?}"),
            }
        }
    }

    #[test]
    fn truncated_header() {
        let tmp = TempDir::new("trunchdr");
        let img = idx_images(1, 28, 28, &[]);
        let p = write(&tmp.path("short"), &img[..10]);
        let err = read_idx_images(&p).unwrap_err();
        assert!(matches!(err, DataError::Truncated { expected_bytes: 16, found_bytes: 10, .. }), "{err:?}");
        let p = write(&tmp.path("tiny"), &[0, 0]);
        let err = read_idx_labels(&p).unwrap_err();
        assert!(matches!(err, DataError::Truncated { found_bytes: 2, .. }), "{err:?}");
    }

    #[test]
    fn enormous_or_overflowing_header_fails_fast() {
        let tmp = TempDir::new("huge");
        let start = Instant::now();
        let cases: [(u32, u32, u32); 3] = [
            (u32::MAX, u32::MAX, u32::MAX), // product overflows u64
            (u32::MAX, 28, 28),             // 3.4 TB
            (1 << 24, 16, 17),              // 4.25 GiB: just over the cap
        ];
        for (i, &(n, r, c)) in cases.iter().enumerate() {
            let img = idx_images(n, r, c, &[1, 2, 3]);
            for (tag, bytes) in [("raw", img.clone()), ("gz", gz(&img))] {
                let p = write(&tmp.path(&format!("{i}.{tag}")), &bytes);
                let err = read_idx_images(&p).unwrap_err();
                assert!(matches!(err, DataError::TooLarge { .. }), "{i} {tag}: {err:?}");
            }
        }
        // Under the cap but far more than the file holds: must not reserve it.
        let img = idx_images(1_000_000, 28, 28, &[0; 784]);
        for (tag, bytes) in [("raw", img.clone()), ("gz", gz(&img))] {
            let p = write(&tmp.path(&format!("big.{tag}")), &bytes);
            let err = read_idx_images(&p).unwrap_err();
            assert!(matches!(err, DataError::Truncated { .. }), "{tag}: {err:?}");
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    }

    #[test]
    fn gzip_bomb_is_cut_off_at_the_header_size() {
        let tmp = TempDir::new("bomb");
        // The header claims 10 images, the stream inflates to 8 MiB.
        let mut img = idx_images(10, 28, 28, &[]);
        img.resize(8 << 20, 0);
        let p = write(&tmp.path("bomb.gz"), &gz(&img));
        let err = read_idx_images(&p).unwrap_err();
        assert!(
            matches!(err, DataError::TrailingBytes { expected_bytes, .. } if expected_bytes == 16 + 7840),
            "{err:?}"
        );
        // Same for a raw file with extra bytes.
        let mut lab = idx_labels(2, &[1, 2]);
        lab.push(3);
        let p = write(&tmp.path("extra"), &lab);
        let err = read_idx_labels(&p).unwrap_err();
        assert!(matches!(err, DataError::TrailingBytes { .. }), "{err:?}");
    }

    #[test]
    fn corrupt_gzip_stream() {
        let tmp = TempDir::new("badgz");
        let mut bytes = gz(&idx_labels(500, &[7; 500]));
        let mid = bytes.len() / 2;
        bytes.truncate(mid);
        let p = write(&tmp.path("cut.gz"), &bytes);
        let err = read_idx_labels(&p).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. } | DataError::Truncated { .. }), "{err:?}");
        let p = write(&tmp.path("garbage.gz"), &[0x1f, 0x8b, 0xff, 0xff, 0xff]);
        let err = read_idx_labels(&p).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
    }

    #[test]
    fn empty_file_raw_and_gzip() {
        let tmp = TempDir::new("empty");
        let p = write(&tmp.path("empty"), &[]);
        let err = read_idx_images(&p).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
        let p = write(&tmp.path("empty.gz"), &gz(&[]));
        let err = read_idx_labels(&p).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
    }

    #[test]
    fn directory_where_file_expected() {
        let tmp = TempDir::new("dirasfile");
        let err = read_idx_images(&tmp.0).unwrap_err();
        assert!(matches!(err, DataError::NotAFile { .. }), "{err:?}");

        // The same through the directory loader, via a directory named like a file.
        write_set(&tmp.0, 4, 2, false);
        fs::create_dir(tmp.path("train-labels-idx1-ubyte.gz")).unwrap();
        let err = load_mnist_dir(&tmp.0, DatasetKind::Mnist).unwrap_err();
        assert!(matches!(err, DataError::NotAFile { .. }), "{err:?}");
    }

    #[test]
    fn missing_file_is_io_error() {
        let tmp = TempDir::new("nofile");
        let err = read_idx_labels(&tmp.path("nope")).unwrap_err();
        assert!(matches!(&err, DataError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound), "{err:?}");
    }

    #[test]
    fn load_dir_happy_path_prefers_gzip() {
        let tmp = TempDir::new("happy");
        write_set(&tmp.0, 12, 5, true);
        // Raw files with different contents: if they were read, counts would differ.
        write_set(&tmp.0, 3, 2, false);
        let split = load_mnist_dir(&tmp.0, DatasetKind::FashionMnist).unwrap();
        assert_eq!((split.train.len(), split.test.len()), (12, 5));
        assert_eq!((split.train.dim, split.train.classes), (6, 10));
        assert_eq!(split.train.images.len(), 12 * 6);
        assert_eq!(split.train.name, "fashion-mnist-train");
        assert_eq!(split.test.labels, [0, 1, 2, 3, 4]);
        // Pixel 0 is byte 0, pixel 1 is byte 37.
        let (m, s) = DatasetKind::FashionMnist.norm();
        assert_eq!(split.train.images[0], (0.0 - m) / s);
        assert_eq!(split.train.images[1], (37.0 / 255.0 - m) / s);

        // Uncompressed-only directories work too.
        let raw = TempDir::new("rawonly");
        write_set(&raw.0, 3, 2, false);
        let split = load_mnist_dir(&raw.0, DatasetKind::Mnist).unwrap();
        assert_eq!((split.train.len(), split.test.len()), (3, 2));
    }

    #[test]
    fn mismatched_counts() {
        let tmp = TempDir::new("mismatch");
        write_set(&tmp.0, 5, 2, false);
        write(&tmp.path("train-labels-idx1-ubyte"), &idx_labels(4, &[0, 1, 2, 3]));
        let err = load_mnist_dir(&tmp.0, DatasetKind::Mnist).unwrap_err();
        assert!(matches!(err, DataError::CountMismatch { images: 5, labels: 4, .. }), "{err:?}");
    }

    #[test]
    fn label_out_of_range() {
        let tmp = TempDir::new("label");
        write_set(&tmp.0, 3, 2, false);
        write(&tmp.path("t10k-labels-idx1-ubyte"), &idx_labels(2, &[1, 12]));
        let err = load_mnist_dir(&tmp.0, DatasetKind::Mnist).unwrap_err();
        assert!(matches!(err, DataError::LabelOutOfRange { index: 1, label: 12, classes: 10, .. }), "{err:?}");
    }

    #[test]
    fn train_test_dims_must_agree() {
        let tmp = TempDir::new("dims");
        write_set(&tmp.0, 3, 2, false);
        write(&tmp.path("t10k-images-idx3-ubyte"), &idx_images(2, 3, 2, &[0; 12]));
        let err = load_mnist_dir(&tmp.0, DatasetKind::Mnist).unwrap_err();
        assert!(matches!(err, DataError::BadDims { .. }), "{err:?}");
        write(&tmp.path("t10k-images-idx3-ubyte"), &idx_images(2, 0, 6, &[]));
        let err = load_mnist_dir(&tmp.0, DatasetKind::Mnist).unwrap_err();
        assert!(matches!(err, DataError::BadDims { .. }), "{err:?}");
    }

    #[test]
    fn missing_dir_and_missing_files() {
        let tmp = TempDir::new("missing");
        let err = load_mnist_dir(&tmp.path("absent"), DatasetKind::Mnist).unwrap_err();
        assert!(matches!(err, DataError::MissingDir { .. }), "{err:?}");
        assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");

        let err = load_mnist_dir(&tmp.0, DatasetKind::Mnist).unwrap_err();
        assert!(matches!(&err, DataError::MissingFile { name, .. } if name == "train-images-idx3-ubyte"), "{err:?}");

        let file = write(&tmp.path("afile"), b"x");
        let err = load_mnist_dir(&file, DatasetKind::Mnist).unwrap_err();
        assert!(matches!(err, DataError::NotADir { .. }), "{err:?}");
    }

    #[test]
    fn error_messages_name_the_file() {
        let tmp = TempDir::new("msg");
        let p = write(&tmp.path("short-file"), &[0, 0, 8]);
        let msg = read_idx_images(&p).unwrap_err().to_string();
        assert!(msg.contains("short-file") && msg.contains("download"), "{msg}");
    }

    #[test]
    fn synthetic_is_deterministic_balanced_and_seed_dependent() {
        let a = synthetic_digits(2000, 300, 7);
        let b = synthetic_digits(2000, 300, 7);
        let c = synthetic_digits(2000, 300, 8);
        assert_eq!(a.train.images, b.train.images);
        assert_eq!(a.train.labels, b.train.labels);
        assert_eq!(a.test.images, b.test.images);
        assert_eq!(a.train.fingerprint(), b.train.fingerprint());
        assert_ne!(a.train.images, c.train.images);
        assert_ne!(a.train.fingerprint(), c.train.fingerprint());
        assert_ne!(a.train.images[..300 * 784], a.test.images[..]);

        for ds in [&a.train, &a.test] {
            assert_eq!(ds.dim, 784);
            assert_eq!(ds.classes, 10);
            assert_eq!(ds.images.len(), ds.len() * 784);
            assert!(ds.images.iter().all(|v| v.is_finite()));
            assert!(ds.labels.iter().all(|&l| l < 10));
        }
        let mut counts = [0usize; 10];
        for &l in &a.train.labels {
            counts[l as usize] += 1;
        }
        assert!(counts.iter().all(|&n| (140..=260).contains(&n)), "{counts:?}");

        // Pixels come from bytes, so the range is that of normalised bytes.
        let (lo, hi) = (-MNIST_MEAN / MNIST_STD, (1.0 - MNIST_MEAN) / MNIST_STD);
        assert!(a.train.images.iter().all(|&v| v >= lo && v <= hi));
        let mean_raw =
            a.train.images.iter().map(|&v| v * MNIST_STD + MNIST_MEAN).sum::<f32>() / a.train.images.len() as f32;
        assert!((0.05..0.3).contains(&mean_raw), "mean intensity {mean_raw}");

        // A smaller set with the same seed is a prefix of a larger one.
        let small = synthetic_digits(50, 0, 7);
        assert_eq!(small.train.images[..], a.train.images[..50 * 784]);
        assert!(small.test.is_empty());
    }

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
    fn gather_batch_copies_rows_and_reuses_buffers() {
        let ds = Dataset {
            images: (0..12).map(|v| v as f32).collect(),
            labels: vec![0, 1, 2, 3],
            dim: 3,
            classes: 10,
            name: "t".into(),
        };
        let (mut imgs, mut labs) = (vec![99.0; 50], vec![7; 9]);
        gather_batch(&ds, &[2, 0, 2], &mut imgs, &mut labs);
        assert_eq!(imgs, [6.0, 7.0, 8.0, 0.0, 1.0, 2.0, 6.0, 7.0, 8.0]);
        assert_eq!(labs, [2, 0, 2]);
        gather_batch(&ds, &[], &mut imgs, &mut labs);
        assert!(imgs.is_empty() && labs.is_empty());
    }

    #[test]
    fn fingerprint_tracks_labels_pixels_and_dims() {
        let ds = synthetic_digits(20, 0, 1).train;
        let base = ds.fingerprint();
        let mut renamed = ds.clone();
        renamed.name = "other".into();
        assert_eq!(renamed.fingerprint(), base);
        let mut relabelled = ds.clone();
        relabelled.labels[3] = (relabelled.labels[3] + 1) % 10;
        assert_ne!(relabelled.fingerprint(), base);
        let mut nudged = ds.clone();
        nudged.images[100] = f32::from_bits(nudged.images[100].to_bits() ^ 1);
        assert_ne!(nudged.fingerprint(), base);
        let mut reshaped = ds.clone();
        reshaped.dim = 392;
        assert_ne!(reshaped.fingerprint(), base);
    }

    /// Real MNIST, if a copy is around: `$MNIST_DIR`, else `../shared/data/mnist`
    /// relative to the crate root.
    #[test]
    fn real_mnist_if_present() {
        let dir = std::env::var_os("MNIST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"));
        if !dir.is_dir() {
            println!("skipping real_mnist_if_present: {} not found (set MNIST_DIR)", dir.display());
            return;
        }
        let split = load_mnist_dir(&dir, DatasetKind::Mnist).unwrap();
        assert_eq!((split.train.len(), split.test.len()), (60000, 10000));
        assert_eq!(split.train.dim, 784);
        assert_eq!(split.train.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
        // The published normalisation constants should describe the data.
        let n = split.train.images.len() as f64;
        let mean = split.train.images.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01, "normalised train mean {mean}");
    }

    fn ascii(image: &[f32]) -> String {
        const RAMP: &[u8] = b" .:-=+*#%@";
        let mut s = String::new();
        for row in image.chunks(SYNTH_SIDE) {
            for &v in row {
                let raw = (v * MNIST_STD + MNIST_MEAN).clamp(0.0, 1.0);
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
        let dim = split.train.dim;
        let mut centroids = vec![0.0f64; 10 * dim];
        let mut counts = [0usize; 10];
        for i in 0..split.train.len() {
            let c = split.train.labels[i] as usize;
            counts[c] += 1;
            for (acc, &v) in centroids[c * dim..(c + 1) * dim].iter_mut().zip(split.train.image(i)) {
                *acc += f64::from(v);
            }
        }
        for (c, n) in counts.iter().enumerate() {
            centroids[c * dim..(c + 1) * dim].iter_mut().for_each(|v| *v /= *n as f64);
        }
        let correct = (0..split.test.len())
            .filter(|&i| {
                let x = split.test.image(i);
                let dist = |c: usize| -> f64 {
                    centroids[c * dim..(c + 1) * dim].iter().zip(x).map(|(&m, &v)| (m - f64::from(v)).powi(2)).sum()
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
