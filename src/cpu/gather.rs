//! Reference of shaders/gather.wgsl. A side is `None` (all units, unpadded)
//! or `Some(kept list)` (padded to a multiple of 4 with zeros).

fn side(full: usize, kept: Option<&[u32]>) -> (usize, usize, Vec<usize>) {
    match kept {
        None => (full, full, (0..full).collect()),
        Some(k) => (k.len(), k.len().div_ceil(4) * 4, k.iter().map(|&i| i as usize).collect()),
    }
}

/// Returns the compacted [padded rows, padded cols] weights.
pub fn gather_weights(w: &[f64], full: (usize, usize), rows: Option<&[u32]>, cols: Option<&[u32]>) -> Vec<f64> {
    gather_weight_blocks(w, full, 1, rows, cols)
}

/// W [rows, blocks × cols] (full sizes) compacted to [padded kept rows,
/// blocks × padded kept cols], each block's kept columns.
pub fn gather_weight_blocks(
    w: &[f64],
    full: (usize, usize),
    blocks: usize,
    rows: Option<&[u32]>,
    cols: Option<&[u32]>,
) -> Vec<f64> {
    let (kr, pr, rmap) = side(full.0, rows);
    let (kc, pc, cmap) = side(full.1, cols);
    let mut out = vec![0.0; pr * blocks * pc];
    for j in 0..kr {
        for b in 0..blocks {
            for q in 0..kc {
                out[(j * blocks + b) * pc + q] = w[(rmap[j] * blocks + b) * full.1 + cmap[q]];
            }
        }
    }
    out
}

pub fn gather_bias(b: &[f64], rows: Option<&[u32]>) -> Vec<f64> {
    let (kr, pr, rmap) = side(b.len(), rows);
    let mut out = vec![0.0; pr];
    for j in 0..kr {
        out[j] = b[rmap[j]];
    }
    out
}

/// db[rows[j]] += Σ_r dy[r, j], dy of row stride = padded kept count.
pub fn scatter_bias_grad(db: &mut [f64], dy: &[f64], rows: Option<&[u32]>, batch: usize) {
    let (kr, pr, rmap) = side(db.len(), rows);
    for j in 0..kr {
        let mut s = 0.0;
        for r in 0..batch {
            s += dy[r * pr + j];
        }
        db[rmap[j]] += s;
    }
}

/// P[c, j] = Σ dy[r, j] over the rows r < batch of chunk c (`chunk` rows
/// each), for `chunks` chunks; dy and P have `width` columns.
pub fn column_partials(dy: &[f64], width: usize, batch: usize, chunk: usize, chunks: usize) -> Vec<f64> {
    let mut p = vec![0.0; chunks * width];
    for c in 0..chunks {
        for r in c * chunk..((c + 1) * chunk).min(batch) {
            for j in 0..width {
                p[c * width + j] += dy[r * width + j];
            }
        }
    }
    p
}
