//! Recording GPU work. A `Recorder` turns every dispatch into data once: its
//! pipeline, its bind group (kernel parameters sit in uniform arenas owned
//! by the recording) and its grid. The recording is then either submitted at
//! once (`submit`, `finish`) or kept as a `Plan`, which a training loop
//! replays every step: one compute pass for all dispatches (wgpu inserts the
//! barriers each dispatch needs), one submit, and no per-step allocation.
//! What changes between steps comes from the step block (`device::step`);
//! a run of steps submitted together (`Plan::run_chunk`) gives each replay
//! its own slot of the step blocks and of slotted tensors (the batch) by
//! dynamic offsets.

use std::sync::Arc;

use bytemuck::Pod;
use glam::UVec3;

use crate::device::gpu::Gpu;
use crate::device::layout::{Use, step_uses_offsets};
use crate::device::pipeline::Pipeline;
use crate::device::shader::{Constants, Kernel};
use crate::device::step::{STEP_BINDING, STEP_SLOTS, StepBlock, StepBuffer};
use crate::device::tensor::Tensor;
use crate::error::{Error, Result};

/// Size of one params arena; a recording uses as many as it fills.
const ARENA_BYTES: u64 = 64 * 1024;

/// Most dispatches one profiled run times.
const MAX_PROFILED: usize = 4096;

struct Arena {
    buffer: wgpu::Buffer,
    bytes: Vec<u8>,
}

/// Most bindings of one dispatch with dynamic offsets.
const MAX_DYNAMIC: usize = 4;

struct Dispatch {
    kernel: Kernel,
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    groups: UVec3,
    /// The slot strides (bytes) of the bindings with dynamic offsets, in
    /// binding order: the step block and slotted tensors. Replay j of a run
    /// offsets each by j strides.
    strides: Vec<u64>,
}

impl Dispatch {
    /// Records this dispatch of replay `replay` into `pass`, setting its
    /// pipeline unless `last` was it.
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, replay: usize, last: &mut Option<*const Pipeline>) {
        let p = Arc::as_ptr(&self.pipeline);
        if *last != Some(p) {
            pass.set_pipeline(&self.pipeline.raw);
            *last = Some(p);
        }
        let mut offsets = [0u32; MAX_DYNAMIC];
        for (o, s) in offsets.iter_mut().zip(&self.strides) {
            // Slotted buffers end below 2^32 + a stride (`Tensor::slotted`).
            debug_assert!(replay as u64 * s <= u64::from(u32::MAX));
            *o = (replay as u64 * s) as u32;
        }
        pass.set_bind_group(0, &self.bind_group, &offsets[..self.strides.len()]);
        pass.dispatch_workgroups(self.groups.x, self.groups.y, self.groups.z);
    }
}

enum Op {
    Dispatch(Dispatch),
    Copy { src: Arc<wgpu::Buffer>, src_off: u64, dst: Arc<wgpu::Buffer>, dst_off: u64, bytes: u64 },
}

/// Collects dispatches and copies; see the module header.
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    ops: Vec<Op>,
    arenas: Vec<Arena>,
    step: StepBuffer,
    align: usize,
    /// Fewest slots of a slotted tensor recorded (`usize::MAX`: none).
    slots: usize,
    /// The step block is the device's shared one, all zeros (`new`).
    shared_step: bool,
}

impl<'g> Recorder<'g> {
    /// A recording whose kernels read the device's default step block (all
    /// zeros): for work whose sizes are all fixed.
    pub fn new(gpu: &'g Gpu) -> Recorder<'g> {
        let buffer = gpu.default_step.get_or_init(|| StepBuffer::new(gpu).buffer).clone();
        let mut rec = Recorder::with_step(gpu, &StepBuffer { buffer, stride: StepBuffer::stride(gpu) });
        rec.shared_step = true;
        rec
    }

    /// A recording whose kernels read `step` at `STEP_BINDING`.
    pub fn with_step(gpu: &'g Gpu, step: &StepBuffer) -> Recorder<'g> {
        Recorder {
            gpu,
            ops: Vec::new(),
            arenas: Vec::new(),
            step: step.clone(),
            align: gpu.limits().min_uniform_buffer_offset_alignment as usize,
            slots: usize::MAX,
            shared_step: false,
        }
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.ops.iter().filter(|o| matches!(o, Op::Dispatch(_))).count()
    }

    /// Where `bytes` go in the arenas: (arena index, offset).
    fn place_params(&mut self, bytes: &[u8]) -> (usize, usize) {
        let fits =
            |a: &Arena, align: usize| a.bytes.len().div_ceil(align) * align + bytes.len() <= ARENA_BYTES as usize;
        if !self.arenas.last().is_some_and(|a| fits(a, self.align)) {
            let buffer = self.gpu.params_pool.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_else(|| {
                self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("params arena"),
                    size: ARENA_BYTES,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            });
            self.arenas.push(Arena { buffer, bytes: Vec::new() });
        }
        let index = self.arenas.len() - 1;
        let arena = &mut self.arenas[index];
        let offset = arena.bytes.len().div_ceil(self.align) * self.align;
        arena.bytes.resize(offset, 0);
        arena.bytes.extend_from_slice(bytes);
        (index, offset)
    }

    /// Records one dispatch of `kernel`. `params` is bound at `params.0`,
    /// each tensor at the binding number given with it, and the step block
    /// at `STEP_BINDING`; bindings the entry point does not use are left out
    /// (launchers may offer more than a variant needs).
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
        let uses = self.gpu.kernel_bindings(kernel)?;
        let used_by = |uses: &[(u32, Use)], b: u32| uses.binary_search_by_key(&b, |u| u.0).is_ok();
        check_aliasing(kernel, &uses, tensors)?;
        // Slotted tensors are bound with dynamic offsets: one bit per binding.
        let mut dynamic = 0u32;
        let mut strides: Vec<(u32, u64)> = Vec::new();
        // The first tensor offered at a binding is the one bound (as below).
        for (k, (binding, t)) in tensors.iter().enumerate() {
            let first = !tensors[..k].iter().any(|(b, _)| b == binding);
            if t.slot_stride() > 0 && first && used_by(&uses, *binding) {
                if *binding >= 32 || *binding == STEP_BINDING {
                    return Err(Error::InvalidArgument(format!(
                        "{}: a slotted tensor at binding {binding}",
                        kernel.entry_point()
                    )));
                }
                dynamic |= 1 << binding;
                strides.push((*binding, t.slot_stride()));
                self.slots = self.slots.min(t.slots());
            }
        }
        let most = (self.gpu.limits().max_dynamic_storage_buffers_per_pipeline_layout as usize).min(MAX_DYNAMIC - 1);
        if strides.len() > most {
            return Err(Error::InvalidArgument(format!(
                "{} binds {} slotted tensors, at most {most} here",
                kernel.entry_point(),
                strides.len()
            )));
        }
        let pipeline = self.gpu.pipeline(kernel, constants, dynamic)?;
        if used_by(&uses, STEP_BINDING) {
            if step_uses_offsets(self.gpu.limits()) {
                strides.push((STEP_BINDING, self.step.stride));
            } else {
                // Slot 0 only: runs of one step.
                self.slots = 1;
            }
        }
        strides.sort_unstable_by_key(|s| s.0);
        let strides: Vec<u64> = strides.into_iter().map(|s| s.1).collect();
        let bytes = bytemuck::bytes_of(params.1);
        let (arena, offset) = self.place_params(bytes);
        let mut entries = Vec::with_capacity(tensors.len() + 2);
        let used = |b: u32| pipeline.bindings.binary_search(&b).is_ok();
        if used(params.0) {
            entries.push(wgpu::BindGroupEntry {
                binding: params.0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &self.arenas[arena].buffer,
                    offset: offset as u64,
                    size: wgpu::BufferSize::new(bytes.len() as u64),
                }),
            });
        }
        for (binding, t) in tensors {
            if used(*binding) && !entries.iter().any(|e| e.binding == *binding) {
                entries.push(wgpu::BindGroupEntry { binding: *binding, resource: t.binding() });
            }
        }
        if used(STEP_BINDING) {
            entries.push(wgpu::BindGroupEntry { binding: STEP_BINDING, resource: self.step.binding() });
        }
        if let Some(missing) = pipeline.bindings.iter().find(|b| !entries.iter().any(|e| e.binding == **b)) {
            return Err(Error::InvalidArgument(format!(
                "{} uses binding {missing}, which its launcher did not provide",
                kernel.entry_point()
            )));
        }
        let bind_group = self.gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.entry_point()),
            layout: &pipeline.layout,
            entries: &entries,
        });
        self.ops.push(Op::Dispatch(Dispatch { kernel, pipeline, bind_group, groups, strides }));
        Ok(())
    }

    /// Records a device-side copy of `src` into `dst` (same length and type).
    pub fn copy_tensor(&mut self, dst: &Tensor, src: &Tensor) -> Result<()> {
        if src.slot_stride() > 0 || dst.slot_stride() > 0 {
            // A copy would read or write slot 0 in every replay of a run.
            return Err(Error::InvalidArgument("copy_tensor: slotted tensors are bound, not copied".into()));
        }
        if src.len() != dst.len() || src.dtype() != dst.dtype() {
            return Err(Error::Shape {
                op: "copy",
                detail: format!("{:?} {:?} into {:?} {:?}", src.shape(), src.dtype(), dst.shape(), dst.dtype()),
            });
        }
        let bytes = src.len() as u64 * 4;
        if bytes > 0 {
            self.ops.push(Op::Copy {
                src: src.buffer().clone(),
                src_off: src.byte_offset(),
                dst: dst.buffer().clone(),
                dst_off: dst.byte_offset(),
                bytes,
            });
        }
        Ok(())
    }

    /// Writes the kernel parameters into their arenas (queued before the
    /// next submit) and hands the arenas over.
    fn seal(&mut self) -> Vec<wgpu::Buffer> {
        self.arenas
            .drain(..)
            .map(|a| {
                if !a.bytes.is_empty() {
                    self.gpu.queue.write_buffer(&a.buffer, 0, &a.bytes);
                }
                a.buffer
            })
            .collect()
    }

    /// The recording as a plan to replay; its parameters are written once, now.
    pub fn into_plan(mut self) -> Plan {
        let arenas = self.seal();
        let ops = std::mem::take(&mut self.ops);
        let passes = count_passes(&ops);
        let dispatches = ops.iter().filter(|o| matches!(o, Op::Dispatch(_))).count();
        let slots = self.slots.min(STEP_SLOTS);
        Plan { ops, arenas, step: self.step.clone(), passes, dispatches, slots, shared_step: self.shared_step }
    }

    /// Submits everything recorded, without waiting for it to finish.
    pub fn submit(self) -> Result<()> {
        let gpu = self.gpu;
        let plan = self.into_plan();
        plan.run(gpu, None)?;
        plan.release(gpu);
        Ok(())
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
        // Unsubmitted work is discarded; its arenas go back to the pool.
        let mut pool = self.gpu.params_pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.extend(self.arenas.drain(..).map(|a| a.buffer));
    }
}

fn count_passes(ops: &[Op]) -> usize {
    let mut passes = 0;
    let mut in_pass = false;
    for op in ops {
        match op {
            Op::Dispatch(_) if !in_pass => {
                passes += 1;
                in_pass = true;
            }
            Op::Dispatch(_) => {}
            Op::Copy { .. } => in_pass = false,
        }
    }
    passes
}

/// A recorded schedule: pipelines, bind groups and grids built once, and
/// replayed by `run` with the step block of each step.
pub struct Plan {
    ops: Vec<Op>,
    arenas: Vec<wgpu::Buffer>,
    step: StepBuffer,
    passes: usize,
    dispatches: usize,
    /// Most replays one `run_chunk` takes: the step blocks' slots, or fewer
    /// where a slotted tensor has fewer.
    slots: usize,
    /// Reads the device's shared all-zero step block (`Recorder::new`).
    shared_step: bool,
}

/// How `encode` splits the plan into compute passes.
#[derive(Clone, Copy)]
enum Passes<'q> {
    /// As few as the copies allow.
    Fewest,
    /// As few as the copies allow, each timed (slots 2i, 2i+1 of the set).
    Timed(&'q wgpu::QuerySet),
    /// One per dispatch, each timed: per-kernel GPU time.
    PerDispatch(&'q wgpu::QuerySet),
}

impl Plan {
    /// Dispatches per replay.
    pub fn dispatches(&self) -> usize {
        self.dispatches
    }

    /// Compute passes per replay.
    pub fn passes(&self) -> usize {
        self.passes
    }

    /// The step block this plan's kernels read.
    pub fn step_buffer(&self) -> &StepBuffer {
        &self.step
    }

    /// Records one replay reading slot `replay` of the step blocks and of
    /// slotted tensors.
    fn encode(&self, enc: &mut wgpu::CommandEncoder, passes: Passes, replay: usize) {
        let mut i = 0;
        let mut slot = 0u32;
        while i < self.ops.len() {
            match &self.ops[i] {
                Op::Copy { src, src_off, dst, dst_off, bytes } => {
                    enc.copy_buffer_to_buffer(src, *src_off, dst, *dst_off, *bytes);
                    i += 1;
                }
                Op::Dispatch(_) => {
                    let timestamp_writes = match passes {
                        Passes::Fewest => None,
                        Passes::Timed(q) | Passes::PerDispatch(q) => Some(wgpu::ComputePassTimestampWrites {
                            query_set: q,
                            beginning_of_pass_write_index: Some(2 * slot),
                            end_of_pass_write_index: Some(2 * slot + 1),
                        }),
                    };
                    slot += 1;
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("sparsetrain"),
                        timestamp_writes,
                    });
                    let mut last: Option<*const Pipeline> = None;
                    while let Some(Op::Dispatch(d)) = self.ops.get(i) {
                        d.record(&mut pass, replay, &mut last);
                        i += 1;
                        if matches!(passes, Passes::PerDispatch(_)) {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Writes `block` (if given) into the step block and submits one replay,
    /// without waiting for it; returns the submission, for `Gpu::wait_for`.
    pub fn run(&self, gpu: &Gpu, block: Option<&StepBlock>) -> Result<wgpu::SubmissionIndex> {
        if let Some(b) = block {
            return self.run_chunk(gpu, std::slice::from_ref(b));
        }
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        self.encode(&mut enc, Passes::Fewest, 0);
        let index = gpu.queue.submit([enc.finish()]);
        gpu.check()?;
        Ok(index)
    }

    /// Refuses step blocks for a plan that reads the device's shared block,
    /// which every `Recorder::new` recording expects to hold zeros.
    fn check_blocks(&self, blocks: &[StepBlock]) -> Result<()> {
        if self.shared_step && blocks.iter().any(|b| *b != StepBlock::default()) {
            return Err(Error::InvalidArgument(
                "this plan reads the device's shared step block (Recorder::new), which stays zero; \
                 record with Recorder::with_step to give it step blocks"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Replays one run takes at most (`run_chunk`).
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Submits one replay per block of `blocks` (at most `slots()`), all in
    /// one command buffer: the blocks go into the step buffer's slots with
    /// one write, and replay `j` binds slot `j` of the step blocks and of
    /// every slotted tensor (its inputs, staged there beforehand) by dynamic
    /// offsets: no copies, and the replays share compute passes as far as
    /// their copies allow. One submit for the whole run: the fixed cost of a
    /// submission is paid once, and the host encodes the replays back to
    /// back. Nothing waits.
    pub fn run_chunk(&self, gpu: &Gpu, blocks: &[StepBlock]) -> Result<wgpu::SubmissionIndex> {
        if blocks.is_empty() || blocks.len() > self.slots {
            return Err(Error::InvalidArgument(format!(
                "a run of {} steps; this plan takes 1 to {}",
                blocks.len(),
                self.slots
            )));
        }
        self.check_blocks(blocks)?;
        self.step.write_slots(gpu, blocks);
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("steps") });
        if self.ops.iter().any(|o| matches!(o, Op::Copy { .. })) {
            for j in 0..blocks.len() {
                self.encode(&mut enc, Passes::Fewest, j);
            }
        } else {
            // Without copies the whole run is one compute pass.
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("steps"), timestamp_writes: None });
            let mut last: Option<*const Pipeline> = None;
            for j in 0..blocks.len() {
                for op in &self.ops {
                    if let Op::Dispatch(d) = op {
                        d.record(&mut pass, j, &mut last);
                    }
                }
            }
        }
        let index = gpu.queue.submit([enc.finish()]);
        gpu.check()?;
        Ok(index)
    }

    /// Runs once with timestamps around every pass and waits: the GPU-busy
    /// seconds of one replay. Fails where the adapter has no timestamps.
    pub fn gpu_seconds(&self, gpu: &Gpu, block: Option<&StepBlock>) -> Result<f64> {
        let times = self.timed(gpu, block, false)?;
        Ok(times.iter().map(|t| t.1).sum())
    }

    /// Each dispatch's kernel and grid (workgroups), in order: what
    /// `profile`'s times belong to.
    pub fn grids(&self) -> Vec<(Kernel, UVec3)> {
        self.ops
            .iter()
            .filter_map(|o| if let Op::Dispatch(d) = o { Some((d.kernel, d.groups)) } else { None })
            .collect()
    }

    /// Runs once with one timed pass per dispatch and waits: each dispatch's
    /// kernel and GPU seconds (a counted read-back of the timestamps).
    pub fn profile(&self, gpu: &Gpu, block: Option<&StepBlock>) -> Result<Vec<(Kernel, f64)>> {
        self.timed(gpu, block, true)
    }

    fn timed(&self, gpu: &Gpu, block: Option<&StepBlock>, per_dispatch: bool) -> Result<Vec<(Kernel, f64)>> {
        if !gpu.has_timestamps() {
            return Err(Error::InvalidArgument(format!("{} offers no timestamp queries", gpu.report().name)));
        }
        let n = if per_dispatch { self.dispatches } else { self.passes };
        if n == 0 {
            return Ok(Vec::new());
        }
        if n > MAX_PROFILED {
            return Err(Error::InvalidArgument(format!("{n} passes to time, at most {MAX_PROFILED}")));
        }
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * n as u32,
        });
        let bytes = 16 * n as u64;
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        if let Some(b) = block {
            self.check_blocks(std::slice::from_ref(b))?;
            self.step.write(gpu, b);
        }
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("timed") });
        self.encode(&mut enc, if per_dispatch { Passes::PerDispatch(&queries) } else { Passes::Timed(&queries) }, 0);
        enc.resolve_query_set(&queries, 0..2 * n as u32, &resolve, 0);
        gpu.queue.submit([enc.finish()]);
        gpu.wait()?;
        let ticks: Vec<u64> = bytemuck::cast_slice(&gpu.read_back(&resolve, 0, bytes)?).to_vec();
        let period = f64::from(gpu.queue.get_timestamp_period()) * 1e-9;
        let secs = ticks.chunks(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period);
        let kernels: Vec<Kernel> = if per_dispatch {
            self.ops.iter().filter_map(|o| if let Op::Dispatch(d) = o { Some(d.kernel) } else { None }).collect()
        } else {
            // A pass is reported under its first kernel.
            let mut ks = Vec::new();
            let mut in_pass = false;
            for o in &self.ops {
                match o {
                    Op::Dispatch(d) if !in_pass => {
                        ks.push(d.kernel);
                        in_pass = true;
                    }
                    Op::Dispatch(_) => {}
                    Op::Copy { .. } => in_pass = false,
                }
            }
            ks
        };
        Ok(kernels.into_iter().zip(secs).collect())
    }

    /// Returns the parameter arenas to the device's pool (after the work
    /// using them was submitted: later writes are queued behind it).
    fn release(mut self, gpu: &Gpu) {
        gpu.params_pool.lock().unwrap_or_else(|p| p.into_inner()).append(&mut self.arenas);
    }
}

/// Refuses a dispatch that would bind one buffer both read-only and
/// writable: wgpu forbids it (a usage conflict) and would say so only when
/// the commands are finished, far from the launcher that bound it. Two
/// read-only bindings of one buffer are fine, as are two writable ones.
fn check_aliasing(kernel: Kernel, uses: &[(u32, Use)], tensors: &[(u32, &Tensor)]) -> Result<()> {
    // The tensor bound at each used storage binding (the first one offered)
    // and whether the kernel writes it.
    let mut bound: Vec<(u32, &Tensor, bool)> = Vec::new();
    for &(binding, u) in uses {
        let Use::Storage { read_only, .. } = u else { continue };
        if let Some((_, t)) = tensors.iter().find(|(b, _)| *b == binding) {
            bound.push((binding, t, !read_only));
        }
    }
    for (i, &(b1, t1, w1)) in bound.iter().enumerate() {
        for &(b2, t2, w2) in &bound[i + 1..] {
            if w1 != w2 && t1.buffer() == t2.buffer() {
                let (read, written) = if w1 { (b2, b1) } else { (b1, b2) };
                return Err(Error::InvalidArgument(format!(
                    "{}: binding {read} (read) and binding {written} (written) are one buffer; a dispatch cannot \
                     both read and write a buffer through two bindings",
                    kernel.entry_point()
                )));
            }
        }
    }
    Ok(())
}
