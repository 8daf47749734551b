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
    /// Whether the driver bounds every buffer access itself (Vulkan's
    /// robust buffer access, which wgpu enables): `runtime_checks` then
    /// leaves the matmuls' indices unchecked by default.
    robust_buffers: std::sync::atomic::AtomicBool,
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

    /// Records whether the device's driver bounds buffer accesses itself
    /// (`robust_backend`); set before any module is built.
    pub(crate) fn set_robust_buffers(&self, robust: bool) {
        self.robust_buffers.store(robust, std::sync::atomic::Ordering::SeqCst);
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
        let robust = self.robust_buffers.load(std::sync::atomic::Ordering::SeqCst);
        let raw = match runtime_checks(shader, robust)? {
            None => device.create_shader_module(desc),
            // SAFETY: `runtime_checks` drops the loop bound, and every loop
            // of our kernels ends; on robust drivers or where asked, the
            // matmuls' bounds checks, whose indices into workgroup and
            // private memory stay in range by construction (see there).
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
/// One is always left out but with `SPARSETRAIN_SHADER_CHECKS=all`: the
/// counter naga puts in every loop so that an infinite loop cannot hang a
/// driver (wgpu 25+). It costs an add and a compare per iteration and keeps
/// drivers from unrolling the register tiles' 4-step loops
/// (gfx-rs/wgpu#7698 measured a 100× slowdown of one compute pipeline);
/// every loop of our kernels ends (grid-stride loops over u32 counts far
/// below 2³², reductions halving a constant).
///
/// The matmul shaders (`matmul.wgsl`, `matmul_coop.wgsl`) also drop their
/// bounds checks where the driver bounds buffer accesses itself (`robust`:
/// Vulkan, whose robust buffer access wgpu enables wherever the device has
/// it, and every conformant Vulkan device has it: no access leaves its
/// buffer, though one past a binding may read or write elsewhere in the
/// same buffer; with robustness2, as on NVIDIA's driver and lavapipe, wgpu
/// leaves buffer indices to the driver anyway). What goes are the clamps
/// naga puts on every index into a fixed-size array, vector or matrix: the
/// inner loops' staged operands in workgroup memory, the register tiles.
/// On an H100 those clamps cost the dense 784-8192-8192-10 step 5% (27.37
/// against 26.01 ms, BENCHMARKS.md, nineteenth session). Those indices stay in range by
/// construction (they depend on the thread and the slice only; the kernel
/// tests compare every variant with the f64 reference, and CI runs them on
/// lavapipe's Vulkan without the checks), and the driver keeps the buffer
/// indices, which rely on the device's kept counts and maps, within each
/// buffer. Other backends (Metal, DX12, GL) keep every check, as does
/// every shader with `SPARSETRAIN_SHADER_CHECKS=checked`;
/// `matmul-unchecked` drops the matmuls' on any backend. The guard of
/// integer division stays in every case (a raw divide by zero traps on a
/// CPU adapter).
fn runtime_checks(shader: Shader, robust: bool) -> Result<Option<wgpu::ShaderRuntimeChecks>> {
    let matmul = matches!(shader, Shader::Matmul | Shader::MatmulCoop);
    Ok(checks_for(runtime_checks_env()?, matmul, robust))
}

/// `runtime_checks` for the asked mode, a matmul shader or not, on a
/// robust driver or not.
fn checks_for(asked: Checks, matmul: bool, robust: bool) -> Option<wgpu::ShaderRuntimeChecks> {
    let mut checks = wgpu::ShaderRuntimeChecks::checked();
    checks.force_loop_bounding = false;
    checks.bounds_checks = match asked {
        Checks::Default => !(matmul && robust),
        Checks::Checked => true,
        Checks::All => return None,
        Checks::MatmulUnchecked => !matmul,
    };
    Some(checks)
}

/// Whether `backend`'s driver bounds buffer accesses itself, as
/// `runtime_checks` relies on for the matmuls: Vulkan, where wgpu enables
/// robust buffer access (a feature every Vulkan device has).
pub(crate) fn robust_backend(backend: wgpu::Backend) -> bool {
    backend == wgpu::Backend::Vulkan
}

/// The values of `SPARSETRAIN_SHADER_CHECKS`.
pub(crate) enum Checks {
    Default,
    Checked,
    All,
    MatmulUnchecked,
}

/// `SPARSETRAIN_SHADER_CHECKS`, checked.
pub(crate) fn runtime_checks_env() -> Result<Checks> {
    let asked = std::env::var("SPARSETRAIN_SHADER_CHECKS").unwrap_or_default();
    match asked.trim() {
        "" => Ok(Checks::Default),
        "checked" => Ok(Checks::Checked),
        "all" => Ok(Checks::All),
        "matmul-unchecked" => Ok(Checks::MatmulUnchecked),
        _ => Err(Error::InvalidEnv {
            var: "SPARSETRAIN_SHADER_CHECKS",
            value: asked.clone(),
            expected: "checked, all or matmul-unchecked",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::{Checks, checks_for, robust_backend};

    /// (bounds checks, loop bound) of a mode, None for every check.
    fn of(asked: Checks, matmul: bool, robust: bool) -> Option<(bool, bool)> {
        checks_for(asked, matmul, robust).map(|c| (c.bounds_checks, c.force_loop_bounding))
    }

    #[test]
    fn matmuls_drop_bounds_checks_only_on_robust_drivers_or_when_asked() {
        // By default: the matmuls unchecked on a robust driver, every other
        // shader and every shader elsewhere checked; never the loop bound.
        assert_eq!(of(Checks::Default, true, true), Some((false, false)));
        assert_eq!(of(Checks::Default, true, false), Some((true, false)));
        assert_eq!(of(Checks::Default, false, true), Some((true, false)));
        assert_eq!(of(Checks::Checked, true, true), Some((true, false)));
        assert_eq!(of(Checks::MatmulUnchecked, true, false), Some((false, false)));
        assert_eq!(of(Checks::MatmulUnchecked, false, true), Some((true, false)));
        assert_eq!(of(Checks::All, true, true), None);
        assert!(robust_backend(wgpu::Backend::Vulkan));
        for b in [wgpu::Backend::Metal, wgpu::Backend::Dx12, wgpu::Backend::Gl] {
            assert!(!robust_backend(b), "{b:?}");
        }
    }
}
