//! The f64 reference of a whole graph, built only from the layers' own
//! references: forward, loss and backward of one batch, dense or with unit
//! masks. With masks it is the dense-masked definition that the compacted
//! device passes must reproduce: every value whose channels are a prunable
//! layer's is zero in the removed channels (so are their gradients).

use super::graph::{ChannelSet, Graph};
use super::layer::CpuIo;

/// What one reference pass gives.
pub struct CpuPass {
    pub logits: Vec<f64>,
    pub loss: f64,
    /// Gradients of `scale` · loss, in the flat parameter layout (padding 0).
    pub grads: Vec<f64>,
    /// The state after the pass (running statistics updated where kept).
    pub state: Vec<f64>,
    /// Every value of the forward pass (`Graph::values`), masked.
    pub values: Vec<Vec<f64>>,
}

/// Zeroes the channels of `data` (NHWC: [batch · plane, c]) that `mask` removes.
fn apply_mask(data: &mut [f64], mask: &[u32], c: usize) {
    for row in data.chunks_exact_mut(c) {
        for (v, &m) in row.iter_mut().zip(mask) {
            if m == 0 {
                *v = 0.0;
            }
        }
    }
}

/// One training forward and backward pass. `masks[p]` is the 0/1 mask of
/// prunable layer p's units (None: dense); `state` the flat state.
#[allow(clippy::too_many_arguments)]
pub fn forward_backward(
    graph: &Graph,
    params: &[f64],
    state: &[f64],
    x: &[f64],
    labels: &[u32],
    batch: usize,
    masks: Option<&[Vec<u32>]>,
    scale: f64,
) -> CpuPass {
    let g = graph;
    // A union keeps a channel where any of its prunable layers does.
    let value_masks: Vec<Option<Vec<u32>>> = g
        .values
        .iter()
        .map(|v| match (v.set, masks) {
            (ChannelSet::Unit(p), Some(m)) => Some(m[p].clone()),
            (ChannelSet::Union(u), Some(m)) => {
                Some((0..v.shape.c).map(|c| u32::from(g.unions[u].iter().any(|&p| m[p][c] != 0))).collect())
            }
            _ => None,
        })
        .collect();
    let mask_of = |v: usize| -> Option<&Vec<u32>> { value_masks[v].as_ref() };
    let node_params = |n: usize| -> Vec<&[f64]> {
        g.nodes[n].params.iter().map(|p| &params[p.offset..p.offset + p.spec.len()]).collect()
    };
    let node_state = |n: usize| -> Vec<&[f64]> {
        g.nodes[n].state.iter().map(|p| &state[p.offset..p.offset + p.spec.len()]).collect()
    };
    let mut new_state = state.to_vec();
    let mut vals: Vec<Vec<f64>> = vec![Vec::new(); g.values.len()];
    vals[0] = x.to_vec();
    for (n, node) in g.nodes.iter().enumerate() {
        let (ps, ss) = (node_params(n), node_state(n));
        let out_shape = g.values[node.output].shape;
        let io = CpuIo { batch, in_shapes: &node.in_shapes, out_shape, params: &ps, state: &ss, train: true };
        let xs: Vec<&[f64]> = node.inputs.iter().map(|&v| vals[v].as_slice()).collect();
        for (slot, updated) in
            node.state.iter().zip(node.layer.cpu_state_update(&io, &xs, mask_of(node.output).map(|m| m.as_slice())))
        {
            new_state[slot.offset..slot.offset + slot.spec.len()].copy_from_slice(&updated);
        }
        let mut y = node.layer.cpu_forward(&io, &xs);
        if let Some(m) = mask_of(node.output) {
            apply_mask(&mut y, m, g.values[node.output].shape.c);
        }
        vals[node.output] = y;
    }
    let logits = vals[g.logits()].clone();
    let (loss, dlogits) = g.loss.cpu(&logits, labels, batch, scale);
    let mut grads = vec![0.0; g.param_total];
    let mut dvals: Vec<Vec<f64>> = g.values.iter().map(|v| vec![0.0; batch * v.shape.len()]).collect();
    dvals[g.logits()] = dlogits;
    for (n, node) in g.nodes.iter().enumerate().rev() {
        let mut dy = std::mem::take(&mut dvals[node.output]);
        if let Some(m) = mask_of(node.output) {
            apply_mask(&mut dy, m, g.values[node.output].shape.c);
        }
        let (ps, ss) = (node_params(n), node_state(n));
        let out_shape = g.values[node.output].shape;
        let io = CpuIo { batch, in_shapes: &node.in_shapes, out_shape, params: &ps, state: &ss, train: true };
        let xs: Vec<&[f64]> = node.inputs.iter().map(|&v| vals[v].as_slice()).collect();
        let (dxs, dps) = node.layer.cpu_backward(&io, &xs, &vals[node.output], &dy);
        for (&v, dx) in node.inputs.iter().zip(dxs) {
            for (a, b) in dvals[v].iter_mut().zip(dx) {
                *a += b;
            }
        }
        for (slot, dp) in node.params.iter().zip(dps) {
            for (a, b) in grads[slot.offset..slot.offset + slot.spec.len()].iter_mut().zip(dp) {
                *a += b;
            }
        }
    }
    CpuPass { logits, loss, grads, state: new_state, values: vals }
}
