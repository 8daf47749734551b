//! Property tests: random and mutated bytes through every file reader (IDX
//! images and labels, raw and gzip; exported networks; checkpoints). Each
//! must return a value or a typed error — never panic, hang, or allocate
//! what a lying header claims. Bounded: a fixed number of cases per reader.

use std::path::PathBuf;

use proptest::prelude::*;
use sparsetrain::data::idx::{read_idx_images, read_idx_labels};
use sparsetrain::export::Exported;
use sparsetrain::train::checkpoint::Checkpoint;

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
    Exported::from_graph(&g, &[vec![0, 1]], &vec![0.5; g.param_total]).unwrap().to_bytes().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 64, ..ProptestConfig::default() })]

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
