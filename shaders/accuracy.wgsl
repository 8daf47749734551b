//#include common
//#include step

// Accuracy count: count[0] += #{ r : argmax(logits[r, :]) == label[r] }.
// Ties go to the lowest class index, as in the CPU reference. The count is a
// u32 so that it stays exact however many batches add into it.

// Keep in sync with `AccuracyParams` in src/ops/accuracy.rs.
struct AccuracyParams {
    rows: u32,
    cols: u32,
    // BATCH: the rows are the step's batch (at most `rows`).
    rows_code: u32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: AccuracyParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> count: array<atomic<u32>>;

var<workgroup> wg_count: atomic<u32>;

@compute @workgroup_size(WG)
fn accuracy_count(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    // Pipelines skip zero-initialising workgroup memory (the matmul tiles
    // are always written first), so the counter starts explicitly.
    if lidx == 0u {
        atomicStore(&wg_count, 0u);
    }
    workgroupBarrier();
    let r = flat_id(wid, nwg, lidx, WG);
    if r < rows_of(p.rows, p.rows_code) {
        let base = r * p.cols;
        var best = 0u;
        var best_v = logits[base];
        for (var c = 1u; c < p.cols; c++) {
            let v = logits[base + c];
            if v > best_v {
                best_v = v;
                best = c;
            }
        }
        if best == labels[r] {
            atomicAdd(&wg_count, 1u);
        }
    }
    workgroupBarrier();
    // One global atomic per workgroup instead of one per row.
    if lidx == 0u {
        let n = atomicLoad(&wg_count);
        if n > 0u {
            atomicAdd(&count[0], n);
        }
    }
}
