//! The library's one error type. Every variant says what went wrong and, where
//! the user can act, what to do about it.

use std::path::PathBuf;

/// Errors returned by sparsetrain's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no GPU adapter found{filter}: install a Vulkan driver (on Debian/Ubuntu: \
         `apt-get install mesa-vulkan-drivers` for the software rasteriser lavapipe), \
         or choose another backend with SPARSETRAIN_BACKEND=vulkan|metal|dx12|gl{hint}"
    )]
    NoAdapter {
        filter: String,
        /// Driver manifests on the machine that the loader did not use
        /// (`device::icd::hint`); empty where there is nothing to add.
        hint: String,
    },

    #[error("invalid value {value:?} for {var}: expected {expected}")]
    InvalidEnv { var: &'static str, value: String, expected: &'static str },

    #[error("could not open the GPU device on adapter {adapter:?}: {error}")]
    RequestDevice { adapter: String, error: wgpu::RequestDeviceError },

    #[error(
        "{what} needs {bytes} bytes, more than this device allows for {limit_name} ({limit} bytes); \
         use a smaller layer or batch"
    )]
    TooLarge { what: String, bytes: u64, limit_name: &'static str, limit: u64 },

    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("shader {shader} failed to compile for this device: {detail}")]
    Shader { shader: &'static str, detail: String },

    #[error("GPU error: {0}")]
    Device(String),

    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),

    #[error("reading data back from the GPU failed: {0}")]
    Readback(String),

    #[error(transparent)]
    Data(#[from] crate::data::DataError),

    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },

    #[error("{path} already exists; pass --force (or overwrite = true) to replace it")]
    Exists { path: PathBuf },

    // The I/O error is part of the message, not a separate source: printed
    // with its causes, it would otherwise appear twice.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
