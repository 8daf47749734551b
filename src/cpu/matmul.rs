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

/// `matmul_pack`'s output for operand A (or B where `b_side`) of a product
/// of `layout` and sizes `d` (as stored: A [m, k] or [k, m], B [k, n] or
/// [n, k]), on block tiles of `tile_rows` × `tile_cols`: the operand along
/// its stored contiguous dimension, rounded to f16 (nearest even), K padded
/// with zeros to a multiple of 32, M to whole tile rows and N to whole tile
/// columns; pairs of halves in u32, the first in the low bits.
pub fn f16_pack(x: &[f32], layout: Layout, d: Dims, b_side: bool, (tile_rows, tile_cols): (usize, usize)) -> Vec<u32> {
    let kp = d.k.div_ceil(32) * 32;
    let mp = d.m.div_ceil(tile_rows) * tile_rows;
    let np = d.n.div_ceil(tile_cols) * tile_cols;
    // (rows of the pack, their length, the value at (row, i) or zero).
    let (rows, len): (usize, usize) = match (b_side, layout) {
        (false, Layout::TN) => (kp, mp),
        (false, _) => (mp, kp),
        (true, Layout::NT) => (np, kp),
        (true, _) => (kp, np),
    };
    let (outer, inner) = match (b_side, layout) {
        (false, Layout::TN) => (d.k, d.m),
        (false, _) => (d.m, d.k),
        (true, Layout::NT) => (d.n, d.k),
        (true, _) => (d.k, d.n),
    };
    let mut halves = vec![0u16; rows * len];
    for r in 0..outer {
        for i in 0..inner {
            halves[r * len + i] = half::f16::from_f32(x[r * inner + i]).to_bits();
        }
    }
    halves.chunks(2).map(|p| u32::from(p[0]) | (u32::from(p[1]) << 16)).collect()
}
