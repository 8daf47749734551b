//! What an adapter offers and what was opened: the mixed-precision path's
//! cooperative matrices and subgroups (`CoopSupport`), and the report that
//! `sparsetrain info` and benchmark headers print (`AdapterReport`).

use std::fmt;

use crate::device::shader::coop_features;

/// What the mixed-precision path found on an adapter: cooperative matrices
/// of f16 inputs with f32 accumulation, 16 × 16 × 16 (GPUs' tensor cores)
/// or else 8 × 8 × 8 (lavapipe of Mesa 26, not yet of 25.0, which lets the CPU test
/// the kernels), and a fixed subgroup width (the workgroup of `matmul_coop`
/// is sized in whole subgroups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopSupport {
    pub subgroup: u32,
    /// The side of the cooperative matrices: 16 or 8.
    pub frag: u32,
}

impl CoopSupport {
    /// Why an adapter has no mixed-precision path, or what it offers.
    pub fn probe(adapter: &wgpu::Adapter) -> std::result::Result<CoopSupport, String> {
        let info = adapter.get_info();
        let missing = coop_features() - adapter.features();
        if !missing.is_empty() {
            return Err(format!("adapter {:?} lacks {missing:?}", info.name));
        }
        let props = adapter.cooperative_matrix_properties();
        let offers = |side: u32| {
            props.iter().any(|p| {
                (p.m_size, p.n_size, p.k_size) == (side, side, side)
                    && p.ab_type == wgpu::CooperativeScalarType::F16
                    && p.cr_type == wgpu::CooperativeScalarType::F32
            })
        };
        let Some(frag) = [16, 8].into_iter().find(|&side| offers(side)) else {
            return Err(format!(
                "adapter {:?} offers no 16x16x16 or 8x8x8 cooperative matrix of f16 inputs with f32 accumulation",
                info.name
            ));
        };
        CoopSupport::from_info(&info, frag)
    }

    pub(crate) fn from_info(info: &wgpu::AdapterInfo, frag: u32) -> std::result::Result<CoopSupport, String> {
        if info.subgroup_min_size != info.subgroup_max_size || info.subgroup_min_size == 0 {
            return Err(format!(
                "adapter {:?} has subgroups of {} to {} invocations; the mixed-precision matmul needs a fixed width",
                info.name, info.subgroup_min_size, info.subgroup_max_size
            ));
        }
        Ok(CoopSupport { subgroup: info.subgroup_min_size, frag })
    }
}

/// What was opened, for `sparsetrain info` and benchmark headers.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
    pub driver_info: String,
    pub limits: wgpu::Limits,
    /// The mixed-precision path, or why there is none.
    pub coop: std::result::Result<CoopSupport, String>,
}

impl fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.limits;
        writeln!(f, "adapter:      {}", self.name)?;
        writeln!(f, "backend:      {:?}", self.backend)?;
        writeln!(f, "device type:  {:?}", self.device_type)?;
        writeln!(f, "driver:       {} {}", self.driver, self.driver_info)?;
        match &self.coop {
            Ok(c) => writeln!(
                f,
                "precision:    f32, mixed (cooperative matrices of {0}x{0}x{0}, subgroups of {1})",
                c.frag, c.subgroup
            )?,
            Err(why) => writeln!(f, "precision:    f32 only ({why})")?,
        }
        writeln!(f, "limits:")?;
        writeln!(f, "  max_buffer_size                       {}", l.max_buffer_size)?;
        writeln!(f, "  max_storage_buffer_binding_size       {}", l.max_storage_buffer_binding_size)?;
        writeln!(f, "  max_storage_buffers_per_shader_stage  {}", l.max_storage_buffers_per_shader_stage)?;
        writeln!(f, "  max_compute_workgroup_storage_size    {}", l.max_compute_workgroup_storage_size)?;
        writeln!(f, "  max_compute_invocations_per_workgroup {}", l.max_compute_invocations_per_workgroup)?;
        writeln!(
            f,
            "  max_compute_workgroup_size            {} x {} x {}",
            l.max_compute_workgroup_size_x, l.max_compute_workgroup_size_y, l.max_compute_workgroup_size_z
        )?;
        writeln!(f, "  max_compute_workgroups_per_dimension  {}", l.max_compute_workgroups_per_dimension)?;
        write!(f, "  min_uniform_buffer_offset_alignment   {}", l.min_uniform_buffer_offset_alignment)
    }
}
