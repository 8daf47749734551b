//! Tests of the IDX reader on files the tests write: round trips, lying
//! headers, truncation, gzip bombs, corrupt streams, directory layouts.

use super::*;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::time::{Duration, Instant};

/// A per-test scratch directory, removed on drop.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new(tag: &str) -> Self {
        TempDir(tempfile::Builder::new().prefix(&format!("sparsetrain-data-{tag}-")).tempdir().unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
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
    assert!(matches!(err, DataError::BadMagic { expected: IDX_IMAGES_MAGIC, found: IDX_LABELS_MAGIC, .. }), "{err:?}");
    assert!(err.to_string().contains("swapped"), "{err}");

    let junk = write(&tmp.path("junk"), b"<html>not found</html>");
    let err = read_idx_labels(&junk).unwrap_err();
    assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
    assert!(err.to_string().contains("download it again"), "{err}");
}

#[test]
fn truncated_payload_raw_and_gzip() {
    let tmp = TempDir::new("trunc");
    // Noise, so that the compressed file is not implausibly small.
    let noise: Vec<u8> = (0..3 * 784u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let img = idx_images(100, 28, 28, &noise);
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
    // Under the cap but far more than the file holds: refused from the
    // header (raw: the file length; gzip: the compression ratio).
    let img = idx_images(1_000_000, 28, 28, &[0; 784]);
    let p = write(&tmp.path("big.raw"), &img);
    let err = read_idx_images(&p).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. }), "raw: {err:?}");
    let p = write(&tmp.path("big.gz"), &gz(&img));
    let err = read_idx_images(&p).unwrap_err();
    assert!(matches!(err, DataError::Implausible { payload: 784_000_000, .. }), "gz: {err:?}");
    assert!(err.to_string().contains("decompress it yourself"), "{err}");
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
    assert!(matches!(err, DataError::GzipTrailing { expected_bytes, .. } if expected_bytes == 16 + 7840), "{err:?}");
    // A corrupt stream is called corrupt, not "concatenated files".
    assert!(err.to_string().contains("corrupt") && !err.to_string().contains("concatenated"), "{err}");
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
    let err = read_idx_images(tmp.0.path()).unwrap_err();
    assert!(matches!(err, DataError::NotAFile { .. }), "{err:?}");

    // The same through the directory loader, via a directory named like a file.
    write_set(tmp.0.path(), 4, 2, false);
    fs::create_dir(tmp.path("train-labels-idx1-ubyte.gz")).unwrap();
    let err = load_mnist_dir(tmp.0.path(), DatasetKind::Mnist).unwrap_err();
    assert!(matches!(err, DataError::NotAFile { .. }), "{err:?}");
}

#[test]
fn missing_file_is_io_error() {
    let tmp = TempDir::new("nofile");
    let err = read_idx_labels(&tmp.path("nope")).unwrap_err();
    assert!(matches!(&err, DataError::Io { error, .. } if error.kind() == io::ErrorKind::NotFound), "{err:?}");
}

#[test]
fn load_dir_happy_path_prefers_gzip() {
    let tmp = TempDir::new("happy");
    write_set(tmp.0.path(), 12, 5, true);
    // Raw files with different contents: if they were read, counts would differ.
    write_set(tmp.0.path(), 3, 2, false);
    let split = load_mnist_dir(tmp.0.path(), DatasetKind::FashionMnist).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (12, 5));
    assert_eq!((split.train.dim(), split.train.classes), (6, 10));
    assert_eq!(split.train.pixels.len(), 12 * 6, "one byte per pixel in host memory");
    assert_eq!(split.train.name, "fashion-mnist-train");
    assert_eq!(split.test.labels, [0, 1, 2, 3, 4]);
    // Pixel 0 is byte 0, pixel 1 is byte 37, normalised when batched.
    let norm = DatasetKind::FashionMnist.norm();
    let (m, s) = (norm.mean[0], norm.std[0]);
    let x = split.train.normalised(0);
    assert_eq!(x[0], (0.0 - m) / s);
    assert_eq!(x[1], (37.0 / 255.0 - m) / s);

    // Uncompressed-only directories work too.
    let raw = TempDir::new("rawonly");
    write_set(raw.0.path(), 3, 2, false);
    let split = load_mnist_dir(raw.0.path(), DatasetKind::Mnist).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (3, 2));
}

/// A pair is checked from its headers: a label file of another length is
/// reported before the image payload is read (here it is cut short, so
/// reading it would report that instead), and an empty set is refused.
#[test]
fn headers_of_a_pair_are_checked_before_payloads() {
    let tmp = TempDir::new("headers");
    write_set(tmp.0.path(), 5, 2, false);
    let mut cut = idx_images(5, 2, 3, &[1; 30]);
    cut.truncate(20);
    write(&tmp.path("train-images-idx3-ubyte"), &cut);
    write(&tmp.path("train-labels-idx1-ubyte"), &idx_labels(4, &[0, 1, 2, 3]));
    let err = load_mnist_dir(tmp.0.path(), DatasetKind::Mnist).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. } | DataError::CountMismatch { .. }), "{err:?}");
    let gz_cut = gz(&idx_images(5, 2, 3, &[7; 12]));
    fs::remove_file(tmp.path("train-images-idx3-ubyte")).unwrap();
    write(&tmp.path("train-images-idx3-ubyte.gz"), &gz_cut);
    let err = load_mnist_dir(tmp.0.path(), DatasetKind::Mnist).unwrap_err();
    assert!(matches!(err, DataError::CountMismatch { images: 5, labels: 4, .. }), "{err:?}");

    let empty = TempDir::new("empty-set");
    write_set(empty.0.path(), 3, 2, false);
    write(&empty.path("t10k-images-idx3-ubyte"), &idx_images(0, 2, 3, &[]));
    write(&empty.path("t10k-labels-idx1-ubyte"), &idx_labels(0, &[]));
    let err = load_mnist_dir(empty.0.path(), DatasetKind::Mnist).unwrap_err();
    assert!(matches!(err, DataError::NoImages { .. }), "{err:?}");
    assert!(err.to_string().contains("no images"), "{err}");
}

#[test]
fn mismatched_counts() {
    let tmp = TempDir::new("mismatch");
    write_set(tmp.0.path(), 5, 2, false);
    write(&tmp.path("train-labels-idx1-ubyte"), &idx_labels(4, &[0, 1, 2, 3]));
    let err = load_mnist_dir(tmp.0.path(), DatasetKind::Mnist).unwrap_err();
    assert!(matches!(err, DataError::CountMismatch { images: 5, labels: 4, .. }), "{err:?}");
}

#[test]
fn label_out_of_range() {
    let tmp = TempDir::new("label");
    write_set(tmp.0.path(), 3, 2, false);
    write(&tmp.path("t10k-labels-idx1-ubyte"), &idx_labels(2, &[1, 12]));
    let err = load_mnist_dir(tmp.0.path(), DatasetKind::Mnist).unwrap_err();
    assert!(matches!(err, DataError::LabelOutOfRange { index: 1, label: 12, classes: 10, .. }), "{err:?}");
}

#[test]
fn train_test_dims_must_agree() {
    let tmp = TempDir::new("dims");
    write_set(tmp.0.path(), 3, 2, false);
    write(&tmp.path("t10k-images-idx3-ubyte"), &idx_images(2, 3, 2, &[0; 12]));
    let err = load_mnist_dir(tmp.0.path(), DatasetKind::Mnist).unwrap_err();
    assert!(matches!(err, DataError::BadDims { .. }), "{err:?}");
    write(&tmp.path("t10k-images-idx3-ubyte"), &idx_images(2, 0, 6, &[]));
    let err = load_mnist_dir(tmp.0.path(), DatasetKind::Mnist).unwrap_err();
    assert!(matches!(err, DataError::BadDims { .. }), "{err:?}");
}

#[test]
fn missing_dir_and_missing_files() {
    let tmp = TempDir::new("missing");
    let err = load_mnist_dir(&tmp.path("absent"), DatasetKind::Mnist).unwrap_err();
    assert!(matches!(err, DataError::MissingDir { .. }), "{err:?}");
    assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");

    let err = load_mnist_dir(tmp.0.path(), DatasetKind::Mnist).unwrap_err();
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
    assert_eq!(split.train.dim(), 784);
    assert_eq!(split.train.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    // Host memory is the payload: one byte per pixel.
    assert_eq!(split.train.pixels.len(), 60000 * 784);
    // The published normalisation constants should describe the data.
    let table = split.train.norm.tables()[0];
    let n = split.train.pixels.len() as f64;
    let mean = split.train.pixels.iter().map(|&v| f64::from(table[usize::from(v)])).sum::<f64>() / n;
    assert!(mean.abs() < 0.01, "normalised train mean {mean}");
}
