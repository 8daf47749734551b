// Helpers shared by every kernel. A kernel pulls this file in with the line
// `//#include common` (resolved by src/shader.rs before naga sees the source),
// so each helper exists in exactly one place.

// Flat thread index for 1-D kernels launched through `grid_1d` (src/shader.rs).
// Grids wider than the 65535-workgroup limit fold into y, so the index is
// rebuilt from both dimensions.
fn flat_id(wid: vec3<u32>, nwg: vec3<u32>, lidx: u32, wg_size: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * wg_size + lidx;
}

// "Not used" for optional indices (dynamic sizes, unit maps, slots).
const NONE: u32 = 0xffffffffu;

// Stored length of a compacted side of `count` kept elements: padded to 4
// where it follows a kept set (`idx`, a map or set index, not NONE), as
// gather::Side::max_len bounds it on the host.
fn side_len(count: u32, idx: u32) -> u32 {
    if idx == NONE {
        return count;
    }
    return (count + 3u) & ~3u;
}

// Dynamic loss scaling (mixed precision): the slot of the trainer's clip
// record that holds the loss scale S. Keep in sync with LOSS_SCALE_SLOT in
// src/ops/mod.rs.
const LOSS_SCALE_SLOT: u32 = 4u;

// A grid-stride walk over a row-major [rows, cols] matrix that keeps each
// element's row and column without a division per element: integer
// division has no vector instruction on CPUs (lavapipe splits it into one
// scalar divide per lane) and is slow on GPUs too. `first` is the thread's
// flat index, `step` the threads launched.
struct RowWalk {
    t: u32,
    r: u32,
    c: u32,
    step: u32,
    dr: u32,
    dc: u32,
}

fn row_walk(first: u32, step: u32, cols: u32) -> RowWalk {
    let n = max(cols, 1u);
    return RowWalk(first, first / n, first % n, step, step / n, step % n);
}

fn row_walk_next(w: ptr<function, RowWalk>, cols: u32) {
    (*w).t += (*w).step;
    (*w).r += (*w).dr;
    (*w).c += (*w).dc;
    if (*w).c >= cols {
        (*w).c -= cols;
        (*w).r += 1u;
    }
}

// A walk over a row-major [rows, cols] matrix that keeps each thread on one
// column, for `step` threads at least `cols`: thread `first` takes column
// first % cols, rows first / cols, + per, + 2·per, ... with per = step / cols
// (threads past per·cols take none, all of them when cols is 0). A kernel
// whose elements need values of their column (a channel's statistics, its
// place in a kept set) then loads them once per thread, not per element.
// (Folding it into `row_walk`, with a reload wherever the column moves, ran
// BatchNorm and the residual sums 1.5-1.8× slower on lavapipe.)
struct ColWalk {
    c: u32,
    r: u32,
    per: u32,
    busy: bool,
}

fn col_walk(first: u32, step: u32, cols: u32) -> ColWalk {
    let n = max(cols, 1u);
    let per = step / n;
    return ColWalk(first % n, first / n, per, first < per * cols);
}
