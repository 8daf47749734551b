//! Reference of shaders/accuracy.wgsl. Ties go to the lowest index.

pub fn accuracy_count(logits: &[f64], labels: &[u32], rows: usize, cols: usize) -> u32 {
    let mut n = 0;
    for r in 0..rows {
        let row = &logits[r * cols..(r + 1) * cols];
        let mut best = 0;
        for c in 1..cols {
            if row[c] > row[best] {
                best = c;
            }
        }
        if best == labels[r] as usize {
            n += 1;
        }
    }
    n
}
