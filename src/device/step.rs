//! The step block: the few values that change between training steps (batch
//! size, step counter, learning rates, Adam's bias corrections). A recorded
//! plan binds one such uniform buffer at `STEP_BINDING` in every kernel that
//! reads it, and the host writes it once per step; every other kernel
//! parameter is written once, when the plan is built.

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

/// The binding number of the step block in every kernel.
pub const STEP_BINDING: u32 = 15;

/// Size codes (see `rows_of` in step.wgsl): `BATCH_ROWS | k` is the step's
/// batch times k rows per sample; `BATCH` is the batch itself.
pub const BATCH_ROWS: u32 = 0x8000_0000;
pub const BATCH: u32 = BATCH_ROWS | 1;

/// Bytes of the step block.
pub const STEP_BYTES: u64 = std::mem::size_of::<StepBlock>() as u64;

/// A uniform buffer holding one `StepBlock`.
#[derive(Clone, Debug)]
pub struct StepBuffer {
    pub(crate) buffer: Arc<wgpu::Buffer>,
}

impl StepBuffer {
    pub fn new(gpu: &Gpu) -> StepBuffer {
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step block"),
            size: STEP_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        StepBuffer { buffer: Arc::new(buffer) }
    }

    /// Queues the values for the next submitted work.
    pub fn write(&self, gpu: &Gpu, block: &StepBlock) {
        gpu.queue.write_buffer(&self.buffer, 0, bytemuck::bytes_of(block));
    }
}
