use rand::Rng;
use sparsetrain::ops::compact::{Compacted, SetDesc, base_sets, compact_sets, set_table};
use sparsetrain::{Recorder, Tensor, cpu};

use crate::common::*;

/// Base sets with an empty one, a single unit, primes and a size over
/// several workgroup chunks, plus unions of equal-width base sets (the
/// channels of residual sums), over two mask samples at once.
#[test]
fn compaction_matches_reference() {
    let Some(gpu) = gpu("compaction_matches_reference") else { return };
    let widths = [1usize, 0, 300, 257, 1000, 7, 300, 300];
    let mut offsets = vec![0usize];
    for w in widths {
        offsets.push(offsets.last().unwrap() + w);
    }
    let units = *offsets.last().unwrap();
    let mut sets = base_sets(&offsets);
    // Unions after the units in slot space: of 2 and 6, and of 2, 6 and 7.
    let union = |slot: usize, members: &[usize]| SetDesc {
        slot,
        len: 300,
        members: members.iter().map(|&m| offsets[m]).collect(),
    };
    sets.push(union(units, &[2, 6]));
    sets.push(union(units + 300, &[2, 6, 7]));
    let slots = units + 600;
    let table = set_table(&sets).unwrap();
    let ttable = Tensor::from_u32(&gpu, "table", &[table.len()], &table).unwrap();
    let samples = 2;
    for (case, keep) in [1.0f64, 0.0, 0.5, 0.1, -1.0].iter().enumerate() {
        let mut r = rng(1100 + case as u64);
        let draw = |r: &mut rand::rngs::StdRng| -> Vec<u32> {
            if *keep < 0.0 {
                // A single kept unit per base set.
                let mut m = vec![0; units];
                for l in 0..widths.len() {
                    if widths[l] > 0 {
                        m[offsets[l] + r.random_range(0..widths[l])] = 1;
                    }
                }
                m
            } else {
                (0..units).map(|_| u32::from(r.random_bool(*keep))).collect()
            }
        };
        let masks: Vec<Vec<u32>> = (0..samples).map(|_| draw(&mut r)).collect();
        let tm = Tensor::from_u32(&gpu, "mask", &[samples * units], &masks.concat()).unwrap();
        let kept = Tensor::from_u32(&gpu, "kept", &[samples * slots], &vec![u32::MAX - 1; samples * slots]).unwrap();
        let ranks = Tensor::from_u32(&gpu, "ranks", &[samples * slots], &vec![u32::MAX - 1; samples * slots]).unwrap();
        let counts =
            Tensor::from_u32(&gpu, "counts", &[samples * sets.len()], &vec![u32::MAX; samples * sets.len()]).unwrap();
        let mut rec = Recorder::new(&gpu);
        let out = Compacted { kept: &kept, counts: &counts, ranks: &ranks };
        compact_sets(&mut rec, out, &tm, &ttable, sets.len(), (units, slots), samples).unwrap();
        rec.finish().unwrap();
        let (got_k, got_r, got_c) =
            (kept.download_u32(&gpu).unwrap(), ranks.download_u32(&gpu).unwrap(), counts.download_u32(&gpu).unwrap());
        for (s, mask) in masks.iter().enumerate() {
            let want = cpu::compact::compact_sets(mask, &sets, slots);
            assert_eq!(
                &got_c[s * sets.len()..(s + 1) * sets.len()],
                &want.counts[..],
                "counts, sample {s}, keep {keep}"
            );
            for i in 0..slots {
                let (k, rk) = (got_k[s * slots + i], got_r[s * slots + i]);
                match want.kept[i] {
                    Some(w) => assert_eq!(k, w, "kept slot {i}, sample {s}, keep {keep}"),
                    None => assert_eq!(k, u32::MAX - 1, "slot {i} past the count was written, keep {keep}"),
                }
                match want.ranks[i] {
                    Some(w) => assert_eq!(rk, w, "rank slot {i}, sample {s}, keep {keep}"),
                    None => assert_eq!(rk, u32::MAX - 1, "rank slot {i} outside every set was written"),
                }
            }
        }
    }
}
