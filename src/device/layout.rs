//! Pipeline layouts from the shaders themselves: which group-0 bindings an
//! entry point statically uses, and how (naga's reflection, the front end
//! wgpu compiles with). Layouts are explicit rather than derived by wgpu so
//! that the step block, and tensors with a slot per step of a run
//! (`Tensor::slotted`), are bound with dynamic offsets.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// The binding number of the step block in every kernel.
pub const STEP_BINDING: u32 = 15;

/// How an entry point uses one group-0 binding, and the least bytes a
/// binding must have (the type's size; one element of a runtime-sized
/// array), as wgpu's derived layouts take them: with the size in the layout
/// wgpu checks it when a bind group is made rather than at every dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Uniform { min: u64 },
    Storage { read_only: bool, min: u64 },
}

/// The group-0 bindings each entry point of `source` statically uses, as
/// naga (the front end wgpu compiles with) sees them, with their kind.
pub fn used_bindings(source: &str, file: &'static str) -> Result<HashMap<String, Vec<(u32, Use)>>> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| Error::Shader { shader: file, detail: e.emit_to_string(source) })?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .map_err(|e| Error::Shader { shader: file, detail: e.emit_to_string(source) })?;
    let mut out = HashMap::new();
    for (i, ep) in module.entry_points.iter().enumerate() {
        let fi = info.get_entry_point(i);
        let mut used = Vec::new();
        for (h, g) in module.global_variables.iter() {
            let Some(b) = g.binding.as_ref().filter(|b| b.group == 0 && !fi[h].is_empty()) else { continue };
            let min = u64::from(module.types[g.ty].inner.size(module.to_ctx()));
            let kind = match g.space {
                naga::AddressSpace::Uniform => Use::Uniform { min },
                naga::AddressSpace::Storage { access } => {
                    Use::Storage { read_only: !access.contains(naga::StorageAccess::STORE), min }
                }
                other => {
                    return Err(Error::Shader {
                        shader: file,
                        detail: format!("{}: binding {} in address space {other:?}", ep.name, b.binding),
                    });
                }
            };
            used.push((b.binding, kind));
        }
        used.sort_unstable_by_key(|u| u.0);
        out.insert(ep.name.clone(), used);
    }
    Ok(out)
}

/// The group-0 layout of an entry point using `uses`, with dynamic offsets
/// at the bindings set in `dynamic` and, where `step_dynamic`, at
/// `STEP_BINDING` (`step_uses_offsets`).
pub(crate) fn layout_entries(uses: &[(u32, Use)], dynamic: u32, step_dynamic: bool) -> Vec<wgpu::BindGroupLayoutEntry> {
    uses.iter()
        .map(|&(binding, u)| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match u {
                    Use::Uniform { .. } => wgpu::BufferBindingType::Uniform,
                    Use::Storage { read_only, .. } => wgpu::BufferBindingType::Storage { read_only },
                },
                has_dynamic_offset: (binding == STEP_BINDING && step_dynamic)
                    || (binding < 32 && dynamic & (1 << binding) != 0),
                min_binding_size: match u {
                    Use::Uniform { min } | Use::Storage { min, .. } => wgpu::BufferSize::new(min),
                },
            },
            count: None,
        })
        .collect()
}

/// Whether the step block is bound with a dynamic offset on a device with
/// `limits`: everywhere but on a device shared by an application that
/// allows no dynamic uniform offsets, where every run is one step long.
pub(crate) fn step_uses_offsets(limits: &wgpu::Limits) -> bool {
    limits.max_dynamic_uniform_buffers_per_pipeline_layout > 0
}
