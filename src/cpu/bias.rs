//! Reference of shaders/bias.wgsl.

/// y[r, j] += bias[j].
pub fn bias_add(y: &mut [f64], bias: &[f64], rows: usize, cols: usize) {
    for r in 0..rows {
        for j in 0..cols {
            y[r * cols + j] += bias[j];
        }
    }
}

/// dbias[j] = Σ_r dy[r, j] (+ dbias[j] when accumulating).
pub fn bias_grad(dbias: &mut [f64], dy: &[f64], accumulate: bool, rows: usize, cols: usize) {
    for j in 0..cols {
        let mut s = if accumulate { dbias[j] } else { 0.0 };
        for r in 0..rows {
            s += dy[r * cols + j];
        }
        dbias[j] = s;
    }
}
