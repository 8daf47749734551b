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
