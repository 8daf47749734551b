//! Export of the compact network: its logits equal the masked network's, its
//! parameter count is the kept count, it round-trips, and bad files are
//! typed errors (never panics or huge allocations).

#[path = "kernels/common.rs"]
mod common;

use common::*;
use rand::Rng;
use sparsetrain::export::{CompactMlp, write_atomic};
use sparsetrain::mlp::Mlp;
use sparsetrain::ops::mask::MaskKey;
use sparsetrain::ops::optim::Sgd;
use sparsetrain::sparse::{SparseConfig, SparseTrainer, kept_cost};
use sparsetrain::{Error, Recorder, Tensor};

fn temp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sparsetrain-export-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn exported_network_reproduces_the_masked_one() {
    let Some(gpu) = gpu("exported_network_reproduces_the_masked_one") else { return };
    let dir = temp("logits");
    for (case, keep) in [0.3f32, 1.0, 0.05].into_iter().enumerate() {
        let mut r = rng(1900 + case as u64);
        let sizes = [21, 33, 19, 7];
        let batch = 13;
        let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
        let mut tr = SparseTrainer::new(
            &gpu,
            Mlp::new(&gpu, &sizes, 5).unwrap(),
            batch,
            sgd,
            SparseConfig { keep, ..Default::default() },
        )
        .unwrap();
        let x = Tensor::from_f32(&gpu, "x", &[batch, 21], &rand_f32(&mut r, batch * 21, -1.0, 1.0)).unwrap();
        let y: Vec<u32> = (0..batch).map(|_| r.random_range(0..7)).collect();
        let y = Tensor::from_u32(&gpu, "y", &[batch], &y).unwrap();
        // A few steps so that weights, biases and scores are not at their start.
        for _ in 0..3 {
            let mut rec = Recorder::new(&gpu);
            tr.step(&mut rec, &x, &y, batch, 0.05).unwrap();
            rec.submit().unwrap();
        }
        let mut rec = Recorder::new(&gpu);
        tr.draw_mask(&mut rec, &tr.fixed, MaskKey { seed: 9, step: u32::MAX, sample: 0 }).unwrap();
        tr.forward(&mut rec, &tr.fixed, &x, batch).unwrap();
        rec.finish().unwrap();
        let masked = tr.logits().download_f32(&gpu).unwrap()[..batch * 7].to_vec();

        let net = CompactMlp::from_sparse(&gpu, &tr, &tr.fixed).unwrap();
        let kept = tr.kept_counts(&gpu, &tr.fixed).unwrap();
        assert_eq!(net.sizes, vec![21, kept[0], kept[1], 7]);
        assert_eq!(net.param_count(), kept_cost(&sizes, &kept).0.0, "parameters = kept count");
        let path = dir.join(format!("net{case}.safetensors"));
        net.save(&path, false).unwrap();
        let loaded = CompactMlp::load(&path).unwrap();
        assert_eq!(loaded.sizes, net.sizes);
        assert_eq!(loaded.weights, net.weights);
        assert_eq!(loaded.biases, net.biases);

        let mlp = loaded.to_mlp(&gpu).unwrap();
        let ws = mlp.workspace(&gpu, batch).unwrap();
        let mut rec = Recorder::new(&gpu);
        mlp.forward(&mut rec, &ws, &x, batch).unwrap();
        rec.finish().unwrap();
        let dense = ws.logits().download_f32(&gpu).unwrap();
        let want: Vec<f64> = masked.iter().map(|&v| v as f64).collect();
        assert_close(&format!("keep {keep}: exported logits vs masked"), &dense[..batch * 7], &want, 1e-5, 1e-5);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn sample_net() -> CompactMlp {
    CompactMlp {
        sizes: vec![3, 2, 2],
        weights: vec![vec![0.5; 6], vec![-1.0; 4]],
        biases: vec![vec![0.1; 2], vec![0.2; 2]],
        info: Default::default(),
    }
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
        assert!(CompactMlp::load(&p).is_err(), "truncated to {cut} bytes was accepted");
    }
    // Random bytes, a header claiming far more than the file holds.
    let mut r = rng(2000);
    for _ in 0..200 {
        let n = r.random_range(0..256);
        let bytes: Vec<u8> = (0..n).map(|_| r.random()).collect();
        let p = write("random.safetensors", &bytes);
        assert!(CompactMlp::load(&p).is_err());
    }
    let mut lying = u64::MAX.to_le_bytes().to_vec();
    lying.extend_from_slice(b"{}");
    assert!(CompactMlp::load(&write("lying.safetensors", &lying)).is_err());
    // Empty file, a directory, a missing file.
    assert!(CompactMlp::load(&write("empty.safetensors", b"")).is_err());
    assert!(matches!(CompactMlp::load(&dir), Err(Error::BadFile { .. })));
    assert!(matches!(CompactMlp::load(&dir.join("missing")), Err(Error::Io { .. })));
    // Valid safetensors that is not one of ours, or lies about its shapes.
    let other = safetensors::serialize(
        vec![("x", safetensors::tensor::TensorView::new(safetensors::tensor::Dtype::F32, vec![1], &[0u8; 4]).unwrap())],
        None,
    )
    .unwrap();
    let err = CompactMlp::load(&write("other.safetensors", &other)).unwrap_err().to_string();
    assert!(err.contains("not a sparsetrain network"), "{err}");
    let mut wrong = sample_net();
    wrong.sizes = vec![3, 4, 2];
    assert!(CompactMlp::load(&write("wrong.safetensors", &wrong.to_bytes().unwrap_or_default())).is_err());
    let mut nan = sample_net();
    nan.weights[1][0] = f32::NAN;
    let err = CompactMlp::load(&write("nan.safetensors", &nan.to_bytes().unwrap())).unwrap_err().to_string();
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
    other.biases[0][0] = 7.0;
    assert!(matches!(other.save(&path, false), Err(Error::Exists { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), before, "a refused write changed the file");
    other.save(&path, true).unwrap();
    assert_eq!(CompactMlp::load(&path).unwrap().biases[0][0], 7.0);
    // A failing write (the target is a directory) leaves no temporary file behind.
    let sub = dir.join("sub");
    std::fs::create_dir_all(sub.join("blocker")).unwrap();
    assert!(write_atomic(&sub.join("blocker"), b"data", true).is_err());
    let leftovers: Vec<_> =
        std::fs::read_dir(&sub).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name() != "blocker").collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
