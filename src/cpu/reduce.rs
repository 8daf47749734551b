//! Reference of shaders/reduce.wgsl.

pub fn sum(x: &[f64]) -> f64 {
    x.iter().sum()
}

pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() { 0.0 } else { sum(x) / x.len() as f64 }
}
