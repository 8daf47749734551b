//! The `sparsetrain` binary as a user meets it: invalid flags exit with code
//! 2 and a message naming the flag, and a short training run on the built-in
//! data finishes with its summary (the CI smoke run).

#[path = "kernels/common.rs"]
mod common;

use std::process::Command;

fn sparsetrain(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sparsetrain")).args(args).output().expect("the binary runs")
}

#[test]
fn invalid_flags_exit_with_code_2() {
    let cases: [(&[&str], &str); 7] = [
        (&["train", "--keep", "0"], "--keep"),
        (&["train", "--keep", "1.5"], "--keep"),
        (&["train", "--batch", "0"], "batch"),
        (&["train", "--lr", "NaN"], "learning rate"),
        (&["train", "--dataset", "mnist"], "--data-dir"),
        (&["train", "--dataset", "mnist", "--data-dir", "/nonexistent/dir"], "not a directory"),
        (&["train", "--no-such-flag"], "no-such-flag"),
    ];
    for (args, needle) in cases {
        let out = sparsetrain(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} should exit 2; stderr: {err}");
        assert!(err.contains(needle), "{args:?}: message should name {needle:?}; stderr: {err}");
    }
}

#[test]
fn short_sparse_run_finishes_with_a_summary() {
    // Fails without an adapter where CI or SPARSETRAIN_REQUIRE_GPU is set.
    if common::gpu("short_sparse_run_finishes_with_a_summary").is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sparsetrain-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = dir.join("m.jsonl");
    let out = sparsetrain(&[
        "train",
        "--hidden",
        "32,24",
        "--keep",
        "0.5",
        "--epochs",
        "2",
        "--train-size",
        "512",
        "--test-size",
        "128",
        "--batch",
        "64",
        "--select-draws",
        "3",
        "--metrics",
        metrics.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "train failed: {stdout}\n{stderr}");
    for needle in
        ["train      1/2", "mask selection: 3 draws", "finetune", "final network: kept units", "done: final loss"]
    {
        assert!(stdout.contains(needle), "output lacks {needle:?}:\n{stdout}");
    }
    let lines = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(lines.lines().count(), 4, "2 train + 1 finetune + 1 summary lines:\n{lines}");
    assert!(lines.lines().all(|l| l.starts_with('{') && l.ends_with('}')));
    assert!(lines.contains("\"phase\":\"summary\""));
    let _ = std::fs::remove_dir_all(&dir);
}
