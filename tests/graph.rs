//! Graphs on the device: every parameter gradient of a dense pass against
//! the graph's f64 reference (ReLUs fused and not), descriptions that do not
//! make a graph refused by name, the loss falling on a small task with steps
//! that read nothing back, and plans replayed with a changing batch size.

#[path = "kernels/common.rs"]
mod common;

use common::*;
use rand::Rng;
use sparsetrain::nn::reference::forward_backward;
use sparsetrain::nn::{Graph, GraphSpec, Net, NodeSpec, Shape};
use sparsetrain::ops::optim::Sgd;
use sparsetrain::train::{Phase, Trainer};
use sparsetrain::{Recorder, Tensor};

fn node(name: &str, kind: &str, settings: serde_json::Value) -> NodeSpec {
    NodeSpec::new(name, kind, settings)
}

/// An MLP whose second ReLU follows the first: neither fuses into a
/// linear layer (its producer is a ReLU) and the first's backward is not
/// gated by its consumer (a ReLU), so both standalone kernels run.
fn double_relu(input: usize, classes: usize) -> GraphSpec {
    GraphSpec {
        input: Shape::flat(input),
        classes,
        nodes: vec![
            node("fc1", "linear", serde_json::json!({"out": 13, "prunable": true})),
            node("relu1", "relu", serde_json::json!({})),
            node("relu2", "relu", serde_json::json!({})),
            node("out", "linear", serde_json::json!({"out": classes})),
        ],
        loss: "softmax_xent".into(),
    }
}

#[test]
fn gradients_match_f64_reference() {
    let Some(gpu) = gpu("gradients_match_f64_reference") else { return };
    let cases = [
        (GraphSpec::mlp(23, &[17, 11], 4), 9),
        (GraphSpec::mlp(5, &[], 3), 1),
        (GraphSpec::mlp(64, &[33], 10), 31),
        (double_relu(7, 5), 6),
    ];
    for (case, (spec, batch)) in cases.into_iter().enumerate() {
        let mut r = rng(800 + case as u64);
        let graph = Graph::from_spec(spec).unwrap();
        let mut flat = graph.init_params(case as u64);
        // Non-zero biases so that their path is exercised too.
        for slot in graph.nodes.iter().flat_map(|n| &n.params).filter(|p| p.spec.name == "bias") {
            for v in &mut flat[slot.offset..slot.offset + slot.spec.len()] {
                *v = r.random_range(-0.1..0.1);
            }
        }
        let (dim, classes) = (graph.input().len(), graph.classes());
        let x = rand_f32(&mut r, batch * dim, -1.0, 1.0);
        let labels: Vec<u32> = (0..batch).map(|_| r.random_range(0..classes as u32)).collect();
        let want = forward_backward(&graph, &to_f64(&flat), &[], &to_f64(&x), &labels, batch, None, 1.0);
        let net = Net::from_flat(&gpu, graph, &flat, &[]).unwrap();
        // A workspace larger than the batch: the step block says how many rows.
        let ws = net.workspace(&gpu, batch + 3, false).unwrap();
        ws.x.view(0, &[batch * dim]).unwrap().upload(&gpu, &x).unwrap();
        ws.y.view(0, &[batch]).unwrap().upload(&gpu, &labels).unwrap();
        let loss = Tensor::zeros(&gpu, "loss", &[1], sparsetrain::DType::F32).unwrap();
        let step = sparsetrain::step::StepBuffer::new(&gpu);
        let mut rec = Recorder::with_step(&gpu, &step);
        net.forward(&mut rec, &ws, None, true).unwrap();
        // The training step's path: the fused loss head, its mean, the layers.
        net.train_head(&mut rec, &ws, (1.0, 0), None).unwrap();
        net.loss_mean(&mut rec, &ws, 0, &loss, (0, None)).unwrap();
        net.backward_layers(&mut rec, &ws, None).unwrap();
        let block = sparsetrain::step::StepBlock { batch: batch as u32, ..Default::default() };
        rec.into_plan().run(&gpu, Some(&block)).unwrap();
        gpu.wait().unwrap();

        let got_loss = loss.download_f32(&gpu).unwrap()[0] as f64;
        assert!(
            (got_loss - want.loss).abs() <= 1e-5 * want.loss.abs().max(1.0),
            "case {case}: loss {got_loss} vs {}",
            want.loss
        );
        let logits = net.logits(&ws).download_f32(&gpu).unwrap();
        assert_close(&format!("case {case} logits"), &logits[..batch * classes], &want.logits, 1e-5, 1e-5);
        let grads = net.grads.download_f32(&gpu).unwrap();
        let g = &net.graph;
        for node in &g.nodes {
            for slot in &node.params {
                let range = slot.offset..slot.offset + slot.spec.len();
                let e = rel_err(&grads[range.clone()], &want.grads[range]);
                eprintln!("case {case} {}.{}: relative error {e:e}", node.name, slot.spec.name);
                assert!(e <= 1e-4, "case {case}: {}.{} relative error {e:e} > 1e-4", node.name, slot.spec.name);
            }
        }
        // Padding between parameters never receives gradient.
        let real: Vec<std::ops::Range<usize>> =
            g.nodes.iter().flat_map(|n| &n.params).map(|p| p.offset..p.offset + p.spec.len()).collect();
        let pad = (0..g.param_total).filter(|j| !real.iter().any(|r| r.contains(j)) && grads[*j] != 0.0).count();
        assert_eq!(pad, 0, "case {case}: padding was written");

        // The same backward assigning the gradients (a dense step's), over
        // what the pass above left in them: the same gradients, where
        // every earlier value is gone.
        assert!(net.can_assign_grads(), "case {case}: an MLP's linear layers assign their gradients");
        let mut rec = Recorder::with_step(&gpu, &step);
        net.forward(&mut rec, &ws, None, true).unwrap();
        net.train_head(&mut rec, &ws, (1.0, 0), None).unwrap();
        net.loss_mean(&mut rec, &ws, 0, &loss, (0, None)).unwrap();
        net.backward_assigning(&mut rec, &ws).unwrap();
        rec.into_plan().run(&gpu, Some(&block)).unwrap();
        gpu.wait().unwrap();
        let again = net.grads.download_f32(&gpu).unwrap();
        for node in &g.nodes {
            for slot in &node.params {
                let range = slot.offset..slot.offset + slot.spec.len();
                let e = rel_err(&again[range.clone()], &want.grads[range]);
                assert!(
                    e <= 1e-4,
                    "case {case}: assigned {}.{} relative error {e:e} > 1e-4",
                    node.name,
                    slot.spec.name
                );
            }
        }
    }
}

/// Dense training steps write the gradients outright (an MLP's linear
/// layers assign them) and the update leaves them: three steps, the second
/// of a partial batch over the first's gradients, match three f64 SGD
/// steps with momentum and weight decay, and the gradients left are the
/// last step's.
#[test]
fn dense_steps_assign_gradients_and_match_reference() {
    use sparsetrain::cpu;
    let Some(gpu) = gpu("dense_steps_assign_gradients_and_match_reference") else { return };
    let mut r = rng(4242);
    let graph = Graph::mlp(12, &[9, 7], 4).unwrap();
    let mut flat = graph.init_params(11);
    for slot in graph.nodes.iter().flat_map(|n| &n.params).filter(|p| p.spec.name == "bias") {
        for v in &mut flat[slot.offset..slot.offset + slot.spec.len()] {
            *v = r.random_range(-0.1..0.1);
        }
    }
    let net = Net::from_flat(&gpu, Graph::from_spec(graph.spec.clone()).unwrap(), &flat, &[]).unwrap();
    assert!(net.can_assign_grads());
    let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 5e-4 };
    let mut tr = Trainer::new(&gpu, net, 8, sgd, None).unwrap();
    let (mut w, mut v) = (to_f64(&flat), vec![0.0; flat.len()]);
    let mut last = Vec::new();
    for (step, rows) in [8usize, 5, 8].into_iter().enumerate() {
        let x = rand_f32(&mut r, rows * 12, -1.0, 1.0);
        let y: Vec<u32> = (0..rows).map(|_| r.random_range(0..4)).collect();
        tr.set_batch(&gpu, &x, &y).unwrap();
        tr.run(&gpu, Phase::Train, rows, sgd.lr, 0.0, step as u64).unwrap();
        let want = forward_backward(&graph, &w, &[], &to_f64(&x), &y, rows, None, 1.0);
        cpu::optim::sgd_step(&mut w, &mut v, &want.grads, 1.0, sgd);
        last = want.grads;
    }
    gpu.wait().unwrap();
    assert_close("weights after three dense steps", &tr.net.params.download_f32(&gpu).unwrap(), &w, 1e-5, 1e-4);
    assert_close("the last step's gradients", &tr.net.grads.download_f32(&gpu).unwrap(), &last, 1e-5, 1e-4);
    assert_eq!(tr.faults(&gpu).unwrap().skipped, 0);
}

#[test]
fn relus_fuse_where_they_can() {
    let g = Graph::from_spec(GraphSpec::mlp(8, &[6, 5], 3)).unwrap();
    let fused: Vec<(&str, bool, bool, bool)> =
        g.nodes.iter().map(|n| (n.name.as_str(), n.relu_fused, n.skip_forward, n.skip_backward)).collect();
    assert_eq!(
        fused,
        [
            ("fc1", true, false, false),
            ("relu1", false, true, true),
            ("fc2", true, false, false),
            ("relu2", false, true, true),
            ("classifier", false, false, false)
        ]
    );
    let d = Graph::from_spec(double_relu(7, 5)).unwrap();
    let flags: Vec<(bool, bool)> = d.nodes.iter().map(|n| (n.skip_forward, n.skip_backward)).collect();
    assert_eq!(flags, [(false, false), (true, false), (false, true), (false, false)]);
    assert_eq!((g.units(), g.unit_off.clone(), g.prunable_names()), (11, vec![0, 6, 11], vec!["fc1", "fc2"]));
}

#[test]
fn bad_descriptions_are_refused_by_name() {
    let mut spec = GraphSpec::mlp(8, &[6], 3);
    spec.nodes[0].kind = "conv9d".into();
    let err = Graph::from_spec(spec).unwrap_err().to_string();
    assert!(err.contains("conv9d") && err.contains("linear"), "{err}");
    let mut spec = GraphSpec::mlp(8, &[6], 3);
    spec.nodes[2].inputs = vec!["nowhere".into()];
    assert!(Graph::from_spec(spec).unwrap_err().to_string().contains("nowhere"));
    let mut spec = GraphSpec::mlp(8, &[6], 3);
    spec.classes = 4;
    assert!(Graph::from_spec(spec).unwrap_err().to_string().contains("4 classes"));
    let mut spec = GraphSpec::mlp(8, &[6], 3);
    spec.nodes[1].name = "fc1".into();
    assert!(Graph::from_spec(spec).unwrap_err().to_string().contains("used twice"));
    let mut spec = GraphSpec::mlp(8, &[6], 3);
    spec.nodes[2].settings = serde_json::json!({"out": 3, "prunable": true});
    assert!(Graph::from_spec(spec).unwrap_err().to_string().contains("classifier"));
    let mut spec = GraphSpec::mlp(8, &[6], 3);
    spec.nodes[0].settings = serde_json::json!({"out": "many"});
    assert!(Graph::from_spec(spec).unwrap_err().to_string().contains("fc1"));
}

/// Four Gaussian blobs in 12 dimensions: easily separable, so a working
/// trainer must drive the loss far down within a few epochs.
fn blobs(seed: u64, n: usize) -> (Vec<f32>, Vec<u32>) {
    let mut r = rng(seed);
    let mut c_rng = rng(99);
    let centres: Vec<Vec<f32>> = (0..4).map(|_| rand_f32(&mut c_rng, 12, -1.5, 1.5)).collect();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let c = r.random_range(0..4usize);
        x.extend(centres[c].iter().map(|v| v + r.random_range(-0.5..0.5)));
        y.push(c as u32);
    }
    (x, y)
}

#[test]
fn dense_training_reduces_loss_and_reads_nothing_back() {
    let Some(gpu) = gpu("dense_training_reduces_loss_and_reads_nothing_back") else { return };
    let batch = 32;
    // 500 samples: the last batch of an epoch has 20 rows.
    let (x, y) = blobs(5, 500);
    let net = Net::new(&gpu, Graph::mlp(12, &[32, 16], 4).unwrap(), 3).unwrap();
    let sgd = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4 };
    let mut trainer = Trainer::new(&gpu, net, batch, sgd, None).unwrap();
    let mut losses = Vec::new();
    let epochs = 10;
    let mut global = 0;
    for epoch in 0..epochs {
        let mut rec = Recorder::new(&gpu);
        trainer.reset_counters(&mut rec).unwrap();
        rec.finish().unwrap();
        let before = gpu.readback_stats();
        let steps = y.len().div_ceil(batch);
        for b in 0..steps {
            let rows = (y.len() - b * batch).min(batch);
            let xs = &x[b * batch * 12..(b * batch + rows) * 12];
            trainer.set_batch(&gpu, xs, &y[b * batch..b * batch + rows]).unwrap();
            trainer.run(&gpu, Phase::Train, rows, 0.05, 0.0, global).unwrap();
            global += 1;
        }
        gpu.wait().unwrap();
        assert_eq!(gpu.readback_stats(), before, "epoch {epoch}: training steps read data back");
        // Only now, to log: slot 2 holds the sum of this epoch's step losses.
        losses.push(trainer.loss.download_f32(&gpu).unwrap()[2] / steps as f32);
        let correct = trainer.correct.download_u32(&gpu).unwrap()[0];
        assert!(correct as usize <= y.len(), "epoch {epoch}: {correct} correct of {}", y.len());
    }
    eprintln!("mean loss by epoch: {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[epochs - 1] < 0.25 * losses[0], "loss did not fall enough: {losses:?}");
    assert_eq!(trainer.faults(&gpu).unwrap().skipped, 0);
    // Accuracy on the training set, counted on the device by the eval plan.
    let mut rec = Recorder::new(&gpu);
    trainer.reset_counters(&mut rec).unwrap();
    rec.finish().unwrap();
    for b in 0..y.len().div_ceil(batch) {
        let rows = (y.len() - b * batch).min(batch);
        trainer.set_batch(&gpu, &x[b * batch * 12..(b * batch + rows) * 12], &y[b * batch..b * batch + rows]).unwrap();
        trainer.run(&gpu, Phase::Eval, rows, 0.0, 0.0, 0).unwrap();
    }
    let correct = trainer.correct.download_u32(&gpu).unwrap()[0];
    assert!(correct >= 470, "only {correct}/500 correct after training");
    // One plan per phase, a handful of passes, recorded once.
    let plan = trainer.plan(&gpu, Phase::Train).unwrap();
    assert_eq!(plan.passes(), 1, "a dense step without copies is one compute pass");
    assert!(plan.dispatches() > 5);
}
