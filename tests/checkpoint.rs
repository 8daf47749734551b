//! Checkpoint files as untrusted input, without a device: tensor data must
//! match its checksum, progress fields must fit the run, a checkpoint
//! holding non-finite values is never written, a bad newest checkpoint
//! falls back to the previous one, and the keep-last rule never deletes a
//! good checkpoint for a refused one.

use sparsetrain::nn::{Graph, GraphSpec};
use sparsetrain::train::checkpoint::{Checkpoint, CheckpointDir, DataId, Progress};
use sparsetrain::train::{ModelSpec, TrainConfig};

fn temp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sparsetrain-ckfile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config() -> TrainConfig {
    TrainConfig { model: ModelSpec::Mlp { hidden: vec![6] }, epochs: 3, batch: 10, ..TrainConfig::default() }
}

/// A checkpoint of a 12-6-4 MLP at train epoch 1 step 2 of 5-step epochs.
fn checkpoint() -> Checkpoint {
    let graph = Graph::from_spec(GraphSpec::mlp(12, &[6], 4)).unwrap();
    let n = graph.param_total;
    let f = |k: usize, len: usize| (0..len).map(|i| ((i * 7 + k) % 11) as f32 * 0.1 - 0.5).collect::<Vec<f32>>();
    Checkpoint {
        config: config(),
        graph: graph.spec.clone(),
        data: DataId { name: "synthetic".into(), fingerprint: 7 },
        progress: Progress {
            phase: "train".into(),
            epoch: 1,
            step_in_epoch: 2,
            global_step: 7,
            mask_step: 7,
            best_test_acc: 0.5,
        },
        f32s: vec![
            ("params".into(), f(1, n)),
            ("momentum".into(), f(2, n)),
            ("scores".into(), f(3, 6).iter().map(|v| v.abs()).collect()),
            ("score_m".into(), f(4, 6)),
            ("score_v".into(), f(5, 6).iter().map(|v| v.abs()).collect()),
        ],
        u32s: Vec::new(),
    }
}

#[test]
fn a_valid_checkpoint_round_trips() {
    let mut ck = checkpoint();
    let bytes = ck.to_bytes().unwrap();
    let back = Checkpoint::from_bytes(&bytes, std::path::Path::new("ck")).unwrap();
    // Tensors come back in name order.
    ck.f32s.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(back, ck);
    back.progress.check_steps(&back.config, 5).unwrap();
}

/// Every single-bit flip in the tensor data is caught by the checksum.
#[test]
fn flipped_bits_in_tensor_data_are_refused() {
    let bytes = checkpoint().to_bytes().unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
    let mut caught = 0;
    for at in (header..bytes.len()).step_by(13) {
        for bit in [0u8, 3, 7] {
            let mut bad = bytes.clone();
            bad[at] ^= 1 << bit;
            let err = Checkpoint::from_bytes(&bad, std::path::Path::new("ck")).unwrap_err().to_string();
            assert!(err.contains("checksum"), "byte {at} bit {bit}: {err}");
            caught += 1;
        }
    }
    assert!(caught > 100);
}

/// Lying progress metadata: each is refused by name.
#[test]
fn lying_progress_is_refused() {
    type Lie = fn(&mut Progress);
    let cases: [(&str, Lie); 6] = [
        ("beyond the run", |p| p.epoch = 9),
        ("unknown phase", |p| p.phase = "warmup".into()),
        ("beyond any run", |p| {
            p.global_step = u64::MAX;
            p.mask_step = 0
        }),
        ("exceeds the global step", |p| p.mask_step = u64::MAX),
        ("not a fraction", |p| p.best_test_acc = 7.0),
        ("beyond the run", |p| {
            p.phase = "finetune".into();
            p.epoch = 2
        }),
    ];
    for (want, lie) in cases {
        let mut ck = checkpoint();
        lie(&mut ck.progress);
        let err = Checkpoint::from_bytes(&ck.to_bytes().unwrap(), std::path::Path::new("ck")).unwrap_err().to_string();
        assert!(err.contains(want), "expected {want:?}: {err}");
    }
    // Counters that do not fit the data are refused when resuming.
    let mut ck = checkpoint();
    ck.progress.step_in_epoch = 1_000_000;
    let ck = Checkpoint::from_bytes(&ck.to_bytes().unwrap(), std::path::Path::new("ck")).unwrap();
    assert!(ck.progress.check_steps(&ck.config, 5).unwrap_err().contains("step 1000000 of an epoch of 5"));
    let mut ck = checkpoint();
    ck.progress.global_step = 8;
    ck.progress.mask_step = 8;
    assert!(ck.progress.check_steps(&ck.config, 5).unwrap_err().contains("do not match"));
}

/// A checkpoint with NaN weights is never written, and the keep-last rule
/// keeps the good ones; the newest readable one is what resume finds, and a
/// bad newest one falls back to the one before.
#[test]
fn bad_checkpoints_never_replace_good_ones() {
    let dir = temp("keep");
    let cd = CheckpointDir { dir: dir.clone(), keep_last: 1 };
    let good = checkpoint();
    cd.save_step(&good).unwrap();
    let mut nan = checkpoint();
    nan.progress.global_step = 8;
    nan.progress.step_in_epoch = 3;
    nan.progress.mask_step = 8;
    nan.f32s[0].1[3] = f32::NAN;
    let err = cd.save_step(&nan).unwrap_err().to_string();
    assert!(err.contains("non-finite"), "{err}");
    assert_eq!(cd.steps().unwrap().len(), 1, "the good checkpoint was deleted or a bad one written");
    let (ck, _, skipped) = cd.latest(|_| Ok(())).unwrap();
    assert_eq!((ck.progress.global_step, skipped.len()), (7, 0));
    // A newer checkpoint whose progress does not fit the data is skipped.
    let mut later = checkpoint();
    later.progress.global_step = 12;
    later.progress.step_in_epoch = 4;
    later.progress.mask_step = 12;
    std::fs::write(cd.step_path(12), later.to_bytes().unwrap()).unwrap();
    let fits = |ck: &Checkpoint| ck.progress.check_steps(&ck.config, 5).map_err(sparsetrain::Error::InvalidArgument);
    let (ck, _, skipped) = cd.latest(fits).unwrap();
    assert_eq!(ck.progress.global_step, 7);
    assert!(skipped.len() == 1 && skipped[0].contains("do not match"), "{skipped:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
