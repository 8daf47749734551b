//! Reference of shaders/relu.wgsl.

pub fn relu_forward(x: &mut [f64]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// dy *= [y > 0].
pub fn relu_backward(dy: &mut [f64], y: &[f64]) {
    for (d, &yv) in dy.iter_mut().zip(y) {
        if yv <= 0.0 {
            *d = 0.0;
        }
    }
}
