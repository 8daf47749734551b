//! Reference of shaders/add.wgsl: the residual sum of two activations
//! whose stored channels are different sets, into their union, and the
//! gradient back to one input. A side is (its channel list, its stored
//! columns); a stored row holds the listed channels in order, then padding.

/// A side: its channel list and its stored columns.
pub type AddSide<'a> = (&'a [usize], usize);

/// out[r, j] = A[r, col_A(c)] + B[r, col_B(c)] (ReLU'd when `relu`), c the
/// j-th channel of the sum; a channel an input lacks counts 0; padding
/// columns are 0. `sides` are (out, A, B).
pub fn add_forward(a: &[f64], b: &[f64], sides: [AddSide; 3], rows: usize, relu: bool) -> Vec<f64> {
    let [(lo, wo), (la, wa), (lb, wb)] = sides;
    let mut out = vec![0.0; rows * wo];
    for r in 0..rows {
        for (j, &c) in lo.iter().enumerate() {
            let mut v = 0.0;
            if let Some(i) = la.iter().position(|&x| x == c) {
                v += a[r * wa + i];
            }
            if let Some(i) = lb.iter().position(|&x| x == c) {
                v += b[r * wb + i];
            }
            out[r * wo + j] = if relu { v.max(0.0) } else { v };
        }
    }
    out
}

/// dX[r, i] = prior[r, i] + dOut[r, col_out(c)], c the i-th channel of X,
/// zero where `gate` and X[r, i] is not positive; padding columns keep
/// `prior`. `sides` are (out, X).
pub fn add_backward(
    d_out: &[f64],
    x: &[f64],
    prior: &[f64],
    (out, input): (AddSide, AddSide),
    rows: usize,
    gate: bool,
) -> Vec<f64> {
    let ((lo, wo), (lx, wx)) = (out, input);
    let mut dx = prior[..rows * wx].to_vec();
    for r in 0..rows {
        for (i, &c) in lx.iter().enumerate() {
            let g = match lo.iter().position(|&x| x == c) {
                Some(j) if !gate || x[r * wx + i] > 0.0 => d_out[r * wo + j],
                _ => 0.0,
            };
            dx[r * wx + i] += g;
        }
    }
    dx
}
