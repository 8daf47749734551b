//! Convolutional layers on the device against the graph's f64 reference:
//! every parameter gradient and the running statistics of dense training
//! passes through convolutions (3×3, 5×5 with stride, 1×1), BatchNorm,
//! pooling, residual sums, LeNet-5, ResNet and VGG; and a residual network
//! on kept channels, where kept channels match the dense-masked reference
//! and removed channels are exactly zero in activations and gradients;
//! and a sparse step's two mask samples' passes in pairs, bit for bit
//! those of each sample one after the other.

#[path = "kernels/common.rs"]
mod common;

use common::*;
use rand::Rng;
use sparsetrain::nn::reference::forward_backward;
use sparsetrain::nn::{Graph, GraphSpec, Net, NodeSpec, Shape, models};
use sparsetrain::sparse::MaskSet;
use sparsetrain::step::{StepBlock, StepBuffer};
use sparsetrain::{DType, Gpu, Recorder, Tensor};

fn node(name: &str, kind: &str, settings: serde_json::Value, input: &str) -> NodeSpec {
    NodeSpec { name: name.into(), kind: kind.into(), inputs: vec![input.into()], settings }
}

fn spec(input: Shape, classes: usize, nodes: Vec<NodeSpec>) -> GraphSpec {
    GraphSpec { input, classes, nodes, loss: "softmax_xent".into() }
}

/// Small graphs covering every layer kind and the models.
fn graphs() -> Vec<(&'static str, GraphSpec, usize)> {
    vec![
        (
            "conv3x3+bias, relu, max pool, linear",
            spec(
                Shape { c: 3, h: 6, w: 6 },
                4,
                vec![
                    node(
                        "c",
                        "conv2d",
                        serde_json::json!({"out": 5, "kernel": 3, "pad": 1, "bias": true, "prunable": true}),
                        "input",
                    ),
                    node("r", "relu", serde_json::json!({}), "c"),
                    node("p", "pool2d", serde_json::json!({"mode": "max", "kernel": 2, "stride": 2}), "r"),
                    node("classifier", "linear", serde_json::json!({"out": 4}), "p"),
                ],
            ),
            3,
        ),
        (
            // Channels in fours on both sides: on regtile adapters every pass
            // is implicit and the convolutions hold no columns, so the bias
            // partial sums take the columns' scratch slot.
            "conv3x3+bias 4->8, relu, conv3x3+bias stride 2 8->4, linear",
            spec(
                Shape { c: 4, h: 5, w: 5 },
                3,
                vec![
                    node(
                        "c1",
                        "conv2d",
                        serde_json::json!({"out": 8, "kernel": 3, "pad": 1, "bias": true, "prunable": true}),
                        "input",
                    ),
                    node("r1", "relu", serde_json::json!({}), "c1"),
                    node(
                        "c2",
                        "conv2d",
                        serde_json::json!({"out": 4, "kernel": 3, "stride": 2, "pad": 1, "bias": true, "prunable": true}),
                        "r1",
                    ),
                    node("r2", "relu", serde_json::json!({}), "c2"),
                    node("classifier", "linear", serde_json::json!({"out": 3}), "r2"),
                ],
            ),
            3,
        ),
        (
            "conv5x5 stride 2, batchnorm, relu, global average",
            spec(
                Shape { c: 2, h: 7, w: 7 },
                3,
                vec![
                    node(
                        "c",
                        "conv2d",
                        serde_json::json!({"out": 6, "kernel": 5, "stride": 2, "pad": 2, "prunable": true}),
                        "input",
                    ),
                    node("bn", "batchnorm2d", serde_json::json!({}), "c"),
                    node("r", "relu", serde_json::json!({}), "bn"),
                    node("g", "global_avg_pool", serde_json::json!({}), "r"),
                    node("classifier", "linear", serde_json::json!({"out": 3}), "g"),
                ],
            ),
            4,
        ),
        (
            "stem, then conv1x1, batchnorm, relu, average pool (unfused relu before pooling)",
            spec(
                Shape { c: 4, h: 5, w: 5 },
                2,
                vec![
                    node(
                        "stem",
                        "conv2d",
                        serde_json::json!({"out": 4, "kernel": 3, "pad": 1, "prunable": true}),
                        "input",
                    ),
                    node("c", "conv2d", serde_json::json!({"out": 3, "kernel": 1, "prunable": true}), "stem"),
                    node("bn", "batchnorm2d", serde_json::json!({}), "c"),
                    node("r", "relu", serde_json::json!({}), "bn"),
                    node("p", "pool2d", serde_json::json!({"mode": "avg", "kernel": 5, "stride": 5}), "r"),
                    node("classifier", "linear", serde_json::json!({"out": 2}), "p"),
                ],
            ),
            3,
        ),
        ("resnet8 width 2", models::resnet(8, 2, Shape { c: 3, h: 8, w: 8 }, 5).unwrap(), 3),
        ("lenet5 on 12x12", models::lenet5(Shape { c: 1, h: 12, w: 12 }, 4).unwrap(), 2),
        ("compacted resnet8 (sums over differing channel sets)", compacted_resnet(), 3),
        ("vgg11 width 2 on 32x32", models::vgg(11, 2, Shape { c: 3, h: 32, w: 32 }, 3).unwrap(), 4),
    ]
}

/// A ResNet-8 made of some kept channels of each layer, so that its
/// residual sums place differing channel sets (an export's network).
fn compacted_resnet() -> GraphSpec {
    let g = Graph::from_spec(models::resnet(8, 6, Shape { c: 3, h: 6, w: 6 }, 4).unwrap()).unwrap();
    let kept: Vec<Vec<usize>> =
        g.unit_widths().iter().enumerate().map(|(p, &w)| (0..w).filter(|u| (u + p) % 3 != 0).collect()).collect();
    let spec = g.compacted_spec(&kept).unwrap();
    assert!(spec.nodes.iter().any(|n| n.kind == "add" && n.settings.get("channels").is_some()));
    spec
}

/// Inputs, labels and non-trivial parameters (biases, γ, β random; running
/// statistics not at their start) for a graph.
fn setup(g: &Graph, batch: usize, seed: u64) -> (Vec<f32>, Vec<u32>, Vec<f32>, Vec<f32>) {
    let mut r = rng(seed);
    let mut flat = g.init_params(seed);
    for slot in g.nodes.iter().flat_map(|n| &n.params) {
        let d = &mut flat[slot.offset..slot.offset + slot.spec.len()];
        match slot.spec.name {
            "bias" => d.iter_mut().for_each(|v| *v = r.random_range(-0.2..0.2)),
            "weight" if slot.spec.shape.len() == 1 => d.iter_mut().for_each(|v| *v = r.random_range(0.5..1.5)),
            _ => {}
        }
    }
    let mut state = g.init_state();
    for v in state.iter_mut() {
        *v += r.random_range(0.0..0.3);
    }
    let x = rand_f32(&mut r, batch * g.input().len(), -1.0, 1.0);
    let labels = (0..batch).map(|_| r.random_range(0..g.classes() as u32)).collect();
    (x, labels, flat, state)
}

/// One training pass on the device (workspace larger than the batch). With
/// `again`, an evaluation forward (same mask) runs first and the pass
/// is the batch's second (`Net::forward_again`): layers reading the input
/// reuse what the first pass derived from it (the stem's im2col columns),
/// which must therefore survive the other layers' use of shared scratch.
fn device_pass(
    gpu: &Gpu,
    net: &Net,
    x: &[f32],
    labels: &[u32],
    batch: usize,
    mask: Option<&MaskSet>,
    again: bool,
) -> (sparsetrain::nn::Workspace, f32) {
    let ws = net.workspace(gpu, batch + 2, mask.is_some()).unwrap();
    ws.x.view(0, &[x.len()]).unwrap().upload(gpu, x).unwrap();
    ws.y.view(0, &[batch]).unwrap().upload(gpu, labels).unwrap();
    let loss = Tensor::zeros(gpu, "loss", &[1], DType::F32).unwrap();
    let step = StepBuffer::new(gpu);
    let mut rec = Recorder::with_step(gpu, &step);
    let m = mask.map(|m| m.sample(0));
    if again {
        net.forward(&mut rec, &ws, m, false).unwrap();
        net.forward_again(&mut rec, &ws, m, true).unwrap();
    } else {
        net.forward(&mut rec, &ws, m, true).unwrap();
    }
    // The training step's path: the fused loss head, its mean, the layers.
    net.train_head(&mut rec, &ws, (1.0, 0), None).unwrap();
    net.loss_mean(&mut rec, &ws, 0, &loss, (0, None)).unwrap();
    net.backward_layers(&mut rec, &ws, m).unwrap();
    rec.into_plan().run(gpu, Some(&StepBlock { batch: batch as u32, ..Default::default() })).unwrap();
    gpu.wait().unwrap();
    let l = loss.download_f32(gpu).unwrap()[0];
    (ws, l)
}

fn check_params(tag: &str, g: &Graph, got: &[f32], want: &[f64], what: &str) {
    let top = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    let floor = 1e-3 * top;
    for node in &g.nodes {
        let slots = if what == "state" { &node.state } else { &node.params };
        for slot in slots {
            let range = slot.offset..slot.offset + slot.spec.len();
            // Relative to the slot's largest value, or to a thousandth of
            // the network's where a slot's true gradient is (nearly) zero.
            // Each element also gets a millionth of the network's largest
            // value: where the exact value is 0 by cancellation (a BatchNorm
            // gradient summing centred terms), f32 leaves a residue of a
            // few ulps of the terms; an H200 left 4e-8 against a slot
            // scale of 4e-4 on one such slot (a 1×1 shortcut at keep 0.2).
            let scale = want[range.clone()].iter().fold(floor, |m, v| m.max(v.abs()));
            let err = |(&a, &b): (&f32, &f64)| ((a as f64 - b).abs() - 1e-6 * top).max(0.0);
            let e = got[range.clone()].iter().zip(&want[range]).map(err).fold(0.0f64, f64::max) / scale;
            eprintln!("{tag} {what} {}.{}: relative error {e:e}", node.name, slot.spec.name);
            assert!(e <= 1e-4, "{tag}: {what} of {}.{} relative error {e:e} > 1e-4", node.name, slot.spec.name);
        }
    }
}

#[test]
fn cnn_gradients_match_f64_reference() {
    let Some(gpu) = gpu("cnn_gradients_match_f64_reference") else { return };
    for (case, (tag, spec, batch)) in graphs().into_iter().enumerate() {
        let g = Graph::from_spec(spec.clone()).unwrap();
        let (x, labels, flat, state) = setup(&g, batch, 3000 + case as u64);
        let want = forward_backward(&g, &to_f64(&flat), &to_f64(&state), &to_f64(&x), &labels, batch, None, 1.0);
        let net = Net::from_flat(&gpu, Graph::from_spec(spec).unwrap(), &flat, &state).unwrap();
        let (ws, loss) = device_pass(&gpu, &net, &x, &labels, batch, None, case % 2 == 1);
        assert!(
            ((loss as f64) - want.loss).abs() <= 1e-5 * want.loss.abs().max(1.0),
            "{tag}: loss {loss} vs {}",
            want.loss
        );
        let logits = net.logits(&ws).download_f32(&gpu).unwrap();
        assert_close(&format!("{tag} logits"), &logits[..batch * g.classes()], &want.logits, 1e-5, 1e-4);
        check_params(tag, &g, &net.grads.download_f32(&gpu).unwrap(), &want.grads, "gradient");
        check_params(tag, &g, &net.download_state(&gpu).unwrap(), &want.state, "state");
    }
}

/// The kept channels of every set of one mask sample, from the device.
fn kept_sets(gpu: &Gpu, g: &Graph, m: &MaskSet) -> Vec<Vec<usize>> {
    let (kept, counts) = (m.kept.download_u32(gpu).unwrap(), m.counts.download_u32(gpu).unwrap());
    g.channel_sets()
        .iter()
        .enumerate()
        .map(|(k, d)| kept[d.slot..d.slot + counts[k] as usize].iter().map(|&c| c as usize).collect())
        .collect()
}

/// A residual network on kept channels: layers keeping some, all or none of
/// their channels; residual sums over unions of sets.
#[test]
fn masked_residual_network_matches_reference() {
    let Some(gpu) = gpu("masked_residual_network_matches_reference") else { return };
    let spec = models::resnet(8, 6, Shape { c: 3, h: 8, w: 8 }, 4).unwrap();
    let batch = 3;
    for (case, keep) in [0.5f64, 1.0, 0.0, 0.2].into_iter().enumerate() {
        let g = Graph::from_spec(spec.clone()).unwrap();
        assert!(!g.unions.is_empty(), "the graph has residual unions");
        let (x, labels, flat, state) = setup(&g, batch, 3100 + case as u64);
        let mut r = rng(3200 + case as u64);
        let mut mask: Vec<u32> = (0..g.units()).map(|_| u32::from(r.random_bool(keep))).collect();
        if case == 3 {
            // One layer keeps nothing, another everything.
            let w = g.unit_widths();
            mask[g.unit_off[1]..g.unit_off[1] + w[1]].fill(0);
            mask[g.unit_off[2]..g.unit_off[2] + w[2]].fill(1);
        }
        let per_layer: Vec<Vec<u32>> = g.unit_off.windows(2).map(|w| mask[w[0]..w[1]].to_vec()).collect();
        let want =
            forward_backward(&g, &to_f64(&flat), &to_f64(&state), &to_f64(&x), &labels, batch, Some(&per_layer), 1.0);
        let net = Net::from_flat(&gpu, Graph::from_spec(spec.clone()).unwrap(), &flat, &state).unwrap();
        let ms = MaskSet::new(&gpu, &net.graph, 1, "test").unwrap();
        ms.mask.upload(&gpu, &mask).unwrap();
        let mut rec = Recorder::new(&gpu);
        ms.compact(&mut rec).unwrap();
        rec.finish().unwrap();
        let (ws, loss) = device_pass(&gpu, &net, &x, &labels, batch, Some(&ms), case % 2 == 1);
        let tag = format!("keep {keep} (case {case})");
        let sets = kept_sets(&gpu, &g, &ms);
        // Every stored value: kept channels equal the reference, padding
        // columns exactly 0, and the reference is 0 wherever the set lacks a channel.
        for (v, val) in g.values.iter().enumerate().skip(1) {
            // A ReLU runs in place: its input's storage holds its output.
            if g.values[v + 1..].iter().any(|later| later.storage == val.storage) {
                continue;
            }
            let Some(k) = g.set_index(val.set) else { continue };
            let kept = &sets[k];
            let (c, pix) = (val.shape.c, val.shape.plane());
            let stored = kept.len().div_ceil(4) * 4;
            let got = net.act(&ws, v).download_f32(&gpu).unwrap();
            let refv = &want.values[v];
            let (mut g_kept, mut w_kept) = (Vec::new(), Vec::new());
            for row in 0..batch * pix {
                for (j, &ch) in kept.iter().enumerate() {
                    g_kept.push(got[row * stored + j]);
                    w_kept.push(refv[row * c + ch]);
                }
                for j in kept.len()..stored {
                    assert_eq!(got[row * stored + j], 0.0, "{tag}: value {v} padding column {j} is not 0");
                }
                for ch in (0..c).filter(|ch| !kept.contains(ch)) {
                    assert_eq!(refv[row * c + ch], 0.0, "{tag}: the reference keeps removed channel {ch} of value {v}");
                }
            }
            assert_close(&format!("{tag} value {v} ({:?})", val.set), &g_kept, &w_kept, 1e-5, 1e-4);
        }
        assert!(
            ((loss as f64) - want.loss).abs() <= 1e-5 * want.loss.abs().max(1.0),
            "{tag}: loss {loss} vs {}",
            want.loss
        );
        check_params(&tag, &g, &net.grads.download_f32(&gpu).unwrap(), &want.grads, "gradient");
        check_params(&tag, &g, &net.download_state(&gpu).unwrap(), &want.state, "state");
        // Removed output channels get exactly zero weight gradient.
        let grads = net.grads.download_f32(&gpu).unwrap();
        for (p, &n) in g.prunable.iter().enumerate() {
            let w = &g.nodes[n].params[0];
            let rows = w.spec.shape[0];
            let per = w.spec.len() / rows;
            for o in (0..rows).filter(|&o| per_layer[p][o] == 0) {
                let row = &grads[w.offset + o * per..w.offset + (o + 1) * per];
                assert!(
                    row.iter().all(|&v| v == 0.0),
                    "{tag}: removed channel {o} of {} has weight gradient",
                    g.nodes[n].name
                );
            }
        }
    }
}

/// What lazy SGD relies on (`Layer::param_sets`): a pass on kept channels
/// gives no gradient outside each parameter's kept rows × kept columns, and
/// adds to what the gradient held (deferred updates' gradients sit there):
/// outside, a value written before the pass is left to the bit; inside, the
/// pass's gradient is added to it.
/// Checked on every parameter of a masked ResNet and LeNet-5.
#[test]
fn gradients_stay_inside_the_kept_rectangles() {
    let Some(gpu) = gpu("gradients_stay_inside_the_kept_rectangles") else { return };
    let specs = [
        ("resnet8", models::resnet(8, 6, Shape { c: 3, h: 8, w: 8 }, 4).unwrap()),
        ("lenet5", models::lenet5(Shape { c: 1, h: 12, w: 12 }, 4).unwrap()),
    ];
    for (case, (tag, spec)) in specs.into_iter().enumerate() {
        let g = Graph::from_spec(spec.clone()).unwrap();
        let batch = 3;
        let (x, labels, flat, state) = setup(&g, batch, 3300 + case as u64);
        let mut r = rng(3400 + case as u64);
        let mask: Vec<u32> = (0..g.units()).map(|_| u32::from(r.random_bool(0.4))).collect();
        let net = Net::from_flat(&gpu, Graph::from_spec(spec).unwrap(), &flat, &state).unwrap();
        let ms = MaskSet::new(&gpu, &net.graph, 1, "test").unwrap();
        ms.mask.upload(&gpu, &mask).unwrap();
        let mut rec = Recorder::new(&gpu);
        ms.compact(&mut rec).unwrap();
        rec.finish().unwrap();
        // The pass's gradient from 0, then from what the gradient holds
        // before the pass (0.5, exact in f32).
        const HELD: f32 = 0.5;
        net.grads.upload(&gpu, &vec![0.0f32; g.param_total]).unwrap();
        device_pass(&gpu, &net, &x, &labels, batch, Some(&ms), false);
        let from_zero = net.grads.download_f32(&gpu).unwrap();
        net.grads.upload(&gpu, &vec![HELD; g.param_total]).unwrap();
        device_pass(&gpu, &net, &x, &labels, batch, Some(&ms), false);
        let grads = net.grads.download_f32(&gpu).unwrap();
        let sets = kept_sets(&gpu, &g, &ms);
        let kept =
            |side: sparsetrain::ops::lazy::SlotSide, i: usize| side.set.is_none_or(|(k, _)| sets[k].contains(&i));
        let mut inside = 0;
        for (s, slot) in g.lazy_slots().unwrap().iter().enumerate() {
            for e in 0..slot.len() {
                let (row, col) = (e / (slot.blocks * slot.cols.len), e % slot.cols.len);
                let v = grads[slot.offset + e];
                if kept(slot.rows, row) && kept(slot.cols, col) {
                    inside += usize::from(v != HELD);
                    let want = HELD + from_zero[slot.offset + e];
                    assert!(
                        (v - want).abs() <= 1e-6 * (1.0 + want.abs()),
                        "{tag}: slot {s} ({slot:?}) element {e}: {v} after the pass, not held 0.5 + {}",
                        from_zero[slot.offset + e]
                    );
                } else {
                    assert_eq!(
                        v, HELD,
                        "{tag}: slot {s} ({slot:?}) element {e} (row {row}, column {col}) has a gradient outside the kept rectangle"
                    );
                }
            }
        }
        assert!(inside > 0, "{tag}: some gradient inside the rectangles");
    }
}

/// A sparse step's layer-by-layer passes of both mask samples
/// (`Net::forward_samples`, `backward_samples`: convolutions and linear
/// layers in pairs) against each sample's passes one after the other
/// (`forward_sparse`, `backward_layers`: every layer's own forward and
/// backward, which the test above holds to the f64 reference): the same
/// values and gradients of both samples, parameter gradients and running
/// statistics, bit for bit. A masked ResNet-8 whose two samples keep
/// different channels (one layer nothing in sample 1, everything in
/// sample 0).
#[test]
fn paired_passes_match_passes_one_by_one() {
    let Some(gpu) = gpu("paired_passes_match_passes_one_by_one") else { return };
    let spec = models::resnet(8, 6, Shape { c: 3, h: 8, w: 8 }, 4).unwrap();
    let g = Graph::from_spec(spec.clone()).unwrap();
    let batch = 3;
    let (x, labels, flat, state) = setup(&g, batch, 3300);
    let mut r = rng(3301);
    let units = g.units();
    let mut mask: Vec<u32> = (0..2 * units).map(|_| u32::from(r.random_bool(0.5))).collect();
    let (off, w) = (g.unit_off[1], g.unit_widths()[1]);
    mask[off..off + w].fill(1);
    mask[units + off..units + off + w].fill(0);
    let ms = MaskSet::new(&gpu, &g, 2, "test").unwrap();
    ms.mask.upload(&gpu, &mask).unwrap();
    let nets = [0, 1].map(|_| Net::from_flat(&gpu, Graph::from_spec(spec.clone()).unwrap(), &flat, &state).unwrap());
    let wss = nets.each_ref().map(|net| net.workspace(&gpu, batch + 1, true).unwrap());
    // Gradients that already hold something: the order of the two
    // samples' additions then shows in the bits.
    let g0 = rand_f32(&mut r, g.param_total, -1.0, 1.0);
    for net in &nets {
        net.grads.upload(&gpu, &g0).unwrap();
    }
    for ws in &wss {
        ws.x.view(0, &[x.len()]).unwrap().upload(&gpu, &x).unwrap();
        ws.y.view(0, &[batch]).unwrap().upload(&gpu, &labels).unwrap();
    }
    let step = StepBuffer::new(&gpu);
    let mut rec = Recorder::with_step(&gpu, &step);
    ms.compact(&mut rec).unwrap();
    let masks = [ms.sample(0), ms.sample(1)];
    // Both samples layer by layer (the trainer's sparse step)...
    let (net, ws) = (&nets[0], &wss[0]);
    net.forward_samples(&mut rec, ws, masks, [None, None]).unwrap();
    for j in 0..2 {
        net.train_head(&mut rec, ws, (0.5, j), None).unwrap();
    }
    net.backward_samples(&mut rec, ws, masks).unwrap();
    // ...and each sample's passes whole, one after the other.
    let (net, ws) = (&nets[1], &wss[1]);
    for (j, &m) in masks.iter().enumerate() {
        net.forward_sparse(&mut rec, ws, m, j == 1, None).unwrap();
        net.train_head(&mut rec, ws, (0.5, j), None).unwrap();
        net.backward_layers(&mut rec, ws, Some(m)).unwrap();
    }
    rec.into_plan().run(&gpu, Some(&StepBlock { batch: batch as u32, ..Default::default() })).unwrap();
    gpu.wait().unwrap();
    let same = |what: &str, a: &Tensor, b: &Tensor| {
        assert_same_bits(what, &a.download_f32(&gpu).unwrap(), &b.download_f32(&gpu).unwrap());
    };
    for j in 0..2 {
        for v in 1..g.values.len() {
            let tag = format!("sample {j} value {v} ({:?})", g.values[v].set);
            same(&tag, nets[0].act_of(&wss[0], j, v), nets[1].act_of(&wss[1], j, v));
            same(&format!("{tag} gradient"), nets[0].grad_of(&wss[0], j, v), nets[1].grad_of(&wss[1], j, v));
        }
    }
    same("parameter gradients", &nets[0].grads, &nets[1].grads);
    let (s0, s1) = (nets[0].download_state(&gpu).unwrap(), nets[1].download_state(&gpu).unwrap());
    assert!(s0.iter().zip(&s1).all(|(a, b)| a.to_bits() == b.to_bits()), "running statistics differ");
    assert!(s0.iter().zip(&state).any(|(a, b)| a != b), "the passes left the running statistics alone");
}
