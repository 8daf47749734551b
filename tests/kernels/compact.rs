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

/// Drawing the masks inside the compaction (`draw_compact_sets`, one
/// launch) gives the bits of `mask_samples` and the lists, ranks and counts
/// of `compact_sets` on them, exactly: fixed keys and the step block's
/// counter, scores at 0 and 1 included, unions of base sets.
#[test]
fn draw_and_compact_in_one_launch_equals_the_two() {
    use sparsetrain::ops::compact::draw_compact_sets;
    use sparsetrain::ops::mask::{KeyStep, MaskKey, mask_samples};
    use sparsetrain::step::{StepBlock, StepBuffer};
    let Some(gpu) = gpu("draw_and_compact_in_one_launch_equals_the_two") else { return };
    let widths = [1usize, 300, 257, 7, 300];
    let mut offsets = vec![0usize];
    for w in widths {
        offsets.push(offsets.last().unwrap() + w);
    }
    let units = *offsets.last().unwrap();
    let mut sets = base_sets(&offsets);
    sets.push(SetDesc { slot: units, len: 300, members: vec![offsets[1], offsets[4]] });
    let slots = units + 300;
    let table = set_table(&sets).unwrap();
    let ttable = Tensor::from_u32(&gpu, "table", &[table.len()], &table).unwrap();
    let samples = 3;
    let mut r = rng(1150);
    let mut scores = rand_f32(&mut r, units, 0.0, 1.0);
    scores[0] = 1.0;
    scores[1] = 0.0;
    scores[2] = 1.0;
    let ts = Tensor::from_f32(&gpu, "scores", &[units], &scores).unwrap();
    let fresh = |label: &str, n: usize| Tensor::from_u32(&gpu, label, &[n], &vec![u32::MAX - 1; n]).unwrap();
    for (case, step) in [KeyStep::Fixed, KeyStep::Block].into_iter().enumerate() {
        // The key says step 7, the step block's counter 41: a fixed draw must
        // use 7 and a block-keyed one 41, which the two-launch reference
        // draws as fixed keys.
        let key = MaskKey { seed: 0x1234_5678_9abc + case as u64, step: 7, sample: 2 };
        let block = StepBlock { step: 41, ..Default::default() };
        let want_key = MaskKey { step: if step == KeyStep::Block { 41 } else { 7 }, ..key };
        let run = |record: &dyn Fn(&mut Recorder)| {
            let sb = StepBuffer::new(&gpu);
            let mut rec = Recorder::with_step(&gpu, &sb);
            record(&mut rec);
            rec.into_plan().run(&gpu, Some(&block)).unwrap();
            gpu.wait().unwrap();
        };
        let outs: Vec<[Tensor; 4]> = (0..2)
            .map(|_| {
                [
                    fresh("mask", samples * units),
                    fresh("kept", samples * slots),
                    fresh("ranks", samples * slots),
                    fresh("counts", samples * sets.len()),
                ]
            })
            .collect();
        fn out(t: &[Tensor; 4]) -> Compacted<'_> {
            Compacted { kept: &t[1], counts: &t[3], ranks: &t[2] }
        }
        run(&|rec: &mut Recorder| {
            let t = &outs[0];
            mask_samples(rec, &t[0], &ts, want_key, KeyStep::Fixed, units, samples).unwrap();
            compact_sets(rec, out(t), &t[0], &ttable, sets.len(), (units, slots), samples).unwrap();
            let t = &outs[1];
            let strides = (units, slots);
            draw_compact_sets(rec, out(t), (&t[0], &ts), &ttable, sets.len(), strides, samples, (key, step)).unwrap();
        });
        for (i, name) in ["mask", "kept", "ranks", "counts"].iter().enumerate() {
            let (want, got) = (outs[0][i].download_u32(&gpu).unwrap(), outs[1][i].download_u32(&gpu).unwrap());
            let bad: Vec<String> = (0..want.len())
                .filter(|&j| want[j] != got[j])
                .take(8)
                .map(|j| format!("[{j}] {} vs {}", got[j], want[j]))
                .collect();
            assert!(bad.is_empty(), "{step:?}: {name} differs from the two launches: {}", bad.join(", "));
        }
        // The draw itself is the CPU twin's, and the ends hold.
        let mask = outs[1][0].download_u32(&gpu).unwrap();
        for s in 0..samples {
            let k = MaskKey { sample: key.sample + s as u32, ..want_key };
            let want = cpu::mask::mask_sample(&to_f64(&scores), k);
            assert_eq!(&mask[s * units..(s + 1) * units], &want[..], "{step:?}: sample {s} against the CPU twin");
            assert_eq!(&mask[s * units..s * units + 3], &[1, 0, 1], "scores 1, 0, 1");
        }
    }
}
