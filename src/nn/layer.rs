//! What a layer kind provides: its parameters, its output shape, what its
//! prunable units are, its forward and backward recorded into a plan (dense
//! or on kept units only), its FLOPs, its f64 reference, and the smaller
//! layer made of its kept units (for export). The trainer never looks inside
//! a layer; the graph (`nn::graph`) wires layers together.

use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::device::tensor::Tensor;
use crate::error::{Error, Result};
use crate::ops::Rows;
use crate::ops::gather::{KeptSet, Side};
use crate::ops::lazy::LazyPass;

/// The shape of one sample's activation: channels × height × width (an
/// MLP's features are channels with h = w = 1). Channels are the unit of
/// pruning; a sample's data is stored pixel by pixel, channels innermost
/// (NHWC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn flat(c: usize) -> Shape {
        Shape { c, h: 1, w: 1 }
    }

    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per channel.
    pub fn plane(&self) -> usize {
        self.h * self.w
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.h == 1 && self.w == 1 { write!(f, "{}", self.c) } else { write!(f, "{}x{}x{}", self.c, self.h, self.w) }
    }
}

/// How a parameter starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Kaiming-normal for ReLU networks: std = sqrt(2 / fan_in).
    Kaiming {
        fan_in: usize,
    },
    Zeros,
    Ones,
    /// Running statistics [mean..., variance...]: zeros, then ones.
    Running,
}

/// One parameter tensor of a layer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Its name within the layer ("weight", "bias", ...).
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub init: Init,
}

/// How a parameter's elements follow channels, for updates that touch only
/// what a step's masks keep (`ops::lazy`): the parameter is [rows, blocks ×
/// cols]; its rows follow the output's channels where `rows_follow`, its
/// columns input 0's where `cols_follow` (in each of `blocks` blocks);
/// elements of removed channels then get no gradient. Elsewhere every step
/// may touch every element. `gathered`: where a side follows a set, the
/// layer's pass on kept units reads the parameter only through a gather of
/// its kept part (`Ctx::lazy`), which then brings it up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamSets {
    pub rows: usize,
    pub rows_follow: bool,
    pub cols: usize,
    pub cols_follow: bool,
    pub blocks: usize,
    pub gathered: bool,
}

impl ParamSets {
    /// A parameter every step touches whole.
    pub fn whole(len: usize) -> ParamSets {
        ParamSets { rows: len, rows_follow: false, cols: 1, cols_follow: false, blocks: 1, gathered: false }
    }

    /// A per-output-channel vector (a bias, BatchNorm's γ and β).
    pub fn per_output(len: usize) -> ParamSets {
        ParamSets { rows_follow: true, ..ParamSets::whole(len) }
    }
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A scratch tensor a layer needs in a workspace (compacted operands).
#[derive(Clone, Debug, PartialEq)]
pub struct ScratchSpec {
    pub name: &'static str,
    pub len: usize,
    /// Used only within one forward or one backward of the layer (im2col
    /// columns): all layers share one buffer per transient slot.
    pub transient: bool,
}

impl ScratchSpec {
    pub fn kept(name: &'static str, len: usize) -> ScratchSpec {
        ScratchSpec { name, len, transient: false }
    }

    pub fn transient(name: &'static str, len: usize) -> ScratchSpec {
        ScratchSpec { name, len, transient: true }
    }
}

/// How a layer's output channels relate to its input's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channels {
    /// The layer makes new channels: its own units when it is prunable,
    /// else all of them (a classifier).
    New { prunable: bool },
    /// Channel c of the output comes from channel c of the input (ReLU,
    /// BatchNorm, pooling): the same channels are kept.
    Same,
    /// Channel c of the output combines channel c of every input (a
    /// residual sum): a channel is kept where any input keeps it.
    Union,
}

/// One activation as a layer sees it while recording: the tensor
/// ([rows, h, w, channels] with channels compacted when `side` is `Kept`),
/// the per-sample shape of the full network, and which channels are stored.
#[derive(Clone, Copy, Debug)]
pub struct Act<'a> {
    pub t: &'a Tensor,
    pub shape: Shape,
    pub side: Side,
}

/// Where a layer writes the gradient of one of its inputs.
#[derive(Clone, Copy, Debug)]
pub struct GradOut<'a> {
    pub t: &'a Tensor,
    /// Add into it (another consumer of the same value wrote first).
    pub accumulate: bool,
    /// The input is a ReLU's output: zero the gradient where the input is
    /// not positive (the ReLU's backward, done at this store).
    pub gate: bool,
}

/// Everything a layer's forward or backward records with.
pub struct Ctx<'a, 'g> {
    pub rec: &'a mut Recorder<'g>,
    /// The rows of a step: the batch in the step block, up to the capacity.
    pub rows: Rows,
    pub inputs: Vec<Act<'a>>,
    pub output: Act<'a>,
    /// Forward: apply ReLU where the output is stored (the graph fused the
    /// following ReLU into this layer).
    pub relu: bool,
    /// Backward: the gradient of the output (already gated where the output
    /// is a ReLU's).
    pub d_output: Option<&'a Tensor>,
    /// Backward: where input gradients go; None where none is needed.
    pub d_inputs: Vec<Option<GradOut<'a>>>,
    /// Views of the layer's parameters, in `params()` order, and of their
    /// gradients (which backward adds into, or assigns with `assign_grads`).
    pub params: &'a [Tensor],
    pub grads: &'a [Tensor],
    /// Backward of a dense step's only pass (`Net::backward_assigning`):
    /// write the parameter gradients instead of adding into them, so that
    /// the optimizer need not clear them for the next step. Set on every
    /// layer of such a pass, which runs only where every layer with
    /// parameters `assigns_grads`.
    pub assign_grads: bool,
    /// Views of the layer's state (`state()` order): running statistics.
    pub state: &'a [Tensor],
    pub scratch: &'a [Tensor],
    /// A training pass (batch statistics, running averages updated) rather
    /// than an evaluation.
    pub train: bool,
    /// The layer reads the graph's input, and an earlier pass over this
    /// batch (its forward, or the first mask's forward) already left in the
    /// layer's scratch what it derives from the input alone (a
    /// convolution's im2col columns): that work may be skipped. Such a
    /// layer's scratch is its own, not shared with other layers.
    pub input_ready: bool,
    /// Kept counts and lists of the mask in use (for `Side::Kept` sides).
    pub kept: Option<KeptSet<'a>>,
    /// Forward of a sparse step under lazy SGD: the layer's gathers of
    /// parameters marked `ParamSets::gathered` bring them up to date
    /// (`LazyPass::gather`, with this layer's first slot).
    pub lazy: Option<LazyPass<'a>>,
    /// A small u32 tensor to bind where a kernel takes kept sets a dense
    /// pass does not have.
    pub unused: &'a Tensor,
    /// The network's fixed channel sets (`Layer::fixed_sets` of every
    /// layer) and the sides of this layer's, in its order.
    pub fixed: Option<KeptSet<'a>>,
    pub fixed_sides: &'a [Side],
}

impl<'a> Ctx<'a, '_> {
    pub fn kept(&self, op: &'static str) -> Result<KeptSet<'a>> {
        self.kept.ok_or_else(|| Error::InvalidArgument(format!("{op}: compacted sides without a mask")))
    }

    /// The mask's kept sets, or (dense passes) placeholders to bind where a
    /// kernel reads none.
    pub fn kept_or_unused(&self) -> KeptSet<'a> {
        self.kept.unwrap_or(KeptSet { dims: self.unused, maps: self.unused, ranks: self.unused })
    }

    /// The fixed sets and this layer's sides in them; an error in a pass on
    /// kept units (a compacted network runs dense).
    pub fn fixed(&self, op: &'static str) -> Result<(KeptSet<'a>, &'a [Side])> {
        match (self.fixed, self.kept) {
            (Some(k), None) => Ok((k, self.fixed_sides)),
            (_, Some(_)) => Err(Error::InvalidArgument(format!("{op}: a compacted layer runs without masks"))),
            (None, None) => Err(Error::InvalidArgument(format!("{op}: the network has no fixed channel sets"))),
        }
    }
}

/// What sample 1's pass differs in from sample 0's `Ctx`, where a layer
/// records both mask samples' passes of a sparse step at once
/// (`Layer::forward_pair`, `Layer::backward_pair`).
pub struct Second<'a> {
    pub inputs: Vec<Act<'a>>,
    pub output: Act<'a>,
    pub d_output: Option<&'a Tensor>,
    pub d_inputs: Vec<Option<GradOut<'a>>>,
    pub scratch: &'a [Tensor],
    pub input_ready: bool,
    pub kept: Option<KeptSet<'a>>,
    pub lazy: Option<LazyPass<'a>>,
}

impl<'a> Ctx<'a, '_> {
    /// Trades this context's sample-specific parts with `s`: sample 0's
    /// context becomes sample 1's, and back on a second call.
    pub fn swap(&mut self, s: &mut Second<'a>) {
        std::mem::swap(&mut self.inputs, &mut s.inputs);
        std::mem::swap(&mut self.output, &mut s.output);
        std::mem::swap(&mut self.d_output, &mut s.d_output);
        std::mem::swap(&mut self.d_inputs, &mut s.d_inputs);
        std::mem::swap(&mut self.scratch, &mut s.scratch);
        std::mem::swap(&mut self.input_ready, &mut s.input_ready);
        std::mem::swap(&mut self.kept, &mut s.kept);
        std::mem::swap(&mut self.lazy, &mut s.lazy);
    }

    /// What `f` makes of sample 0's context and of sample 1's (`second`).
    pub fn both<T>(&mut self, second: &mut Second<'a>, f: impl Fn(&Self) -> Result<T>) -> Result<(T, T)> {
        let first = f(self)?;
        self.swap(second);
        let other = f(self);
        self.swap(second);
        Ok((first, other?))
    }

    /// `f` on sample 0's context, then on sample 1's (`second`).
    pub fn each_sample(&mut self, second: &mut Second<'a>, mut f: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        f(self)?;
        self.swap(second);
        let r = f(self);
        self.swap(second);
        r
    }
}

/// A layer's f64 reference: data of one batch, row-major like the device
/// (NHWC).
pub struct CpuIo<'a> {
    pub batch: usize,
    pub in_shapes: &'a [Shape],
    pub out_shape: Shape,
    pub params: &'a [&'a [f64]],
    pub state: &'a [&'a [f64]],
    /// A training pass (batch statistics) rather than an evaluation.
    pub train: bool,
}

/// One layer kind. See the module header; README "Adding a layer" walks
/// through writing one.
pub trait Layer: std::fmt::Debug + Send + Sync {
    /// The kind's registered name (`nn::registry`).
    fn kind(&self) -> &'static str;

    /// The layer's settings, as stored in descriptions (kind excluded).
    fn settings(&self) -> serde_json::Value;

    /// Inputs it takes (1 for most layers).
    fn arity(&self) -> usize {
        1
    }

    /// The output shape for these input shapes, or why they do not fit.
    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape>;

    /// Its parameters for these input shapes.
    fn params(&self, _inputs: &[Shape]) -> Vec<ParamSpec> {
        Vec::new()
    }

    /// How each parameter follows channels (`ParamSets`), in `params` order.
    /// The default, every element touched every step, is always correct.
    /// `backward` must add into a parameter's gradient only where these say
    /// a mask sample reaches, never assign (but for `Ctx::assign_grads` on
    /// a dense pass): under lazy SGD the rest holds updates deferred from
    /// earlier steps (`ops::lazy`).
    fn param_sets(&self, inputs: &[Shape]) -> Vec<ParamSets> {
        self.params(inputs).iter().map(|p| ParamSets::whole(p.len())).collect()
    }

    /// Its state: values it keeps that are not trained by gradients (a
    /// BatchNorm's running statistics), in a buffer of their own.
    fn state(&self, _inputs: &[Shape]) -> Vec<ParamSpec> {
        Vec::new()
    }

    fn channels(&self) -> Channels {
        Channels::Same
    }

    /// Scratch tensors its forward/backward needs on `gpu` (whose kernel
    /// choices may spare some) for batches of up to `capacity` samples,
    /// given the sides of its input and output.
    fn scratch(
        &self,
        _gpu: &Gpu,
        _inputs: &[Shape],
        _sides: (&[Side], Side),
        _out: Shape,
        _capacity: usize,
    ) -> Vec<ScratchSpec> {
        Vec::new()
    }

    /// Whether its forward can apply a following ReLU at its store.
    fn fuses_relu(&self) -> bool {
        false
    }

    /// Whether its backward honours `Ctx::assign_grads` on a dense pass:
    /// every parameter gradient written whole, by one product or kernel
    /// that assigns rather than adds. A network whose every layer with
    /// parameters does can skip clearing its gradients between dense steps
    /// (`Net::can_assign_grads`).
    fn assigns_grads(&self) -> bool {
        false
    }

    /// Whether its backward gates input gradients (`GradOut::gate`).
    fn gates_input_grads(&self) -> bool {
        false
    }

    /// Whether it is the identity on data apart from a fused activation (a
    /// ReLU fused into its producer records nothing).
    fn is_relu(&self) -> bool {
        false
    }

    fn forward(&self, cx: &mut Ctx) -> Result<()>;

    fn backward(&self, cx: &mut Ctx) -> Result<()>;

    /// Both mask samples' forwards of a sparse step (`Net::forward_samples`):
    /// `cx` is sample 0's, `second` what sample 1's differs in. Sample 0's
    /// work on a weight precedes sample 1's (lazy SGD's gathers rely on
    /// it). By default the two one after the other; a layer whose products
    /// pair up launches each pair once (`Matmul::record_pair`).
    fn forward_pair<'a>(&self, cx: &mut Ctx<'a, '_>, second: &mut Second<'a>) -> Result<()> {
        cx.each_sample(second, |c| self.forward(c))
    }

    /// Both samples' backwards, likewise: each parameter gradient gets
    /// sample 0's part, then sample 1's.
    fn backward_pair<'a>(&self, cx: &mut Ctx<'a, '_>, second: &mut Second<'a>) -> Result<()> {
        cx.each_sample(second, |c| self.backward(c))
    }

    /// Multiply-add FLOPs (2 per MAC) of one sample's forward pass, with
    /// `rho_in` and `rho_out` of the input and output channels kept.
    fn flops(&self, _inputs: &[Shape], _out: Shape, _rho_in: f64, _rho_out: f64) -> f64 {
        0.0
    }

    /// The f64 forward of a batch: the output, [batch, out_shape].
    fn cpu_forward(&self, io: &CpuIo, x: &[&[f64]]) -> Vec<f64>;

    /// The f64 state after a training forward on `x`, where `kept` (when
    /// given) marks the output channels a mask keeps: only those change.
    fn cpu_state_update(&self, io: &CpuIo, _x: &[&[f64]], _kept: Option<&[u32]>) -> Vec<Vec<f64>> {
        io.state.iter().map(|s| s.to_vec()).collect()
    }

    /// The f64 backward: input gradients (one per input) and parameter
    /// gradients (one per parameter), from the forward's inputs `x`, its
    /// output `y` and the output gradient `dy`.
    fn cpu_backward(&self, io: &CpuIo, x: &[&[f64]], y: &[f64], dy: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>);

    /// The layer made of kept channels only (for export): `kept_in[i]`
    /// lists input i's kept channels, `kept_out` the output's (ascending).
    fn compacted(&self, kept_in: &[Vec<usize>], kept_out: &[usize]) -> Box<dyn Layer>;

    /// Fixed channel sets the layer's kernels look up, as (channels of the
    /// space, the set's channels ascending): a compacted network's residual
    /// sums. The network uploads them once (`Ctx::fixed`).
    fn fixed_sets(&self) -> Vec<(usize, Vec<usize>)> {
        Vec::new()
    }

    /// The parameters, then the state, of `compacted`, cut from `params`
    /// (parameters then state): `kept_in[i]` lists input i's kept channels,
    /// `kept_out` the output's.
    fn compact_params(
        &self,
        _inputs: &[Shape],
        _kept_in: &[Vec<usize>],
        _kept_out: &[usize],
        _params: &[Vec<f32>],
    ) -> Vec<Vec<f32>> {
        Vec::new()
    }
}

/// Shape checks shared by layers: exactly `n` inputs.
pub fn expect_inputs(kind: &str, inputs: &[Shape], n: usize) -> Result<()> {
    if inputs.len() != n {
        return Err(Error::InvalidArgument(format!("{kind} takes {n} input(s), got {}", inputs.len())));
    }
    Ok(())
}
