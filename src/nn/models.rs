//! The model zoo as graph descriptions: LeNet-5, the CIFAR ResNets (6n + 2
//! layers, widths w, 2w, 4w, a 1×1 convolution on the shortcut where the
//! shape changes) and VGG (3×3 convolutions with BatchNorm, max pooling).
//! As in the reference code, every convolution is prunable (1×1 shortcuts
//! included) and the classifier is not; an MLP's hidden layers are too.

use super::graph::{GraphSpec, NodeSpec};
use super::layer::Shape;
use super::loss::SoftmaxXent;
use crate::error::{Error, Result};

/// Builds a node list with names and wiring.
struct Builder {
    nodes: Vec<NodeSpec>,
}

impl Builder {
    fn push(&mut self, name: &str, kind: &str, settings: serde_json::Value, inputs: &[&str]) -> String {
        self.nodes.push(NodeSpec {
            name: name.into(),
            kind: kind.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            settings,
        });
        name.into()
    }

    fn conv(&mut self, name: &str, out: usize, kernel: usize, stride: usize, pad: usize, input: &str) -> String {
        let s = serde_json::json!({"out": out, "kernel": kernel, "stride": stride, "pad": pad, "prunable": true});
        let c = self.push(name, "conv2d", s, &[input]);
        self.push(&format!("{name}_bn"), "batchnorm2d", serde_json::json!({}), &[&c])
    }

    fn relu(&mut self, name: &str, input: &str) -> String {
        self.push(name, "relu", serde_json::json!({}), &[input])
    }

    fn done(self, input: Shape, classes: usize) -> GraphSpec {
        GraphSpec { input, classes, nodes: self.nodes, loss: SoftmaxXent::KIND.into() }
    }
}

/// LeNet-5 with ReLUs and max pooling: 5×5 convolutions of 6 and 16
/// channels (padded so that a 28×28 image works like a 32×32 one), then
/// linear layers of 120 and 84 units and the classifier.
pub fn lenet5(input: Shape, classes: usize) -> Result<GraphSpec> {
    if input.h < 12 || input.w < 12 {
        return Err(Error::InvalidArgument(format!("LeNet-5 needs images of at least 12x12, got {input}")));
    }
    let pad = 32usize.saturating_sub(input.h.max(input.w)) / 2;
    let mut b = Builder { nodes: Vec::new() };
    let conv = |out: usize, pad: usize| serde_json::json!({"out": out, "kernel": 5, "pad": pad, "bias": true, "prunable": true});
    let pool = serde_json::json!({"mode": "max", "kernel": 2, "stride": 2});
    let c1 = b.push("conv1", "conv2d", conv(6, pad), &["input"]);
    let r1 = b.relu("relu1", &c1);
    let p1 = b.push("pool1", "pool2d", pool.clone(), &[&r1]);
    let c2 = b.push("conv2", "conv2d", conv(16, 0), &[&p1]);
    let r2 = b.relu("relu2", &c2);
    let p2 = b.push("pool2", "pool2d", pool, &[&r2]);
    let f1 = b.push("fc1", "linear", serde_json::json!({"out": 120, "prunable": true}), &[&p2]);
    let r3 = b.relu("relu3", &f1);
    let f2 = b.push("fc2", "linear", serde_json::json!({"out": 84, "prunable": true}), &[&r3]);
    let r4 = b.relu("relu4", &f2);
    b.push("classifier", "linear", serde_json::json!({"out": classes}), &[&r4]);
    Ok(b.done(input, classes))
}

/// The CIFAR ResNet of `depth` = 6n + 2 layers (20, 32, 56, ...) and base
/// width `width` (16 in He et al., 32 in the reference code's ResNet-32).
pub fn resnet(depth: usize, width: usize, input: Shape, classes: usize) -> Result<GraphSpec> {
    if depth < 8 || !(depth - 2).is_multiple_of(6) || width == 0 {
        return Err(Error::InvalidArgument(format!(
            "a CIFAR ResNet has 6n + 2 layers (20, 32, 56, ...) and a positive width; got depth {depth}, width {width}"
        )));
    }
    let n = (depth - 2) / 6;
    let mut b = Builder { nodes: Vec::new() };
    let stem = b.conv("conv1", width, 3, 1, 1, "input");
    let mut x = b.relu("relu1", &stem);
    let mut channels = width;
    for (stage, w) in [width, 2 * width, 4 * width].into_iter().enumerate() {
        for block in 0..n {
            let name = format!("s{}b{}", stage + 1, block + 1);
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let a = b.conv(&format!("{name}_conv1"), w, 3, stride, 1, &x);
            let a = b.relu(&format!("{name}_relu1"), &a);
            let a = b.conv(&format!("{name}_conv2"), w, 3, 1, 1, &a);
            let shortcut = if stride != 1 || channels != w {
                b.conv(&format!("{name}_shortcut"), w, 1, stride, 0, &x)
            } else {
                x.clone()
            };
            let sum = b.push(&format!("{name}_add"), "add", serde_json::json!({}), &[&a, &shortcut]);
            x = b.relu(&format!("{name}_relu2"), &sum);
            channels = w;
        }
    }
    let pooled = b.push("pool", "global_avg_pool", serde_json::json!({}), &[&x]);
    b.push("classifier", "linear", serde_json::json!({"out": classes}), &[&pooled]);
    Ok(b.done(input, classes))
}

/// VGG-11, -16 or -19 for small images: 3×3 convolutions with BatchNorm and
/// ReLU, 2×2 max pooling after each stage, global average pooling and the
/// classifier; `width` is the first stage's width (64 in Simonyan & Zisserman).
pub fn vgg(depth: usize, width: usize, input: Shape, classes: usize) -> Result<GraphSpec> {
    let stages: &[usize] = match depth {
        11 => &[1, 1, 2, 2, 2],
        16 => &[2, 2, 3, 3, 3],
        19 => &[2, 2, 4, 4, 4],
        _ => return Err(Error::InvalidArgument(format!("VGG comes in depths 11, 16 and 19, not {depth}"))),
    };
    if width == 0 {
        return Err(Error::InvalidArgument("VGG needs a positive width".into()));
    }
    let mut b = Builder { nodes: Vec::new() };
    let mut x = "input".to_string();
    let (mut h, mut w) = (input.h, input.w);
    for (s, &convs) in stages.iter().enumerate() {
        let ch = width << s.min(3);
        for c in 0..convs {
            let name = format!("s{}c{}", s + 1, c + 1);
            let y = b.conv(&name, ch, 3, 1, 1, &x);
            x = b.relu(&format!("{name}_relu"), &y);
        }
        // Small images stop pooling at one pixel.
        if h >= 2 && w >= 2 {
            x = b.push(
                &format!("pool{}", s + 1),
                "pool2d",
                serde_json::json!({"mode": "max", "kernel": 2, "stride": 2}),
                &[&x],
            );
            (h, w) = (h / 2, w / 2);
        }
    }
    let pooled = b.push("pool", "global_avg_pool", serde_json::json!({}), &[&x]);
    b.push("classifier", "linear", serde_json::json!({"out": classes}), &[&pooled]);
    Ok(b.done(input, classes))
}
