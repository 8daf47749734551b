//! MNIST-format IDX files (raw or gzip), read as untrusted input: every
//! header value is checked against the bytes actually present, and both
//! headers of an images/labels pair before either payload is read, so a
//! corrupt download, a lying header or a gzip bomb gives a [`DataError`]
//! that says what to do, never a panic or an out-of-memory abort. Pixels
//! stay bytes: host memory is about the payload's size.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{Dataset, DatasetKind, NUM_CLASSES, Norm, Split};
use crate::nn::Shape;

/// IDX magic for unsigned-byte data with three dimensions (count, rows, cols).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic for unsigned-byte data with one dimension (count).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Upper bound on the pixel/label payload of one IDX file. MNIST's largest file
/// is 47 MB; the cap only exists so that a corrupt header cannot make us try to
/// read (or let a gzip bomb inflate) tens of gigabytes.
pub const MAX_IDX_PAYLOAD_BYTES: u64 = 4 << 30;

/// Largest ratio of payload to compressed size a gzip file may claim. MNIST
/// compresses about 5x and Fashion-MNIST 3x; deflate cannot exceed ~1000x,
/// which only degenerate data (all zeros) approaches.
pub const MAX_GZIP_RATIO: u64 = 200;

const MNIST_STEMS: [(&str, &str); 2] =
    [("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")];

/// Everything that can go wrong while loading a dataset from disk.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {error}; check that the path exists and is readable", .path.display())]
    Io { path: PathBuf, error: io::Error },

    #[error(
        "{} looks gzip-compressed but does not decompress ({error}); the file is corrupt, delete it and download it again",
        .path.display()
    )]
    Gzip { path: PathBuf, error: io::Error },

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
        "{} holds more data than the {expected_bytes} bytes its header describes; \
         the header is wrong or another file was appended to it, delete it and download it again",
        .path.display()
    )]
    TrailingBytes { path: PathBuf, expected_bytes: u64 },

    #[error(
        "{} decompresses to more than the {expected_bytes} bytes its header describes: \
         the compressed data is corrupt (or holds more than one file), delete it and download it again",
        .path.display()
    )]
    GzipTrailing { path: PathBuf, expected_bytes: u64 },

    #[error(
        "{}: its header describes {payload} bytes, {ratio}x its {compressed} compressed bytes, more than \
         real image files compress ({MAX_GZIP_RATIO}x at most here); the file is corrupt or malicious \
         (decompress it yourself if it is genuine: raw files are checked against their length)",
        .path.display()
    )]
    Implausible { path: PathBuf, payload: u64, compressed: u64, ratio: u64 },

    #[error(
        "{} holds no images; a dataset needs at least one (is this the right file?)",
        .path.display()
    )]
    NoImages { path: PathBuf },

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

    #[error(
        "{} has no {name}; pass the directory of the binary version of the set \
         (the files {expected}, as unpacked from the archive)",
        .dir.display()
    )]
    MissingSetFile { dir: PathBuf, name: String, expected: String },

    #[error(
        "{} is {len} bytes, not a whole number of {record}-byte records ({labels} label byte(s) and 3072 pixel bytes); \
         it is truncated or not a {set} binary file, download it again",
        .path.display()
    )]
    RecordSize { path: PathBuf, len: u64, record: u64, labels: u64, set: &'static str },
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
/// Reads an IDX image file (magic `0x00000803`), gzip-compressed (detected by
/// the `1f 8b` magic) or raw. Returns `(count, rows, cols, pixels)` with
/// `pixels.len() == count * rows * cols`.
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let file = IdxFile::open(path, IDX_IMAGES_MAGIC)?;
    let (rows, cols) = file.image_size()?;
    let count = file.dims[0] as usize;
    Ok((count, rows, cols, file.read_payload()?))
}

/// Reads an IDX label file (magic `0x00000801`), gzip-compressed or raw.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    IdxFile::open(path, IDX_LABELS_MAGIC)?.read_payload()
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

/// An IDX file whose header has been read and checked, its payload not yet:
/// a loader checks both files of a pair before reading either payload.
struct IdxFile {
    path: PathBuf,
    reader: Box<dyn Read>,
    gzip: bool,
    dims: Vec<u32>,
    header_len: u64,
    payload: u64,
}

impl IdxFile {
    /// Opens `path` and reads its header: the magic must equal `magic`, the
    /// payload the dimensions describe must stay under the cap, and the
    /// file's length (raw) or compression ratio (gzip) must fit it.
    fn open(path: &Path, magic: u32) -> Result<IdxFile, DataError> {
        let p = || path.to_path_buf();
        let io_err = |error| DataError::Io { path: p(), error };
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
        let read_err = |error| {
            if gzip { DataError::Gzip { path: p(), error } } else { DataError::Io { path: p(), error } }
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
        let dims: Vec<u32> =
            header[4..].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
        let too_large = || DataError::TooLarge { path: p(), dims: dims.clone(), limit: MAX_IDX_PAYLOAD_BYTES };
        let payload = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
            .filter(|&n| n <= MAX_IDX_PAYLOAD_BYTES)
            .ok_or_else(too_large)?;
        usize::try_from(payload).map_err(|_| too_large())?;
        let expected_total = header_len as u64 + payload;
        if gzip {
            // A gzip bomb announces a huge payload in a small file; refuse
            // ratios no image set reaches before inflating anything.
            let ratio = payload / file_len.max(1);
            if ratio > MAX_GZIP_RATIO {
                return Err(DataError::Implausible { path: p(), payload, compressed: file_len, ratio });
            }
        } else if file_len < expected_total {
            // A raw file's size is known: a header/size disagreement is
            // reported before anything is read.
            return Err(DataError::Truncated { path: p(), expected_bytes: expected_total, found_bytes: file_len });
        } else if file_len > expected_total {
            return Err(DataError::TrailingBytes { path: p(), expected_bytes: expected_total });
        }
        Ok(IdxFile { path: p(), reader, gzip, dims, header_len: header_len as u64, payload })
    }

    /// (rows, cols) of an image file, both non-zero.
    fn image_size(&self) -> Result<(usize, usize), DataError> {
        let (rows, cols) = (self.dims[1] as usize, self.dims[2] as usize);
        if rows == 0 || cols == 0 {
            return Err(DataError::BadDims {
                path: self.path.clone(),
                reason: format!("header says images are {rows}x{cols}; both sides must be non-zero"),
            });
        }
        Ok((rows, cols))
    }

    /// The payload, exactly as long as the header says.
    fn read_payload(self) -> Result<Vec<u8>, DataError> {
        let IdxFile { path, reader, gzip, header_len, payload, .. } = self;
        let read_err = |error| {
            if gzip {
                DataError::Gzip { path: path.clone(), error }
            } else {
                DataError::Io { path: path.clone(), error }
            }
        };
        let expected_total = header_len + payload;
        // Raw files were checked against their length; gzip streams grow into
        // the buffer, never past one byte beyond what the header allows.
        let mut data = Vec::with_capacity(if gzip { 0 } else { payload as usize });
        reader.take(payload + 1).read_to_end(&mut data).map_err(read_err)?;
        match (data.len() as u64).cmp(&payload) {
            std::cmp::Ordering::Less => Err(DataError::Truncated {
                path,
                expected_bytes: expected_total,
                found_bytes: header_len + data.len() as u64,
            }),
            std::cmp::Ordering::Greater if gzip => {
                Err(DataError::GzipTrailing { path, expected_bytes: expected_total })
            }
            std::cmp::Ordering::Greater => Err(DataError::TrailingBytes { path, expected_bytes: expected_total }),
            std::cmp::Ordering::Equal => Ok(data),
        }
    }
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

/// The images and labels of one set. Both headers are checked (counts
/// agree, at least one image, sizes) before either payload is read, so a
/// bad pair costs nothing but two headers.
fn load_idx_pair(
    dir: &Path,
    (image_stem, label_stem): (&str, &str),
    norm: &Norm,
    name: String,
) -> Result<(Dataset, PathBuf), DataError> {
    let images_path = find_idx_file(dir, image_stem)?;
    let labels_path = find_idx_file(dir, label_stem)?;
    let images = IdxFile::open(&images_path, IDX_IMAGES_MAGIC)?;
    let labels = IdxFile::open(&labels_path, IDX_LABELS_MAGIC)?;
    let (rows, cols) = images.image_size()?;
    let (count, label_count) = (images.dims[0] as usize, labels.dims[0] as usize);
    if label_count != count {
        return Err(DataError::CountMismatch { images_path, images: count, labels_path, labels: label_count });
    }
    if count == 0 {
        return Err(DataError::NoImages { path: images_path });
    }
    let raw_labels = labels.read_payload()?;
    if let Some((index, &label)) = raw_labels.iter().enumerate().find(|&(_, &l)| usize::from(l) >= NUM_CLASSES) {
        return Err(DataError::LabelOutOfRange { path: labels_path, index, label, classes: NUM_CLASSES });
    }
    let dataset = Dataset {
        pixels: images.read_payload()?,
        labels: raw_labels,
        shape: Shape { c: 1, h: rows, w: cols },
        classes: NUM_CLASSES,
        norm: norm.clone(),
        name,
    };
    Ok((dataset, images_path))
}

/// Loads `dir/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]` (the `.gz` name
/// wins when both exist), checks that image and label counts match, that labels
/// are below 10 and that train and test images have the same size; pixels
/// stay bytes, normalised with `kind.norm()` when batches are built.
pub fn load_mnist_dir(dir: &Path, kind: DatasetKind) -> Result<Split, DataError> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DataError::MissingDir { path: dir.to_path_buf() });
        }
        Err(error) => {
            return Err(DataError::Io { path: dir.to_path_buf(), error });
        }
        Ok(m) if !m.is_dir() => {
            return Err(DataError::NotADir { path: dir.to_path_buf() });
        }
        Ok(_) => {}
    }
    let norm = kind.norm();
    let (train, _) = load_idx_pair(dir, MNIST_STEMS[0], &norm, format!("{}-train", kind.name()))?;
    let (test, test_path) = load_idx_pair(dir, MNIST_STEMS[1], &norm, format!("{}-test", kind.name()))?;
    if train.shape != test.shape {
        return Err(DataError::BadDims {
            path: test_path,
            reason: format!(
                "test images are {}x{} but train images are {}x{}; both files must come from the same dataset",
                test.shape.h, test.shape.w, train.shape.h, train.shape.w
            ),
        });
    }
    Ok(Split { train, test })
}

#[cfg(test)]
#[path = "idx_tests.rs"]
mod tests;
