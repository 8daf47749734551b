//! Files as this engine writes and reads them: atomic writes (a crash
//! leaves the old file or the new one, never a torn one) and size-limited
//! reads of untrusted files.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Larger files are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// Reads a whole regular file of at most `max` bytes.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    let io = |source| Error::Io { path: path.into(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(Error::BadFile { path: path.into(), reason: "not a regular file".into() });
    }
    if meta.len() > max {
        return Err(Error::BadFile { path: path.into(), reason: format!("{} bytes, more than {max}", meta.len()) });
    }
    std::fs::read(path).map_err(io)
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or
/// the new one, never a torn one: a temporary file in the same directory,
/// fsync, rename over the target, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    if path.exists() && !overwrite {
        return Err(Error::Exists { path: path.into() });
    }
    let io = |p: &Path| {
        let p: PathBuf = p.into();
        move |source| Error::Io { path: p, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| Error::InvalidArgument(format!("{} names no file", path.display())))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        // The rename is durable once the directory entry is.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
