//! Files as this engine writes and reads them: atomic writes (a crash
//! leaves the old file or the new one, never a torn one), size-limited reads
//! of untrusted files, checks that an output can be written before any work
//! is done, and an exclusive lock on a run's checkpoint directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Larger files are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// Reads a whole regular file of at most `max` bytes.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    let io = |error| Error::Io { path: path.into(), error };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(Error::BadFile { path: path.into(), reason: "not a regular file".into() });
    }
    if meta.len() > max {
        return Err(Error::BadFile { path: path.into(), reason: format!("{} bytes, more than {max}", meta.len()) });
    }
    std::fs::read(path).map_err(io)
}

/// The directory a file path lives in ("." for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary name `write_atomic` uses for `path` in this process.
fn temporary(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| Error::InvalidArgument(format!("{} names no file", path.display())))?;
    Ok(parent_dir(path).join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id())))
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or
/// the new one, never a torn one: a temporary file in the same directory,
/// fsync, rename over the target, fsync of the directory. Errors name
/// `path`, never the temporary.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    if path.exists() && !overwrite {
        return Err(Error::Exists { path: path.into() });
    }
    if path.is_dir() {
        return Err(Error::InvalidArgument(format!("{} is a directory, not a file", path.display())));
    }
    let io = |error| Error::Io { path: path.into(), error };
    let tmp = temporary(path)?;
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        // The rename is durable once the directory entry is.
        if let Ok(d) = std::fs::File::open(parent_dir(path)) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes temporaries that `write_atomic` left in `dir` when a process was
/// killed mid-write (`.NAME.PID.tmp` whose NAME starts with one of
/// `prefixes`); returns their names.
pub fn remove_stale_temporaries(dir: &Path, prefixes: &[&str]) -> Result<Vec<String>> {
    let rd = std::fs::read_dir(dir).map_err(|error| Error::Io { path: dir.into(), error })?;
    let mut removed = Vec::new();
    for entry in rd.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else { continue };
        let Some((base, pid)) = inner.rsplit_once('.') else { continue };
        if pid.parse::<u32>().is_ok() && prefixes.iter().any(|p| base.starts_with(p)) && entry.path().is_file() {
            std::fs::remove_file(entry.path()).map_err(|error| Error::Io { path: entry.path(), error })?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Checks, before any work, that a file can be written at `path` later: its
/// directory exists and takes new files, and it is not a directory or a
/// read-only file. Nothing at `path` itself is touched.
pub fn check_writable_file(path: &Path) -> Result<()> {
    let fail = |reason: String| Err(Error::InvalidArgument(format!("{}: {reason}", path.display())));
    if path.is_dir() {
        return fail("is a directory, not a file".into());
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            return fail("exists and is not a regular file".into());
        }
        if meta.permissions().readonly() {
            return fail("is read-only".into());
        }
    }
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return fail(format!("its directory {} does not exist", dir.display()));
    }
    // A probe file proves the directory takes new files (permissions,
    // read-only mounts), which metadata alone does not.
    let probe = dir.join(format!(".sparsetrain-probe.{}.tmp", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => fail(format!("cannot create files in {}: {e}", dir.display())),
    }
}

/// Makes sure `dir` is (or can become) a writable directory: creates it if
/// needed and probes it.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::InvalidArgument(format!("{} exists and is not a directory", dir.display())));
    }
    std::fs::create_dir_all(dir).map_err(|error| Error::Io { path: dir.into(), error })?;
    check_writable_file(&dir.join("probe"))
}

/// An exclusive claim on a directory for the lifetime of a run: the file
/// `.lock` holding the owner's process id, created exclusively, removed on
/// drop. A lock whose process has died is stale: it is reported and taken
/// over only when asked (`force`).
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
}

/// Whether process `pid` is alive, where the system can tell (Linux: /proc).
fn process_alive(pid: u32) -> Option<bool> {
    if pid == std::process::id() {
        return Some(true);
    }
    let proc = Path::new("/proc");
    proc.is_dir().then(|| proc.join(pid.to_string()).exists())
}

impl DirLock {
    pub const FILE: &'static str = ".lock";

    pub fn acquire(dir: &Path, force: bool) -> Result<DirLock> {
        std::fs::create_dir_all(dir).map_err(|error| Error::Io { path: dir.into(), error })?;
        let path = dir.join(DirLock::FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id()).map_err(|error| Error::Io { path: path.clone(), error })?;
                    return Ok(DirLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let pid = text.trim().parse::<u32>().ok();
                    let alive = pid.and_then(process_alive);
                    let owner = pid.map_or("an unknown process".to_string(), |p| format!("process {p}"));
                    match (alive, force) {
                        (Some(false), true) | (None, true) => {
                            eprintln!("warning: taking over the lock of {owner} on {} (--force)", dir.display());
                            std::fs::remove_file(&path).map_err(|error| Error::Io { path: path.clone(), error })?;
                        }
                        (Some(false), false) => {
                            return Err(Error::InvalidArgument(format!(
                                "{} is locked by {owner}, which is no longer running (a stale lock, {}); \
                                 pass --force to take it over",
                                dir.display(),
                                path.display()
                            )));
                        }
                        _ => {
                            return Err(Error::InvalidArgument(format!(
                                "{} is in use by {owner} (lock file {}); two runs must not share a checkpoint \
                                 directory: wait for it, or choose another directory",
                                dir.display(),
                                path.display()
                            )));
                        }
                    }
                }
                Err(error) => return Err(Error::Io { path, error }),
            }
        }
        Err(Error::InvalidArgument(format!("could not lock {}", dir.display())))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
