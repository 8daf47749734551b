//! A graph on the device: its parameters and their gradients in two flat
//! buffers cut into views, and the recording of its forward and backward
//! passes over a workspace (activation and gradient buffers for a batch
//! capacity), dense or on the kept units of a mask. Everything sized here is
//! checked against the device's limits before anything is allocated.

use super::graph::Graph;
use super::layer::{Act, Ctx, GradOut, Second};
use super::workspace::Workspace;
use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};
use crate::ops::Rows;
use crate::ops::gather::{KeptSet, Side};
use crate::ops::lazy::LazyPass;

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
        Workspace::check_fits(gpu, g, capacity, compressed)
    }

    /// Buffers for batches of up to `capacity` rows; `compressed` sizes them
    /// for passes on kept units too (compacted channels pad to 4), for both
    /// mask samples of a sparse step.
    pub fn workspace(&self, gpu: &Gpu, capacity: usize, compressed: bool) -> Result<Workspace> {
        Workspace::new(gpu, &self.graph, &self.sides(None, compressed), capacity, compressed)
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
    /// h, w, stored channels] after a pass (of mask sample 0, or dense).
    pub fn act<'w>(&self, ws: &'w Workspace, v: usize) -> &'w Tensor {
        self.act_of(ws, 0, v)
    }

    /// The buffer of value v in the passes of mask sample `sample`.
    pub fn act_of<'w>(&self, ws: &'w Workspace, sample: usize, v: usize) -> &'w Tensor {
        if v == 0 {
            &ws.x
        } else {
            ws.passes[sample].acts[self.graph.values[v].storage].as_ref().expect("every value has storage")
        }
    }

    /// The gradient buffer of value v (not the input) after a backward.
    pub fn grad<'w>(&self, ws: &'w Workspace, v: usize) -> &'w Tensor {
        self.grad_of(ws, 0, v)
    }

    /// The gradient buffer of value v in the passes of mask sample `sample`.
    pub fn grad_of<'w>(&self, ws: &'w Workspace, sample: usize, v: usize) -> &'w Tensor {
        ws.passes[sample].grads[self.graph.values[v].storage]
            .as_ref()
            .expect("every value but the input has a gradient buffer")
    }

    /// The pass buffers a pass on `mask` uses: its sample's (checked), or
    /// the first for a dense pass.
    fn pass_of(&self, ws: &Workspace, mask: &Option<MaskRef>) -> Result<usize> {
        let Some(m) = mask else { return Ok(0) };
        if !ws.compressed {
            return Err(Error::InvalidArgument("a pass on kept units needs a compressed workspace".into()));
        }
        if m.sample >= ws.passes.len() {
            return Err(Error::InvalidArgument(format!(
                "a pass of mask sample {} in a workspace of {} samples",
                m.sample,
                ws.passes.len()
            )));
        }
        Ok(m.sample)
    }

    /// The logits of the last dense forward or forward on mask sample 0:
    /// [capacity, classes] (sample 1's are `act_of(ws, 1, logits)`).
    pub fn logits<'w>(&self, ws: &'w Workspace) -> &'w Tensor {
        self.act(ws, self.graph.logits())
    }

    /// Records the forward pass of `ws.x` (the step's batch rows), on the
    /// kept units of `mask` or dense; `train` uses batch statistics and
    /// updates the running ones (BatchNorm), else the running ones are used.
    /// A pass on mask sample j runs in the workspace's buffers of sample j
    /// (`act_of`); `act` and `logits` are sample 0's.
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
        check_lazy(&mask, &lazy)?;
        self.forward_pass(rec, ws, Some(mask), true, again, lazy)
    }

    /// The training forwards of a sparse step on both mask samples, layer
    /// by layer: each layer runs sample 0's pass, then sample 1's (which
    /// reuses what a layer reading the input derived from it). Each
    /// sample's values go to its own buffers (`act_of`), so the result is
    /// `forward_sparse` of sample 0 then of sample 1 (`again`), bit for
    /// bit: a layer's two passes touch the same weights in the same order
    /// (lazy SGD's gathers too: sample 1 sees what sample 0 caught up).
    pub fn forward_samples(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        masks: [MaskRef; 2],
        lazy: [Option<LazyPass>; 2],
    ) -> Result<()> {
        for (m, lz) in masks.iter().zip(&lazy) {
            check_lazy(m, lz)?;
        }
        let (passes, sides) = self.sample_passes(ws, masks)?;
        let mut first_slot = 0;
        for (n, node) in self.graph.nodes.iter().enumerate() {
            let slot = first_slot;
            first_slot += node.params.len();
            if node.skip_forward {
                continue;
            }
            let part = |j: usize| {
                let pass = (passes[j], sides[j].as_slice(), Some(masks[j]));
                self.part(ws, n, pass, (j == 1, false), lazy[j].map(|lz| LazyPass { first_slot: slot, ..lz }))
            };
            let mut second = part(1);
            let mut cx = self.ctx(rec, ws, n, part(0), true);
            node.layer.forward_pair(&mut cx, &mut second).map_err(|e| node_error(&node.name, "forward", e))?;
        }
        Ok(())
    }

    /// The passes of a step's two mask samples and each one's sides.
    fn sample_passes(&self, ws: &Workspace, masks: [MaskRef; 2]) -> Result<([usize; 2], [Vec<Side>; 2])> {
        let passes = [self.pass_of(ws, &Some(masks[0]))?, self.pass_of(ws, &Some(masks[1]))?];
        if passes[0] == passes[1] {
            return Err(Error::InvalidArgument(format!("two passes of mask sample {} in one step", passes[0])));
        }
        Ok((passes, masks.map(|m| self.sides(Some(m), true))))
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
        let pass = self.pass_of(ws, &mask)?;
        let sides = self.sides(mask, ws.compressed && mask.is_some());
        // Lazy SGD's slots: every node's parameters in order (`Graph::lazy_slots`).
        let mut first_slot = 0;
        for n in 0..self.graph.nodes.len() {
            self.forward_node(rec, ws, n, (pass, &sides, mask), (train, again), lazy, first_slot)?;
            first_slot += self.graph.nodes[n].params.len();
        }
        Ok(())
    }

    /// Node n's forward in the buffers of pass `pass`; `first_slot` is its
    /// first parameter's lazy SGD slot.
    #[allow(clippy::too_many_arguments)]
    fn forward_node(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        n: usize,
        pass: (usize, &[Side], Option<MaskRef>),
        (train, again): (bool, bool),
        lazy: Option<LazyPass>,
        first_slot: usize,
    ) -> Result<()> {
        let node = &self.graph.nodes[n];
        if node.skip_forward {
            return Ok(());
        }
        let part = self.part(ws, n, pass, (again, false), lazy.map(|lz| LazyPass { first_slot, ..lz }));
        let mut cx = self.ctx(rec, ws, n, part, train);
        node.layer.forward(&mut cx).map_err(|e| node_error(&node.name, "forward", e))
    }

    /// What node n's pass in the buffers of pass `pass` reads and writes
    /// there: its inputs and output, and for a backward (`backward`) their
    /// gradients. `again`: an earlier pass of this batch already ran the
    /// node's forward (`Ctx::input_ready`).
    fn part<'w>(
        &'w self,
        ws: &'w Workspace,
        n: usize,
        (pass, sides, mask): (usize, &[Side], Option<MaskRef<'w>>),
        (again, backward): (bool, bool),
        lazy: Option<LazyPass<'w>>,
    ) -> Second<'w> {
        let g = &self.graph;
        let node = &g.nodes[n];
        let act = |v: usize| Act { t: self.act_of(ws, pass, v), shape: g.values[v].shape, side: sides[v] };
        let d_inputs = if backward {
            node.inputs
                .iter()
                .zip(&node.accumulate)
                .map(|(&v, &accumulate)| {
                    (v != 0).then(|| GradOut { t: self.grad_of(ws, pass, v), accumulate, gate: g.values[v].gated })
                })
                .collect()
        } else {
            Vec::new()
        };
        Second {
            inputs: node.inputs.iter().map(|&v| act(v)).collect(),
            output: act(node.output),
            d_output: backward.then(|| self.grad_of(ws, pass, node.output)),
            d_inputs,
            scratch: &ws.passes[pass].scratch[n],
            input_ready: again && node.inputs.contains(&0),
            kept: mask.map(|m| m.kept),
            lazy,
        }
    }

    /// Node n's context with `part` as its pass's buffers.
    fn ctx<'w, 'g>(
        &'w self,
        rec: &'w mut Recorder<'g>,
        ws: &'w Workspace,
        n: usize,
        part: Second<'w>,
        train: bool,
    ) -> Ctx<'w, 'g> {
        let node = &self.graph.nodes[n];
        Ctx {
            rec,
            rows: Rows::Batch(ws.capacity),
            inputs: part.inputs,
            output: part.output,
            relu: node.relu_fused,
            d_output: part.d_output,
            d_inputs: part.d_inputs,
            params: &self.views[n],
            grads: &self.grad_views[n],
            assign_grads: false,
            state: &self.state_views[n],
            scratch: part.scratch,
            train,
            input_ready: part.input_ready,
            kept: part.kept,
            lazy: part.lazy,
            unused: &ws.unused,
            fixed: self.fixed_kept(),
            fixed_sides: &self.fixed_sides[n],
        }
    }

    /// Batch-mean loss of the last forward (`logits`) into `loss[slot]`.
    pub fn loss(&self, rec: &mut Recorder, ws: &Workspace, loss: &Tensor, slot: usize) -> Result<()> {
        let rows = Rows::Batch(ws.capacity);
        self.graph.loss.forward(rec, &ws.loss, self.logits(ws), &ws.y, rows, (loss, slot))
    }

    /// Adds the correct predictions of the last forward (`logits`) to `count[0]`.
    pub fn count_correct(&self, rec: &mut Recorder, ws: &Workspace, count: &Tensor) -> Result<()> {
        self.graph.loss.count_correct(rec, count, self.logits(ws), &ws.y, Rows::Batch(ws.capacity))
    }

    /// The training head after a forward, in one launch: the per-row losses
    /// into part `part` of the workspace's loss rows (`loss_mean` reduces
    /// them), the gradient of `scale` · (the batch-mean loss) for
    /// `backward_layers`, and with `count`, count[0] += correct predictions.
    /// It reads the logits of mask sample `part`'s passes (a dense pass's
    /// are sample 0's).
    pub fn train_head(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        (scale, part): (f32, usize),
        count: Option<&Tensor>,
    ) -> Result<()> {
        if part >= ws.passes.len() {
            return Err(Error::InvalidArgument(format!(
                "the loss head of sample {part} in a workspace of {} samples",
                ws.passes.len()
            )));
        }
        let logits = self.graph.logits();
        let pair = (self.act_of(ws, part, logits), self.grad_of(ws, part, logits));
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
    /// mask): parameter gradients add into `grads`. A dense trainer's steps
    /// assign them instead (`backward_assigning`) and leave them: after
    /// such steps `grads` holds the last step's gradient, not zeros.
    pub fn backward_layers(&self, rec: &mut Recorder, ws: &Workspace, mask: Option<MaskRef>) -> Result<()> {
        self.backward_walk(rec, ws, mask, false)
    }

    /// Every node's backward, last to first, adding or (`assign`) writing
    /// the parameter gradients.
    fn backward_walk(&self, rec: &mut Recorder, ws: &Workspace, mask: Option<MaskRef>, assign: bool) -> Result<()> {
        let pass = self.pass_of(ws, &mask)?;
        let sides = self.sides(mask, ws.compressed && mask.is_some());
        for n in (0..self.graph.nodes.len()).rev() {
            self.backward_node(rec, ws, n, (pass, &sides, mask), assign)?;
        }
        Ok(())
    }

    /// Whether every layer with parameters assigns its gradients on a dense
    /// pass (`Layer::assigns_grads`): then `backward_assigning` may replace
    /// `backward_layers` where the gradients hold anything.
    pub fn can_assign_grads(&self) -> bool {
        self.graph
            .nodes
            .iter()
            .all(|node| node.params.is_empty() || (node.layer.assigns_grads() && !node.skip_backward))
    }

    /// The dense backward (`backward_layers` without a mask) writing the
    /// parameter gradients instead of adding into them: what they held
    /// before does not matter. A dense step's only backward pass uses it,
    /// so that its optimizer need not clear the gradients for the next
    /// step (a pass over them) and the weight-gradient products need not
    /// read them. Fails where a layer cannot (`can_assign_grads`).
    pub fn backward_assigning(&self, rec: &mut Recorder, ws: &Workspace) -> Result<()> {
        if !self.can_assign_grads() {
            return Err(Error::InvalidArgument(
                "this network has layers that only add into their gradients: clear them and use backward_layers".into(),
            ));
        }
        self.backward_walk(rec, ws, None, true)
    }

    /// The backward passes of a sparse step on both mask samples (after
    /// `forward_samples` and both samples' `train_head`), layer by layer:
    /// each layer's gradients get sample 0's part, then sample 1's, as in
    /// `backward_layers` of sample 0 then of sample 1, bit for bit.
    pub fn backward_samples(&self, rec: &mut Recorder, ws: &Workspace, masks: [MaskRef; 2]) -> Result<()> {
        let (passes, sides) = self.sample_passes(ws, masks)?;
        for (n, node) in self.graph.nodes.iter().enumerate().rev() {
            if node.skip_backward {
                continue;
            }
            let part = |j: usize| self.part(ws, n, (passes[j], &sides[j], Some(masks[j])), (true, true), None);
            let mut second = part(1);
            let mut cx = self.ctx(rec, ws, n, part(0), true);
            node.layer.backward_pair(&mut cx, &mut second).map_err(|e| node_error(&node.name, "backward", e))?;
        }
        Ok(())
    }

    /// Node n's backward in the buffers of pass `pass`.
    fn backward_node(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        n: usize,
        pass: (usize, &[Side], Option<MaskRef>),
        assign: bool,
    ) -> Result<()> {
        let node = &self.graph.nodes[n];
        if node.skip_backward {
            return Ok(());
        }
        // The forward of this batch ran before any backward.
        let mut cx = self.ctx(rec, ws, n, self.part(ws, n, pass, (true, true), None), true);
        cx.assign_grads = assign;
        node.layer.backward(&mut cx).map_err(|e| node_error(&node.name, "backward", e))
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

/// A lazy SGD pass gathers for the mask sample of its pass.
fn check_lazy(mask: &MaskRef, lazy: &Option<LazyPass>) -> Result<()> {
    match lazy {
        Some(lz) if lz.sample != mask.sample => Err(Error::InvalidArgument(format!(
            "lazy gathers of mask sample {} in a pass of sample {}",
            lz.sample, mask.sample
        ))),
        _ => Ok(()),
    }
}
