use sparsetrain::ops::bias;
use sparsetrain::{Recorder, Tensor, cpu};

use crate::common::*;

#[test]
fn bias_add_and_grad_match_reference() {
    let Some(gpu) = gpu("bias_add_and_grad_match_reference") else { return };
    for (case, &(rows, cols)) in [(1, 1), (7, 13), (257, 3), (3, 300), (64, 256)].iter().enumerate() {
        let mut r = rng(200 + case as u64);
        let y = rand_f32(&mut r, rows * cols, -2.0, 2.0);
        let b = rand_f32(&mut r, cols, -1.0, 1.0);
        let db0 = rand_f32(&mut r, cols, -1.0, 1.0);
        let ty = Tensor::from_f32(&gpu, "y", &[rows, cols], &y).unwrap();
        let tb = Tensor::from_f32(&gpu, "b", &[cols], &b).unwrap();
        let tdb = Tensor::from_f32(&gpu, "db", &[cols], &vec![f32::NAN; cols]).unwrap();
        let tdb2 = Tensor::from_f32(&gpu, "db2", &[cols], &db0).unwrap();
        let mut rec = Recorder::new(&gpu);
        bias::bias_grad(&mut rec, &tdb, &ty, false, rows, cols).unwrap();
        bias::bias_grad(&mut rec, &tdb2, &ty, true, rows, cols).unwrap();
        bias::bias_add(&mut rec, &ty, &tb, rows, cols).unwrap();
        rec.finish().unwrap();

        let mut want_db = vec![0.0; cols];
        cpu::bias::bias_grad(&mut want_db, &to_f64(&y), false, rows, cols);
        let mut want_db2 = to_f64(&db0);
        cpu::bias::bias_grad(&mut want_db2, &to_f64(&y), true, rows, cols);
        let mut want_y = to_f64(&y);
        cpu::bias::bias_add(&mut want_y, &to_f64(&b), rows, cols);
        let tol = 1e-5 * rows as f64;
        assert_close(&format!("bias_grad {rows}x{cols}"), &tdb.download_f32(&gpu).unwrap(), &want_db, tol, 1e-6);
        assert_close(&format!("bias_grad acc {rows}x{cols}"), &tdb2.download_f32(&gpu).unwrap(), &want_db2, tol, 1e-6);
        assert_close(&format!("bias_add {rows}x{cols}"), &ty.download_f32(&gpu).unwrap(), &want_y, 1e-6, 1e-6);
    }
}
