//! Kernel registry: the WGSL sources in `shaders/`, their entry points, the
//! resolution of `//#include` lines, pipeline caching keyed by (kernel,
//! override constants) with the bindings each entry point uses, the matmul
//! variants a device may choose between, and the helpers that turn thread
//! counts into dispatch grids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use glam::UVec3;

use crate::device::layout::{Use, layout_entries, step_uses_offsets, used_bindings};
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
    pub const ALL: [Shader; 19] = [
        Shader::Matmul,
        Shader::MatmulCoop,
        Shader::Bias,
        Shader::Relu,
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
pub const SHARED: [(&str, &str); 7] = [
    ("common", include_str!("../../shaders/shared/common.wgsl")),
    ("rng", include_str!("../../shaders/shared/rng.wgsl")),
    ("step", include_str!("../../shaders/shared/step.wgsl")),
    ("clip", include_str!("../../shaders/shared/clip.wgsl")),
    ("matmul_core", include_str!("../../shaders/shared/matmul_core.wgsl")),
    ("matmul_implicit", include_str!("../../shaders/shared/matmul_implicit.wgsl")),
    ("matmul_wide", include_str!("../../shaders/shared/matmul_wide.wgsl")),
];

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
    MatmulCoop,
    MatmulNaive,
    MatmulSplitReduce,
    BiasAdd,
    BiasGrad,
    ReluForward,
    ReluBackward,
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
    LazyNorm,
    LazySgd,
    LazyCatchUp,
}

impl Kernel {
    /// Every entry point; the naga test checks each exists in its shader.
    pub const ALL: [Kernel; 42] = [
        Kernel::MatmulRegtile,
        Kernel::MatmulShared,
        Kernel::MatmulWide,
        Kernel::MatmulCoop,
        Kernel::MatmulNaive,
        Kernel::MatmulSplitReduce,
        Kernel::BiasAdd,
        Kernel::BiasGrad,
        Kernel::ReluForward,
        Kernel::ReluBackward,
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
        Kernel::LazyNorm,
        Kernel::LazySgd,
        Kernel::LazyCatchUp,
    ];

    pub fn shader(self) -> Shader {
        match self {
            Kernel::MatmulRegtile
            | Kernel::MatmulShared
            | Kernel::MatmulWide
            | Kernel::MatmulNaive
            | Kernel::MatmulSplitReduce => Shader::Matmul,
            Kernel::MatmulCoop => Shader::MatmulCoop,
            Kernel::BiasAdd | Kernel::BiasGrad => Shader::Bias,
            Kernel::ReluForward | Kernel::ReluBackward => Shader::Relu,
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
            Kernel::LazyRefresh | Kernel::LazyNorm | Kernel::LazySgd | Kernel::LazyCatchUp => Shader::Lazy,
        }
    }

    /// The family a kernel's time is reported under in profiles.
    pub fn family(self) -> &'static str {
        match self {
            Kernel::MatmulRegtile
            | Kernel::MatmulShared
            | Kernel::MatmulWide
            | Kernel::MatmulCoop
            | Kernel::MatmulNaive
            | Kernel::MatmulSplitReduce => "matmul",
            Kernel::GatherWeights | Kernel::ScatterBiasGrad | Kernel::ColumnPartials => "gather/scatter",
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
            Kernel::BnStats
            | Kernel::BnStatsFinal
            | Kernel::BnApply
            | Kernel::BnGradReduce
            | Kernel::BnGradFinal
            | Kernel::BnGradApply => "batchnorm",
            Kernel::PoolForward | Kernel::PoolBackward => "pooling",
            Kernel::AddForward | Kernel::AddBackward => "residual",
            Kernel::LazyNorm => "reductions",
            Kernel::LazyRefresh | Kernel::LazySgd | Kernel::LazyCatchUp => "optimizer",
        }
    }

    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::MatmulRegtile => "matmul_regtile",
            Kernel::MatmulShared => "matmul_shared",
            Kernel::MatmulWide => "matmul_wide",
            Kernel::MatmulCoop => "matmul_coop",
            Kernel::MatmulNaive => "matmul_naive",
            Kernel::MatmulSplitReduce => "matmul_split_reduce",
            Kernel::BiasAdd => "bias_add",
            Kernel::BiasGrad => "bias_grad",
            Kernel::ReluForward => "relu_forward",
            Kernel::ReluBackward => "relu_backward",
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
            Kernel::LazyNorm => "lazy_norm",
            Kernel::LazySgd => "lazy_sgd",
            Kernel::LazyCatchUp => "lazy_catch_up",
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
            Variant::Naive => Kernel::MatmulNaive,
            Variant::Coop => Kernel::MatmulCoop,
        }
    }
}

/// Override constants of one pipeline, as WGSL names and values.
pub type Constants = Vec<(&'static str, f64)>;

/// A pipeline is keyed by its kernel, its override constants and the
/// storage bindings it binds with dynamic offsets (a bit per binding).
type PipelineKey = (Kernel, Vec<(&'static str, u64)>, u32);

/// A compiled pipeline with the bindings of group 0 its entry point uses.
/// Each pipeline has a layout of exactly the bindings its entry point
/// statically uses (as wgpu's derived layouts do), so recordings filter
/// what launchers offer through `bindings`. The step block at
/// `STEP_BINDING` has a dynamic offset: a run of steps submitted together
/// selects each step's block with it, without copies (`Plan::run_chunk`).
pub struct Pipeline {
    pub(crate) raw: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    pub(crate) bindings: Vec<u32>,
}

/// A shader module with, per entry point, the group-0 bindings it uses.
struct Module {
    raw: wgpu::ShaderModule,
    uses: HashMap<String, Vec<(u32, Use)>>,
}

/// Compiled shader modules and pipelines, created on first use and kept for
/// the life of the device.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<Shader, Arc<Module>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

impl PipelineCache {
    /// The group-0 bindings `kernel`'s entry point uses (its module parsed
    /// once; nothing compiled).
    pub(crate) fn bindings(&self, device: &wgpu::Device, kernel: Kernel) -> Result<Vec<(u32, Use)>> {
        let module = self.module(device, kernel.shader())?;
        let uses = module.uses.get(kernel.entry_point()).ok_or_else(|| Error::Shader {
            shader: kernel.shader().file_name(),
            detail: format!("no entry point {}", kernel.entry_point()),
        })?;
        Ok(uses.clone())
    }

    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        constants: &[(&'static str, f64)],
        dynamic: u32,
    ) -> Result<Arc<Pipeline>> {
        let key: PipelineKey = (kernel, constants.iter().map(|(n, v)| (*n, v.to_bits())).collect(), dynamic);
        if let Some(p) = self.pipelines.lock().expect("pipeline cache poisoned").get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(device, kernel.shader())?;
        let uses = module.uses.get(kernel.entry_point()).ok_or_else(|| Error::Shader {
            shader: kernel.shader().file_name(),
            detail: format!("no entry point {}", kernel.entry_point()),
        })?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(kernel.entry_point()),
            entries: &layout_entries(uses, dynamic, step_uses_offsets(&device.limits())),
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.entry_point()),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let raw = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry_point()),
            layout: Some(&pipeline_layout),
            module: &module.raw,
            entry_point: Some(kernel.entry_point()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader {
                shader: kernel.shader().file_name(),
                detail: format!("{}: {err}", kernel.entry_point()),
            });
        }
        let bindings = uses.iter().map(|u| u.0).collect();
        let pipeline = Arc::new(Pipeline { raw, layout, bindings });
        self.pipelines.lock().expect("pipeline cache poisoned").insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(&self, device: &wgpu::Device, shader: Shader) -> Result<Arc<Module>> {
        if let Some(m) = self.modules.lock().expect("module cache poisoned").get(&shader) {
            return Ok(m.clone());
        }
        let source = shader.source()?;
        let uses = used_bindings(&source, shader.file_name())?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(shader.file_name()),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let raw = match runtime_checks(shader)? {
            None => device.create_shader_module(desc),
            // SAFETY: `runtime_checks` drops the loop bound, and every loop
            // of our kernels ends; where asked, the matmuls' bounds checks,
            // whose indices stay in range by construction (see there).
            Some(checks) => unsafe { device.create_shader_module_trusted(desc, checks) },
        };
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader { shader: shader.file_name(), detail: err.to_string() });
        }
        let module = Arc::new(Module { raw, uses });
        self.modules.lock().expect("module cache poisoned").insert(shader, module.clone());
        Ok(module)
    }
}

/// The runtime checks naga adds to our kernels, or None for all of them.
/// By default one is left out: the counter naga puts in every loop so that
/// an infinite loop cannot hang a driver (wgpu 25+). It costs an add and a
/// compare per iteration and keeps drivers from unrolling the register
/// tiles' 4-step loops (gfx-rs/wgpu#7698 measured a 100× slowdown of one
/// compute pipeline); every loop of our kernels ends (grid-stride loops
/// over u32 counts far below 2³², reductions halving a constant). Bounds
/// checks and the guard of integer division stay (a raw divide by zero
/// traps on a CPU adapter). `SPARSETRAIN_SHADER_CHECKS=all` keeps them all.
///
/// `SPARSETRAIN_SHADER_CHECKS=matmul-unchecked` also drops the bounds
/// checks of the matmul shaders (`matmul.wgsl`, `matmul_coop.wgsl`): on
/// Vulkan naga clamps every index into a fixed-size array, vector or matrix
/// (the inner loop's staged operands in workgroup memory, the register
/// tiles) and, without robust buffer access 2, every buffer index. The
/// workgroup and register indices stay in range by construction (they
/// depend on the thread and the slice only; the kernel tests compare every
/// variant with the f64 reference). The buffer indices rely on the device's
/// kept counts and maps being consistent, which the engine's own compaction
/// writes: a corrupt count could then read or write out of bounds where
/// the driver has no robustness of its own. Hence an experiment for GPUs,
/// not the default.
fn runtime_checks(shader: Shader) -> Result<Option<wgpu::ShaderRuntimeChecks>> {
    let mut checks = wgpu::ShaderRuntimeChecks::checked();
    checks.force_loop_bounding = false;
    match runtime_checks_env()? {
        Checks::Default => Ok(Some(checks)),
        Checks::All => Ok(None),
        Checks::MatmulUnchecked => {
            if matches!(shader, Shader::Matmul | Shader::MatmulCoop) {
                checks.bounds_checks = false;
            }
            Ok(Some(checks))
        }
    }
}

/// The values of `SPARSETRAIN_SHADER_CHECKS`.
pub(crate) enum Checks {
    Default,
    All,
    MatmulUnchecked,
}

/// `SPARSETRAIN_SHADER_CHECKS`, checked.
pub(crate) fn runtime_checks_env() -> Result<Checks> {
    let asked = std::env::var("SPARSETRAIN_SHADER_CHECKS").unwrap_or_default();
    match asked.trim() {
        "" => Ok(Checks::Default),
        "all" => Ok(Checks::All),
        "matmul-unchecked" => Ok(Checks::MatmulUnchecked),
        _ => Err(Error::InvalidEnv {
            var: "SPARSETRAIN_SHADER_CHECKS",
            value: asked.clone(),
            expected: "all or matmul-unchecked",
        }),
    }
}

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
