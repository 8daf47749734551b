//! Reference of shaders/batchnorm.wgsl: BatchNorm over the channels of
//! NHWC data [rows, c] (rows = batch × pixels).

/// Training forward: y and the batch (mean, biased variance) per channel.
pub fn forward_train(
    x: &[f64],
    rows: usize,
    c: usize,
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for j in 0..c {
        mean[j] = (0..rows).map(|r| x[r * c + j]).sum::<f64>() / rows as f64;
        var[j] = (0..rows).map(|r| (x[r * c + j] - mean[j]).powi(2)).sum::<f64>() / rows as f64;
    }
    let mut y = vec![0.0; rows * c];
    for r in 0..rows {
        for j in 0..c {
            y[r * c + j] = gamma[j] * (x[r * c + j] - mean[j]) / (var[j] + eps).sqrt() + beta[j];
        }
    }
    (y, mean, var)
}

/// Evaluation forward with running statistics.
#[allow(clippy::too_many_arguments)]
pub fn forward_eval(
    x: &[f64],
    rows: usize,
    c: usize,
    gamma: &[f64],
    beta: &[f64],
    rmean: &[f64],
    rvar: &[f64],
    eps: f64,
) -> Vec<f64> {
    let mut y = vec![0.0; rows * c];
    for r in 0..rows {
        for j in 0..c {
            y[r * c + j] = gamma[j] * (x[r * c + j] - rmean[j]) / (rvar[j] + eps).sqrt() + beta[j];
        }
    }
    y
}

/// Running averages after one training batch: r ← (1 − m)·r + m·batch value,
/// the variance unbiased (× rows / (rows − 1)).
pub fn update_running(rmean: &mut [f64], rvar: &mut [f64], mean: &[f64], var: &[f64], rows: usize, momentum: f64) {
    for j in 0..mean.len() {
        rmean[j] = (1.0 - momentum) * rmean[j] + momentum * mean[j];
        let unbiased = var[j] * rows as f64 / (rows.max(2) - 1) as f64;
        rvar[j] = (1.0 - momentum) * rvar[j] + momentum * unbiased;
    }
}

/// (dx, dγ, dβ) of the training forward.
pub fn backward(
    x: &[f64],
    dy: &[f64],
    rows: usize,
    c: usize,
    gamma: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (_, mean, var) = forward_train(x, rows, c, gamma, &vec![0.0; c], eps);
    let (mut dx, mut dg, mut db) = (vec![0.0; rows * c], vec![0.0; c], vec![0.0; c]);
    for j in 0..c {
        let inv = 1.0 / (var[j] + eps).sqrt();
        let xhat = |r: usize| (x[r * c + j] - mean[j]) * inv;
        db[j] = (0..rows).map(|r| dy[r * c + j]).sum();
        dg[j] = (0..rows).map(|r| dy[r * c + j] * xhat(r)).sum();
        for r in 0..rows {
            dx[r * c + j] = gamma[j] * inv / rows as f64 * (rows as f64 * dy[r * c + j] - db[j] - xhat(r) * dg[j]);
        }
    }
    (dx, dg, db)
}
