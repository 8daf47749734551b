use rand::Rng;
use sparsetrain::ops::Rows;
use sparsetrain::ops::decode::{decode_bytes, pack_bytes, words_for};
use sparsetrain::{Tensor, cpu};

use crate::common::*;

/// Random per-channel tables, as a loader's `Norm::tables` would give.
fn tables(r: &mut impl rand::Rng, channels: usize) -> Vec<[f32; 256]> {
    (0..channels).map(|_| std::array::from_fn(|_| r.random_range(-3.0f32..3.0))).collect()
}

/// Every value of the step's rows equals its channel's table entry, bit
/// for bit; values past the step's rows stay as they were. Awkward sizes:
/// one value, a last word of 1–3 bytes, a prime dim, three channels, a
/// batch below the capacity and a batch of none.
#[test]
fn decode_bytes_matches_reference() {
    let Some(gpu) = gpu("decode_bytes_matches_reference") else { return };
    let cases: [(usize, usize, usize, usize); 7] =
        [(1, 1, 1, 1), (3, 7, 1, 3), (5, 13, 1, 5), (4, 12, 3, 2), (17, 3 * 31, 3, 17), (64, 784, 1, 61), (9, 6, 3, 0)];
    for (case, &(cap, dim, channels, batch)) in cases.iter().enumerate() {
        let mut r = rng(900 + case as u64);
        let bytes: Vec<u8> = (0..cap * dim).map(|_| r.random::<u8>()).collect();
        let t = tables(&mut r, channels);
        let mut words = Vec::new();
        pack_bytes(&bytes, &mut words);
        assert_eq!(words.len(), words_for(cap * dim));
        // Every case has at least one value, so at least one word.
        let tb = Tensor::from_u32(&gpu, "bytes", &[words.len()], &words).unwrap();
        let flat: Vec<f32> = t.iter().flatten().copied().collect();
        let tt = Tensor::from_f32(&gpu, "table", &[channels * 256], &flat).unwrap();
        let tx = Tensor::from_f32(&gpu, "x", &[cap * dim], &vec![f32::NAN; cap * dim]).unwrap();
        run_with_batch(&gpu, batch, |rec| {
            decode_bytes(rec, (&tb, &tt), &tx, Rows::Batch(cap), (dim, channels)).unwrap();
        });
        let got = tx.download_f32(&gpu).unwrap();
        let want = cpu::decode::decode_bytes(&bytes[..batch * dim], &t);
        let what = format!("decode {cap}×{dim} ({channels} channels), batch {batch}");
        assert_close(&what, &got[..batch * dim], &want, 0.0, 0.0);
        assert!(got[batch * dim..].iter().all(|v| v.is_nan()), "{what}: wrote past the step's rows");
    }
}

#[test]
fn decode_bytes_refuses_bad_shapes() {
    let Some(gpu) = gpu("decode_bytes_refuses_bad_shapes") else { return };
    let tb = Tensor::from_u32(&gpu, "bytes", &[8], &[0; 8]).unwrap();
    let tt = Tensor::from_f32(&gpu, "table", &[256], &[0.0; 256]).unwrap();
    let tx = Tensor::from_f32(&gpu, "x", &[16], &[0.0; 16]).unwrap();
    let mut rec = sparsetrain::Recorder::new(&gpu);
    // Values per sample not a whole number of 3-channel pixels.
    let e = decode_bytes(&mut rec, (&tb, &tt), &tx, Rows::Fixed(2), (8, 3)).unwrap_err().to_string();
    assert!(e.contains("channels"), "{e}");
    // One table for two channels.
    let e = decode_bytes(&mut rec, (&tb, &tt), &tx, Rows::Fixed(2), (8, 2)).unwrap_err().to_string();
    assert!(e.contains("table"), "{e}");
    // x too short for the rows.
    let e = decode_bytes(&mut rec, (&tb, &tt), &tx, Rows::Fixed(4), (8, 1)).unwrap_err().to_string();
    assert!(e.contains("x has"), "{e}");
}
