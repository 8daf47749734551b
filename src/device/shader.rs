//! Kernel registry: the WGSL sources in `shaders/`, their entry points, the
//! resolution of `//#include` lines, the matmul variants a device may choose
//! between, and the helpers that turn thread counts into dispatch grids.
//! Compiling them into pipelines is `pipeline.rs`.

use glam::UVec3;

use crate::error::{Error, Result};

pub use super::variant::{ChoiceSource, MatmulChoice, Variant, coop_features};

/// A WGSL file of `shaders/`. Each holds one kernel family, forward and
/// backward side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Matmul,
    MatmulCoop,
    Bias,
    Relu,
    Decode,
    SoftmaxXent,
    Reduce,
    Accuracy,
    Optim,
    Fill,
    Mask,
    Compact,
    Project,
    Gather,
    Vrpge,
    Conv,
    Batchnorm,
    Pool,
    Add,
    Lazy,
}

impl Shader {
    pub const ALL: [Shader; 20] = [
        Shader::Matmul,
        Shader::MatmulCoop,
        Shader::Bias,
        Shader::Relu,
        Shader::Decode,
        Shader::SoftmaxXent,
        Shader::Reduce,
        Shader::Accuracy,
        Shader::Optim,
        Shader::Fill,
        Shader::Mask,
        Shader::Compact,
        Shader::Project,
        Shader::Gather,
        Shader::Vrpge,
        Shader::Conv,
        Shader::Batchnorm,
        Shader::Pool,
        Shader::Add,
        Shader::Lazy,
    ];

    /// File name under `shaders/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Shader::Matmul => "matmul.wgsl",
            Shader::MatmulCoop => "matmul_coop.wgsl",
            Shader::Bias => "bias.wgsl",
            Shader::Relu => "relu.wgsl",
            Shader::Decode => "decode.wgsl",
            Shader::SoftmaxXent => "softmax_xent.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Accuracy => "accuracy.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::Fill => "fill.wgsl",
            Shader::Mask => "mask.wgsl",
            Shader::Compact => "compact.wgsl",
            Shader::Project => "project.wgsl",
            Shader::Gather => "gather.wgsl",
            Shader::Vrpge => "vrpge.wgsl",
            Shader::Conv => "conv.wgsl",
            Shader::Batchnorm => "batchnorm.wgsl",
            Shader::Pool => "pool.wgsl",
            Shader::Add => "add.wgsl",
            Shader::Lazy => "lazy.wgsl",
        }
    }

    /// The raw source, before `//#include` resolution.
    pub fn raw_source(self) -> &'static str {
        match self {
            Shader::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Shader::MatmulCoop => include_str!("../../shaders/matmul_coop.wgsl"),
            Shader::Bias => include_str!("../../shaders/bias.wgsl"),
            Shader::Relu => include_str!("../../shaders/relu.wgsl"),
            Shader::Decode => include_str!("../../shaders/decode.wgsl"),
            Shader::SoftmaxXent => include_str!("../../shaders/softmax_xent.wgsl"),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Accuracy => include_str!("../../shaders/accuracy.wgsl"),
            Shader::Optim => include_str!("../../shaders/optim.wgsl"),
            Shader::Fill => include_str!("../../shaders/fill.wgsl"),
            Shader::Mask => include_str!("../../shaders/mask.wgsl"),
            Shader::Compact => include_str!("../../shaders/compact.wgsl"),
            Shader::Project => include_str!("../../shaders/project.wgsl"),
            Shader::Gather => include_str!("../../shaders/gather.wgsl"),
            Shader::Vrpge => include_str!("../../shaders/vrpge.wgsl"),
            Shader::Conv => include_str!("../../shaders/conv.wgsl"),
            Shader::Batchnorm => include_str!("../../shaders/batchnorm.wgsl"),
            Shader::Pool => include_str!("../../shaders/pool.wgsl"),
            Shader::Add => include_str!("../../shaders/add.wgsl"),
            Shader::Lazy => include_str!("../../shaders/lazy.wgsl"),
        }
    }

    /// The device features a shader needs beyond WebGPU's defaults: the
    /// mixed-precision matmul needs f16, subgroups and cooperative matrices.
    pub fn features(self) -> wgpu::Features {
        match self {
            Shader::MatmulCoop => coop_features(),
            _ => wgpu::Features::empty(),
        }
    }

    /// The naga capabilities matching `features` (what validation allows).
    pub fn capabilities(self) -> naga::valid::Capabilities {
        use naga::valid::Capabilities as C;
        match self {
            Shader::MatmulCoop => C::default() | C::SHADER_FLOAT16 | C::SUBGROUP | C::COOPERATIVE_MATRIX,
            _ => C::default(),
        }
    }

    /// The source as the GPU compiler sees it, includes resolved.
    pub fn source(self) -> Result<String> {
        preprocess(self.raw_source(), self.file_name())
    }
}

/// Shared WGSL helpers that kernels may include, by name.
pub const SHARED: [(&str, &str); 9] = [
    ("common", include_str!("../../shaders/shared/common.wgsl")),
    ("rng", include_str!("../../shaders/shared/rng.wgsl")),
    ("step", include_str!("../../shaders/shared/step.wgsl")),
    ("clip", include_str!("../../shaders/shared/clip.wgsl")),
    ("matmul_core", include_str!("../../shaders/shared/matmul_core.wgsl")),
    ("matmul_implicit", include_str!("../../shaders/shared/matmul_implicit.wgsl")),
    ("matmul_wide", include_str!("../../shaders/shared/matmul_wide.wgsl")),
    ("matmul_thin", include_str!("../../shaders/shared/matmul_thin.wgsl")),
    ("matmul_coop_tiled", include_str!("../../shaders/shared/matmul_coop_tiled.wgsl")),
];

/// `matmul_coop.wgsl` for cooperative matrices of `frag` × `frag` × `frag`
/// (16, or 8 on adapters that offer only those): its type aliases and its
/// FRAG constant rewritten, nothing else (the kernel is written in FRAG).
pub fn coop_source(frag: u32) -> Result<String> {
    let src = Shader::MatmulCoop.source()?;
    match frag {
        16 => Ok(src),
        8 => {
            let mut out = src.replace("const FRAG: u32 = 16u;", "const FRAG: u32 = 8u;");
            for role in ["<f16, A>", "<f16, B>", "<f32, C>"] {
                out = out.replace(&format!("= coop_mat16x16{role};"), &format!("= coop_mat8x8{role};"));
            }
            if out.contains("coop_mat16x16") || !out.contains("const FRAG: u32 = 8u;") {
                return Err(Error::Shader {
                    shader: Shader::MatmulCoop.file_name(),
                    detail: "cannot rewrite the cooperative matrices for 8 × 8 pieces".into(),
                });
            }
            Ok(out)
        }
        _ => Err(Error::Shader {
            shader: Shader::MatmulCoop.file_name(),
            detail: format!("no cooperative matrices of {frag} × {frag}"),
        }),
    }
}

/// Replaces every `//#include NAME` line by the shared file `shaders/shared/NAME.wgsl`.
/// Includes are not nested: shared files are leaves, which keeps the order of
/// definitions obvious.
pub fn preprocess(src: &str, file: &'static str) -> Result<String> {
    let mut out = String::with_capacity(src.len() + 1024);
    for line in src.lines() {
        if let Some(name) = line.trim().strip_prefix("//#include ") {
            let name = name.trim();
            let (_, text) = SHARED
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| Error::Shader { shader: file, detail: format!("unknown include {name:?}") })?;
            out.push_str(text);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

/// One compute entry point. The launcher in `src/ops/` knows its bindings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    MatmulRegtile,
    MatmulShared,
    MatmulWide,
    MatmulThin,
    MatmulCoop,
    MatmulCoopDirect,
    MatmulCoopTiled,
    MatmulPack,
    MatmulKpack,
    MatmulNaive,
    MatmulSplitReduce,
    BiasAdd,
    BiasGrad,
    ReluForward,
    ReluBackward,
    DecodeBytes,
    SoftmaxXentForward,
    SoftmaxXentTrain,
    ReducePartial,
    ReduceFinal,
    AccuracyCount,
    SgdStep,
    AdamStep,
    AdamClip,
    Fill,
    MaskSample,
    CompactKept,
    ProjectScores,
    GatherWeights,
    ScatterBiasGrad,
    ColumnPartials,
    ScoreGrad,
    Im2col,
    Col2im,
    BnStats,
    BnStatsFinal,
    BnApply,
    BnGradReduce,
    BnGradFinal,
    BnGradApply,
    PoolForward,
    PoolBackward,
    AddForward,
    AddBackward,
    LazyRefresh,
    LazyGather,
    LazyNorm,
    LazySgd,
    LazyFinish,
    LazyCatchUp,
    LazySettle,
    LazyStamp,
}

impl Kernel {
    /// Every entry point; the naga test checks each exists in its shader.
    pub const ALL: [Kernel; 52] = [
        Kernel::MatmulRegtile,
        Kernel::MatmulShared,
        Kernel::MatmulWide,
        Kernel::MatmulThin,
        Kernel::MatmulCoop,
        Kernel::MatmulCoopDirect,
        Kernel::MatmulCoopTiled,
        Kernel::MatmulPack,
        Kernel::MatmulKpack,
        Kernel::MatmulNaive,
        Kernel::MatmulSplitReduce,
        Kernel::BiasAdd,
        Kernel::BiasGrad,
        Kernel::ReluForward,
        Kernel::ReluBackward,
        Kernel::DecodeBytes,
        Kernel::SoftmaxXentForward,
        Kernel::SoftmaxXentTrain,
        Kernel::ReducePartial,
        Kernel::ReduceFinal,
        Kernel::AccuracyCount,
        Kernel::SgdStep,
        Kernel::AdamStep,
        Kernel::AdamClip,
        Kernel::Fill,
        Kernel::MaskSample,
        Kernel::CompactKept,
        Kernel::ProjectScores,
        Kernel::GatherWeights,
        Kernel::ScatterBiasGrad,
        Kernel::ColumnPartials,
        Kernel::ScoreGrad,
        Kernel::Im2col,
        Kernel::Col2im,
        Kernel::BnStats,
        Kernel::BnStatsFinal,
        Kernel::BnApply,
        Kernel::BnGradReduce,
        Kernel::BnGradFinal,
        Kernel::BnGradApply,
        Kernel::PoolForward,
        Kernel::PoolBackward,
        Kernel::AddForward,
        Kernel::AddBackward,
        Kernel::LazyRefresh,
        Kernel::LazyGather,
        Kernel::LazyNorm,
        Kernel::LazySgd,
        Kernel::LazyFinish,
        Kernel::LazyCatchUp,
        Kernel::LazySettle,
        Kernel::LazyStamp,
    ];

    pub fn shader(self) -> Shader {
        match self {
            Kernel::MatmulRegtile
            | Kernel::MatmulShared
            | Kernel::MatmulWide
            | Kernel::MatmulThin
            | Kernel::MatmulNaive
            | Kernel::MatmulPack
            | Kernel::MatmulKpack
            | Kernel::MatmulSplitReduce => Shader::Matmul,
            Kernel::MatmulCoop | Kernel::MatmulCoopDirect | Kernel::MatmulCoopTiled => Shader::MatmulCoop,
            Kernel::BiasAdd | Kernel::BiasGrad => Shader::Bias,
            Kernel::ReluForward | Kernel::ReluBackward => Shader::Relu,
            Kernel::DecodeBytes => Shader::Decode,
            Kernel::SoftmaxXentForward | Kernel::SoftmaxXentTrain => Shader::SoftmaxXent,
            Kernel::ReducePartial | Kernel::ReduceFinal => Shader::Reduce,
            Kernel::AccuracyCount => Shader::Accuracy,
            Kernel::SgdStep | Kernel::AdamStep | Kernel::AdamClip => Shader::Optim,
            Kernel::Fill => Shader::Fill,
            Kernel::MaskSample => Shader::Mask,
            Kernel::CompactKept => Shader::Compact,
            Kernel::ProjectScores => Shader::Project,
            Kernel::GatherWeights | Kernel::ScatterBiasGrad | Kernel::ColumnPartials => Shader::Gather,
            Kernel::ScoreGrad => Shader::Vrpge,
            Kernel::Im2col | Kernel::Col2im => Shader::Conv,
            Kernel::BnStats
            | Kernel::BnStatsFinal
            | Kernel::BnApply
            | Kernel::BnGradReduce
            | Kernel::BnGradFinal
            | Kernel::BnGradApply => Shader::Batchnorm,
            Kernel::PoolForward | Kernel::PoolBackward => Shader::Pool,
            Kernel::AddForward | Kernel::AddBackward => Shader::Add,
            Kernel::LazyRefresh
            | Kernel::LazyGather
            | Kernel::LazyNorm
            | Kernel::LazySgd
            | Kernel::LazyFinish
            | Kernel::LazyCatchUp
            | Kernel::LazySettle
            | Kernel::LazyStamp => Shader::Lazy,
        }
    }

    /// The family a kernel's time is reported under in profiles.
    pub fn family(self) -> &'static str {
        match self {
            Kernel::MatmulRegtile
            | Kernel::MatmulShared
            | Kernel::MatmulWide
            | Kernel::MatmulThin
            | Kernel::MatmulCoop
            | Kernel::MatmulCoopDirect
            | Kernel::MatmulCoopTiled
            | Kernel::MatmulNaive
            | Kernel::MatmulSplitReduce => "matmul",
            Kernel::MatmulPack => "matmul f16 packs",
            Kernel::MatmulKpack => "matmul K-major packs",
            Kernel::GatherWeights | Kernel::LazyGather | Kernel::ScatterBiasGrad | Kernel::ColumnPartials => {
                "gather/scatter"
            }
            Kernel::CompactKept => "compaction",
            Kernel::MaskSample => "sampling",
            Kernel::ScoreGrad => "estimator",
            Kernel::ProjectScores => "projection",
            Kernel::SgdStep | Kernel::AdamStep | Kernel::AdamClip => "optimizer",
            Kernel::ReducePartial | Kernel::ReduceFinal => "reductions",
            Kernel::SoftmaxXentForward | Kernel::SoftmaxXentTrain | Kernel::AccuracyCount => "loss",
            Kernel::BiasAdd | Kernel::BiasGrad | Kernel::ReluForward | Kernel::ReluBackward | Kernel::Fill => {
                "elementwise"
            }
            Kernel::Im2col => "im2col",
            Kernel::Col2im => "col2im",
            Kernel::DecodeBytes => "input decode",
            Kernel::BnStats
            | Kernel::BnStatsFinal
            | Kernel::BnApply
            | Kernel::BnGradReduce
            | Kernel::BnGradFinal
            | Kernel::BnGradApply => "batchnorm",
            Kernel::PoolForward | Kernel::PoolBackward => "pooling",
            Kernel::AddForward | Kernel::AddBackward => "residual",
            Kernel::LazyNorm => "reductions",
            Kernel::LazyRefresh
            | Kernel::LazySgd
            | Kernel::LazyFinish
            | Kernel::LazyCatchUp
            | Kernel::LazySettle
            | Kernel::LazyStamp => "optimizer",
        }
    }

    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::MatmulRegtile => "matmul_regtile",
            Kernel::MatmulShared => "matmul_shared",
            Kernel::MatmulWide => "matmul_wide",
            Kernel::MatmulThin => "matmul_thin",
            Kernel::MatmulCoop => "matmul_coop",
            Kernel::MatmulCoopDirect => "matmul_coop_direct",
            Kernel::MatmulCoopTiled => "matmul_coop_tiled",
            Kernel::MatmulPack => "matmul_pack",
            Kernel::MatmulKpack => "matmul_kpack",
            Kernel::MatmulNaive => "matmul_naive",
            Kernel::MatmulSplitReduce => "matmul_split_reduce",
            Kernel::BiasAdd => "bias_add",
            Kernel::BiasGrad => "bias_grad",
            Kernel::ReluForward => "relu_forward",
            Kernel::ReluBackward => "relu_backward",
            Kernel::DecodeBytes => "decode_bytes",
            Kernel::SoftmaxXentForward => "softmax_xent_forward",
            Kernel::SoftmaxXentTrain => "softmax_xent_train",
            Kernel::ReducePartial => "reduce_partial",
            Kernel::ReduceFinal => "reduce_final",
            Kernel::AccuracyCount => "accuracy_count",
            Kernel::SgdStep => "sgd_step",
            Kernel::AdamStep => "adam_step",
            Kernel::AdamClip => "adam_clip",
            Kernel::Fill => "fill",
            Kernel::MaskSample => "mask_sample",
            Kernel::CompactKept => "compact_kept",
            Kernel::ProjectScores => "project_scores",
            Kernel::GatherWeights => "gather_weights",
            Kernel::ScatterBiasGrad => "scatter_bias_grad",
            Kernel::ColumnPartials => "column_partials",
            Kernel::ScoreGrad => "score_grad",
            Kernel::Im2col => "im2col",
            Kernel::Col2im => "col2im",
            Kernel::BnStats => "bn_stats",
            Kernel::BnStatsFinal => "bn_stats_final",
            Kernel::BnGradFinal => "bn_grad_final",
            Kernel::BnApply => "bn_apply",
            Kernel::BnGradReduce => "bn_grad_reduce",
            Kernel::BnGradApply => "bn_grad_apply",
            Kernel::PoolForward => "pool_forward",
            Kernel::PoolBackward => "pool_backward",
            Kernel::AddForward => "add_forward",
            Kernel::AddBackward => "add_backward",
            Kernel::LazyRefresh => "lazy_refresh",
            Kernel::LazyGather => "lazy_gather",
            Kernel::LazyNorm => "lazy_norm",
            Kernel::LazySgd => "lazy_sgd",
            Kernel::LazyFinish => "lazy_finish",
            Kernel::LazyCatchUp => "lazy_catch_up",
            Kernel::LazySettle => "lazy_settle",
            Kernel::LazyStamp => "lazy_stamp",
        }
    }
}

impl Variant {
    /// The variant's entry point.
    pub fn kernel(self) -> Kernel {
        match self {
            Variant::RegTile => Kernel::MatmulRegtile,
            Variant::Shared => Kernel::MatmulShared,
            Variant::Wide => Kernel::MatmulWide,
            Variant::Thin => Kernel::MatmulThin,
            Variant::Naive => Kernel::MatmulNaive,
            Variant::Coop => Kernel::MatmulCoop,
        }
    }
}

/// Override constants of one pipeline, as WGSL names and values.
pub type Constants = Vec<(&'static str, f64)>;

/// Workgroup counts for a 1-D kernel over `threads` threads with `wg` threads
/// per workgroup. Grids beyond `max_per_dim` workgroups fold into y; kernels
/// rebuild the flat index with `flat_id` (shaders/shared/common.wgsl).
pub fn grid_1d(threads: u32, wg: u32, max_per_dim: u32) -> UVec3 {
    let groups = threads.div_ceil(wg).max(1);
    if groups <= max_per_dim {
        UVec3::new(groups, 1, 1)
    } else {
        let y = groups.div_ceil(max_per_dim);
        UVec3::new(groups.div_ceil(y), y, 1)
    }
}

/// Workgroup counts for a 2-D kernel where each workgroup covers `tile`
/// (x, y) threads' worth of work.
pub fn grid_2d(x: u32, y: u32, tile: glam::UVec2) -> UVec3 {
    UVec3::new(x.div_ceil(tile.x).max(1), y.div_ceil(tile.y).max(1), 1)
}

/// Workgroups for `groups` pieces of work when kernels loop over them with a
/// stride of the launched count (a persistent grid): at most `cap`, folded
/// into y beyond `max_per_dim`.
pub fn capped_grid(groups: u32, cap: u32, max_per_dim: u32) -> UVec3 {
    let g = groups.min(cap).max(1);
    if g <= max_per_dim {
        UVec3::new(g, 1, 1)
    } else {
        let y = g.div_ceil(max_per_dim);
        UVec3::new(g.div_ceil(y), y, 1)
    }
}
