//! CIFAR-10 and CIFAR-100 in their binary version, read as untrusted input:
//! each file is a sequence of records, label byte(s) then 3072 bytes of
//! red, green and blue 32×32 planes. CIFAR-10 records carry one label;
//! CIFAR-100 records a coarse and a fine label (the fine one, 100 classes,
//! is used). File lengths are checked against the record size and labels
//! against the class count before anything is kept.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::idx::MAX_IDX_PAYLOAD_BYTES;
use super::{DataError, Dataset, DatasetKind, Split};
use crate::nn::Shape;

/// Pixel bytes of one record.
pub const CIFAR_IMAGE_BYTES: u64 = 3 * 32 * 32;

/// How one of the two sets is laid out on disk.
struct Layout {
    /// The folder the archive unpacks to, tried below the given directory.
    folder: &'static str,
    train: &'static [&'static str],
    test: &'static str,
    /// Label bytes per record; the last is the class.
    label_bytes: u64,
    set: &'static str,
}

const CIFAR10: Layout = Layout {
    folder: "cifar-10-batches-bin",
    train: &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
    test: "test_batch.bin",
    label_bytes: 1,
    set: "CIFAR-10",
};

const CIFAR100: Layout =
    Layout { folder: "cifar-100-binary", train: &["train.bin"], test: "test.bin", label_bytes: 2, set: "CIFAR-100" };

fn layout(kind: DatasetKind) -> &'static Layout {
    match kind {
        DatasetKind::Cifar100 => &CIFAR100,
        _ => &CIFAR10,
    }
}

/// The directory holding the set's files: `dir` itself, or the folder the
/// archive unpacks to inside it.
fn find_dir(dir: &Path, l: &Layout) -> Result<PathBuf, DataError> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(DataError::MissingDir { path: dir.into() }),
        Err(error) => return Err(DataError::Io { path: dir.into(), error }),
        Ok(m) if !m.is_dir() => return Err(DataError::NotADir { path: dir.into() }),
        Ok(_) => {}
    }
    if dir.join(l.test).exists() {
        return Ok(dir.into());
    }
    let inner = dir.join(l.folder);
    if inner.join(l.test).exists() {
        return Ok(inner);
    }
    Err(DataError::MissingSetFile { dir: dir.into(), name: l.test.into(), expected: expected_files(l) })
}

fn expected_files(l: &Layout) -> String {
    let mut names: Vec<&str> = l.train.to_vec();
    names.push(l.test);
    format!("{}, in {} or directly in the directory", names.join(", "), l.folder)
}

/// The records of one file appended to `pixels` and `labels`, after its
/// length and every label were checked.
fn read_file(
    path: &Path,
    l: &Layout,
    classes: usize,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u8>,
) -> Result<(), DataError> {
    let io_err = |error| DataError::Io { path: path.into(), error };
    let meta = fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(DataError::NotAFile { path: path.into() });
    }
    let record = l.label_bytes + CIFAR_IMAGE_BYTES;
    let len = meta.len();
    if len == 0 {
        return Err(DataError::Empty { path: path.into() });
    }
    if len > MAX_IDX_PAYLOAD_BYTES {
        return Err(DataError::TooLarge { path: path.into(), dims: vec![], limit: MAX_IDX_PAYLOAD_BYTES });
    }
    if len % record != 0 {
        return Err(DataError::RecordSize { path: path.into(), len, record, labels: l.label_bytes, set: l.set });
    }
    let mut data = Vec::with_capacity(len as usize);
    fs::File::open(path).map_err(io_err)?.take(len + 1).read_to_end(&mut data).map_err(io_err)?;
    if data.len() as u64 != len {
        // Changed while being read.
        return Err(DataError::RecordSize {
            path: path.into(),
            len: data.len() as u64,
            record,
            labels: l.label_bytes,
            set: l.set,
        });
    }
    let first = labels.len();
    for (index, rec) in data.chunks_exact(record as usize).enumerate() {
        let label = rec[l.label_bytes as usize - 1];
        if usize::from(label) >= classes {
            return Err(DataError::LabelOutOfRange { path: path.into(), index, label, classes });
        }
        labels.push(label);
    }
    pixels.reserve((labels.len() - first) * CIFAR_IMAGE_BYTES as usize);
    for rec in data.chunks_exact(record as usize) {
        pixels.extend_from_slice(&rec[l.label_bytes as usize..]);
    }
    Ok(())
}

fn read_set(dir: &Path, names: &[&str], l: &Layout, kind: DatasetKind, name: String) -> Result<Dataset, DataError> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    // Every file exists before any is read.
    for n in names {
        if !dir.join(n).exists() {
            return Err(DataError::MissingSetFile { dir: dir.into(), name: (*n).into(), expected: expected_files(l) });
        }
    }
    for n in names {
        read_file(&dir.join(n), l, kind.classes(), &mut pixels, &mut labels)?;
    }
    Ok(Dataset {
        pixels,
        labels,
        shape: Shape { c: 3, h: 32, w: 32 },
        classes: kind.classes(),
        norm: kind.norm(),
        name,
    })
}

/// Loads CIFAR-10 (`kind` Cifar10: `data_batch_1..5.bin`, `test_batch.bin`)
/// or CIFAR-100 (`train.bin`, `test.bin`) from `dir` or from the folder
/// the archive unpacks to inside it (`cifar-10-batches-bin`,
/// `cifar-100-binary`). Pixels stay bytes, normalised per channel with
/// `kind.norm()` when batches are built.
pub fn load_cifar_dir(dir: &Path, kind: DatasetKind) -> Result<Split, DataError> {
    let l = layout(kind);
    let dir = find_dir(dir, l)?;
    let train = read_set(&dir, l.train, l, kind, format!("{}-train", kind.name()))?;
    let test = read_set(&dir, &[l.test], l, kind, format!("{}-test", kind.name()))?;
    Ok(Split { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records with label `i % classes` (CIFAR-100: coarse label first) and
    /// pixels derived from their index.
    fn records(n: usize, label_bytes: usize, classes: usize, from: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in from..from + n {
            if label_bytes == 2 {
                out.push((i % 20) as u8);
            }
            out.push((i % classes) as u8);
            out.extend((0..CIFAR_IMAGE_BYTES as usize).map(|p| (i * 7 + p) as u8));
        }
        out
    }

    fn write_cifar10(dir: &Path, per_file: usize) {
        for (f, name) in CIFAR10.train.iter().enumerate() {
            fs::write(dir.join(name), records(per_file, 1, 10, f * per_file)).unwrap();
        }
        fs::write(dir.join(CIFAR10.test), records(3, 1, 10, 1000)).unwrap();
    }

    #[test]
    fn reads_cifar10_from_the_dir_or_the_archive_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let inner = tmp.path().join("cifar-10-batches-bin");
        fs::create_dir(&inner).unwrap();
        write_cifar10(&inner, 4);
        for dir in [tmp.path(), inner.as_path()] {
            let s = load_cifar_dir(dir, DatasetKind::Cifar10).unwrap();
            assert_eq!((s.train.len(), s.test.len()), (20, 3));
            assert_eq!(s.train.shape, Shape { c: 3, h: 32, w: 32 });
            assert_eq!(s.train.classes, 10);
            // Files in order, records in order: sample 13 is record 13.
            assert_eq!(s.train.labels[13], 3);
            assert_eq!(s.train.image(13)[5], (13 * 7 + 5) as u8);
            assert_eq!(s.test.labels[0], 0);
            assert_eq!(s.test.image(2)[3071], (1002 * 7 + 3071) as u8);
            assert_eq!(s.train.norm, DatasetKind::Cifar10.norm());
        }
    }

    #[test]
    fn reads_cifar100_fine_labels() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("train.bin"), records(150, 2, 100, 0)).unwrap();
        fs::write(tmp.path().join("test.bin"), records(2, 2, 100, 0)).unwrap();
        let s = load_cifar_dir(tmp.path(), DatasetKind::Cifar100).unwrap();
        assert_eq!((s.train.len(), s.train.classes), (150, 100));
        assert_eq!(s.train.labels[123], 23);
        assert_eq!(s.train.image(123)[0], (123 * 7) as u8);
    }

    fn err(dir: &Path, kind: DatasetKind) -> String {
        load_cifar_dir(dir, kind).unwrap_err().to_string()
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        assert!(err(&d.join("nope"), DatasetKind::Cifar10).contains("does not exist"));
        fs::write(d.join("file"), b"x").unwrap();
        assert!(err(&d.join("file"), DatasetKind::Cifar10).contains("not a directory"));
        let e = err(d, DatasetKind::Cifar10);
        assert!(e.contains("test_batch.bin") && e.contains("cifar-10-batches-bin"), "{e}");

        write_cifar10(d, 2);
        fs::remove_file(d.join("data_batch_4.bin")).unwrap();
        assert!(err(d, DatasetKind::Cifar10).contains("no data_batch_4.bin"));

        write_cifar10(d, 2);
        let path = d.join("data_batch_2.bin");
        let mut truncated = records(2, 1, 10, 0);
        truncated.truncate(3000);
        fs::write(&path, &truncated).unwrap();
        let e = err(d, DatasetKind::Cifar10);
        assert!(e.contains("3000 bytes") && e.contains("3073-byte records") && e.contains("data_batch_2.bin"), "{e}");

        fs::write(&path, b"").unwrap();
        assert!(err(d, DatasetKind::Cifar10).contains("is empty"));

        let mut bad_label = records(2, 1, 10, 0);
        bad_label[3073] = 10;
        fs::write(&path, &bad_label).unwrap();
        let e = err(d, DatasetKind::Cifar10);
        assert!(e.contains("label 10 at index 1") && e.contains("10-class"), "{e}");

        // A CIFAR-10 file read as CIFAR-100: 3073-byte records are not 3074-byte ones.
        write_cifar10(d, 2);
        fs::copy(d.join("data_batch_1.bin"), d.join("train.bin")).unwrap();
        fs::copy(d.join("test_batch.bin"), d.join("test.bin")).unwrap();
        let e = err(d, DatasetKind::Cifar100);
        assert!(e.contains("3074-byte records") && e.contains("CIFAR-100"), "{e}");

        fs::remove_file(d.join("test_batch.bin")).unwrap();
        fs::create_dir(d.join("test_batch.bin")).unwrap();
        assert!(err(d, DatasetKind::Cifar10).contains("not a regular file"));
    }
}
