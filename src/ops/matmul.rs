//! Launcher of shaders/matmul.wgsl: C = alpha·op(A)·op(B) + beta·C in three
//! layouts and three variants. The variant normally comes from the device's
//! choice (see `autotune`); benchmarks and tests may force one.

use glam::UVec2;

use super::{KernelParams, need, u32_of};
use crate::error::{Error, Result};
use crate::record::Recorder;
use crate::shader::{Kernel, Shader, grid_2d};
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
    pub _pad: [u32; 3],
}

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

/// One matmul: layout, scaling, and optionally a forced variant.
#[derive(Clone, Copy, Debug)]
pub struct Matmul {
    pub layout: Layout,
    pub alpha: f32,
    /// 0 overwrites C; 1 accumulates into it.
    pub beta: f32,
    pub variant: Option<Variant>,
}

impl Matmul {
    pub fn new(layout: Layout) -> Matmul {
        Matmul { layout, alpha: 1.0, beta: 0.0, variant: None }
    }

    /// Adds into C instead of overwriting it.
    pub fn accumulate(mut self) -> Matmul {
        self.beta = 1.0;
        self
    }

    pub fn variant(mut self, v: Variant) -> Matmul {
        self.variant = Some(v);
        self
    }

    /// Records C = alpha·op(A)·op(B) + beta·C.
    /// c: [m, n]; a: [m, k] or [k, m] (TN); b: [k, n] or [n, k] (NT).
    pub fn record(&self, rec: &mut Recorder, c: &Tensor, a: &Tensor, b: &Tensor, d: Dims) -> Result<()> {
        const OP: &str = "matmul";
        need(OP, "C", c, d.m * d.n, DType::F32)?;
        need(OP, "A", a, d.m * d.k, DType::F32)?;
        need(OP, "B", b, d.k * d.n, DType::F32)?;
        if d.m == 0 || d.n == 0 {
            return Ok(());
        }
        let (m, n, k) = (u32_of(OP, "m", d.m)?, u32_of(OP, "n", d.n)?, u32_of(OP, "k", d.k)?);
        // Flat indices inside the kernel are u32 too.
        for (name, len) in [("A", d.m * d.k), ("B", d.k * d.n), ("C", d.m * d.n)] {
            u32_of(OP, name, len)?;
        }
        if d.k == 0 && self.beta == 0.0 {
            // An empty sum: C = 0. The kernel handles it too, but this keeps
            // the early exit obvious.
            return c.view(0, &[d.m * d.n]).and_then(|v| v.fill_f32(rec, 0.0));
        }
        let variant = self.variant.unwrap_or(rec.gpu().matmul_choice().variant);
        let (wg, per_thread) = variant.shape();
        let layout = self.layout;
        let contiguous_a = if layout.trans_a() { m } else { k };
        let contiguous_b = if layout.trans_b() { k } else { n };
        let constants = vec![
            ("TRANS_A", f64::from(u8::from(layout.trans_a()))),
            ("TRANS_B", f64::from(u8::from(layout.trans_b()))),
            ("VEC4_A", f64::from(u8::from(contiguous_a % 4 == 0))),
            ("VEC4_B", f64::from(u8::from(contiguous_b % 4 == 0))),
            ("VEC4_C", f64::from(u8::from(n % 4 == 0))),
            ("WG_X", f64::from(wg.x)),
            ("WG_Y", f64::from(wg.y)),
        ];
        let params = MatmulParams { m, n, k, beta: self.beta, alpha: self.alpha, _pad: [0; 3] };
        let groups = grid_2d(n, m, wg * per_thread);
        let limit = rec.gpu().limits().max_compute_workgroups_per_dimension;
        if groups.x > limit || groups.y > limit {
            return Err(Error::TooLarge {
                what: format!("matmul of {m}x{n}"),
                bytes: u64::from(groups.max_element()),
                limit_name: "max_compute_workgroups_per_dimension",
                limit: u64::from(limit),
            });
        }
        rec.dispatch(variant.kernel(), &constants, (0, &params), &[(1, a), (2, b), (3, c)], groups)
    }
}

/// FLOPs of one matmul (multiply and add counted separately).
pub fn flops(d: Dims) -> f64 {
    2.0 * d.m as f64 * d.n as f64 * d.k as f64
}
