//! The network made of kept units alone: the same graph with every pruned
//! channel removed (a smaller dense network of the same architecture), its
//! description and its parameters cut from the full ones. Export, the kept
//! parameter count and the kept FLOPs all come from here.

use super::graph::{ChannelSet, Graph, GraphSpec, NodeSpec};
use crate::error::{Error, Result};
use crate::ops::lazy::{LazySlot, SlotSide};

/// One parameter of a compacted network: "node.param", shape, data.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

impl Graph {
    /// Every parameter as lazy SGD sees it (`ops::lazy`): its rows and
    /// columns tied to the channel sets of its layer's output and input
    /// where the layer says they follow them (`Layer::param_sets`).
    pub fn lazy_slots(&self) -> Result<Vec<LazySlot>> {
        let descs = self.channel_sets();
        let side = |len: usize, follow: bool, value: usize| SlotSide {
            len,
            set: if follow { self.set_index(self.values[value].set).map(|k| (k, descs[k].slot)) } else { None },
        };
        let mut out = Vec::new();
        for node in &self.nodes {
            let sets = node.layer.param_sets(&node.in_shapes);
            if sets.len() != node.params.len() {
                return Err(Error::InvalidArgument(format!(
                    "{}: {} parameter layouts for {} parameters",
                    node.name,
                    sets.len(),
                    node.params.len()
                )));
            }
            let sides: Vec<(SlotSide, SlotSide)> = sets
                .iter()
                .map(|ps| (side(ps.rows, ps.rows_follow, node.output), side(ps.cols, ps.cols_follow, node.inputs[0])))
                .collect();
            // A layer gathers its parameters only on its sparse path, where
            // one of them follows a set (`Linear::forward`, `Conv2d::forward`):
            // then all it marks, a classifier's bias too.
            let sparse_path =
                sets.iter().zip(&sides).any(|(ps, (r, c))| ps.gathered && (r.set.is_some() || c.set.is_some()));
            for ((slot, ps), (rows, cols)) in node.params.iter().zip(sets).zip(sides) {
                let gathered = ps.gathered && sparse_path;
                let lazy = LazySlot { offset: slot.offset, rows, cols, blocks: ps.blocks, gathered };
                if lazy.len() != slot.spec.len() {
                    return Err(Error::InvalidArgument(format!(
                        "{}.{}: layout {ps:?} does not cover its {} elements",
                        node.name,
                        slot.spec.name,
                        slot.spec.len()
                    )));
                }
                out.push(lazy);
            }
        }
        Ok(out)
    }

    /// The kept channels of every value, from the kept units of every
    /// prunable layer (`kept[p]`, ascending unit indices within the layer).
    pub fn kept_channels(&self, kept: &[Vec<usize>]) -> Result<Vec<Vec<usize>>> {
        let widths = self.unit_widths();
        if kept.len() != widths.len() || kept.iter().zip(&widths).any(|(k, &w)| k.iter().any(|&u| u >= w)) {
            return Err(Error::InvalidArgument(format!(
                "kept units {:?} do not fit the prunable layers {widths:?}",
                kept.iter().map(Vec::len).collect::<Vec<_>>()
            )));
        }
        Ok(self
            .values
            .iter()
            .map(|v| match v.set {
                ChannelSet::Full => (0..v.shape.c).collect(),
                ChannelSet::Unit(p) => kept[p].clone(),
                ChannelSet::Union(u) => {
                    let mut all: Vec<usize> = self.unions[u].iter().flat_map(|&p| kept[p].iter().copied()).collect();
                    all.sort_unstable();
                    all.dedup();
                    all
                }
            })
            .collect())
    }

    /// The description of the network of kept units: `kept[p]` lists the
    /// units kept in prunable layer p (a union keeps the channels any of its
    /// layers keeps).
    pub fn compacted_spec(&self, kept: &[Vec<usize>]) -> Result<GraphSpec> {
        let channels = self.kept_channels(kept)?;
        let mut nodes = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            let kept_in: Vec<Vec<usize>> = node.inputs.iter().map(|&v| channels[v].clone()).collect();
            let small = node.layer.compacted(&kept_in, &channels[node.output]);
            nodes.push(NodeSpec {
                name: node.name.clone(),
                kind: small.kind().into(),
                inputs: self.spec.nodes[n].inputs.clone(),
                settings: small.settings(),
            });
        }
        Ok(GraphSpec { nodes, ..self.spec.clone() })
    }

    /// The parameters, then the state, of each node of the network of kept
    /// units, cut from `flat` and `state` (this graph's flat buffers), named
    /// "node.param" in node order.
    pub fn compact_params(&self, kept: &[Vec<usize>], flat: &[f32], state: &[f32]) -> Result<Vec<NamedTensor>> {
        if flat.len() < self.param_total || state.len() < self.state_total {
            return Err(Error::InvalidArgument(format!(
                "{} parameters and {} state values for a graph of {} and {}",
                flat.len(),
                state.len(),
                self.param_total,
                self.state_total
            )));
        }
        let channels = self.kept_channels(kept)?;
        let small = Graph::from_spec(self.compacted_spec(kept)?)?;
        let mut out = Vec::new();
        for (node, small_node) in self.nodes.iter().zip(&small.nodes) {
            let params: Vec<Vec<f32>> = node
                .params
                .iter()
                .map(|p| flat[p.offset..p.offset + p.spec.len()].to_vec())
                .chain(node.state.iter().map(|p| state[p.offset..p.offset + p.spec.len()].to_vec()))
                .collect();
            let kept_in: Vec<Vec<usize>> = node.inputs.iter().map(|&v| channels[v].clone()).collect();
            let cut = node.layer.compact_params(&node.in_shapes, &kept_in, &channels[node.output], &params);
            let slots = small_node.params.iter().chain(&small_node.state);
            for (slot, data) in slots.zip(cut) {
                if data.len() != slot.spec.len() {
                    return Err(Error::InvalidArgument(format!(
                        "{}.{}: compaction gave {} values for shape {:?}",
                        node.name,
                        slot.spec.name,
                        data.len(),
                        slot.spec.shape
                    )));
                }
                out.push((format!("{}.{}", node.name, slot.spec.name), slot.spec.shape.clone(), data));
            }
        }
        Ok(out)
    }
}
