//! Reference of `mlp::Mlp`: forward, loss and backward in f64 from the same
//! flat parameter layout, built only from the other references.

use super::{bias, matmul, reduce, relu, softmax_xent};
use crate::mlp::ParamLayout;
use crate::ops::matmul::{Dims, Layout};

pub struct MlpResult {
    pub logits: Vec<f64>,
    pub loss: f64,
    /// Same layout as the parameters; padding stays zero.
    pub grads: Vec<f64>,
}

pub fn forward_backward(layout: &ParamLayout, params: &[f64], x: &[f64], labels: &[u32], batch: usize) -> MlpResult {
    forward_backward_masked(layout, params, x, labels, batch, None)
}

/// The same with hidden unit masks (one 0/1 vector per hidden layer): a
/// removed unit's activation is zero, hence its gradients too. This is the
/// dense-masked definition that the compacted GPU path must reproduce.
pub fn forward_backward_masked(
    layout: &ParamLayout,
    params: &[f64],
    x: &[f64],
    labels: &[u32],
    batch: usize,
    masks: Option<&[Vec<u32>]>,
) -> MlpResult {
    let layers = layout.layers();
    let mut acts: Vec<Vec<f64>> = Vec::new();
    for l in 0..layers {
        let (i, o) = layout.dims(l);
        let input = if l == 0 { x } else { &acts[l - 1] };
        let w = &params[layout.w[l]..layout.w[l] + o * i];
        let mut y = vec![0.0; batch * o];
        matmul::matmul(&mut y, input, w, Layout::NT, 1.0, 0.0, Dims { m: batch, n: o, k: i });
        bias::bias_add(&mut y, &params[layout.b[l]..layout.b[l] + o], batch, o);
        if l + 1 < layers {
            relu::relu_forward(&mut y);
            if let Some(m) = masks {
                for r in 0..batch {
                    for u in 0..o {
                        if m[l][u] == 0 {
                            y[r * o + u] = 0.0;
                        }
                    }
                }
            }
        }
        acts.push(y);
    }
    let c = layout.sizes[layers];
    let (probs, loss_rows) = softmax_xent::forward(&acts[layers - 1], labels, batch, c);
    let loss = reduce::mean(&loss_rows);
    let mut grads = vec![0.0; layout.total];
    let mut dy = softmax_xent::backward(&probs, labels, 1.0 / batch as f64, batch, c);
    for l in (0..layers).rev() {
        let (i, o) = layout.dims(l);
        let input = if l == 0 { x } else { &acts[l - 1] };
        let dw = &mut grads[layout.w[l]..layout.w[l] + o * i];
        matmul::matmul(dw, &dy, input, Layout::TN, 1.0, 0.0, Dims { m: o, n: i, k: batch });
        let db = &mut grads[layout.b[l]..layout.b[l] + o];
        bias::bias_grad(db, &dy, false, batch, o);
        if l > 0 {
            let w = &params[layout.w[l]..layout.w[l] + o * i];
            let mut dx = vec![0.0; batch * i];
            matmul::matmul(&mut dx, &dy, w, Layout::NN, 1.0, 0.0, Dims { m: batch, n: i, k: o });
            relu::relu_backward(&mut dx, &acts[l - 1]);
            dy = dx;
        }
    }
    MlpResult { logits: acts.pop().unwrap_or_default(), loss, grads }
}
