use rand::Rng;
use sparsetrain::ops::compact::compact_kept;
use sparsetrain::{Recorder, Tensor, cpu};

use crate::common::*;

#[test]
fn compaction_matches_reference() {
    let Some(gpu) = gpu("compaction_matches_reference") else { return };
    // Layer sizes with an empty layer, a single unit, primes and a size over
    // several workgroup chunks.
    let sizes = [1usize, 0, 300, 257, 1000, 7];
    let mut offsets = vec![0u32];
    for s in sizes {
        offsets.push(offsets.last().unwrap() + s as u32);
    }
    let units = *offsets.last().unwrap() as usize;
    for (case, keep) in [1.0f64, 0.0, 0.5, 0.1, -1.0].iter().enumerate() {
        let mut r = rng(1100 + case as u64);
        let mask: Vec<u32> = if *keep < 0.0 {
            // A single kept unit per layer.
            let mut m = vec![0; units];
            for l in 0..sizes.len() {
                if sizes[l] > 0 {
                    m[offsets[l] as usize + r.random_range(0..sizes[l])] = 1;
                }
            }
            m
        } else {
            (0..units).map(|_| u32::from(r.random_bool(*keep))).collect()
        };
        let tm = Tensor::from_u32(&gpu, "mask", &[units], &mask).unwrap();
        let toff = Tensor::from_u32(&gpu, "offsets", &[offsets.len()], &offsets).unwrap();
        let kept = Tensor::from_u32(&gpu, "kept", &[units], &vec![u32::MAX; units]).unwrap();
        let counts = Tensor::from_u32(&gpu, "counts", &[sizes.len()], &vec![u32::MAX; sizes.len()]).unwrap();
        let mut rec = Recorder::new(&gpu);
        compact_kept(&mut rec, &kept, &counts, &tm, &toff, sizes.len(), units).unwrap();
        rec.finish().unwrap();
        let (want_kept, want_counts) = cpu::compact::compact_kept(&mask, &offsets);
        let got_counts = counts.download_u32(&gpu).unwrap();
        assert_eq!(got_counts, want_counts, "counts, keep {keep}");
        let got = kept.download_u32(&gpu).unwrap();
        for (i, w) in want_kept.iter().enumerate() {
            if let Some(w) = w {
                assert_eq!(got[i], *w, "kept slot {i}, keep {keep}");
            } else {
                assert_eq!(got[i], u32::MAX, "slot {i} past the count was written, keep {keep}");
            }
        }
    }
}
