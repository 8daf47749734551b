//! A workspace: the device memory of a `Net`'s passes over batches of up
//! to a capacity: the batch itself, each stored value and its gradient per
//! mask sample, the layers' scratch, the loss buffers. Every size is checked
//! against the device's limits before anything is allocated.

use super::graph::{ChannelSet, Graph};
use super::loss::LossBuffers;
use crate::device::gpu::Gpu;
use crate::device::tensor::{DType, Tensor, aligned_len};
use crate::error::{Error, Result};
use crate::ops::gather::Side;
use crate::ops::reduce::Reducer;

/// Per-batch device memory of a `Net`: the batch itself (x, labels), the
/// buffers of its passes, loss buffers.
pub struct Workspace {
    pub(super) capacity: usize,
    pub(super) compressed: bool,
    /// [capacity, input] f32: the batch's inputs.
    pub x: Tensor,
    /// [capacity] u32: the batch's labels.
    pub y: Tensor,
    /// One per mask sample of a sparse step (two in a compressed workspace,
    /// else one): sample j's passes run in `passes[j]`, so that a step can
    /// run both samples' passes layer by layer (`Net::forward_samples`).
    pub(super) passes: Vec<PassBufs>,
    pub(super) loss: LossBuffers,
    /// Bound where a kernel takes kept sets and a dense pass has none.
    pub(super) unused: Tensor,
}

/// One pass's buffers: each stored value's and its gradient's, and the
/// layers' scratch. Of a compressed workspace's two, a value's buffers lie
/// in one device buffer where that fits (`pair_views`), the second at a
/// fixed distance from the first; the transient scratch, and what a layer
/// reading the graph's input derives from the input alone, are shared.
pub(super) struct PassBufs {
    pub(super) acts: Vec<Option<Tensor>>,
    pub(super) grads: Vec<Option<Tensor>>,
    pub(super) scratch: Vec<Vec<Tensor>>,
}

/// `count` views of `len` elements each (1 or 2), in one new buffer
/// `aligned_len(len)` apart where it fits the device, else in buffers of
/// their own.
fn pair_views(gpu: &Gpu, label: &str, len: usize, count: usize) -> Result<Vec<Tensor>> {
    let stride = aligned_len(len);
    if count > 1 && Tensor::check_fits(gpu, label, &[stride * count]).is_ok() {
        let t = Tensor::zeros(gpu, label, &[stride * count], DType::F32)?;
        return (0..count).map(|j| t.view(j * stride, &[len])).collect();
    }
    (0..count).map(|_| Tensor::zeros(gpu, label, &[len], DType::F32)).collect()
}

impl Workspace {
    /// Mask samples it holds passes for (`Net::forward_samples`).
    pub fn samples(&self) -> usize {
        self.passes.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether it can hold compacted passes (`Net::workspace`).
    pub fn compressed(&self) -> bool {
        self.compressed
    }
}

impl Workspace {
    /// Fails, naming the buffer and the device limit, unless a net of `g`
    /// with a workspace of `capacity` rows fits the device; allocates
    /// nothing. Sizes that overflow are errors too.
    pub(super) fn check_fits(gpu: &Gpu, g: &Graph, capacity: usize, compressed: bool) -> Result<()> {
        Tensor::check_fits(gpu, "parameters", &[g.param_total])?;
        let input_len = capacity.checked_mul(g.input().len()).ok_or_else(|| {
            Error::InvalidArgument(format!("a batch of {capacity} inputs of {} overflows", g.input()))
        })?;
        Tensor::check_fits(gpu, "batch x", &[input_len])?;
        Tensor::check_fits(gpu, "probs", &[capacity, g.classes()])?;
        for (name, len) in Workspace::storage_lens(g, capacity, compressed)?.iter().flatten() {
            Tensor::check_fits(gpu, &format!("{name} output"), &[*len])?;
        }
        Ok(())
    }

    /// Elements of each stored value's buffer for `capacity` rows.
    fn storage_lens(g: &Graph, capacity: usize, compressed: bool) -> Result<Vec<Option<(String, usize)>>> {
        let mut lens: Vec<Option<(String, usize)>> = vec![None; g.storages];
        for (v, val) in g.values.iter().enumerate().skip(1) {
            let c = match val.set {
                ChannelSet::Full => val.shape.c,
                _ if compressed => val.shape.c.div_ceil(4) * 4,
                _ => val.shape.c,
            };
            let len = capacity
                .checked_mul(c)
                .and_then(|x| x.checked_mul(val.shape.plane()))
                .ok_or_else(|| Error::InvalidArgument(format!("value {v}: size overflows")))?;
            let slot = &mut lens[val.storage];
            let name = val.producer.map_or("input".to_string(), |p| g.nodes[p].name.clone());
            if slot.as_ref().is_none_or(|(_, l)| *l < len) {
                *slot = Some((name, len));
            }
        }
        Ok(lens)
    }

    /// Buffers of graph `g` for batches of up to `capacity` rows, with each
    /// value's side in a pass (`sides`, representative where compacted);
    /// `compressed` sizes them for passes on kept units too (compacted
    /// channels pad to 4). See `Net::workspace`.
    pub(super) fn new(gpu: &Gpu, g: &Graph, sides: &[Side], capacity: usize, compressed: bool) -> Result<Workspace> {
        if capacity == 0 {
            return Err(Error::InvalidArgument("batch capacity must be at least 1".into()));
        }
        // The matmul variant is settled first: layers size their scratch by
        // it (a convolution with implicit products needs no columns) and
        // record their passes by it, so it must not change in between.
        crate::ops::autotune::ensure(gpu)?;
        // Every size is checked before anything is allocated.
        Workspace::check_fits(gpu, g, capacity, compressed)?;
        let lens = Workspace::storage_lens(g, capacity, compressed)?;
        let mut scratch_specs = Vec::new();
        for node in &g.nodes {
            let in_sides: Vec<Side> = node.inputs.iter().map(|&v| sides[v]).collect();
            let out = g.values[node.output].shape;
            let specs = node.layer.scratch(gpu, &node.in_shapes, (&in_sides, sides[node.output]), out, capacity);
            for s in &specs {
                Tensor::check_fits(gpu, &format!("{} {}", node.name, s.name), &[s.len])?;
            }
            scratch_specs.push(specs);
        }
        let classes = g.classes();
        // A compressed workspace holds both mask samples' passes.
        let samples = if compressed { 2 } else { 1 };
        let mut passes: Vec<PassBufs> = (0..samples)
            .map(|_| PassBufs { acts: vec![None; g.storages], grads: vec![None; g.storages], scratch: Vec::new() })
            .collect();
        for (s, l) in lens.iter().enumerate() {
            if let Some((name, len)) = l {
                let acts = pair_views(gpu, &format!("{name} output"), *len, samples)?;
                let grads = pair_views(gpu, &format!("{name} output grad"), *len, samples)?;
                for ((pass, a), d) in passes.iter_mut().zip(acts).zip(grads) {
                    pass.acts[s] = Some(a);
                    pass.grads[s] = Some(d);
                }
            }
        }
        // Transient scratch (slot i of every layer) shares one buffer, sized
        // for the largest use: layers run one after another, and each use
        // ends within one layer's forward or backward of one sample. The
        // kept kinds (compacted weights, statistics) last from a layer's
        // forward to its backward: one per sample.
        let mut shared: Vec<usize> = Vec::new();
        // A layer reading the graph's input keeps its own: what it derives
        // from the input (im2col columns) holds for every pass of a step,
        // so both samples share that (and that layer's other transient
        // kinds, each use still within one sample's call).
        let mut per_sample: Vec<Vec<bool>> = Vec::new();
        for (node, specs) in g.nodes.iter().zip(scratch_specs.iter_mut()) {
            per_sample.push(specs.iter().map(|s| !s.transient).collect());
            if node.inputs.contains(&0) {
                specs.iter_mut().for_each(|s| s.transient = false);
            }
        }
        for specs in &scratch_specs {
            for (i, s) in specs.iter().enumerate().filter(|(_, s)| s.transient) {
                if shared.len() <= i {
                    shared.resize(i + 1, 0);
                }
                shared[i] = shared[i].max(s.len);
            }
        }
        let shared: Vec<Tensor> = shared
            .iter()
            .enumerate()
            .map(|(i, &len)| Tensor::zeros(gpu, &format!("shared scratch {i}"), &[len.max(1)], DType::F32))
            .collect::<Result<_>>()?;
        for ((node, specs), own) in g.nodes.iter().zip(scratch_specs).zip(per_sample) {
            let mut v: Vec<Vec<Tensor>> = vec![Vec::new(); samples];
            for (i, (s, own)) in specs.into_iter().zip(own).enumerate() {
                let label = format!("{} {}", node.name, s.name);
                let ts = if s.transient {
                    vec![shared[i].clone(); samples]
                } else if own {
                    pair_views(gpu, &label, s.len.max(1), samples)?
                } else {
                    vec![Tensor::zeros(gpu, &label, &[s.len.max(1)], DType::F32)?; samples]
                };
                for (vj, t) in v.iter_mut().zip(ts) {
                    vj.push(t);
                }
            }
            for (pass, vj) in passes.iter_mut().zip(v) {
                pass.scratch.push(vj);
            }
        }
        Ok(Workspace {
            capacity,
            compressed,
            x: Tensor::zeros(gpu, "batch x", &[capacity, g.input().len()], DType::F32)?,
            y: Tensor::zeros(gpu, "batch labels", &[capacity], DType::U32)?,
            passes,
            loss: LossBuffers {
                probs: Tensor::zeros(gpu, "probs", &[capacity, classes], DType::F32)?,
                loss_rows: Tensor::zeros(gpu, "loss rows", &[2 * aligned_len(capacity)], DType::F32)?,
                stride: aligned_len(capacity),
                reducer: Reducer::new(gpu)?,
            },
            unused: Tensor::zeros(gpu, "unused kept sets", &[4], DType::U32)?,
        })
    }
}
