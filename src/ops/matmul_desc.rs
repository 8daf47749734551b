//! What a matmul is, apart from how it is recorded (`ops::matmul`): the
//! operand layouts, the problem size, where each size comes from (static,
//! the step's batch, a kept count read on the device), the scatter store
//! into a full-size C and the implicit convolution operands; its FLOPs.

use super::NONE;
use super::conv::ConvGeom;
use crate::device::tensor::Tensor;
use crate::error::{Error, Result};

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

/// Where one of M, N, K comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// The static size given to `record`.
    Static,
    /// The step's batch (step block) times `per` rows per sample, at most
    /// the static size.
    Batch { per: usize },
    /// ceil4(dims[count]) × blocks: a kept count, padded, times the blocks
    /// it repeats in (a convolution's kernel positions).
    Kept { count: usize, blocks: usize },
}

impl Size {
    pub(super) fn code(self) -> Result<u32> {
        match self {
            Size::Static => Ok(NONE),
            Size::Batch { per } => Ok(super::Rows::BatchOf { cap: 1, per }.code()),
            Size::Kept { count, blocks } if count < 1 << 16 && (1..1 << 15).contains(&blocks) => {
                Ok(((blocks as u32) << 16) | count as u32)
            }
            Size::Kept { count, blocks } => {
                Err(Error::InvalidArgument(format!("matmul: kept count index {count} or {blocks} blocks out of range")))
            }
        }
    }

    /// Whether the size is known to be a multiple of 4.
    pub(super) fn aligned(self, fixed: u32) -> bool {
        match self {
            Size::Static => fixed.is_multiple_of(4),
            Size::Batch { .. } => false,
            Size::Kept { .. } => true,
        }
    }
}

/// Scatter store: C[rows[r], cols[c]] (+)= value, into a C of row length
/// `ldc`. Maps are element offsets into `maps`; None is the identity. With
/// `col_blocks` > 1 the columns are that many blocks of kept channels (a
/// convolution's weight: kernel positions × channels), each block mapping
/// into `col_block_full` channels of C.
#[derive(Clone, Copy, Debug)]
pub struct Scatter<'a> {
    pub maps: &'a Tensor,
    pub rows: Option<usize>,
    pub cols: Option<usize>,
    pub ldc: usize,
    pub col_blocks: usize,
    pub col_block_full: usize,
}

/// Which operand of a product is the im2col columns of a convolution's
/// input, read from the input itself (an implicit convolution).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Implicit {
    /// A [M, K] = im2col(X): M runs over output pixels, K over kernel
    /// positions × stored channels (a forward convolution, layouts NN / NT).
    A(ConvGeom),
    /// B [K, N] = im2col(X): K runs over output pixels (a weight gradient,
    /// layouts NN / TN).
    B(ConvGeom),
    /// The input gradient dX [M, N] = col2im(dY·W) as one product (layout
    /// NN): A is dY (M runs over X's pixels, K over kernel positions ×
    /// output channels), B is W [out, positions, N]; X's geometry.
    Dx(ConvGeom),
}

/// FLOPs of one matmul (multiply and add counted separately).
pub fn flops(d: Dims) -> f64 {
    2.0 * d.m as f64 * d.n as f64 * d.k as f64
}
