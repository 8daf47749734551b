//! Reference of shaders/softmax_xent.wgsl.

/// Returns (probs [rows, cols], loss_rows [rows]).
pub fn forward(logits: &[f64], labels: &[u32], rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    let mut probs = vec![0.0; rows * cols];
    let mut loss = vec![0.0; rows];
    for r in 0..rows {
        let row = &logits[r * cols..(r + 1) * cols];
        let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v - mx).exp()).sum();
        for c in 0..cols {
            probs[r * cols + c] = (row[c] - mx).exp() / sum;
        }
        loss[r] = sum.ln() + mx - row[labels[r] as usize];
    }
    (probs, loss)
}

/// dlogits = scale · (probs - onehot).
pub fn backward(probs: &[f64], labels: &[u32], scale: f64, rows: usize, cols: usize) -> Vec<f64> {
    let mut d = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let hot = if labels[r] as usize == c { 1.0 } else { 0.0 };
            d[r * cols + c] = scale * (probs[r * cols + c] - hot);
        }
    }
    d
}
