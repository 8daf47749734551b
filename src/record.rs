//! Recording GPU work. A `Recorder` collects dispatches and copies into one
//! command encoder and submits them together. Kernel parameters go into one
//! uniform arena per recording, written once at submit time, so a training
//! step allocates no buffers and makes one queue write for all its params.

use bytemuck::Pod;
use glam::UVec3;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shader::{Constants, Kernel};
use crate::tensor::Tensor;

/// Size of one params arena. A recording that outgrows it is flushed
/// (submitted) and continues in the same arena; queue order keeps that safe.
const ARENA_BYTES: u64 = 64 * 1024;

pub struct Recorder<'g> {
    gpu: &'g Gpu,
    encoder: Option<wgpu::CommandEncoder>,
    arena: Option<wgpu::Buffer>,
    params: Vec<u8>,
    align: usize,
    dispatches: usize,
    profile: Option<Profile>,
}

/// Begin/end timestamps of every dispatch of a profiled recording.
struct Profile {
    queries: wgpu::QuerySet,
    kernels: Vec<Kernel>,
}

/// Most dispatches one profiled recording may time.
const MAX_PROFILED: u32 = 2048;

impl<'g> Recorder<'g> {
    pub fn new(gpu: &'g Gpu) -> Recorder<'g> {
        let arena = gpu.params_pool.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_else(|| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params arena"),
                size: ARENA_BYTES,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Recorder {
            gpu,
            encoder: None,
            arena: Some(arena),
            params: Vec::new(),
            align: gpu.limits().min_uniform_buffer_offset_alignment as usize,
            dispatches: 0,
            profile: None,
        }
    }

    /// A recorder that timestamps every dispatch (see `finish_profiled`).
    /// Fails if the device has no timestamp queries.
    pub fn profiled(gpu: &'g Gpu) -> Result<Recorder<'g>> {
        if !gpu.has_timestamps() {
            return Err(Error::InvalidArgument(format!("{} offers no timestamp queries", gpu.report().name)));
        }
        let mut rec = Recorder::new(gpu);
        rec.profile = Some(Profile {
            queries: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * MAX_PROFILED,
            }),
            kernels: Vec::new(),
        });
        Ok(rec)
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Dispatches recorded so far (for tests and statistics).
    pub fn dispatches(&self) -> usize {
        self.dispatches
    }

    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        let gpu = self.gpu;
        self.encoder.get_or_insert_with(|| {
            gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("sparsetrain") })
        })
    }

    /// Records one dispatch of `kernel`. `params` is bound at `params_binding`,
    /// each tensor at the binding number given with it.
    pub fn dispatch<P: Pod>(
        &mut self,
        kernel: Kernel,
        constants: &Constants,
        params: (u32, &P),
        tensors: &[(u32, &Tensor)],
        groups: UVec3,
    ) -> Result<()> {
        let limit = self.gpu.limits().max_compute_workgroups_per_dimension;
        if groups.max_element() > limit {
            return Err(Error::TooLarge {
                what: format!("dispatch of {} with grid {groups}", kernel.entry_point()),
                bytes: groups.max_element() as u64,
                limit_name: "max_compute_workgroups_per_dimension",
                limit: limit as u64,
            });
        }
        let pipeline = self.gpu.pipeline(kernel, constants)?;
        let bytes = bytemuck::bytes_of(params.1);
        let offset = self.params.len().div_ceil(self.align) * self.align;
        if offset + bytes.len() > ARENA_BYTES as usize {
            self.flush();
            return self.dispatch(kernel, constants, params, tensors, groups);
        }
        self.params.resize(offset, 0);
        self.params.extend_from_slice(bytes);
        let arena = self.arena.as_ref().expect("arena present until drop");
        let mut entries = Vec::with_capacity(tensors.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: params.0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: arena,
                offset: offset as u64,
                size: wgpu::BufferSize::new(bytes.len() as u64),
            }),
        });
        for (binding, t) in tensors {
            entries.push(wgpu::BindGroupEntry { binding: *binding, resource: t.binding() });
        }
        let bind_group = self.gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.entry_point()),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let slot = match &mut self.profile {
            Some(p) if (p.kernels.len() as u32) < MAX_PROFILED => {
                p.kernels.push(kernel);
                Some(p.kernels.len() as u32 - 1)
            }
            _ => None,
        };
        let gpu = self.gpu;
        let encoder = self.encoder.get_or_insert_with(|| {
            gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("sparsetrain") })
        });
        let timestamp_writes = match (&self.profile, slot) {
            (Some(p), Some(i)) => Some(wgpu::ComputePassTimestampWrites {
                query_set: &p.queries,
                beginning_of_pass_write_index: Some(2 * i),
                end_of_pass_write_index: Some(2 * i + 1),
            }),
            _ => None,
        };
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(kernel.entry_point()), timestamp_writes });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups.x, groups.y, groups.z);
        drop(pass);
        self.dispatches += 1;
        Ok(())
    }

    pub(crate) fn copy(&mut self, src: &wgpu::Buffer, src_off: u64, dst: &wgpu::Buffer, dst_off: u64, bytes: u64) {
        if bytes > 0 {
            self.encoder().copy_buffer_to_buffer(src, src_off, dst, dst_off, bytes);
        }
    }

    /// Submits what has been recorded so far and keeps recording.
    fn flush(&mut self) {
        if let Some(enc) = self.encoder.take() {
            let arena = self.arena.as_ref().expect("arena present until drop");
            if !self.params.is_empty() {
                self.gpu.queue.write_buffer(arena, 0, &self.params);
            }
            self.gpu.queue.submit([enc.finish()]);
        }
        self.params.clear();
    }

    /// Submits everything recorded, without waiting for it to finish.
    pub fn submit(mut self) -> Result<()> {
        self.flush();
        self.gpu.check()
    }

    /// Submits, waits, and returns each timed dispatch's kernel and GPU
    /// seconds (a counted read-back of the timestamps).
    pub fn finish_profiled(mut self) -> Result<Vec<(Kernel, f64)>> {
        let gpu = self.gpu;
        let Some(profile) = self.profile.take() else {
            return Err(Error::InvalidArgument("finish_profiled on a recorder made without `profiled`".into()));
        };
        let n = profile.kernels.len() as u32;
        if n == 0 {
            self.finish()?;
            return Ok(Vec::new());
        }
        let bytes = 16 * u64::from(n);
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        self.encoder().resolve_query_set(&profile.queries, 0..2 * n, &resolve, 0);
        self.finish()?;
        let ticks: Vec<u64> = bytemuck::cast_slice(&gpu.read_back(&resolve, 0, bytes)?).to_vec();
        let period = f64::from(gpu.queue.get_timestamp_period()) * 1e-9;
        Ok(profile
            .kernels
            .iter()
            .zip(ticks.chunks(2))
            .map(|(k, t)| (*k, t[1].saturating_sub(t[0]) as f64 * period))
            .collect())
    }

    /// Submits and waits until the device has finished the work.
    pub fn finish(self) -> Result<()> {
        let gpu = self.gpu;
        self.submit()?;
        gpu.wait()
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        // Unsubmitted work is discarded; the arena goes back to the pool.
        if let Some(arena) = self.arena.take() {
            self.gpu.params_pool.lock().unwrap_or_else(|p| p.into_inner()).push(arena);
        }
    }
}
