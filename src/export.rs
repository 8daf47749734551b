//! Export of the trained network as what it is: a smaller dense MLP made of
//! the kept units alone, in safetensors, with its architecture in the
//! metadata. It runs without any mask (`CompactMlp::to_mlp`) and its
//! parameter count is the kept count. Files are written atomically and read
//! as untrusted input.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::mlp::{Mlp, ParamLayout};
use crate::sparse::{MaskState, SparseTrainer};

/// The value of the `format` metadata key.
pub const FORMAT: &str = "sparsetrain-mlp";
/// Larger files are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// A dense MLP in host memory: layer l maps sizes[l] to sizes[l+1] with
/// weight [out, in] (row-major) and bias [out].
#[derive(Clone, Debug, PartialEq)]
pub struct CompactMlp {
    pub sizes: Vec<usize>,
    pub weights: Vec<Vec<f32>>,
    pub biases: Vec<Vec<f32>>,
    /// Free-form metadata kept in the file (dataset, kept units, …).
    pub info: HashMap<String, String>,
}

impl CompactMlp {
    /// The kept units of `state` (a compacted mask of `trainer`) as a dense
    /// network: kept rows of every hidden layer, kept columns of the next.
    /// Reads the parameters and kept lists back (counted).
    pub fn from_sparse(gpu: &Gpu, trainer: &SparseTrainer, state: &MaskState) -> Result<CompactMlp> {
        let layout = &trainer.mlp.layout;
        let flat = trainer.mlp.params.download_f32(gpu)?;
        let kept_lists = state.kept.download_u32(gpu)?;
        let counts = trainer.kept_counts(gpu, state)?;
        let layers = layout.layers();
        // kept[l]: the original indices of layer l's kept outputs (all for the classifier).
        let mut kept: Vec<Vec<usize>> = Vec::new();
        for l in 0..layers {
            let o = layout.sizes[l + 1];
            if l + 1 < layers {
                let off = trainer.unit_off[l];
                kept.push(kept_lists[off..off + counts[l]].iter().map(|&u| u as usize).collect());
            } else {
                kept.push((0..o).collect());
            }
        }
        let mut sizes = vec![layout.sizes[0]];
        sizes.extend(kept.iter().map(Vec::len));
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for l in 0..layers {
            let full_in = layout.sizes[l];
            let cols: Vec<usize> = if l == 0 { (0..full_in).collect() } else { kept[l - 1].clone() };
            let w = &flat[layout.w[l]..layout.w[l] + full_in * layout.sizes[l + 1]];
            let b = &flat[layout.b[l]..layout.b[l] + layout.sizes[l + 1]];
            weights.push(kept[l].iter().flat_map(|&r| cols.iter().map(move |&c| w[r * full_in + c])).collect());
            biases.push(kept[l].iter().map(|&r| b[r]).collect());
        }
        let mut info = HashMap::new();
        info.insert("dense_sizes".into(), join(&layout.sizes));
        Ok(CompactMlp { sizes, weights, biases, info })
    }

    /// A dense model as it is.
    pub fn from_dense(gpu: &Gpu, mlp: &Mlp) -> Result<CompactMlp> {
        let layout = &mlp.layout;
        let flat = mlp.params.download_f32(gpu)?;
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for l in 0..layout.layers() {
            let (i, o) = layout.dims(l);
            weights.push(flat[layout.w[l]..layout.w[l] + i * o].to_vec());
            biases.push(flat[layout.b[l]..layout.b[l] + o].to_vec());
        }
        let mut info = HashMap::new();
        info.insert("dense_sizes".into(), join(&layout.sizes));
        Ok(CompactMlp { sizes: layout.sizes.clone(), weights, biases, info })
    }

    pub fn param_count(&self) -> usize {
        self.weights.iter().chain(&self.biases).map(Vec::len).sum()
    }

    /// The network on the device, ready for `Mlp::forward`.
    pub fn to_mlp(&self, gpu: &Gpu) -> Result<Mlp> {
        let layout = ParamLayout::new(&self.sizes)?;
        let mut flat = vec![0.0f32; layout.total];
        for l in 0..layout.layers() {
            flat[layout.w[l]..layout.w[l] + self.weights[l].len()].copy_from_slice(&self.weights[l]);
            flat[layout.b[l]..layout.b[l] + self.biases[l].len()].copy_from_slice(&self.biases[l]);
        }
        Mlp::from_flat(gpu, layout, &flat)
    }

    /// The safetensors bytes: `layer{l}.weight` [out, in], `layer{l}.bias`
    /// [out], f32 little-endian; metadata `format`, `sizes` and `info`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bad = |e: safetensors::SafeTensorError| Error::InvalidArgument(format!("serialising the network: {e}"));
        let mut views = Vec::new();
        for l in 0..self.weights.len() {
            let (i, o) = (self.sizes[l], self.sizes[l + 1]);
            let w = TensorView::new(Dtype::F32, vec![o, i], bytemuck::cast_slice(&self.weights[l])).map_err(bad)?;
            let b = TensorView::new(Dtype::F32, vec![o], bytemuck::cast_slice(&self.biases[l])).map_err(bad)?;
            views.push((format!("layer{l}.weight"), w));
            views.push((format!("layer{l}.bias"), b));
        }
        let mut meta = self.info.clone();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("sizes".into(), join(&self.sizes));
        safetensors::serialize(views, Some(meta)).map_err(bad)
    }

    /// Parses and checks a file's bytes: format tag, architecture, every
    /// tensor present with the right dtype and shape, all values finite.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<CompactMlp> {
        let bad = |reason: String| Error::BadFile { path: path.into(), reason };
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file ({e})")))?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("unreadable header ({e})")))?;
        let info = meta.metadata().clone().unwrap_or_default();
        match info.get("format") {
            Some(f) if f == FORMAT => {}
            other => return Err(bad(format!("not a sparsetrain network export (format {other:?})"))),
        }
        let sizes: Vec<usize> = info
            .get("sizes")
            .ok_or_else(|| bad("metadata lacks `sizes`".into()))?
            .split(',')
            .map(|s| s.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("`sizes` is not a list of numbers".into()))?;
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(bad(format!("invalid architecture {sizes:?}")));
        }
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        let read = |name: String, shape: Vec<usize>| -> Result<Vec<f32>> {
            let t = st.tensor(&name).map_err(|_| bad(format!("missing tensor {name}")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape.as_slice() {
                return Err(bad(format!("{name} is {:?} {:?}, expected F32 {shape:?}", t.dtype(), t.shape())));
            }
            let v: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!("{name} holds non-finite values")));
            }
            Ok(v)
        };
        for l in 0..sizes.len() - 1 {
            let (i, o) = (sizes[l], sizes[l + 1]);
            i.checked_mul(o).ok_or_else(|| bad(format!("layer {l} of {o}x{i} overflows")))?;
            weights.push(read(format!("layer{l}.weight"), vec![o, i])?);
            biases.push(read(format!("layer{l}.bias"), vec![o])?);
        }
        if st.len() != 2 * (sizes.len() - 1) {
            return Err(bad(format!("{} tensors for {} layers", st.len(), sizes.len() - 1)));
        }
        let mut info = info;
        info.remove("format");
        info.remove("sizes");
        Ok(CompactMlp { sizes, weights, biases, info })
    }

    /// Writes the file atomically; refuses to replace an existing one unless
    /// `overwrite`.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<()> {
        write_atomic(path, &self.to_bytes()?, overwrite)
    }

    pub fn load(path: &Path) -> Result<CompactMlp> {
        let bytes = read_limited(path, MAX_FILE_BYTES)?;
        CompactMlp::from_bytes(&bytes, path)
    }
}

fn join(v: &[usize]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

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
