//! The command line against a hostile user: divergence in fine-tuning,
//! sizes beyond any device, two runs in one checkpoint directory, output
//! paths that cannot be written, budgets that keep nothing, leftovers of a
//! killed run, and flags whose messages used to mislead. Each test names the
//! defect it guards against; all fail fast, before any training where the
//! flags are at fault.

#[path = "kernels/common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn sparsetrain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparsetrain")).args(args).output().expect("the binary runs")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sparsetrain-faults-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A short run: 256 synthetic images, one epoch, a small MLP.
const SHORT: [&str; 12] = [
    "train",
    "--hidden",
    "16",
    "--epochs",
    "1",
    "--train-size",
    "256",
    "--test-size",
    "64",
    "--batch",
    "64",
    "--select-draws",
];

fn short(extra: &[&str]) -> Output {
    let mut args: Vec<&str> = SHORT.to_vec();
    args.push("2");
    args.extend_from_slice(extra);
    sparsetrain(&args)
}

fn expect_usage(out: &Output, needles: &[&str], what: &str) {
    let (stdout, stderr) = text(out);
    assert_eq!(out.status.code(), Some(2), "{what}: exit code; stdout {stdout}\nstderr {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{what}: message should mention {n:?}: {stderr}");
    }
    assert!(!stdout.contains("train      1/"), "{what}: it trained before refusing: {stdout}");
}

/// Defect 1: fine-tuning diverges (learning rate 1e30). The run stops at the
/// next logging point with the step named, exports nothing, and the good
/// checkpoints stay readable (the last-k rule never deletes them for a bad
/// one). With --on-nan skip the steps are skipped and reported, and a
/// non-finite network is never exported or checkpointed.
#[test]
fn diverging_finetuning_is_stopped_and_loses_nothing() {
    if common::gpu("diverging_finetuning_is_stopped_and_loses_nothing").is_none() {
        return;
    }
    let dir = temp("finetune-nan");
    let (ck, net) = (dir.join("ck"), dir.join("net.safetensors"));
    let out = short(&[
        "--finetune-epochs",
        "2",
        "--finetune-lr",
        "1e30",
        "--export",
        s(&net),
        "--checkpoint-dir",
        s(&ck),
        "--checkpoint-every",
        "2",
        "--keep-checkpoints",
        "1",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "a diverged fine-tuning exited 0: {stdout}");
    assert!(stderr.contains("non-finite") && stderr.contains("--on-nan"), "{stderr}");
    assert!(!net.exists(), "a diverged network was exported");
    let cd = sparsetrain::train::checkpoint::CheckpointDir { dir: ck.clone(), keep_last: 1 };
    let (good, _, skipped) = cd.latest(|_| Ok(())).expect("a readable checkpoint remains");
    assert!(skipped.is_empty(), "unreadable checkpoints: {skipped:?}");
    assert!(good.f32s.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));

    let dir2 = temp("finetune-skip");
    let net2 = dir2.join("net.safetensors");
    let out = short(&["--finetune-epochs", "2", "--finetune-lr", "1e30", "--on-nan", "skip", "--export", s(&net2)]);
    let (stdout, stderr) = text(&out);
    assert!(stderr.contains("skipped for a non-finite loss or gradient"), "{stdout}\n{stderr}");
    if net2.exists() {
        // Whatever was exported is a finite network that loads.
        sparsetrain::export::Exported::load(&net2).expect("the export loads");
    } else {
        assert!(!out.status.success() && stderr.contains("non-finite"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

/// Defects 2 and 3: sizes beyond the device or beyond host memory are
/// refused at once, by flag, before anything is allocated.
#[test]
fn sizes_beyond_the_device_are_refused_by_flag() {
    if common::gpu("sizes_beyond_the_device_are_refused_by_flag").is_none() {
        return;
    }
    let cases: [(&[&str], &str); 6] = [
        (&["train", "--hidden", "100000,100000"], "--hidden"),
        (&["train", "--hidden", "1000000000"], "--hidden"),
        (&["train", "--hidden", "1000000"], "--hidden"),
        (&["train", "--train-size", "100000000000"], "--train-size"),
        (&["train", "--train-size", "18446744073709551615"], "--train-size"),
        (&["train", "--batch", "18446744073709551615"], "--batch"),
    ];
    for (args, flag) in cases {
        let t0 = Instant::now();
        let out = sparsetrain(args);
        expect_usage(&out, &[flag], &format!("{args:?}"));
        assert!(t0.elapsed() < Duration::from_secs(20), "{args:?} took {:?}", t0.elapsed());
    }
    let dir = temp("eval-size");
    let net = dir.join("net.safetensors");
    let g = sparsetrain::nn::Graph::mlp(784, &[], 10).unwrap();
    sparsetrain::export::Exported::from_graph(&g, &[], &vec![0.0; g.param_total], &[])
        .unwrap()
        .save(&net, true)
        .unwrap();
    let out = sparsetrain(&["eval", s(&net), "--test-size", "18446744073709551615"]);
    expect_usage(&out, &["--test-size"], "eval --test-size huge");
    let out = sparsetrain(&["eval", s(&net), "--test-size", "0"]);
    expect_usage(&out, &["--test-size"], "eval --test-size 0");
    assert!(!text(&out).1.contains("--train-size"), "eval has no --train-size: {}", text(&out).1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 4: a second run in a checkpoint directory in use is refused; a
/// stale lock (its process is gone) is reported and taken over with --force;
/// a finished run leaves no lock behind.
#[test]
fn a_checkpoint_directory_serves_one_run_at_a_time() {
    if common::gpu("a_checkpoint_directory_serves_one_run_at_a_time").is_none() {
        return;
    }
    let dir = temp("lock");
    let ck = dir.join("ck");
    std::fs::create_dir_all(&ck).unwrap();
    // A live holder: this test process.
    std::fs::write(ck.join(".lock"), format!("{}\n", std::process::id())).unwrap();
    let out = short(&["--checkpoint-dir", s(&ck)]);
    expect_usage(&out, &["in use by process", &std::process::id().to_string()], "live lock");
    let out = short(&["--checkpoint-dir", s(&ck), "--force"]);
    expect_usage(&out, &["in use"], "--force does not break a live lock");
    // A dead holder.
    std::fs::write(ck.join(".lock"), "4294967294\n").unwrap();
    let out = short(&["--checkpoint-dir", s(&ck)]);
    expect_usage(&out, &["no longer running", "--force"], "stale lock");
    let out = short(&["--checkpoint-dir", s(&ck), "--force"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "taking over a stale lock: {stdout}\n{stderr}");
    assert!(stderr.contains("taking over the lock"), "{stderr}");
    assert!(!ck.join(".lock").exists(), "the lock outlived its run");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 6: every output path is checked before the first step, and the
/// message names the path given.
#[test]
fn unwritable_outputs_are_refused_before_training() {
    let dir = temp("outputs");
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let missing = dir.join("no").join("such").join("net.safetensors");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--export", s(&missing)], vec!["--export", "does not exist"]),
        (vec!["--export", s(&dir)], vec!["--export", "directory"]),
        (vec!["--checkpoint-dir", s(&file)], vec!["--checkpoint-dir", "not a directory"]),
        (vec!["--plot", s(&file)], vec!["--plot", "not a directory"]),
        (vec!["--metrics", "/proc/version"], vec!["--metrics", "/proc/version"]),
    ];
    for (extra, needles) in cases {
        let out = short(&extra);
        expect_usage(&out, &needles, &format!("{extra:?}"));
        assert!(!text(&out).1.contains(".tmp"), "{extra:?}: the message names a temporary file: {}", text(&out).1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 7: a budget below one unit per layer is refused with the smallest
/// valid --keep.
#[test]
fn a_budget_that_keeps_nothing_is_refused() {
    if common::gpu("a_budget_that_keeps_nothing_is_refused").is_none() {
        return;
    }
    let out = short(&["--keep", "1e-9"]);
    expect_usage(&out, &["--keep", "smallest valid --keep"], "--keep 1e-9");
}

/// Defect 9: temporaries that a killed run left in its checkpoint directory
/// are removed when the directory is next used.
#[test]
fn leftovers_of_a_killed_run_are_removed() {
    if common::gpu("leftovers_of_a_killed_run_are_removed").is_none() {
        return;
    }
    let dir = temp("leftovers");
    let ck = dir.join("ck");
    let out = short(&["--checkpoint-dir", s(&ck)]);
    assert!(out.status.success(), "{}", text(&out).1);
    let stale = ck.join(".step-000000000009.safetensors.999.tmp");
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let keep = ck.join("notes.tmp");
    std::fs::write(&keep, b"mine").unwrap();
    let out = short(&["--resume", s(&ck)]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stale.exists(), "the half-written checkpoint was left");
    assert!(keep.exists(), "a file that is not ours was removed");
    assert!(stderr.contains("half-written"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 10: flags that used to be ignored, concatenated or misreported.
#[test]
fn misleading_flags_get_clear_errors() {
    let cases: [(&[&str], &str); 4] = [
        (&["train", "--hidden", "32", "--hidden", "16"], "--hidden"),
        (&["train", "--data-dir", "/tmp"], "--data-dir"),
        (&["train", "--keep-checkpoints", "0"], "--keep-checkpoints"),
        (&["export", "/nonexistent.safetensors", "--out", "/tmp/x.safetensors"], "not a checkpoint"),
    ];
    for (args, needle) in cases {
        expect_usage(&sparsetrain(args), &[needle], &format!("{args:?}"));
    }
}

/// Defect 10: `export --force` must not overwrite its own input, and a
/// resumed run with another seed names the setting, not the whole config.
#[test]
fn export_and_resume_messages_name_what_differs() {
    if common::gpu("export_and_resume_messages_name_what_differs").is_none() {
        return;
    }
    let dir = temp("messages");
    let ck = dir.join("ck");
    let out = short(&["--checkpoint-dir", s(&ck)]);
    assert!(out.status.success(), "{}", text(&out).1);
    let newest = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("step-"))
        .max()
        .unwrap();
    let out = sparsetrain(&["export", s(&newest), "--out", s(&newest), "--force"]);
    expect_usage(&out, &["the checkpoint being exported"], "export onto itself");
    assert!(sparsetrain::train::checkpoint::Checkpoint::load(&newest).is_ok(), "the checkpoint was damaged");
    let out = short(&["--resume", s(&ck), "--seed", "2"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("seed = 1 in the checkpoint, 2 now"), "{stderr}");
    assert!(!stderr.contains("\"keep\""), "the whole config was dumped: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 10: `bench train --model 16,16` is one model of two layers.
#[test]
fn bench_model_takes_commas_within_one_model() {
    if common::gpu("bench_model_takes_commas_within_one_model").is_none() {
        return;
    }
    let out = sparsetrain(&[
        "bench", "train", "--model", "16,16", "--keeps", "0.5", "--batch", "8", "--runs", "1", "--warmup", "0",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("| 784-16-16-10 | dense"), "{stdout}");
    assert!(!stdout.contains("| 784-16-10 |"), "split into one-layer models: {stdout}");
}

/// Defect 10: `plot` warns about accuracies outside [0, 1].
#[test]
fn plot_warns_about_impossible_accuracies() {
    let dir = temp("plot");
    let m = dir.join("m.jsonl");
    let line = |e: usize, acc: f64| {
        format!(
            "{{\"phase\":\"train\",\"epoch\":{e},\"lr\":0.1,\"loss\":1.0,\"train_acc\":{acc},\"test_acc\":0.5,\"step_ms\":1.0,\"samples_per_s\":1.0,\"kept\":[],\"polarized\":null}}\n"
        )
    };
    std::fs::write(&m, line(1, 0.4) + &line(2, 1.5)).unwrap();
    let out = sparsetrain(&["plot", s(&m), "--out", s(&dir.join("plots"))]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("train_acc 1.5 is not a fraction"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 11: an export says how to feed it.
#[test]
fn an_export_says_how_to_feed_it() {
    if common::gpu("an_export_says_how_to_feed_it").is_none() {
        return;
    }
    let dir = temp("feed");
    let net = dir.join("net.safetensors");
    let out = short(&["--export", s(&net)]);
    assert!(out.status.success(), "{}", text(&out).1);
    let e = sparsetrain::export::Exported::load(&net).unwrap();
    assert_eq!(e.info.get("input_shape").map(String::as_str), Some("1,28,28"));
    assert_eq!(e.info.get("classes").map(String::as_str), Some("10"));
    assert_eq!(e.info.get("layers").map(String::as_str), Some("linear,relu,linear"));
    let norm: serde_json::Value = serde_json::from_str(e.info.get("input_norm").unwrap()).unwrap();
    assert!((norm["mean"][0].as_f64().unwrap() - 0.1307).abs() < 1e-6, "{norm}");
    assert!((norm["std"][0].as_f64().unwrap() - 0.3081).abs() < 1e-6, "{norm}");
    let _ = std::fs::remove_dir_all(&dir);
}
