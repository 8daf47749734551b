//! Reference of shaders/matmul.wgsl.

use crate::ops::matmul::{Dims, Layout};

/// C = alpha·op(A)·op(B) + beta·C, in f64. Shapes as in `ops::matmul::Layout`.
pub fn matmul(c: &mut [f64], a: &[f64], b: &[f64], layout: Layout, alpha: f64, beta: f64, d: Dims) {
    for i in 0..d.m {
        for j in 0..d.n {
            let mut sum = 0.0;
            for p in 0..d.k {
                let av = if layout.trans_a() { a[p * d.m + i] } else { a[i * d.k + p] };
                let bv = if layout.trans_b() { b[j * d.k + p] } else { b[p * d.n + j] };
                sum += av * bv;
            }
            let old = if beta != 0.0 { beta * c[i * d.n + j] } else { 0.0 };
            c[i * d.n + j] = alpha * sum + old;
        }
    }
}
