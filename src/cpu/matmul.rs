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

/// Where a scatter store lands: C[rows[r], cols[c]] for r < real_m, c < real_n
/// (None: identity), C of row length `ldc`.
pub struct ScatterRef<'a> {
    pub rows: Option<&'a [u32]>,
    pub cols: Option<&'a [u32]>,
    pub ldc: usize,
    pub real_m: usize,
    pub real_n: usize,
}

/// The fused matmul of shaders/matmul.wgsl: product over the (already
/// padded) operands of size `d`, then + bias[col], ReLU gate, scatter with
/// beta, ReLU — in the kernel's order.
#[allow(clippy::too_many_arguments)]
pub fn matmul_fused(
    c: &mut [f64],
    a: &[f64],
    b: &[f64],
    layout: Layout,
    alpha: f64,
    beta: f64,
    d: Dims,
    bias: Option<&[f64]>,
    relu: bool,
    gate: Option<&[f64]>,
    scatter: Option<&ScatterRef>,
) {
    let mut prod = vec![0.0; d.m * d.n];
    matmul(&mut prod, a, b, layout, 1.0, 0.0, d);
    for r in 0..d.m {
        for col in 0..d.n {
            let mut out = alpha * prod[r * d.n + col];
            if let Some(bias) = bias {
                out += bias[col];
            }
            if gate.is_some_and(|g| g[r * d.n + col] <= 0.0) {
                out = 0.0;
            }
            let idx = match scatter {
                None => r * d.n + col,
                Some(s) => {
                    if r >= s.real_m || col >= s.real_n {
                        continue;
                    }
                    let rr = s.rows.map_or(r, |m| m[r] as usize);
                    let cc = s.cols.map_or(col, |m| m[col] as usize);
                    rr * s.ldc + cc
                }
            };
            if beta != 0.0 {
                out += beta * c[idx];
            }
            if relu {
                out = out.max(0.0);
            }
            c[idx] = out;
        }
    }
}
