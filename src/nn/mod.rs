//! Layers and model graphs. Layers: `linear`, `relu`, `conv2d`,
//! `batchnorm2d`, `pool2d`, `global_avg_pool`, `add` (a residual sum); the
//! softmax cross-entropy head is `loss`. A layer kind (`layer::Layer`) knows its
//! parameters, its prunable units, its forward and backward (dense or on
//! kept units), its FLOPs and its f64 reference; a graph (`graph`) wires
//! layers together from a description and works out buffers, fusions and
//! the flat parameter layout once; a net (`net`) is a graph on the device.
//! The trainer (`train`) drives nets without knowing any layer kind.

pub mod add;
pub mod batchnorm;
pub mod compact;
pub mod conv;
pub mod graph;
pub mod layer;
pub mod linear;
pub mod loss;
pub mod models;
pub mod net;
pub mod pool;
pub mod reference;
pub mod registry;
pub mod relu;
pub mod workspace;

pub use graph::{Graph, GraphSpec, NodeSpec};
pub use layer::{Layer, Shape};
pub use net::{MaskRef, Net};
pub use workspace::Workspace;
