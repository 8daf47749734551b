//! The layer kinds a description may name. Adding a kind is one line here
//! (besides the layer's own file): descriptions in checkpoints and exports
//! name layers by kind and store their settings as JSON.

use serde::de::DeserializeOwned;

use super::add::Add;
use super::batchnorm::BatchNorm2d;
use super::conv::Conv2d;
use super::layer::Layer;
use super::linear::Linear;
use super::pool::{GlobalAvgPool, Pool2d};
use super::relu::Relu;
use crate::error::{Error, Result};

type Make = fn(&serde_json::Value) -> Result<Box<dyn Layer>>;

fn make<L: Layer + DeserializeOwned + 'static>(settings: &serde_json::Value) -> Result<Box<dyn Layer>> {
    let layer: L = serde_json::from_value(settings.clone())
        .map_err(|e| Error::InvalidArgument(format!("layer settings {settings}: {e}")))?;
    Ok(Box::new(layer))
}

/// Every registered kind, by name.
pub const KINDS: &[(&str, Make)] = &[
    ("linear", make::<Linear>),
    ("relu", make::<Relu>),
    ("conv2d", make::<Conv2d>),
    ("batchnorm2d", make::<BatchNorm2d>),
    ("pool2d", make::<Pool2d>),
    ("global_avg_pool", make::<GlobalAvgPool>),
    ("add", make::<Add>),
];

/// A layer of `kind` with `settings`; unknown kinds and bad settings are errors.
pub fn layer(kind: &str, settings: &serde_json::Value) -> Result<Box<dyn Layer>> {
    let (_, make) = KINDS.iter().find(|(k, _)| *k == kind).ok_or_else(|| {
        let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        Error::InvalidArgument(format!("unknown layer kind {kind:?} (known: {})", known.join(", ")))
    })?;
    let layer = make(settings)?;
    debug_assert_eq!(layer.kind(), kind, "registered under another name");
    Ok(layer)
}
