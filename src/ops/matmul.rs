//! Launcher of shaders/matmul.wgsl: C = alpha·op(A)·op(B) + beta·C in three
//! layouts and three variants. The variant normally comes from the device's
//! choice (see `autotune`); benchmarks and tests may force one.

use glam::UVec2;

use super::{KernelParams, need, u32_of};
use crate::error::Result;
use crate::record::Recorder;
use crate::shader::{Kernel, Shader, capped_grid, grid_2d};
use crate::tensor::{DType, Tensor};

/// Keep in sync with `MatmulParams` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub beta: f32,
    pub alpha: f32,
    pub dyn_m: u32,
    pub dyn_n: u32,
    pub dyn_k: u32,
    pub ldc: u32,
    pub rows_map: u32,
    pub cols_map: u32,
    pub _pad: u32,
}

/// "Not used" for the dynamic-size and map indices.
pub const NONE: u32 = u32::MAX;

impl KernelParams for MatmulParams {
    const SHADER: Shader = Shader::Matmul;
    const WGSL_NAME: &'static str = "MatmulParams";
}

/// Operand layouts. With C of shape [M, N]:
/// `NN`: A [M, K], B [K, N] (C = A·B);
/// `NT`: A [M, K], B [N, K] (C = A·Bᵀ);
/// `TN`: A [K, M], B [K, N] (C = Aᵀ·B).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    NN,
    NT,
    TN,
}

impl Layout {
    pub const ALL: [Layout; 3] = [Layout::NN, Layout::NT, Layout::TN];

    pub fn trans_a(self) -> bool {
        self == Layout::TN
    }

    pub fn trans_b(self) -> bool {
        self == Layout::NT
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::NN => "A·B",
            Layout::NT => "A·Bᵀ",
            Layout::TN => "Aᵀ·B",
        }
    }
}

/// Kernel variants of the one family (see the header of shaders/matmul.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// 4×4 register tile per thread, vec4 loads from memory, no barriers.
    RegTile,
    /// Workgroup-memory tiles plus 4×4 register tiles.
    Shared,
    /// One thread per output; the benchmark baseline.
    Naive,
}

impl Variant {
    /// The variants the device may choose between.
    pub const TUNED: [Variant; 2] = [Variant::RegTile, Variant::Shared];

    pub fn name(self) -> &'static str {
        match self {
            Variant::RegTile => "regtile",
            Variant::Shared => "shared",
            Variant::Naive => "naive",
        }
    }

    pub fn parse(s: &str) -> Option<Variant> {
        match s.trim().to_ascii_lowercase().as_str() {
            "regtile" => Some(Variant::RegTile),
            "shared" => Some(Variant::Shared),
            "naive" => Some(Variant::Naive),
            _ => None,
        }
    }

    fn kernel(self) -> Kernel {
        match self {
            Variant::RegTile => Kernel::MatmulRegtile,
            Variant::Shared => Kernel::MatmulShared,
            Variant::Naive => Kernel::MatmulNaive,
        }
    }

    /// Workgroup shape (x, y) and the outputs each thread covers per side.
    fn shape(self) -> (UVec2, u32) {
        match self {
            Variant::RegTile => (UVec2::new(8, 8), 4),
            Variant::Shared => (UVec2::new(16, 16), 4),
            Variant::Naive => (UVec2::new(16, 16), 1),
        }
    }
}

/// Problem size: C is [m, n], the inner dimension is k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// Sizes read on the device: `dims[i]` rounded up to a multiple of 4 (the
/// zero padding of compacted operands). Each `Some(i)` replaces the static
/// size, which then only bounds the grid.
#[derive(Clone, Copy, Debug)]
pub struct DynDims<'a> {
    pub dims: &'a Tensor,
    pub m: Option<usize>,
    pub n: Option<usize>,
    pub k: Option<usize>,
}

/// Scatter store: C[rows[r], cols[c]] (+)= value, into a C of row length
/// `ldc`. Maps are element offsets into `maps`; None is the identity.
#[derive(Clone, Copy, Debug)]
pub struct Scatter<'a> {
    pub maps: &'a Tensor,
    pub rows: Option<usize>,
    pub cols: Option<usize>,
    pub ldc: usize,
}

/// One matmul: layout, scaling, epilogues, and optionally a forced variant.
#[derive(Clone, Copy, Debug)]
pub struct Matmul<'a> {
    pub layout: Layout,
    pub alpha: f32,
    /// 0 overwrites C; 1 accumulates into it.
    pub beta: f32,
    pub variant: Option<Variant>,
    /// + bias[col] at the store.
    pub bias: Option<&'a Tensor>,
    /// max(·, 0) at the store.
    pub relu: bool,
    /// Zero where gate[row, col] <= 0 (gate shaped like C).
    pub gate: Option<&'a Tensor>,
    pub scatter: Option<Scatter<'a>>,
    pub dynamic: Option<DynDims<'a>>,
}

fn opt_index(op: &'static str, what: &str, v: Option<usize>) -> Result<u32> {
    v.map_or(Ok(NONE), |i| u32_of(op, what, i))
}

impl<'a> Matmul<'a> {
    pub fn new(layout: Layout) -> Matmul<'a> {
        Matmul {
            layout,
            alpha: 1.0,
            beta: 0.0,
            variant: None,
            bias: None,
            relu: false,
            gate: None,
            scatter: None,
            dynamic: None,
        }
    }

    /// Adds into C instead of overwriting it.
    pub fn accumulate(mut self) -> Matmul<'a> {
        self.beta = 1.0;
        self
    }

    pub fn variant(mut self, v: Variant) -> Matmul<'a> {
        self.variant = Some(v);
        self
    }

    pub fn bias(mut self, b: &'a Tensor) -> Matmul<'a> {
        self.bias = Some(b);
        self
    }

    pub fn relu(mut self) -> Matmul<'a> {
        self.relu = true;
        self
    }

    pub fn gate(mut self, g: &'a Tensor) -> Matmul<'a> {
        self.gate = Some(g);
        self
    }

    pub fn scatter(mut self, s: Scatter<'a>) -> Matmul<'a> {
        self.scatter = Some(s);
        self
    }

    pub fn dynamic(mut self, d: DynDims<'a>) -> Matmul<'a> {
        self.dynamic = Some(d);
        self
    }

    /// Records C = alpha·op(A)·op(B) + beta·C (+ epilogues).
    /// c: [m, n]; a: [m, k] or [k, m] (TN); b: [k, n] or [n, k] (NT). With
    /// dynamic sizes, `d` gives their upper bounds (multiples of 4).
    pub fn record(&self, rec: &mut Recorder, c: &Tensor, a: &Tensor, b: &Tensor, d: Dims) -> Result<()> {
        const OP: &str = "matmul";
        if self.scatter.is_none() {
            need(OP, "C", c, d.m * d.n, DType::F32)?;
        }
        need(OP, "A", a, d.m * d.k, DType::F32)?;
        need(OP, "B", b, d.k * d.n, DType::F32)?;
        if let Some(bias) = self.bias {
            need(OP, "bias", bias, d.n, DType::F32)?;
        }
        if let Some(gate) = self.gate {
            need(OP, "gate", gate, d.m * d.n, DType::F32)?;
        }
        if d.m == 0 || d.n == 0 {
            return Ok(());
        }
        let (m, n, k) = (u32_of(OP, "m", d.m)?, u32_of(OP, "n", d.n)?, u32_of(OP, "k", d.k)?);
        // Flat indices inside the kernel are u32 too.
        for (name, len) in [("A", d.m * d.k), ("B", d.k * d.n), ("C", d.m * d.n)] {
            u32_of(OP, name, len)?;
        }
        let plain = self.bias.is_none()
            && self.gate.is_none()
            && self.scatter.is_none()
            && self.dynamic.is_none()
            && !self.relu;
        if d.k == 0 && self.beta == 0.0 && plain {
            // An empty sum: C = 0.
            return c.view(0, &[d.m * d.n]).and_then(|v| v.fill_f32(rec, 0.0));
        }
        let gpu = rec.gpu();
        let variant = self.variant.unwrap_or(gpu.matmul_choice().variant);
        let (wg, per_thread) = variant.shape();
        let layout = self.layout;
        let dynamic = self.dynamic;
        let is_dyn = |pick: fn(&DynDims) -> Option<usize>| dynamic.as_ref().and_then(pick).is_some();
        // Dynamic sizes are multiples of 4 by construction.
        let aligned = |size: u32, dynamic: bool| dynamic || size.is_multiple_of(4);
        let (dm, dn, dk) = (is_dyn(|d| d.m), is_dyn(|d| d.n), is_dyn(|d| d.k));
        let vec4_a = if layout.trans_a() { aligned(m, dm) } else { aligned(k, dk) };
        let vec4_b = if layout.trans_b() { aligned(k, dk) } else { aligned(n, dn) };
        let flag = |b: bool| f64::from(u8::from(b));
        let constants = vec![
            ("TRANS_A", flag(layout.trans_a())),
            ("TRANS_B", flag(layout.trans_b())),
            ("VEC4_A", flag(vec4_a)),
            ("VEC4_B", flag(vec4_b)),
            ("VEC4_C", flag(aligned(n, dn))),
            ("WG_X", f64::from(wg.x)),
            ("WG_Y", f64::from(wg.y)),
            ("BIAS", flag(self.bias.is_some())),
            ("RELU", flag(self.relu)),
            ("GATE", flag(self.gate.is_some())),
            ("SCATTER", flag(self.scatter.is_some())),
        ];
        let mut params = MatmulParams {
            m,
            n,
            k,
            beta: self.beta,
            alpha: self.alpha,
            dyn_m: NONE,
            dyn_n: NONE,
            dyn_k: NONE,
            ldc: n,
            rows_map: NONE,
            cols_map: NONE,
            _pad: 0,
        };
        if let Some(dd) = &self.dynamic {
            need(OP, "dims", dd.dims, 1, DType::U32)?;
            params.dyn_m = opt_index(OP, "dyn m", dd.m)?;
            params.dyn_n = opt_index(OP, "dyn n", dd.n)?;
            params.dyn_k = opt_index(OP, "dyn k", dd.k)?;
        }
        if let Some(sc) = &self.scatter {
            need(OP, "maps", sc.maps, 1, DType::U32)?;
            need(OP, "C", c, 1, DType::F32)?;
            params.ldc = u32_of(OP, "ldc", sc.ldc)?;
            params.rows_map = opt_index(OP, "rows map", sc.rows)?;
            params.cols_map = opt_index(OP, "cols map", sc.cols)?;
        }
        // One workgroup per output tile, except where the sizes are only
        // known on the device: there at most `grid_cap` workgroups loop over
        // the tiles, so that the tiles a small kept count leaves empty cost
        // nothing. Static sizes keep one workgroup per tile: on lavapipe the
        // looping grid measurably changed dense speeds (BENCHMARKS.md).
        let tiles = grid_2d(n, m, wg * per_thread);
        let limit = gpu.limits().max_compute_workgroups_per_dimension;
        let cap = if self.dynamic.is_some() { gpu.grid_cap() } else { u32::MAX };
        let groups = capped_grid(tiles.x.saturating_mul(tiles.y), cap, limit);
        let (one, zero_u32) = (&gpu.one, &gpu.zero_u32);
        let bias = self.bias.unwrap_or(one);
        let gate = self.gate.unwrap_or(one);
        let dims = self.dynamic.map_or(zero_u32, |d| d.dims);
        let maps = self.scatter.map_or(zero_u32, |s| s.maps);
        rec.dispatch(
            variant.kernel(),
            &constants,
            (0, &params),
            &[(1, a), (2, b), (3, c), (4, bias), (5, gate), (6, dims), (7, maps)],
            groups,
        )
    }
}

/// FLOPs of one matmul (multiply and add counted separately).
pub fn flops(d: Dims) -> f64 {
    2.0 * d.m as f64 * d.n as f64 * d.k as f64
}
