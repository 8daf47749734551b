//! Convolutional networks through the `sparsetrain` binary: ResNet-20 on
//! the built-in colour shapes with its loss falling, exported and evaluated
//! (the CI smoke run); the reference code's ResNet-32 recipe for a few
//! steps; CIFAR files the test writes; and the model and data flags'
//! errors.

#[path = "kernels/common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sparsetrain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparsetrain")).args(args).output().expect("the binary runs")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sparsetrain-cnn-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn model_and_data_flags_are_checked() {
    let cases: [(&[&str], &str); 7] = [
        (&["train", "--model", "resnet20", "--hidden", "32"], "--hidden"),
        (&["train", "--model", "mlp", "--width", "8"], "--width"),
        (&["train", "--model", "lenet5", "--width", "8"], "--width"),
        (&["train", "--model", "resnet21"], "resnet21"),
        (&["train", "--model", "resnet20", "--width", "0"], "width"),
        (&["train", "--dataset", "cifar10"], "--data-dir"),
        (&["train", "--model", "resnet20", "--data-dir", "/tmp"], "--data-dir"),
    ];
    for (args, needle) in cases {
        let out = sparsetrain(args);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?} should exit 2; stderr: {err}");
        assert!(err.contains(needle), "{args:?}: message should name {needle:?}; stderr: {err}");
    }
    let out = sparsetrain(&["bench", "train", "--model", "resnet7"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
}

/// Mean training loss of each train-phase epoch in a metrics file.
fn train_losses(metrics: &Path) -> Vec<f64> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["phase"] == "train")
        .map(|v| v["loss"].as_f64().expect("a finite loss"))
        .collect()
}

#[test]
fn resnet20_on_shapes_learns_exports_and_evaluates() {
    if common::gpu("resnet20_on_shapes_learns_exports_and_evaluates").is_none() {
        return;
    }
    let dir = temp("resnet20");
    let (metrics, net) = (dir.join("m.jsonl"), dir.join("net.safetensors"));
    // Width 8 keeps the software rasteriser's minutes down; the default
    // data of ResNet is the built-in shapes, augmented by crops and flips.
    let out = sparsetrain(&[
        "train",
        "--model",
        "resnet20",
        "--width",
        "8",
        "--keep",
        "0.5",
        "--epochs",
        "3",
        "--batch",
        "32",
        "--lr",
        "0.03",
        "--train-size",
        "640",
        "--test-size",
        "128",
        "--select-draws",
        "2",
        "--metrics",
        path(&metrics),
        "--export",
        path(&net),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "train failed: {stdout}\n{stderr}");
    assert!(stdout.contains("augment"), "the run names its augmentation:\n{stdout}");
    let losses = train_losses(&metrics);
    assert_eq!(losses.len(), 3, "{losses:?}");
    assert!(losses[2] < losses[0] - 0.05, "the loss does not fall: {losses:?}");
    // The export holds kept channels alone and scores what the masked
    // network scored.
    let final_acc =
        stdout.lines().find(|l| l.starts_with("final network")).and_then(|l| l.rsplit("test acc ").next()).unwrap();
    let eval = sparsetrain(&["eval", path(&net), "--test-size", "128"]);
    let (eval_out, eval_err) = text(&eval);
    assert!(eval.status.success(), "eval failed: {eval_out}{eval_err}");
    assert!(eval_out.contains("on shapes test"), "eval picks the training data from the export: {eval_out}");
    assert!(eval_out.contains(&format!("accuracy {final_acc}")), "eval says {eval_out}, training said {final_acc}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The reference code's recipe (ResNet-32 at width 32, keep 0.5, SGD 0.1,
/// score Adam 1.2e-2, cosine, mask selection, fine-tuning) end to end, a
/// few steps of each phase; BENCHMARKS.md gives the full run's command.
#[test]
fn resnet32_reference_recipe_runs_end_to_end() {
    if common::gpu("resnet32_reference_recipe_runs_end_to_end").is_none() {
        return;
    }
    let out = sparsetrain(&[
        "train",
        "--model",
        "resnet32",
        "--width",
        "32",
        "--keep",
        "0.5",
        "--lr",
        "0.1",
        "--score-lr",
        "0.012",
        "--epochs",
        "1",
        "--finetune-epochs",
        "1",
        "--batch",
        "16",
        "--train-size",
        "32",
        "--test-size",
        "16",
        "--select-draws",
        "2",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "train failed: {stdout}\n{stderr}");
    for needle in ["resnet32 (width 32)", "train      1/1", "mask selection", "finetune   1/1", "final network"] {
        assert!(stdout.contains(needle), "output lacks {needle:?}:\n{stdout}");
    }
}

/// CIFAR-10 binary files (five training batches and a test batch, a few
/// records each) train a small ResNet and evaluate.
#[test]
fn cifar10_files_train_and_evaluate() {
    if common::gpu("cifar10_files_train_and_evaluate").is_none() {
        return;
    }
    let dir = temp("cifar");
    let data = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&data).unwrap();
    let record = |i: usize| -> Vec<u8> {
        let mut r = vec![(i % 10) as u8];
        r.extend((0..3072).map(|p| ((p * 31 + i * 17) % 256) as u8));
        r
    };
    for (f, name) in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
        .iter()
        .enumerate()
    {
        let bytes: Vec<u8> = (0..6).flat_map(|i| record(f * 6 + i)).collect();
        std::fs::write(data.join(format!("{name}.bin")), bytes).unwrap();
    }
    let net = dir.join("net.safetensors");
    let out = sparsetrain(&[
        "train",
        "--model",
        "resnet20",
        "--width",
        "4",
        "--dataset",
        "cifar10",
        "--data-dir",
        path(&dir),
        "--epochs",
        "1",
        "--batch",
        "10",
        "--select-draws",
        "1",
        "--export",
        path(&net),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "train failed: {stdout}\n{stderr}");
    assert!(stdout.contains("cifar10"), "{stdout}");
    let eval = sparsetrain(&["eval", path(&net), "--data-dir", path(&data)]);
    let (eval_out, eval_err) = text(&eval);
    assert!(
        eval.status.success() && eval_out.contains("on cifar10 test") && eval_out.contains("/6 correct"),
        "{eval_out}{eval_err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
