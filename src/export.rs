//! Export of the trained network as what it is: the network made of the kept
//! units alone — a smaller dense network of the same architecture — in
//! safetensors, with its graph's description in the metadata. It runs
//! without any mask (`Exported::to_net`) and its parameter count is the
//! kept count. Files are written atomically and read as untrusted input.
//!
//! Tensors are named "node.param" (e.g. `fc1.weight` [out, in], `fc1.bias`
//! [out]), f32 little-endian. Metadata: `format`, `graph` (JSON), and free
//! `info` entries (dataset, input normalisation, ...). Files of the earlier
//! MLP format (`sparsetrain-mlp`, `layer{l}.weight`) still load.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::device::gpu::Gpu;
use crate::error::{Error, Result};
use crate::io::{MAX_FILE_BYTES, read_limited, write_atomic};
use crate::nn::compact::NamedTensor;
use crate::nn::{Graph, GraphSpec, Net};

/// The value of the `format` metadata key.
pub const FORMAT: &str = "sparsetrain-net";
/// The format of the earlier MLP-only exports, still read.
pub const LEGACY_MLP_FORMAT: &str = "sparsetrain-mlp";

/// A network in host memory: its description and its named parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Exported {
    pub spec: GraphSpec,
    /// "node.param", shape, data, in the graph's parameter order.
    pub tensors: Vec<NamedTensor>,
    /// Free-form metadata kept in the file (dataset, normalisation, ...).
    pub info: HashMap<String, String>,
}

impl Exported {
    /// The network of `kept[p]` units of each prunable layer of `graph`,
    /// cut from its flat parameters `flat` and state `state`.
    pub fn from_graph(graph: &Graph, kept: &[Vec<usize>], flat: &[f32], state: &[f32]) -> Result<Exported> {
        let spec = graph.compacted_spec(kept)?;
        let tensors = graph.compact_params(kept, flat, state)?;
        let mut info = HashMap::new();
        info.insert("dense_params".into(), graph.param_count().to_string());
        Ok(Exported { spec, tensors, info })
    }

    /// Records how the network is fed: the data it was trained on, one
    /// sample's shape, the class count, the per-channel normalisation of
    /// pixel bytes (x / 255 − mean) / std, and the layer kinds in order — what
    /// an outside client needs to reproduce `eval` (README, "Using an export").
    pub fn describe_input(&mut self, dataset: &str, shape: crate::nn::Shape, norm: &crate::data::Norm) {
        let s = shape;
        self.info.insert("dataset".into(), dataset.into());
        self.info.insert("input_shape".into(), format!("{},{},{}", s.c, s.h, s.w));
        self.info.insert("classes".into(), self.spec.classes.to_string());
        self.info.insert("input_norm".into(), serde_json::json!({"mean": norm.mean, "std": norm.std}).to_string());
        let kinds: Vec<&str> = self.spec.nodes.iter().map(|n| n.kind.as_str()).collect();
        self.info.insert("layers".into(), kinds.join(","));
    }

    /// Trained parameters (running statistics, which the file holds too,
    /// are not counted).
    pub fn param_count(&self) -> usize {
        let state = Graph::from_spec(self.spec.clone()).map_or(0, |g| g.state_total);
        self.tensors.iter().map(|t| t.2.len()).sum::<usize>().saturating_sub(state)
    }

    /// "784-109-87-10" for an MLP; else the input, the output channels of
    /// the convolutions and the widths of the linear layers:
    /// "3x32x32, conv 3/1/2/…, linear 10".
    pub fn describe(&self) -> String {
        let outs = |kind: &str| -> Vec<String> {
            let nodes = self.spec.nodes.iter().filter(|n| n.kind == kind);
            nodes.filter_map(|n| n.settings.get("out").and_then(|v| v.as_u64())).map(|o| o.to_string()).collect()
        };
        if self.spec.nodes.iter().all(|n| n.kind == "linear" || n.kind == "relu") {
            let mut widths = vec![self.spec.input.len().to_string()];
            widths.extend(outs("linear"));
            return widths.join("-");
        }
        let mut parts = vec![self.spec.input.to_string()];
        for (kind, name) in [("conv2d", "conv"), ("linear", "linear")] {
            let o = outs(kind);
            if !o.is_empty() {
                parts.push(format!("{name} {}", o.join("/")));
            }
        }
        parts.join(", ")
    }

    /// The network on the device, ready for a dense forward pass.
    pub fn to_net(&self, gpu: &Gpu) -> Result<Net> {
        let graph = Graph::from_spec(self.spec.clone())?;
        let mut flat = vec![0.0f32; graph.param_total];
        let mut state = vec![0.0f32; graph.state_total];
        let slots = graph
            .nodes
            .iter()
            .flat_map(|n| n.params.iter().map(move |p| (n, p, false)).chain(n.state.iter().map(move |p| (n, p, true))));
        for ((node, slot, is_state), (name, shape, data)) in slots.zip(&self.tensors) {
            let want = format!("{}.{}", node.name, slot.spec.name);
            if *name != want || *shape != slot.spec.shape {
                return Err(Error::InvalidArgument(format!(
                    "tensor {name} {shape:?} where {want} {:?} belongs",
                    slot.spec.shape
                )));
            }
            let dst = if is_state { &mut state } else { &mut flat };
            dst[slot.offset..slot.offset + data.len()].copy_from_slice(data);
        }
        Net::from_flat(gpu, graph, &flat, &state)
    }

    /// The safetensors bytes. A network holding non-finite values is refused:
    /// it cannot compute anything.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bad = |e: safetensors::SafeTensorError| Error::InvalidArgument(format!("serialising the network: {e}"));
        if let Some((name, _, _)) = self.tensors.iter().find(|t| t.2.iter().any(|x| !x.is_finite())) {
            return Err(Error::InvalidArgument(format!(
                "the network's {name} holds non-finite values (the training diverged); it was not exported"
            )));
        }
        let mut views = Vec::new();
        for (name, shape, data) in &self.tensors {
            views.push((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data)).map_err(bad)?,
            ));
        }
        let mut meta = self.info.clone();
        meta.insert("format".into(), FORMAT.into());
        let graph = serde_json::to_string(&self.spec)
            .map_err(|e| Error::InvalidArgument(format!("encoding the graph: {e}")))?;
        meta.insert("graph".into(), graph);
        safetensors::serialize(views, Some(meta)).map_err(bad)
    }

    /// Parses and checks a file's bytes: format tag, graph, every tensor
    /// present with the right dtype and shape, all values finite.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Exported> {
        let bad = |reason: String| Error::BadFile { path: path.into(), reason };
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file ({e})")))?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("unreadable header ({e})")))?;
        let mut info = meta.metadata().clone().unwrap_or_default();
        let (spec, legacy) = match info.get("format").map(String::as_str) {
            Some(FORMAT) => {
                let text = info.get("graph").ok_or_else(|| bad("metadata lacks `graph`".into()))?;
                let spec: GraphSpec =
                    serde_json::from_str(text).map_err(|e| bad(format!("metadata `graph` is malformed ({e})")))?;
                (spec, false)
            }
            Some(LEGACY_MLP_FORMAT) => (legacy_spec(&info).map_err(bad)?, true),
            other => return Err(bad(format!("not a sparsetrain network export (format {other:?})"))),
        };
        let graph = Graph::from_spec(spec.clone()).map_err(|e| bad(format!("invalid graph: {e}")))?;
        let mut tensors = Vec::new();
        let mut layer = 0;
        for node in &graph.nodes {
            for slot in node.params.iter().chain(&node.state) {
                let name = if legacy {
                    format!("layer{layer}.{}", slot.spec.name)
                } else {
                    format!("{}.{}", node.name, slot.spec.name)
                };
                let t = st.tensor(&name).map_err(|_| bad(format!("missing tensor {name}")))?;
                if t.dtype() != Dtype::F32 || t.shape() != slot.spec.shape.as_slice() {
                    return Err(bad(format!(
                        "{name} is {:?} {:?}, expected F32 {:?}",
                        t.dtype(),
                        t.shape(),
                        slot.spec.shape
                    )));
                }
                let v: Vec<f32> =
                    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(bad(format!("{name} holds non-finite values")));
                }
                tensors.push((format!("{}.{}", node.name, slot.spec.name), slot.spec.shape.clone(), v));
            }
            if !node.params.is_empty() {
                layer += 1;
            }
        }
        if st.len() != tensors.len() {
            return Err(bad(format!("{} tensors where the graph has {} parameters", st.len(), tensors.len())));
        }
        for k in ["format", "graph", "sizes"] {
            info.remove(k);
        }
        Ok(Exported { spec, tensors, info })
    }

    /// Writes the file atomically; refuses to replace an existing one unless
    /// `overwrite`.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<()> {
        write_atomic(path, &self.to_bytes()?, overwrite)
    }

    pub fn load(path: &Path) -> Result<Exported> {
        let bytes = read_limited(path, MAX_FILE_BYTES)?;
        Exported::from_bytes(&bytes, path)
    }
}

/// The graph of an export of the earlier MLP-only format (`sizes` = in,
/// hidden..., out).
fn legacy_spec(info: &HashMap<String, String>) -> std::result::Result<GraphSpec, String> {
    let sizes: Vec<usize> = info
        .get("sizes")
        .ok_or("metadata lacks `sizes`")?
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| "`sizes` is not a list of numbers".to_string())?;
    if sizes.len() < 2 || sizes.contains(&0) {
        return Err(format!("invalid architecture {sizes:?}"));
    }
    Ok(GraphSpec::mlp(sizes[0], &sizes[1..sizes.len() - 1], sizes[sizes.len() - 1]))
}
