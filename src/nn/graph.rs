//! A model graph: a sequence of layers, each reading the previous output or
//! named earlier outputs (skip connections, enough for ResNets), ending in
//! logits for the softmax cross-entropy head. Built from a description
//! (`GraphSpec`, stored in checkpoints and exports), it works out once what
//! the device and the trainer need: every value's shape and channel set,
//! which ReLUs fuse into their neighbours, which buffers alias, the flat
//! parameter layout, and the prunable units.

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::layer::{Channels, Init, Layer, ParamSpec, Shape};
use super::loss::SoftmaxXent;
use super::registry;
use crate::device::tensor::aligned_len;
use crate::error::{Error, Result};
use crate::ops::compact::SetDesc;

/// One node of a description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub name: String,
    pub kind: String,
    /// Names of the values it reads: "input" or earlier nodes. Empty: the
    /// previous node's output (the input for the first node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// A model as data: input shape, class count, layers, loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphSpec {
    pub input: Shape,
    pub classes: usize,
    pub nodes: Vec<NodeSpec>,
    /// The loss head; only "softmax_xent" exists.
    pub loss: String,
}

impl GraphSpec {
    /// An MLP: input features, hidden widths (prunable), then the classifier.
    pub fn mlp(input: usize, hidden: &[usize], classes: usize) -> GraphSpec {
        let mut nodes = Vec::new();
        for (l, &h) in hidden.iter().enumerate() {
            nodes.push(NodeSpec::new(
                &format!("fc{}", l + 1),
                "linear",
                serde_json::json!({"out": h, "prunable": true}),
            ));
            nodes.push(NodeSpec::new(&format!("relu{}", l + 1), "relu", serde_json::json!({})));
        }
        nodes.push(NodeSpec::new("classifier", "linear", serde_json::json!({"out": classes, "prunable": false})));
        GraphSpec { input: Shape::flat(input), classes, nodes, loss: SoftmaxXent::KIND.into() }
    }
}

impl NodeSpec {
    pub fn new(name: &str, kind: &str, settings: serde_json::Value) -> NodeSpec {
        NodeSpec { name: name.into(), kind: kind.into(), inputs: Vec::new(), settings }
    }
}

/// Which channels of a value are stored in a compressed pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelSet {
    /// All of them.
    Full,
    /// The kept units of prunable layer `p` (in unit order).
    Unit(usize),
    /// Union `u` of several prunable layers' kept units over the same
    /// channels (`Graph::unions[u]` lists them): what a residual sum keeps.
    Union(usize),
}

/// One value flowing through the graph (value 0 is the input).
#[derive(Clone, Debug)]
pub struct Value {
    pub shape: Shape,
    pub producer: Option<usize>,
    pub consumers: Vec<usize>,
    pub set: ChannelSet,
    /// The buffer that holds it (a ReLU's output is its input's buffer).
    pub storage: usize,
    /// It is a ReLU's output whose gradient the consumers gate.
    pub gated: bool,
}

/// Where one parameter lives in the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSlot {
    pub spec: ParamSpec,
    pub offset: usize,
}

/// One layer in the graph.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub layer: Box<dyn Layer>,
    pub inputs: Vec<usize>,
    pub output: usize,
    pub in_shapes: Vec<Shape>,
    pub params: Vec<ParamSlot>,
    /// Its state (running statistics), in the flat state buffer.
    pub state: Vec<ParamSlot>,
    /// Index among prunable layers, if prunable.
    pub unit: Option<usize>,
    /// A ReLU fused into this layer's forward (this layer applies it).
    pub relu_fused: bool,
    /// Nothing to record: a ReLU fused into its producer (forward) or into
    /// its consumers (backward).
    pub skip_forward: bool,
    pub skip_backward: bool,
    /// Backward: add into each input's gradient instead of overwriting it.
    pub accumulate: Vec<bool>,
}

/// A validated graph; see the module header.
#[derive(Debug)]
pub struct Graph {
    pub spec: GraphSpec,
    pub nodes: Vec<Node>,
    pub values: Vec<Value>,
    /// Buffers: values sharing storage share an entry (its largest shape).
    pub storages: usize,
    /// Elements of the flat parameter buffer, alignment padding included.
    pub param_total: usize,
    /// Elements of the flat state buffer (running statistics), likewise.
    pub state_total: usize,
    /// Prunable nodes in unit order, and where each one's units start in
    /// the score vector (one more entry than nodes).
    pub prunable: Vec<usize>,
    pub unit_off: Vec<usize>,
    /// The prunable layers (indices into `prunable`) each union set joins.
    pub unions: Vec<Vec<usize>>,
    pub loss: SoftmaxXent,
}

/// The prunable layers a channel set is made of.
fn members(set: ChannelSet, unions: &[Vec<usize>]) -> Vec<usize> {
    match set {
        ChannelSet::Full => Vec::new(),
        ChannelSet::Unit(p) => vec![p],
        ChannelSet::Union(u) => unions[u].clone(),
    }
}

/// The channel set of a sum of values of `sets`: all channels if any input
/// has all, else the union of their prunable layers (a new union if needed).
fn union_of(sets: &[ChannelSet], unions: &mut Vec<Vec<usize>>) -> ChannelSet {
    if sets.contains(&ChannelSet::Full) {
        return ChannelSet::Full;
    }
    let mut all: Vec<usize> = sets.iter().flat_map(|&s| members(s, unions)).collect();
    all.sort_unstable();
    all.dedup();
    if let [p] = all[..] {
        return ChannelSet::Unit(p);
    }
    match unions.iter().position(|u| *u == all) {
        Some(u) => ChannelSet::Union(u),
        None => {
            unions.push(all);
            ChannelSet::Union(unions.len() - 1)
        }
    }
}

impl Graph {
    pub fn mlp(input: usize, hidden: &[usize], classes: usize) -> Result<Graph> {
        Graph::from_spec(GraphSpec::mlp(input, hidden, classes))
    }

    pub fn from_spec(spec: GraphSpec) -> Result<Graph> {
        let bad = |m: String| Error::InvalidArgument(m);
        if spec.loss != SoftmaxXent::KIND {
            return Err(bad(format!("unknown loss {:?} (known: {})", spec.loss, SoftmaxXent::KIND)));
        }
        if spec.input.is_empty() || spec.classes == 0 {
            return Err(bad(format!("input {} and {} classes: both must be non-empty", spec.input, spec.classes)));
        }
        if spec.nodes.is_empty() {
            return Err(bad("a graph needs at least one layer".into()));
        }
        let mut names: Vec<&str> = vec!["input"];
        let input = Value {
            shape: spec.input,
            producer: None,
            consumers: Vec::new(),
            set: ChannelSet::Full,
            storage: 0,
            gated: false,
        };
        let mut values = vec![input];
        let mut nodes: Vec<Node> = Vec::new();
        let mut unions: Vec<Vec<usize>> = Vec::new();
        let (mut prunable, mut unit_off, mut param_total, mut state_total) = (Vec::new(), vec![0usize], 0usize, 0usize);
        for (n, ns) in spec.nodes.iter().enumerate() {
            if names.contains(&ns.name.as_str()) || ns.name.is_empty() {
                return Err(bad(format!("node name {:?} is empty or used twice", ns.name)));
            }
            let layer = registry::layer(&ns.kind, &ns.settings).map_err(|e| bad(format!("node {}: {e}", ns.name)))?;
            let inputs: Vec<usize> = if ns.inputs.is_empty() {
                vec![values.len() - 1]
            } else {
                let mut v = Vec::new();
                for i in &ns.inputs {
                    let at = names.iter().position(|n| n == i).ok_or_else(|| {
                        bad(format!("node {} reads {i:?}, which is not \"input\" or an earlier node", ns.name))
                    })?;
                    v.push(at);
                }
                v
            };
            if inputs.len() != layer.arity() {
                return Err(bad(format!("node {} ({}) takes {} input(s)", ns.name, ns.kind, layer.arity())));
            }
            let in_shapes: Vec<Shape> = inputs.iter().map(|&v| values[v].shape).collect();
            let out = layer.output_shape(&in_shapes).map_err(|e| bad(format!("node {}: {e}", ns.name)))?;
            let mut params = Vec::new();
            for p in layer.params(&in_shapes) {
                let len = p.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| {
                    bad(format!("node {}: parameter {} of shape {:?} overflows", ns.name, p.name, p.shape))
                })?;
                params.push(ParamSlot { spec: p, offset: param_total });
                param_total = param_total
                    .checked_add(aligned_len(len))
                    .ok_or_else(|| bad(format!("node {}: parameter count overflows", ns.name)))?;
            }
            let mut state = Vec::new();
            for p in layer.state(&in_shapes) {
                let len = p.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                let len = len.ok_or_else(|| bad(format!("node {}: state {} overflows", ns.name, p.name)))?;
                state.push(ParamSlot { spec: p, offset: state_total });
                state_total = state_total
                    .checked_add(aligned_len(len))
                    .ok_or_else(|| bad(format!("node {}: state size overflows", ns.name)))?;
            }
            let (set, unit) = match layer.channels() {
                Channels::New { prunable: true } => {
                    prunable.push(n);
                    unit_off.push(unit_off[unit_off.len() - 1] + out.c);
                    (ChannelSet::Unit(prunable.len() - 1), Some(prunable.len() - 1))
                }
                Channels::New { prunable: false } => (ChannelSet::Full, None),
                Channels::Same => (values[inputs[0]].set, None),
                Channels::Union => {
                    let sets: Vec<ChannelSet> = inputs.iter().map(|&v| values[v].set).collect();
                    (union_of(&sets, &mut unions), None)
                }
            };
            for &i in &inputs {
                values[i].consumers.push(n);
            }
            let output = values.len();
            values.push(Value {
                shape: out,
                producer: Some(n),
                consumers: Vec::new(),
                set,
                storage: output,
                gated: false,
            });
            names.push(&ns.name);
            nodes.push(Node {
                name: ns.name.clone(),
                layer,
                inputs,
                output,
                in_shapes,
                params,
                state,
                unit,
                relu_fused: false,
                skip_forward: false,
                skip_backward: false,
                accumulate: Vec::new(),
            });
        }
        let logits = values[values.len() - 1].shape;
        if logits != Shape::flat(spec.classes) {
            return Err(bad(format!(
                "the last layer gives {logits} values per sample, the {} classes need {}",
                spec.classes, spec.classes
            )));
        }
        if values[values.len() - 1].set != ChannelSet::Full {
            return Err(bad("the last layer (the classifier) must not be prunable".into()));
        }
        let mut g = Graph {
            loss: SoftmaxXent { classes: spec.classes },
            spec,
            nodes,
            storages: values.len(),
            values,
            param_total,
            state_total,
            prunable,
            unit_off,
            unions,
        };
        g.fuse_relus()?;
        g.plan_gradients();
        Ok(g)
    }

    /// ReLUs run in place: their output is their input's buffer. Each fuses
    /// into the layer before it when that layer can apply it at its store,
    /// and its backward into the layers after it when they all gate the
    /// gradients they write.
    fn fuse_relus(&mut self) -> Result<()> {
        for n in 0..self.nodes.len() {
            if !self.nodes[n].layer.is_relu() {
                continue;
            }
            let v = self.nodes[n].inputs[0];
            if v == 0 || self.values[v].consumers.len() != 1 {
                return Err(Error::InvalidArgument(format!(
                    "node {}: a ReLU must be the only reader of a layer's output (it runs in place)",
                    self.nodes[n].name
                )));
            }
            let out = self.nodes[n].output;
            self.values[out].storage = self.values[v].storage;
            if let Some(p) = self.values[v].producer
                && self.nodes[p].layer.fuses_relu()
                && !self.nodes[p].relu_fused
            {
                self.nodes[p].relu_fused = true;
                self.nodes[n].skip_forward = true;
            }
            let consumers = &self.values[out].consumers;
            if !consumers.is_empty() && consumers.iter().all(|&c| self.nodes[c].layer.gates_input_grads()) {
                self.values[out].gated = true;
                self.nodes[n].skip_backward = true;
            }
        }
        Ok(())
    }

    /// In reverse order, the first write of a gradient buffer overwrites it
    /// and later ones add into it.
    fn plan_gradients(&mut self) {
        let mut written = vec![false; self.storages];
        for n in (0..self.nodes.len()).rev() {
            let node = &self.nodes[n];
            let acc: Vec<bool> = node
                .inputs
                .iter()
                .map(|&v| {
                    let s = self.values[v].storage;
                    let was = written[s];
                    written[s] = true;
                    was
                })
                .collect();
            self.nodes[n].accumulate = acc;
        }
    }

    pub fn classes(&self) -> usize {
        self.spec.classes
    }

    pub fn input(&self) -> Shape {
        self.spec.input
    }

    /// The logits value.
    pub fn logits(&self) -> usize {
        self.values.len() - 1
    }

    /// Prunable units over all prunable layers.
    pub fn units(&self) -> usize {
        *self.unit_off.last().unwrap_or(&0)
    }

    /// Channel sets a mask compacts into: the prunable layers' (set p is
    /// layer p), then the unions (set P + u). Slots of each sample: the
    /// units, then each union's channels.
    pub fn channel_sets(&self) -> Vec<SetDesc> {
        let widths = self.unit_widths();
        let mut sets = crate::ops::compact::base_sets(&self.unit_off);
        let mut slot = self.units();
        for u in &self.unions {
            let len = widths[u[0]];
            sets.push(SetDesc { slot, len, members: u.iter().map(|&p| self.unit_off[p]).collect() });
            slot += len;
        }
        sets
    }

    /// The index of a value's set among `channel_sets` (None: all channels).
    pub fn set_index(&self, set: ChannelSet) -> Option<usize> {
        match set {
            ChannelSet::Full => None,
            ChannelSet::Unit(p) => Some(p),
            ChannelSet::Union(u) => Some(self.prunable.len() + u),
        }
    }

    /// Real parameters, padding excluded.
    pub fn param_count(&self) -> usize {
        self.nodes.iter().flat_map(|n| &n.params).map(|p| p.spec.len()).sum()
    }

    /// Units per prunable layer.
    pub fn unit_widths(&self) -> Vec<usize> {
        self.unit_off.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Names of the prunable layers, in unit order.
    pub fn prunable_names(&self) -> Vec<&str> {
        self.prunable.iter().map(|&n| self.nodes[n].name.as_str()).collect()
    }

    /// The initial flat parameters: Kaiming-normal weights (fan-in, ReLU
    /// gain), zero biases, ones where asked, zero padding; deterministic in
    /// `seed`, drawn layer by layer in order.
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        init_flat(self.nodes.iter().flat_map(|n| &n.params), self.param_total, &mut rng)
    }

    /// The initial flat state: running means 0, running variances 1.
    pub fn init_state(&self) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        init_flat(self.nodes.iter().flat_map(|n| &n.state), self.state_total, &mut rng)
    }

    /// Fraction of each value's channels kept, given kept units per
    /// prunable layer. A union keeps 1 − Π(1 − ρ) of its channels in
    /// expectation (masks drawn independently): an estimate, where the
    /// compacted network (`compacted_spec`) counts exactly.
    pub fn kept_fractions(&self, kept: &[usize]) -> Vec<f64> {
        let widths = self.unit_widths();
        let rho = |p: usize| kept[p] as f64 / widths[p].max(1) as f64;
        self.values
            .iter()
            .map(|v| match v.set {
                ChannelSet::Full => 1.0,
                ChannelSet::Unit(p) => rho(p),
                ChannelSet::Union(u) => 1.0 - self.unions[u].iter().map(|&p| 1.0 - rho(p)).product::<f64>(),
            })
            .collect()
    }

    /// Forward FLOPs of one sample with `kept[p]` units of prunable layer p
    /// (None: dense).
    pub fn flops(&self, kept: Option<&[usize]>) -> f64 {
        let rho = kept.map(|k| self.kept_fractions(k)).unwrap_or_else(|| vec![1.0; self.values.len()]);
        self.nodes
            .iter()
            .map(|n| n.layer.flops(&n.in_shapes, self.values[n.output].shape, rho[n.inputs[0]], rho[n.output]))
            .sum()
    }
}

fn init_flat<'a>(slots: impl Iterator<Item = &'a ParamSlot>, total: usize, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    let mut flat = vec![0.0f32; total];
    for slot in slots {
        let dst = &mut flat[slot.offset..slot.offset + slot.spec.len()];
        match slot.spec.init {
            Init::Kaiming { fan_in } => {
                let normal = Normal::new(0.0, (2.0 / fan_in.max(1) as f64).sqrt()).expect("finite std");
                dst.iter_mut().for_each(|v| *v = normal.sample(rng) as f32);
            }
            Init::Zeros => {}
            Init::Ones => dst.fill(1.0),
            Init::Running => {
                let half = dst.len() / 2;
                dst[half..].fill(1.0);
            }
        }
    }
    flat
}
