//! The step block: the few values that change between training steps (batch
//! size, step counter, learning rates, Adam's bias corrections). A recorded
//! plan binds one such uniform buffer at `STEP_BINDING` in every kernel that
//! reads it, and the host writes it once per step; every other kernel
//! parameter is written once, when the plan is built. A run of steps
//! submitted together (`Plan::run_chunk`) writes all its blocks at once,
//! one slot each, and each replay binds its slot by a dynamic offset.

use std::sync::Arc;

use crate::device::gpu::Gpu;

/// Keep in sync with `StepBlock` in shaders/shared/step.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepBlock {
    pub batch: u32,
    pub step: u32,
    pub lr: f32,
    pub score_lr: f32,
    pub adam_c1: f32,
    pub adam_c2: f32,
    pub global: u32,
    pub _pad: u32,
}

/// The binding number of the step block in every kernel (defined with the
/// pipelines, whose layouts give it a dynamic offset).
pub use crate::device::layout::STEP_BINDING;

/// Size codes (see `rows_of` in step.wgsl): `BATCH_ROWS | k` is the step's
/// batch times k rows per sample; `BATCH` is the batch itself.
pub const BATCH_ROWS: u32 = 0x8000_0000;
pub const BATCH: u32 = BATCH_ROWS | 1;

/// Bytes of the step block.
pub const STEP_BYTES: u64 = std::mem::size_of::<StepBlock>() as u64;

/// Most step blocks one `StepBuffer` holds: the longest run of steps
/// submitted together (`Plan::run_chunk`).
pub const STEP_SLOTS: usize = 16;

/// A uniform buffer of `STEP_SLOTS` step blocks, one per step of a run
/// submitted together, `stride` bytes apart (the device's uniform offset
/// alignment). Kernels bind one block with a dynamic offset; a lone step
/// uses slot 0.
#[derive(Clone, Debug)]
pub struct StepBuffer {
    pub(crate) buffer: Arc<wgpu::Buffer>,
    pub(crate) stride: u64,
}

impl StepBuffer {
    pub fn new(gpu: &Gpu) -> StepBuffer {
        let stride = Self::stride(gpu);
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step blocks"),
            size: stride * STEP_SLOTS as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        StepBuffer { buffer: Arc::new(buffer), stride }
    }

    /// Bytes between slots on `gpu`.
    pub(crate) fn stride(gpu: &Gpu) -> u64 {
        let align = u64::from(gpu.limits().min_uniform_buffer_offset_alignment).max(1);
        STEP_BYTES.div_ceil(align) * align
    }

    /// Queues the values of a lone step (slot 0) for the next submitted work.
    pub fn write(&self, gpu: &Gpu, block: &StepBlock) {
        gpu.queue.write_buffer(&self.buffer, 0, bytemuck::bytes_of(block));
    }

    /// Queues `blocks` into slots 0.. with one write (at most `STEP_SLOTS`).
    pub(crate) fn write_slots(&self, gpu: &Gpu, blocks: &[StepBlock]) {
        let stride = self.stride as usize;
        let mut image = vec![0u8; stride * blocks.len().saturating_sub(1) + STEP_BYTES as usize];
        for (j, b) in blocks.iter().take(STEP_SLOTS).enumerate() {
            image[j * stride..j * stride + STEP_BYTES as usize].copy_from_slice(bytemuck::bytes_of(b));
        }
        if !blocks.is_empty() {
            gpu.queue.write_buffer(&self.buffer, 0, &image);
        }
    }

    /// One block, bound with a dynamic offset.
    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: 0,
            size: wgpu::BufferSize::new(STEP_BYTES),
        })
    }
}
