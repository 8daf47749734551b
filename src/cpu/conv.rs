//! Reference of shaders/conv.wgsl, and of a whole convolution as the
//! obvious six nested loops (the layer's reference does not go through
//! im2col). NHWC throughout; `c` is the stored channel count.

use crate::ops::conv::ConvGeom;

/// cols [n · oh · ow, kh · kw · c] of x [n, h, w, c].
pub fn im2col(x: &[f64], n: usize, c: usize, g: ConvGeom) -> Vec<f64> {
    let (oh, ow) = g.out().expect("valid geometry");
    let row = g.kh * g.kw * c;
    let mut cols = vec![0.0; n * oh * ow * row];
    for b in 0..n {
        for y in 0..oh {
            for xo in 0..ow {
                let r = (b * oh + y) * ow + xo;
                for kh in 0..g.kh {
                    for kw in 0..g.kw {
                        let ih = (y * g.stride + kh) as isize - g.pad as isize;
                        let iw = (xo * g.stride + kw) as isize - g.pad as isize;
                        if ih < 0 || iw < 0 || ih as usize >= g.h || iw as usize >= g.w {
                            continue;
                        }
                        for ch in 0..c {
                            cols[r * row + (kh * g.kw + kw) * c + ch] =
                                x[((b * g.h + ih as usize) * g.w + iw as usize) * c + ch];
                        }
                    }
                }
            }
        }
    }
    cols
}

/// dx [n, h, w, c] = col2im(dcols): each column entry added to the input it came from.
pub fn col2im(dcols: &[f64], n: usize, c: usize, g: ConvGeom) -> Vec<f64> {
    let (oh, ow) = g.out().expect("valid geometry");
    let row = g.kh * g.kw * c;
    let mut dx = vec![0.0; n * g.h * g.w * c];
    for b in 0..n {
        for y in 0..oh {
            for xo in 0..ow {
                let r = (b * oh + y) * ow + xo;
                for kh in 0..g.kh {
                    for kw in 0..g.kw {
                        let ih = (y * g.stride + kh) as isize - g.pad as isize;
                        let iw = (xo * g.stride + kw) as isize - g.pad as isize;
                        if ih < 0 || iw < 0 || ih as usize >= g.h || iw as usize >= g.w {
                            continue;
                        }
                        for ch in 0..c {
                            dx[((b * g.h + ih as usize) * g.w + iw as usize) * c + ch] +=
                                dcols[r * row + (kh * g.kw + kw) * c + ch];
                        }
                    }
                }
            }
        }
    }
    dx
}

/// y [n, oh, ow, co] = conv(x [n, h, w, ci], w [co, kh, kw, ci]) + b.
pub fn conv_forward(
    x: &[f64],
    w: &[f64],
    b: Option<&[f64]>,
    n: usize,
    (ci, co): (usize, usize),
    g: ConvGeom,
) -> Vec<f64> {
    let (oh, ow) = g.out().expect("valid geometry");
    let mut y = vec![0.0; n * oh * ow * co];
    for bi in 0..n {
        for yo in 0..oh {
            for xo in 0..ow {
                for o in 0..co {
                    let mut s = b.map_or(0.0, |b| b[o]);
                    for kh in 0..g.kh {
                        for kw in 0..g.kw {
                            let ih = (yo * g.stride + kh) as isize - g.pad as isize;
                            let iw = (xo * g.stride + kw) as isize - g.pad as isize;
                            if ih < 0 || iw < 0 || ih as usize >= g.h || iw as usize >= g.w {
                                continue;
                            }
                            for i in 0..ci {
                                s += w[((o * g.kh + kh) * g.kw + kw) * ci + i]
                                    * x[((bi * g.h + ih as usize) * g.w + iw as usize) * ci + i];
                            }
                        }
                    }
                    y[((bi * oh + yo) * ow + xo) * co + o] = s;
                }
            }
        }
    }
    y
}

/// (dx, dw, db) of `conv_forward` from dy.
pub fn conv_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    n: usize,
    (ci, co): (usize, usize),
    g: ConvGeom,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (oh, ow) = g.out().expect("valid geometry");
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; co]);
    for bi in 0..n {
        for yo in 0..oh {
            for xo in 0..ow {
                for o in 0..co {
                    let d = dy[((bi * oh + yo) * ow + xo) * co + o];
                    db[o] += d;
                    for kh in 0..g.kh {
                        for kw in 0..g.kw {
                            let ih = (yo * g.stride + kh) as isize - g.pad as isize;
                            let iw = (xo * g.stride + kw) as isize - g.pad as isize;
                            if ih < 0 || iw < 0 || ih as usize >= g.h || iw as usize >= g.w {
                                continue;
                            }
                            for i in 0..ci {
                                let xi = ((bi * g.h + ih as usize) * g.w + iw as usize) * ci + i;
                                let wi = ((o * g.kh + kh) * g.kw + kw) * ci + i;
                                dw[wi] += d * x[xi];
                                dx[xi] += d * w[wi];
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}
