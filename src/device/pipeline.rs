//! Compiled pipelines: each shader module parsed and compiled once per
//! device with the runtime checks we choose (`runtime_checks`), and one
//! pipeline per kernel, override constants and dynamic bindings, its layout
//! read from the shader (`layout.rs`). The registry of shaders and kernels
//! is `shader.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::device::layout::{Use, layout_entries, step_uses_offsets, used_bindings};
use crate::device::shader::{Kernel, Shader};
use crate::error::{Error, Result};

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
    /// The side of `matmul_coop`'s cooperative matrices on this device
    /// (0 where it has none: the 16 × 16 source, for bindings only).
    coop_frag: std::sync::atomic::AtomicU32,
}

impl PipelineCache {
    /// Sets the side of the cooperative matrices `matmul_coop.wgsl` is
    /// built for. A change drops its module and pipelines built for the old
    /// side, so that no later recording pairs them with tiles sized for the
    /// new one (plans recorded before keep theirs, consistent with their
    /// own tiles).
    pub(crate) fn set_coop_frag(&self, frag: u32) {
        let old = self.coop_frag.swap(frag, std::sync::atomic::Ordering::SeqCst);
        if old != frag {
            self.modules.lock().expect("module cache poisoned").remove(&Shader::MatmulCoop);
            self.pipelines
                .lock()
                .expect("pipeline cache poisoned")
                .retain(|key, _| key.0.shader() != Shader::MatmulCoop);
        }
    }

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
        let source = match (shader, self.coop_frag.load(std::sync::atomic::Ordering::SeqCst)) {
            (Shader::MatmulCoop, frag) if frag != 0 => crate::device::shader::coop_source(frag)?,
            _ => shader.source()?,
        };
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
