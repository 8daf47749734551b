//! Reference of shaders/pool.wgsl over NHWC data [n, h, w, c].

use crate::ops::pool::{PoolGeom, PoolMode};

pub fn forward(x: &[f64], n: usize, c: usize, g: PoolGeom, mode: PoolMode) -> Vec<f64> {
    let (oh, ow) = g.out().expect("valid geometry");
    let mut y = vec![0.0; n * oh * ow * c];
    for b in 0..n {
        for yo in 0..oh {
            for xo in 0..ow {
                for ch in 0..c {
                    let vals: Vec<f64> = (0..g.kh)
                        .flat_map(|i| (0..g.kw).map(move |j| (i, j)))
                        .map(|(i, j)| x[((b * g.h + yo * g.sh + i) * g.w + xo * g.sw + j) * c + ch])
                        .collect();
                    y[((b * oh + yo) * ow + xo) * c + ch] = match mode {
                        PoolMode::Max => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                        PoolMode::Avg => vals.iter().sum::<f64>() / vals.len() as f64,
                    };
                }
            }
        }
    }
    y
}

/// dx of `forward` from dy; a maximum's gradient goes to the window's first
/// input that attains it.
pub fn backward(x: &[f64], dy: &[f64], n: usize, c: usize, g: PoolGeom, mode: PoolMode) -> Vec<f64> {
    let (oh, ow) = g.out().expect("valid geometry");
    let mut dx = vec![0.0; x.len()];
    for b in 0..n {
        for yo in 0..oh {
            for xo in 0..ow {
                for ch in 0..c {
                    let d = dy[((b * oh + yo) * ow + xo) * c + ch];
                    let at = |i: usize, j: usize| ((b * g.h + yo * g.sh + i) * g.w + xo * g.sw + j) * c + ch;
                    match mode {
                        PoolMode::Avg => {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    dx[at(i, j)] += d / (g.kh * g.kw) as f64;
                                }
                            }
                        }
                        PoolMode::Max => {
                            let mut best = at(0, 0);
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    if x[at(i, j)] > x[best] {
                                        best = at(i, j);
                                    }
                                }
                            }
                            dx[best] += d;
                        }
                    }
                }
            }
        }
    }
    dx
}
