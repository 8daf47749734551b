// `matmul_thin` (included by matmul.wgsl only; uses its bindings, sizes,
// loaders and epilogues): products whose output has a thin side of at
// most THIN_MAX rows or columns and long other sides, such as a
// classifier's forward product (N = classes) and weight gradient (M =
// classes) over a wide layer. The tile variants cover such a side with a
// whole tile edge, most of it idle, and leave a large GPU with few
// workgroups that walk all of K; on an H100 the 10-wide output layer's
// forward product and weight gradient took 0.127 and 0.105 ms of the
// dense 784-8192-8192-10 step (with their split-K reductions) to read 64
// MB each, under 1 TB/s. Here every thread keeps a running sum for each
// output of the thin side and the long operand is read once, coalesced:
//
// - N thin (THIN_M = false): a workgroup of WG_X lanes × WG_Y row groups
//   owns 4·WG_Y rows of C. Each thread holds four rows of A and walks its
//   lanes' share of K in quads (consecutive lanes, consecutive quads: A's
//   rows and Bᵀ's as stored, [N, K], load as vec4), multiplying each quad
//   of the four rows with the quad of every column of B. The lanes' sums
//   then add up in workgroup memory, four columns at a time.
// - M thin (THIN_M = true): a workgroup of WG_X column quads × WG_Y groups
//   along K owns 4·WG_X columns of C. Each thread walks its group's share
//   of K (k ≡ group mod WG_Y), loading four columns of B's row k (a warp
//   reads one contiguous row) and the M values of A's column k (the same
//   for the whole warp). The groups' sums add up in workgroup memory.
//
// K also splits over the grid's z (split_k in matmul_core.wgsl) where the
// launcher asks; pairs run both samples' tiles. Stores go through the
// same epilogues as every variant (`store_one`), element by element: the
// output is small.

// C's thin side is M, its rows (else N, its columns).
override THIN_M: bool = false;
// The most a thin side holds: the length of each thread's sums.
const THIN_MAX: u32 = 16u;

// Four vec4 per thread (at most 256 threads): 16 KiB.
var<workgroup> thin_sums: array<vec4<f32>, 1024>;

// A[row, k..k+4], zero outside (k a multiple of 4).
fn thin_a(row: u32, k: u32) -> vec4<f32> {
    if !TRANS_A && VEC4_A && IMPLICIT == 0u && row < M && k + 4u <= K {
        return a[(row * K + k + OFF_A) >> 2u];
    }
    return vec4(a_at(row, k), a_at(row, k + 1u), a_at(row, k + 2u), a_at(row, k + 3u));
}

// B[k..k+4, j] (j < N), zero past K.
fn thin_b(k: u32, j: u32) -> vec4<f32> {
    if TRANS_B && VEC4_B && IMPLICIT == 0u && k + 4u <= K {
        return b[(j * K + k + OFF_B) >> 2u];
    }
    return vec4(b_at(k, j), b_at(k + 1u, j), b_at(k + 2u, j), b_at(k + 3u, j));
}

// B[k, c0..c0+4], zero outside.
fn thin_brow(k: u32, c0: u32) -> vec4<f32> {
    if !TRANS_B && VEC4_B && IMPLICIT == 0u && k < K && c0 + 4u <= N {
        return b[(k * N + c0 + OFF_B) >> 2u];
    }
    return vec4(b_at(k, c0), b_at(k, c0 + 1u), b_at(k, c0 + 2u), b_at(k, c0 + 3u));
}

// Output (r, col) (r < M, col < N): a split's raw partial, or through the
// epilogues, into packed C or (SCATTER) the full-size one.
fn thin_store(r: u32, col: u32, v: f32) {
    if SPLIT_K {
        let at = SPLIT_Z * M * N + OFF_C + r * N + col;
        c[at >> 2u][at & 3u] = v;
        return;
    }
    if SCATTER {
        let mc = map_col(col);
        if r < REAL_M && mc != NONE {
            store_one(r, col, map_row(r) * p.ldc + mc, v);
        }
        return;
    }
    store_one(r, col, r * N + col, v);
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_thin(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    // A constant: the branch is uniform, and so are the barriers below.
    if THIN_M {
        thin_m(wid, nwg, lid, lidx);
    } else {
        thin_n(wid, nwg, lid, lidx);
    }
}

// N thin: tiles of 4·WG_Y rows × THIN_MAX columns (one along N).
fn thin_n(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>, lidx: u32) {
    let rows_per = 4u * WG_Y;
    let threads = WG_X * WG_Y;
    let all = tile_run(wid, nwg, pair_tiles(THIN_MAX, rows_per));
    var base = 0u;
    for (var s = 0u; s < samples(); s++) {
        load_sample(s);
        let tiles = tile_count(THIN_MAX, rows_per);
        let run = sample_run(all, base, tiles.x * tiles.y);
        base += tiles.x * tiles.y;
        if !split_k(wid.z, nwg.z) {
            continue;
        }
        for (var t = run.x; t < run.y; t++) {
            let r0 = t * rows_per + 4u * lid.y;
            var acc: array<vec4<f32>, THIN_MAX>;
            for (var k = KB + 4u * lid.x; k < KE; k += 4u * WG_X) {
                let a0 = thin_a(r0, k);
                let a1 = thin_a(r0 + 1u, k);
                let a2 = thin_a(r0 + 2u, k);
                let a3 = thin_a(r0 + 3u, k);
                // A constant trip count, so that `acc` stays in registers.
                for (var j = 0u; j < THIN_MAX; j++) {
                    if j < N {
                        let bq = thin_b(k, j);
                        acc[j] += vec4(dot(a0, bq), dot(a1, bq), dot(a2, bq), dot(a3, bq));
                    }
                }
            }
            // The lanes' sums, four columns at a time: a tree over the
            // lanes of each row group, then lane 4·i + q stores row r0 + i
            // of column j0 + q.
            for (var j0 = 0u; j0 < THIN_MAX; j0 += 4u) {
                if j0 < N {
                    for (var q = 0u; q < 4u; q++) {
                        thin_sums[q * threads + lidx] = acc[j0 + q];
                    }
                    workgroupBarrier();
                    for (var stride = WG_X / 2u; stride > 0u; stride /= 2u) {
                        if lid.x < stride {
                            for (var q = 0u; q < 4u; q++) {
                                let at = q * threads + lidx;
                                thin_sums[at] += thin_sums[at + stride];
                            }
                        }
                        workgroupBarrier();
                    }
                    if lid.x < 16u {
                        let row = r0 + lid.x / 4u;
                        let q = lid.x % 4u;
                        if row < M && j0 + q < N {
                            thin_store(row, j0 + q, thin_sums[q * threads + lid.y * WG_X][lid.x / 4u]);
                        }
                    }
                    workgroupBarrier();
                }
            }
        }
    }
}

// M thin: tiles of THIN_MAX rows (one along M) × 4·WG_X columns.
fn thin_m(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>, lidx: u32) {
    let cols_per = 4u * WG_X;
    let threads = WG_X * WG_Y;
    let all = tile_run(wid, nwg, pair_tiles(cols_per, THIN_MAX));
    var base = 0u;
    for (var s = 0u; s < samples(); s++) {
        load_sample(s);
        let tiles = tile_count(cols_per, THIN_MAX);
        let run = sample_run(all, base, tiles.x * tiles.y);
        base += tiles.x * tiles.y;
        if !split_k(wid.z, nwg.z) {
            continue;
        }
        for (var t = run.x; t < run.y; t++) {
            let c0 = t * cols_per + 4u * lid.x;
            var acc: array<vec4<f32>, THIN_MAX>;
            for (var k = KB + lid.y; k < KE; k += WG_Y) {
                let bq = thin_brow(k, c0);
                for (var i = 0u; i < THIN_MAX; i++) {
                    if i < M {
                        acc[i] += a_at(i, k) * bq;
                    }
                }
            }
            // The groups' sums, four rows at a time: group g's at
            // q·threads + g·WG_X + lid.x; thread (lid.x, q) adds row i0 + q
            // up over the groups and stores its four columns.
            for (var i0 = 0u; i0 < THIN_MAX; i0 += 4u) {
                if i0 < M {
                    for (var q = 0u; q < 4u; q++) {
                        thin_sums[q * threads + lidx] = acc[i0 + q];
                    }
                    workgroupBarrier();
                    if lid.y < 4u {
                        var v = vec4(0.0);
                        for (var g = 0u; g < WG_Y; g++) {
                            v += thin_sums[lid.y * threads + g * WG_X + lid.x];
                        }
                        let row = i0 + lid.y;
                        if row < M {
                            for (var jj = 0u; jj < 4u; jj++) {
                                if c0 + jj < N {
                                    thin_store(row, c0 + jj, v[jj]);
                                }
                            }
                        }
                    }
                    workgroupBarrier();
                }
            }
        }
    }
}
