//! Export of the network of kept units: its logits equal the masked
//! network's, its parameter count is the kept count, it round-trips, files
//! of the earlier MLP format still load, and bad files are typed errors
//! (never panics or huge allocations).

#[path = "kernels/common.rs"]
mod common;

use common::*;
use rand::Rng;
use sparsetrain::export::Exported;
use sparsetrain::io::write_atomic;
use sparsetrain::nn::{Graph, GraphSpec, Net};
use sparsetrain::ops::mask::MaskKey;
use sparsetrain::ops::optim::Sgd;
use sparsetrain::sparse::SparseConfig;
use sparsetrain::step::{StepBlock, StepBuffer};
use sparsetrain::train::{Phase, Trainer};
use sparsetrain::{Error, Recorder};

fn temp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sparsetrain-export-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Logits of `net` (dense) on `x`, through a recorded plan.
fn dense_logits(gpu: &sparsetrain::Gpu, net: &Net, x: &[f32], batch: usize) -> Vec<f32> {
    let ws = net.workspace(gpu, batch, false).unwrap();
    ws.x.upload(gpu, x).unwrap();
    let step = StepBuffer::new(gpu);
    let mut rec = Recorder::with_step(gpu, &step);
    net.forward(&mut rec, &ws, None, false).unwrap();
    rec.into_plan().run(gpu, Some(&StepBlock { batch: batch as u32, ..Default::default() })).unwrap();
    gpu.wait().unwrap();
    net.logits(&ws).download_f32(gpu).unwrap()[..batch * net.graph.classes()].to_vec()
}

/// Trains a few sparse steps of `spec`, fixes a mask, and checks that the
/// export holds the kept units alone and gives the masked network's
/// evaluation logits.
fn check_export(gpu: &sparsetrain::Gpu, spec: &GraphSpec, keep: f32, seed: u64, dir: &std::path::Path) -> Exported {
    let mut r = rng(seed);
    let graph = Graph::from_spec(spec.clone()).unwrap();
    let (dim, classes, batch) = (graph.input().len(), graph.classes(), 13);
    let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
    let net = Net::new(gpu, Graph::from_spec(spec.clone()).unwrap(), 5).unwrap();
    let mut tr = Trainer::new(gpu, net, batch, sgd, Some(SparseConfig { keep, ..Default::default() })).unwrap();
    let x = rand_f32(&mut r, batch * dim, -1.0, 1.0);
    let y: Vec<u32> = (0..batch).map(|_| r.random_range(0..classes as u32)).collect();
    tr.set_batch(gpu, &x, &y).unwrap();
    // A few steps so that weights, biases, running statistics and scores
    // are not at their start.
    for step in 0..3 {
        tr.run(gpu, Phase::Train, batch, 0.1, 0.05, step).unwrap();
    }
    tr.draw_fixed(gpu, MaskKey { seed: 9, step: u32::MAX, sample: 0 }).unwrap();
    tr.run(gpu, Phase::Eval, batch, 0.0, 0.0, 3).unwrap();
    gpu.wait().unwrap();
    let masked = tr.net.logits(&tr.ws).download_f32(gpu).unwrap()[..batch * classes].to_vec();

    let sp = tr.sparse.as_ref().unwrap();
    let kept = sp.fixed.kept_lists(gpu, 0).unwrap();
    let flat = tr.net.download_params(gpu).unwrap();
    let state = tr.net.download_state(gpu).unwrap();
    let net = Exported::from_graph(&graph, &kept, &flat, &state).unwrap();
    // Every prunable layer holds its kept units alone.
    for (p, &n) in graph.prunable.iter().enumerate() {
        let node = net.spec.nodes.iter().find(|s| s.name == graph.nodes[n].name).unwrap();
        assert_eq!(node.settings["out"], kept[p].len(), "{}: kept units", node.name);
    }
    let path = dir.join(format!("net{seed}.safetensors"));
    net.save(&path, false).unwrap();
    let loaded = Exported::load(&path).unwrap();
    assert_eq!((&loaded.spec, &loaded.tensors), (&net.spec, &net.tensors));

    let dense = dense_logits(gpu, &loaded.to_net(gpu).unwrap(), &x, batch);
    let want: Vec<f64> = masked.iter().map(|&v| v as f64).collect();
    let kept_counts: Vec<usize> = kept.iter().map(Vec::len).collect();
    assert_close(&format!("keep {keep} (kept {kept_counts:?}): exported logits vs masked"), &dense, &want, 1e-5, 1e-5);
    net
}

#[test]
fn exported_network_reproduces_the_masked_one() {
    let Some(gpu) = gpu("exported_network_reproduces_the_masked_one") else { return };
    let dir = temp("logits");
    for (case, keep) in [0.3f32, 1.0, 0.05].into_iter().enumerate() {
        let (input, hidden, classes) = (21, [33, 19], 7);
        let net = check_export(&gpu, &GraphSpec::mlp(input, &hidden, classes), keep, 1900 + case as u64, &dir);
        let counts: Vec<usize> =
            net.spec.nodes.iter().filter_map(|n| n.settings["out"].as_u64()).map(|v| v as usize).collect();
        let widths = [input, counts[0], counts[1], classes];
        let want_params: usize = widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        assert_eq!(net.param_count(), want_params, "parameters = kept count");
        assert_eq!(net.describe(), widths.map(|w| w.to_string()).join("-"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A residual network (identity and 1×1 shortcuts, BatchNorm) and LeNet-5:
/// the export's residual sums place each branch's kept channels in the
/// union they carry, and its logits equal the masked network's.
#[test]
fn exported_cnns_reproduce_the_masked_ones() {
    use sparsetrain::nn::{Shape, models};
    let Some(gpu) = gpu("exported_cnns_reproduce_the_masked_ones") else { return };
    let dir = temp("cnn");
    let resnet = models::resnet(8, 6, Shape { c: 3, h: 8, w: 8 }, 5).unwrap();
    for (case, keep) in [0.3f32, 0.6, 1.0].into_iter().enumerate() {
        let net = check_export(&gpu, &resnet, keep, 1950 + case as u64, &dir);
        let fixed_sums =
            net.spec.nodes.iter().filter(|n| n.kind == "add" && n.settings.get("channels").is_some()).count();
        eprintln!("resnet8 keep {keep}: {fixed_sums} sums over differing channel sets");
        if keep < 1.0 {
            assert!(fixed_sums > 0, "keep {keep}: some sum should combine different channel sets");
        }
    }
    let lenet = models::lenet5(Shape { c: 1, h: 12, w: 12 }, 4).unwrap();
    check_export(&gpu, &lenet, 0.4, 1960, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An export of the earlier MLP-only format (`sparsetrain-mlp`, tensors
/// `layer{l}.weight`/`bias`, architecture in `sizes`) still loads and runs.
#[test]
fn legacy_mlp_exports_load() {
    use safetensors::tensor::{Dtype, TensorView};
    let (w0, b0, w1, b1) = (vec![0.5f32; 6], vec![0.1f32; 2], vec![-1.0f32; 4], vec![0.2f32; 2]);
    let views = vec![
        ("layer0.weight", TensorView::new(Dtype::F32, vec![2, 3], bytemuck::cast_slice(&w0)).unwrap()),
        ("layer0.bias", TensorView::new(Dtype::F32, vec![2], bytemuck::cast_slice(&b0)).unwrap()),
        ("layer1.weight", TensorView::new(Dtype::F32, vec![2, 2], bytemuck::cast_slice(&w1)).unwrap()),
        ("layer1.bias", TensorView::new(Dtype::F32, vec![2], bytemuck::cast_slice(&b1)).unwrap()),
    ];
    let meta = [("format".to_string(), "sparsetrain-mlp".to_string()), ("sizes".to_string(), "3,2,2".to_string())];
    let bytes = safetensors::serialize(views, Some(meta.into_iter().collect())).unwrap();
    let net = Exported::from_bytes(&bytes, std::path::Path::new("legacy.safetensors")).unwrap();
    assert_eq!(net.spec, GraphSpec::mlp(3, &[2], 2));
    assert_eq!(net.tensors[2], ("classifier.weight".to_string(), vec![2, 2], w1));
    assert_eq!(net.param_count(), 14);
}

/// The file `to_bytes` would write, without its checks (to forge bad files).
fn unchecked_bytes(net: &Exported) -> Vec<u8> {
    use safetensors::tensor::{Dtype, TensorView};
    let views: Vec<(String, TensorView)> = net
        .tensors
        .iter()
        .map(|(n, shape, d)| (n.clone(), TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(d)).unwrap()))
        .collect();
    let meta = [
        ("format".to_string(), sparsetrain::export::FORMAT.to_string()),
        ("graph".to_string(), serde_json::to_string(&net.spec).unwrap()),
    ];
    safetensors::serialize(views, Some(meta.into_iter().collect())).unwrap()
}

fn sample_net() -> Exported {
    let graph = Graph::mlp(3, &[2], 2).unwrap();
    let flat: Vec<f32> = (0..graph.param_total).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect();
    let kept = vec![vec![0, 1]];
    Exported::from_graph(&graph, &kept, &flat, &[]).unwrap()
}

#[test]
fn bad_files_are_typed_errors() {
    let dir = temp("bad");
    let good = sample_net().to_bytes().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // Truncated at every length: never a panic, always an error.
    for cut in 0..good.len() {
        let p = write("cut.safetensors", &good[..cut]);
        assert!(Exported::load(&p).is_err(), "truncated to {cut} bytes was accepted");
    }
    // Random bytes, a header claiming far more than the file holds.
    let mut r = rng(2000);
    for _ in 0..200 {
        let n = r.random_range(0..256);
        let bytes: Vec<u8> = (0..n).map(|_| r.random()).collect();
        let p = write("random.safetensors", &bytes);
        assert!(Exported::load(&p).is_err());
    }
    let mut lying = u64::MAX.to_le_bytes().to_vec();
    lying.extend_from_slice(b"{}");
    assert!(Exported::load(&write("lying.safetensors", &lying)).is_err());
    // Empty file, a directory, a missing file.
    assert!(Exported::load(&write("empty.safetensors", b"")).is_err());
    assert!(matches!(Exported::load(&dir), Err(Error::BadFile { .. })));
    let missing = Exported::load(&dir.join("missing")).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }));
    // Printed with its causes (as the binary prints errors), the OS error
    // appears once, next to the path asked for.
    let shown = format!("{:#}", anyhow::Error::from(missing));
    assert_eq!(shown.matches("No such file").count(), 1, "{shown}");
    assert!(shown.contains("missing"), "{shown}");
    // Valid safetensors that is not one of ours, or lies about its shapes.
    let other = safetensors::serialize(
        vec![("x", safetensors::tensor::TensorView::new(safetensors::tensor::Dtype::F32, vec![1], &[0u8; 4]).unwrap())],
        None,
    )
    .unwrap();
    let err = Exported::load(&write("other.safetensors", &other)).unwrap_err().to_string();
    assert!(err.contains("not a sparsetrain network"), "{err}");
    let mut wrong = sample_net();
    wrong.spec = GraphSpec::mlp(3, &[4], 2);
    assert!(Exported::load(&write("wrong.safetensors", &wrong.to_bytes().unwrap_or_default())).is_err());
    let mut unknown = sample_net();
    unknown.spec.nodes[1].kind = "gelu".into();
    let err = Exported::load(&write("unknown.safetensors", &unknown.to_bytes().unwrap())).unwrap_err().to_string();
    assert!(err.contains("gelu"), "{err}");
    // A network holding NaN is neither written nor read.
    let mut nan = sample_net();
    nan.tensors[2].2[0] = f32::NAN;
    assert!(nan.to_bytes().unwrap_err().to_string().contains("non-finite"));
    let err = Exported::load(&write("nan.safetensors", &unchecked_bytes(&nan))).unwrap_err().to_string();
    assert!(err.contains("non-finite"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn writes_are_atomic_and_never_overwrite_silently() {
    let dir = temp("atomic");
    let path = dir.join("net.safetensors");
    let net = sample_net();
    net.save(&path, false).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut other = sample_net();
    other.tensors[1].2[0] = 7.0;
    assert!(matches!(other.save(&path, false), Err(Error::Exists { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), before, "a refused write changed the file");
    other.save(&path, true).unwrap();
    assert_eq!(Exported::load(&path).unwrap().tensors[1].2[0], 7.0);
    // A failing write (the target is a directory) leaves no temporary file behind.
    let sub = dir.join("sub");
    std::fs::create_dir_all(sub.join("blocker")).unwrap();
    assert!(write_atomic(&sub.join("blocker"), b"data", true).is_err());
    let leftovers: Vec<_> =
        std::fs::read_dir(&sub).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name() != "blocker").collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
