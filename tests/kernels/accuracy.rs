use rand::Rng;
use sparsetrain::ops::accuracy;
use sparsetrain::{DType, Recorder, Tensor, cpu};

use crate::common::*;

#[test]
fn accuracy_count_matches_reference() {
    let Some(gpu) = gpu("accuracy_count_matches_reference") else { return };
    for (case, &(rows, cols)) in [(1, 1), (1, 10), (67, 10), (1000, 3), (129, 17)].iter().enumerate() {
        let mut r = rng(600 + case as u64);
        let logits = rand_f32(&mut r, rows * cols, -1.0, 1.0);
        let labels: Vec<u32> = (0..rows).map(|_| r.random_range(0..cols as u32)).collect();
        let tl = Tensor::from_f32(&gpu, "logits", &[rows, cols], &logits).unwrap();
        let tlab = Tensor::from_u32(&gpu, "labels", &[rows], &labels).unwrap();
        let count = Tensor::zeros(&gpu, "count", &[1], DType::U32).unwrap();
        let mut rec = Recorder::new(&gpu);
        sparsetrain::ops::fill::fill_u32(&mut rec, &count, 5).unwrap();
        // Twice: the count accumulates.
        accuracy::accuracy_count(&mut rec, &count, &tl, &tlab, rows, cols).unwrap();
        accuracy::accuracy_count(&mut rec, &count, &tl, &tlab, rows, cols).unwrap();
        rec.finish().unwrap();
        let want = cpu::accuracy::accuracy_count(&to_f64(&logits), &labels, rows, cols);
        assert_eq!(count.download_u32(&gpu).unwrap(), vec![5 + 2 * want], "accuracy {rows}x{cols}");
    }
}
