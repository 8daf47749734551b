//! A graph on the device: its parameters and their gradients in two flat
//! buffers cut into views, and the recording of its forward and backward
//! passes over a workspace (activation and gradient buffers for a batch
//! capacity), dense or on the kept units of a mask. Everything sized here is
//! checked against the device's limits before anything is allocated.

use super::graph::{ChannelSet, Graph};
use super::layer::{Act, Ctx, GradOut};
use super::loss::LossBuffers;
use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::device::tensor::{DType, Tensor, aligned_len};
use crate::error::{Error, Result};
use crate::ops::Rows;
use crate::ops::gather::{KeptSet, Side};
use crate::ops::lazy::LazyPass;
use crate::ops::reduce::Reducer;

/// The kept channels of one mask: sample `sample` of a mask set laid out as
/// `sparse::MaskSet` lays them out (counts at sample·S + set, lists and
/// ranks at sample·T + the set's slot; `Graph::channel_sets`).
#[derive(Clone, Copy, Debug)]
pub struct MaskRef<'a> {
    pub kept: KeptSet<'a>,
    pub sample: usize,
}

/// The model on the device.
pub struct Net {
    pub graph: Graph,
    pub params: Tensor,
    pub grads: Tensor,
    /// Running statistics and other state that gradients do not train.
    pub state: Tensor,
    views: Vec<Vec<Tensor>>,
    grad_views: Vec<Vec<Tensor>>,
    state_views: Vec<Vec<Tensor>>,
    /// The layers' fixed channel sets (counts, lists, ranks), if any.
    fixed: Option<[Tensor; 3]>,
    fixed_sides: Vec<Vec<Side>>,
    /// Dynamic loss scaling (mixed precision): the backward pass multiplies
    /// the loss gradient by the scale in this tensor's `LOSS_SCALE_SLOT`
    /// (the trainer's clip record), so every gradient is scaled.
    pub loss_scale: Option<Tensor>,
}

/// Per-batch device memory of a `Net`: the batch itself (x, labels), one
/// buffer per stored value and gradient, layer scratch, loss buffers.
pub struct Workspace {
    capacity: usize,
    compressed: bool,
    /// [capacity, input] f32: the batch's inputs.
    pub x: Tensor,
    /// [capacity] u32: the batch's labels.
    pub y: Tensor,
    acts: Vec<Option<Tensor>>,
    grads: Vec<Option<Tensor>>,
    scratch: Vec<Vec<Tensor>>,
    loss: LossBuffers,
    /// Bound where a kernel takes kept sets and a dense pass has none.
    unused: Tensor,
}

impl Workspace {
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether it can hold compacted passes (`Net::workspace`).
    pub fn compressed(&self) -> bool {
        self.compressed
    }
}

impl Net {
    /// The graph with parameters from `Graph::init_params(seed)` and its
    /// initial state.
    pub fn new(gpu: &Gpu, graph: Graph, seed: u64) -> Result<Net> {
        Tensor::check_fits(gpu, "parameters", &[graph.param_total])?;
        let init = graph.init_params(seed);
        let state = graph.init_state();
        Net::from_flat(gpu, graph, &init, &state)
    }

    /// The graph with the given flat parameters and state (its layouts).
    pub fn from_flat(gpu: &Gpu, graph: Graph, flat: &[f32], state: &[f32]) -> Result<Net> {
        if flat.len() != graph.param_total || state.len() != graph.state_total {
            return Err(Error::Shape {
                op: "net",
                detail: format!(
                    "{} parameters and {} state values for a graph of {} and {}",
                    flat.len(),
                    state.len(),
                    graph.param_total,
                    graph.state_total
                ),
            });
        }
        Tensor::check_fits(gpu, "parameters", &[graph.param_total])?;
        Tensor::check_fits(gpu, "state", &[graph.state_total])?;
        let params = Tensor::from_f32(gpu, "params", &[graph.param_total], flat)?;
        let grads = Tensor::zeros(gpu, "grads", &[graph.param_total], DType::F32)?;
        let state_t = Tensor::zeros(gpu, "state", &[graph.state_total.max(1)], DType::F32)?;
        if !state.is_empty() {
            state_t.view(0, &[state.len()])?.upload(gpu, state)?;
        }
        let (mut views, mut grad_views, mut state_views) = (Vec::new(), Vec::new(), Vec::new());
        for node in &graph.nodes {
            let (mut v, mut g, mut s) = (Vec::new(), Vec::new(), Vec::new());
            for slot in &node.params {
                v.push(params.view(slot.offset, &slot.spec.shape)?);
                g.push(grads.view(slot.offset, &slot.spec.shape)?);
            }
            for slot in &node.state {
                s.push(state_t.view(slot.offset, &slot.spec.shape)?);
            }
            views.push(v);
            grad_views.push(g);
            state_views.push(s);
        }
        let (fixed, fixed_sides) = fixed_sets(gpu, &graph)?;
        Ok(Net {
            graph,
            params,
            grads,
            state: state_t,
            views,
            grad_views,
            state_views,
            fixed,
            fixed_sides,
            loss_scale: None,
        })
    }

    fn fixed_kept(&self) -> Option<KeptSet<'_>> {
        self.fixed.as_ref().map(|[dims, maps, ranks]| KeptSet { dims, maps, ranks })
    }

    /// Views of node n's parameters, in `Layer::params` order.
    pub fn param_views(&self, node: usize) -> &[Tensor] {
        &self.views[node]
    }

    /// Fails, naming the buffer and the device limit, unless a net of `g`
    /// with a workspace of `capacity` rows fits the device; allocates
    /// nothing. Sizes that overflow are errors too.
    pub fn check_fits(gpu: &Gpu, g: &Graph, capacity: usize, compressed: bool) -> Result<()> {
        Tensor::check_fits(gpu, "parameters", &[g.param_total])?;
        let input_len = capacity.checked_mul(g.input().len()).ok_or_else(|| {
            Error::InvalidArgument(format!("a batch of {capacity} inputs of {} overflows", g.input()))
        })?;
        Tensor::check_fits(gpu, "batch x", &[input_len])?;
        Tensor::check_fits(gpu, "probs", &[capacity, g.classes()])?;
        for (name, len) in Net::storage_lens(g, capacity, compressed)?.iter().flatten() {
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

    /// Buffers for batches of up to `capacity` rows; `compressed` sizes them
    /// for passes on kept units too (compacted channels pad to 4).
    pub fn workspace(&self, gpu: &Gpu, capacity: usize, compressed: bool) -> Result<Workspace> {
        let g = &self.graph;
        if capacity == 0 {
            return Err(Error::InvalidArgument("batch capacity must be at least 1".into()));
        }
        // The matmul variant is settled first: layers size their scratch by
        // it (a convolution with implicit products needs no columns) and
        // record their passes by it, so it must not change in between.
        crate::ops::autotune::ensure(gpu)?;
        // Every size is checked before anything is allocated.
        Net::check_fits(gpu, g, capacity, compressed)?;
        let lens = Net::storage_lens(g, capacity, compressed)?;
        let sides = self.sides(None, compressed);
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
        let mut acts = vec![None; g.storages];
        let mut grads = vec![None; g.storages];
        for (s, l) in lens.iter().enumerate() {
            if let Some((name, len)) = l {
                acts[s] = Some(Tensor::zeros(gpu, &format!("{name} output"), &[*len], DType::F32)?);
                grads[s] = Some(Tensor::zeros(gpu, &format!("{name} output grad"), &[*len], DType::F32)?);
            }
        }
        // Transient scratch (slot i of every layer) shares one buffer, sized
        // for the largest use: layers run one after another.
        let mut shared: Vec<usize> = Vec::new();
        // A layer reading the graph's input keeps its own: what it derives
        // from the input (im2col columns) holds for every pass of a step.
        for (node, specs) in g.nodes.iter().zip(scratch_specs.iter_mut()) {
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
        let mut scratch = Vec::new();
        for (node, specs) in g.nodes.iter().zip(scratch_specs) {
            let mut v = Vec::new();
            for (i, s) in specs.into_iter().enumerate() {
                v.push(if s.transient {
                    shared[i].clone()
                } else {
                    Tensor::zeros(gpu, &format!("{} {}", node.name, s.name), &[s.len.max(1)], DType::F32)?
                });
            }
            scratch.push(v);
        }
        Ok(Workspace {
            capacity,
            compressed,
            x: Tensor::zeros(gpu, "batch x", &[capacity, g.input().len()], DType::F32)?,
            y: Tensor::zeros(gpu, "batch labels", &[capacity], DType::U32)?,
            acts,
            grads,
            scratch,
            loss: LossBuffers {
                probs: Tensor::zeros(gpu, "probs", &[capacity, classes], DType::F32)?,
                loss_rows: Tensor::zeros(gpu, "loss rows", &[2 * aligned_len(capacity)], DType::F32)?,
                stride: aligned_len(capacity),
                reducer: Reducer::new(gpu)?,
            },
            unused: Tensor::zeros(gpu, "unused kept sets", &[4], DType::U32)?,
        })
    }

    /// Each value's side: compacted to the mask's kept channels where its
    /// channels are a prunable layer's (or a union of them), else full.
    fn sides(&self, mask: Option<MaskRef>, compressed: bool) -> Vec<Side> {
        let g = &self.graph;
        let descs = g.channel_sets();
        let slots = descs.iter().map(|d| d.slot + d.len).max().unwrap_or(0);
        g.values
            .iter()
            .map(|v| match (g.set_index(v.set), compressed) {
                (Some(k), true) => {
                    // Scratch is sized from a representative compacted side.
                    let s = mask.map_or(0, |m| m.sample);
                    Side::Kept { count: s * descs.len() + k, map: s * slots + descs[k].slot }
                }
                _ => Side::Full,
            })
            .collect()
    }

    /// The buffer of value v (`Graph::values`) in a workspace: [capacity,
    /// h, w, stored channels] after a pass.
    pub fn act<'w>(&self, ws: &'w Workspace, v: usize) -> &'w Tensor {
        if v == 0 { &ws.x } else { ws.acts[self.graph.values[v].storage].as_ref().expect("every value has storage") }
    }

    /// The gradient buffer of value v (not the input) after a backward.
    pub fn grad<'w>(&self, ws: &'w Workspace, v: usize) -> &'w Tensor {
        ws.grads[self.graph.values[v].storage].as_ref().expect("every value but the input has a gradient buffer")
    }

    fn check_mask(&self, ws: &Workspace, mask: &Option<MaskRef>) -> Result<()> {
        if mask.is_some() && !ws.compressed {
            return Err(Error::InvalidArgument("a pass on kept units needs a compressed workspace".into()));
        }
        Ok(())
    }

    /// The logits of the last forward: [capacity, classes].
    pub fn logits<'w>(&self, ws: &'w Workspace) -> &'w Tensor {
        self.act(ws, self.graph.logits())
    }

    /// Records the forward pass of `ws.x` (the step's batch rows), on the
    /// kept units of `mask` or dense; `train` uses batch statistics and
    /// updates the running ones (BatchNorm), else the running ones are used.
    pub fn forward(&self, rec: &mut Recorder, ws: &Workspace, mask: Option<MaskRef>, train: bool) -> Result<()> {
        self.forward_pass(rec, ws, mask, train, false, None)
    }

    /// `forward` again on the same batch (a second mask): layers reading
    /// the graph's input reuse what they derived from it in the first pass
    /// (`Ctx::input_ready`).
    pub fn forward_again(&self, rec: &mut Recorder, ws: &Workspace, mask: Option<MaskRef>, train: bool) -> Result<()> {
        self.forward_pass(rec, ws, mask, train, true, None)
    }

    /// A training forward of a sparse step on the kept units of `mask`.
    /// `again`: the batch's second pass (the second mask); layers reading
    /// the graph's input reuse what they derived from it in the first
    /// (`Ctx::input_ready`). With `lazy` (lazy SGD, `first_slot` ignored),
    /// the layers' gathers bring the weights they read up to date.
    pub fn forward_sparse(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        mask: MaskRef,
        again: bool,
        lazy: Option<LazyPass>,
    ) -> Result<()> {
        if let Some(lz) = &lazy
            && lz.sample != mask.sample
        {
            return Err(Error::InvalidArgument(format!(
                "lazy gathers of mask sample {} in a pass of sample {}",
                lz.sample, mask.sample
            )));
        }
        self.forward_pass(rec, ws, Some(mask), true, again, lazy)
    }

    fn forward_pass(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        mask: Option<MaskRef>,
        train: bool,
        again: bool,
        lazy: Option<LazyPass>,
    ) -> Result<()> {
        self.check_mask(ws, &mask)?;
        let sides = self.sides(mask, ws.compressed && mask.is_some());
        let g = &self.graph;
        // Lazy SGD's slots: every node's parameters in order (`Graph::lazy_slots`).
        let mut first_slot = 0;
        for (n, node) in g.nodes.iter().enumerate() {
            let slot = first_slot;
            first_slot += node.params.len();
            if node.skip_forward {
                continue;
            }
            let act = |v: usize| Act { t: self.act(ws, v), shape: g.values[v].shape, side: sides[v] };
            let mut cx = Ctx {
                rec,
                rows: Rows::Batch(ws.capacity),
                inputs: node.inputs.iter().map(|&v| act(v)).collect(),
                output: act(node.output),
                relu: node.relu_fused,
                d_output: None,
                d_inputs: Vec::new(),
                params: &self.views[n],
                grads: &self.grad_views[n],
                state: &self.state_views[n],
                scratch: &ws.scratch[n],
                train,
                input_ready: again && node.inputs.contains(&0),
                kept: mask.map(|m| m.kept),
                lazy: lazy.map(|lz| LazyPass { first_slot: slot, ..lz }),
                unused: &ws.unused,
                fixed: self.fixed_kept(),
                fixed_sides: &self.fixed_sides[n],
            };
            node.layer.forward(&mut cx).map_err(|e| node_error(&node.name, "forward", e))?;
        }
        Ok(())
    }

    /// Batch-mean loss of the last forward into `loss[slot]`.
    pub fn loss(&self, rec: &mut Recorder, ws: &Workspace, loss: &Tensor, slot: usize) -> Result<()> {
        let rows = Rows::Batch(ws.capacity);
        self.graph.loss.forward(rec, &ws.loss, self.logits(ws), &ws.y, rows, (loss, slot))
    }

    /// Adds the correct predictions of the last forward to `count[0]`.
    pub fn count_correct(&self, rec: &mut Recorder, ws: &Workspace, count: &Tensor) -> Result<()> {
        self.graph.loss.count_correct(rec, count, self.logits(ws), &ws.y, Rows::Batch(ws.capacity))
    }

    /// The training head after a forward, in one launch: the per-row losses
    /// into part `part` of the workspace's loss rows (`loss_mean` reduces
    /// them), the gradient of `scale` · (the batch-mean loss) for
    /// `backward_layers`, and with `count`, count[0] += correct predictions.
    pub fn train_head(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        (scale, part): (f32, usize),
        count: Option<&Tensor>,
    ) -> Result<()> {
        let logits = self.graph.logits();
        let pair = (self.act(ws, logits), self.grad(ws, logits));
        let rows = Rows::Batch(ws.capacity);
        let ls = self.loss_scale.as_ref();
        self.graph.loss.train_head(rec, &ws.loss, pair, &ws.y, rows, (scale, part), count, ls)
    }

    /// loss[slot] = the batch mean of part `part` of the loss rows (also
    /// added to loss[sum], with a running-sum slot).
    pub fn loss_mean(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        part: usize,
        loss: &Tensor,
        (slot, sum): (usize, Option<usize>),
    ) -> Result<()> {
        self.graph.loss.mean(rec, &ws.loss, part, Rows::Batch(ws.capacity), (loss, slot, sum))
    }

    /// The per-row losses of both parts and where each part starts (for
    /// `vrpge::Losses::Rows`).
    pub fn loss_rows<'w>(&self, ws: &'w Workspace) -> (&'w Tensor, (usize, usize)) {
        (&ws.loss.loss_rows, (0, ws.loss.stride))
    }

    /// The backward pass below the loss head (after `train_head`, same
    /// mask): parameter gradients add into `grads`.
    pub fn backward_layers(&self, rec: &mut Recorder, ws: &Workspace, mask: Option<MaskRef>) -> Result<()> {
        self.check_mask(ws, &mask)?;
        let g = &self.graph;
        let rows = Rows::Batch(ws.capacity);
        let sides = self.sides(mask, ws.compressed && mask.is_some());
        for (n, node) in g.nodes.iter().enumerate().rev() {
            if node.skip_backward {
                continue;
            }
            let act = |v: usize| Act { t: self.act(ws, v), shape: g.values[v].shape, side: sides[v] };
            let d_inputs = node
                .inputs
                .iter()
                .zip(&node.accumulate)
                .map(|(&v, &accumulate)| {
                    (v != 0).then(|| GradOut { t: self.grad(ws, v), accumulate, gate: g.values[v].gated })
                })
                .collect();
            let mut cx = Ctx {
                rec,
                rows,
                inputs: node.inputs.iter().map(|&v| act(v)).collect(),
                output: act(node.output),
                relu: node.relu_fused,
                d_output: Some(self.grad(ws, node.output)),
                d_inputs,
                params: &self.views[n],
                grads: &self.grad_views[n],
                state: &self.state_views[n],
                scratch: &ws.scratch[n],
                train: true,
                // The forward of this batch ran before any backward.
                input_ready: node.inputs.contains(&0),
                kept: mask.map(|m| m.kept),
                lazy: None,
                unused: &ws.unused,
                fixed: self.fixed_kept(),
                fixed_sides: &self.fixed_sides[n],
            };
            node.layer.backward(&mut cx).map_err(|e| node_error(&node.name, "backward", e))?;
        }
        Ok(())
    }

    /// Downloads the flat parameters (counted as read-back).
    pub fn download_params(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.params.download_f32(gpu)
    }

    /// Downloads the flat state (counted as read-back).
    pub fn download_state(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(self.state.download_f32(gpu)?[..self.graph.state_total].to_vec())
    }
}

/// The fixed channel sets of every layer, laid out as kept sets are
/// (`sparse::MaskSet`): set i's count at i, its list and each channel's
/// rank (or NONE) from its offset; and each node's sides in them.
#[allow(clippy::type_complexity)]
fn fixed_sets(gpu: &Gpu, g: &Graph) -> Result<(Option<[Tensor; 3]>, Vec<Vec<Side>>)> {
    use crate::ops::NONE;
    let (mut dims, mut maps, mut ranks) = (Vec::new(), Vec::new(), Vec::new());
    let mut sides = Vec::new();
    for node in &g.nodes {
        let mut own = Vec::new();
        for (full, list) in node.layer.fixed_sets() {
            let (count, map) = (dims.len(), maps.len());
            dims.push(list.len() as u32);
            maps.extend(list.iter().map(|&c| c as u32));
            maps.resize(map + full, NONE);
            ranks.resize(map + full, NONE);
            for (j, &c) in list.iter().enumerate() {
                ranks[map + c] = j as u32;
            }
            own.push(Side::Kept { count, map });
        }
        sides.push(own);
    }
    if dims.is_empty() {
        return Ok((None, sides));
    }
    let t = |name: &str, v: &[u32]| Tensor::from_u32(gpu, name, &[v.len()], v);
    Ok((Some([t("fixed counts", &dims)?, t("fixed lists", &maps)?, t("fixed ranks", &ranks)?]), sides))
}

fn node_error(name: &str, pass: &str, e: Error) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{name} {pass}: {m}")),
        other => other,
    }
}
