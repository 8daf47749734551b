//! Property tests: random and mutated bytes through every file reader (IDX
//! images and labels, raw and gzip; exported networks; checkpoints). Each
//! must return a value or a typed error — never panic, hang, or allocate
//! what a lying header claims. Checkpoints must also catch every corrupted
//! tensor byte by their checksum and every progress record that does not fit
//! the run. Bounded: a fixed number of cases per reader.

use std::path::PathBuf;

use proptest::prelude::*;
use sparsetrain::data::idx::{read_idx_images, read_idx_labels};
use sparsetrain::export::Exported;
use sparsetrain::train::checkpoint::{Checkpoint, DataId, PHASES, Progress};
use sparsetrain::train::{ModelSpec, TrainConfig};

/// A valid checkpoint of a 5-4-3 MLP (3 epochs of 4 steps), to mutate.
fn checkpoint(progress: Progress) -> Checkpoint {
    let graph = sparsetrain::nn::Graph::mlp(5, &[4], 3).unwrap();
    let n = graph.param_total;
    Checkpoint {
        config: TrainConfig { model: ModelSpec::Mlp { hidden: vec![4] }, epochs: 3, ..TrainConfig::default() },
        graph: graph.spec.clone(),
        data: DataId { name: "synthetic".into(), fingerprint: 1 },
        progress,
        f32s: ["params", "momentum"]
            .iter()
            .map(|k| (k.to_string(), (0..n).map(|i| i as f32 * 0.01).collect()))
            .chain(["scores", "score_m", "score_v"].iter().map(|k| (k.to_string(), vec![0.25; 4])))
            .collect(),
        u32s: Vec::new(),
    }
}

fn progress(phase: &str, epoch: usize, step_in_epoch: usize, global_step: u64, mask_step: u64) -> Progress {
    Progress { phase: phase.into(), epoch, step_in_epoch, global_step, mask_step, best_test_acc: 0.5 }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sparsetrain-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A valid IDX image file of `n` 2×3 images, to mutate.
fn idx_images(n: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [n, 2, 3] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend((0..n * 6).map(|i| i as u8));
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn valid_export() -> Vec<u8> {
    let g = sparsetrain::nn::Graph::mlp(3, &[2], 2).unwrap();
    Exported::from_graph(&g, &[vec![0, 1]], &vec![0.5; g.param_total], &[]).unwrap().to_bytes().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn checkpoint_checksum_catches_any_corrupted_byte(at in 0usize..4096, flip in 1u8..=255) {
        let bytes = checkpoint(progress("train", 1, 1, 5, 5)).to_bytes().unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
        let at = header + at % (bytes.len() - header);
        let mut bad = bytes.clone();
        bad[at] ^= flip;
        let err = Checkpoint::from_bytes(&bad, std::path::Path::new("ck")).unwrap_err().to_string();
        prop_assert!(err.contains("checksum"), "byte {} flipped by {:#x}: {}", at, flip, err);
    }

    #[test]
    fn checkpoint_progress_is_validated(
        phase in prop::sample::select(vec!["train", "finetune", "warmup", ""]),
        epoch in 0usize..6,
        step_in_epoch in 0usize..10,
        global_step in prop::num::u64::ANY,
        mask_step in prop::num::u64::ANY,
        small in any::<bool>(),
    ) {
        // Half the cases use counters in the run's range.
        let (g, m) = if small { (global_step % 20, mask_step % 20) } else { (global_step, mask_step) };
        let p = progress(phase, epoch, step_in_epoch, g, m);
        let ck = checkpoint(p.clone());
        match Checkpoint::from_bytes(&ck.to_bytes().unwrap(), std::path::Path::new("ck")) {
            Ok(back) => {
                prop_assert!(p.validate(&ck.config).is_ok());
                prop_assert!(PHASES.contains(&back.progress.phase.as_str()));
                prop_assert!(back.progress.mask_step <= back.progress.global_step);
                prop_assert!(back.progress.epoch <= 3);
                // With the data known (4 steps per epoch) only exact counters pass.
                if back.progress.check_steps(&back.config, 4).is_ok() {
                    let base = if back.progress.phase == "train" { 0 } else { 12 };
                    prop_assert_eq!(back.progress.global_step, base + 4 * back.progress.epoch as u64 + back.progress.step_in_epoch as u64);
                }
            }
            Err(e) => prop_assert!(p.validate(&ck.config).is_err(), "refused a valid progress: {}", e),
        }
    }

    #[test]
    fn idx_readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), gz in any::<bool>()) {
        let p = scratch("random.idx");
        std::fs::write(&p, if gz { gzip(&bytes) } else { bytes.clone() }).unwrap();
        let _ = read_idx_images(&p);
        let _ = read_idx_labels(&p);
    }

    #[test]
    fn idx_mutations_never_panic(n in 0u32..20, at in 0usize..200, val in any::<u8>(), cut in 0usize..200, gz in any::<bool>()) {
        let mut bytes = idx_images(n);
        if at < bytes.len() {
            bytes[at] = val;
        }
        bytes.truncate(cut.max(1).min(bytes.len()));
        let p = scratch("mutated.idx");
        std::fs::write(&p, if gz { gzip(&bytes) } else { bytes }).unwrap();
        if let Ok((count, rows, cols, pixels)) = read_idx_images(&p) {
            prop_assert_eq!(pixels.len(), count * rows * cols);
        }
    }

    #[test]
    fn export_reader_never_panics(at in 0usize..400, val in any::<u8>(), cut in 0usize..400) {
        let mut bytes = valid_export();
        if at < bytes.len() {
            bytes[at] = val;
        }
        bytes.truncate(cut.min(bytes.len()));
        let p = scratch("mutated.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        if let Ok(net) = Exported::load(&p) {
            let graph = sparsetrain::nn::Graph::from_spec(net.spec.clone());
            prop_assert!(graph.is_ok());
            prop_assert_eq!(net.param_count(), graph.unwrap().param_count());
        }
        let _ = Checkpoint::load(&p);
    }

    #[test]
    fn safetensors_readers_take_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let p = scratch("random.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        prop_assert!(Exported::load(&p).is_err());
        prop_assert!(Checkpoint::load(&p).is_err());
    }
}
