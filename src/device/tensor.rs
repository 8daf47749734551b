//! Resident tensors: f32 or u32 storage on the device with a shape. A tensor
//! may be a view into a larger buffer (the flat parameter buffer of a model),
//! at an offset aligned for binding. Host transfers go through `Gpu`, which
//! counts what is read back.

use std::sync::Arc;

use bytemuck::Pod;

use crate::device::gpu::Gpu;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
}

/// Views start at multiples of this many bytes: the largest
/// `min_storage_buffer_offset_alignment` that WebGPU allows.
pub const VIEW_ALIGN: u64 = 256;

/// Bytes bound for `len` elements: kernels read some operands as vec4, so
/// bindings cover whole 16-byte groups.
pub(crate) fn binding_bytes(len: usize) -> u64 {
    ((len as u64 * 4).div_ceil(16) * 16).max(16)
}

/// Elements a segment of `len` elements occupies in a flat buffer so that
/// the next segment starts aligned for binding.
pub fn aligned_len(len: usize) -> usize {
    let per = (VIEW_ALIGN / 4) as usize;
    len.div_ceil(per).max(1).saturating_mul(per)
}

/// A device-resident array with a shape (row-major).
#[derive(Clone, Debug)]
pub struct Tensor {
    buffer: Arc<wgpu::Buffer>,
    /// Byte offset of element 0 in `buffer`.
    offset: u64,
    shape: Vec<usize>,
    dtype: DType,
    /// Bytes between the slots of a slotted tensor (`Tensor::slotted`), 0
    /// for a plain one.
    slot_stride: u64,
    /// Slots of a slotted tensor (1 for a plain one).
    slots: usize,
}

impl Tensor {
    /// Fails, naming the tensor and the limit, unless a tensor of `shape`
    /// fits this device. Nothing is allocated: callers check every size
    /// before they allocate anything, on the host or the device.
    pub fn check_fits(gpu: &Gpu, label: &str, shape: &[usize]) -> Result<()> {
        let what = || format!("tensor {label:?} of shape {shape:?}");
        let len = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        let bytes = len.and_then(|l| l.checked_mul(4)).map(|b| b.div_ceil(16) * 16);
        let limits = gpu.limits();
        for (limit_name, limit) in [
            ("max_storage_buffer_binding_size", limits.max_storage_buffer_binding_size),
            ("max_buffer_size", limits.max_buffer_size),
        ] {
            match bytes {
                Some(b) if b <= limit => {}
                _ => return Err(Error::TooLarge { what: what(), bytes: bytes.unwrap_or(u64::MAX), limit_name, limit }),
            }
        }
        Ok(())
    }

    /// A zero-filled tensor. `label` names it in errors and debuggers.
    pub fn zeros(gpu: &Gpu, label: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::check_fits(gpu, label, shape)?;
        let len = shape.iter().product::<usize>();
        let bytes = binding_bytes(len);
        // wgpu zero-initialises new buffers.
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Tensor { buffer: Arc::new(buffer), offset: 0, shape: shape.to_vec(), dtype, slot_stride: 0, slots: 1 })
    }

    /// Scratch of at least `len` floats for the partial products of
    /// split-K matmuls, shared by all of them on a device: the dispatches of
    /// a recording run in order, and a recorded plan keeps the buffer it
    /// was recorded with alive when a later, larger need replaces it.
    pub(crate) fn split_scratch(gpu: &Gpu, len: usize) -> Result<Tensor> {
        Tensor::grown_scratch(gpu, &gpu.split_scratch, "split-K partials", len, DType::F32)
    }

    /// The device's f16 pack of operand `which` (0: A, 1: B) of a
    /// mixed-precision product (`matmul_pack`), at least `len` u32 (pairs
    /// of halves); shared like `split_scratch`, grown the same way.
    pub(crate) fn coop_pack(gpu: &Gpu, which: usize, len: usize) -> Result<Tensor> {
        let (slot, label) = match which {
            0 => (&gpu.coop_packs[0], "f16 pack of A"),
            _ => (&gpu.coop_packs[1], "f16 pack of B"),
        };
        Tensor::grown_scratch(gpu, slot, label, len, DType::U32)
    }

    /// The device's K-major f32 pack of operand `which` (0: A, 1: B) of a
    /// `wide` product (`matmul_kpack`), at least `len` floats; shared like
    /// `split_scratch`, grown the same way.
    pub(crate) fn kpack(gpu: &Gpu, which: usize, len: usize) -> Result<Tensor> {
        let (slot, label) = match which {
            0 => (&gpu.kpacks[0], "K-major pack of A"),
            _ => (&gpu.kpacks[1], "K-major pack of B"),
        };
        Tensor::grown_scratch(gpu, slot, label, len, DType::F32)
    }

    /// A scratch buffer of the device kept in `slot` and shared by every
    /// recording (the launches that use it run one after another): at
    /// least `len` elements, regrown to at least twice its size, within one
    /// binding, when a recording needs more (plans recorded before keep the
    /// old buffer).
    fn grown_scratch(
        gpu: &Gpu,
        slot: &std::sync::Mutex<Option<Arc<wgpu::Buffer>>>,
        label: &str,
        len: usize,
        dtype: DType,
    ) -> Result<Tensor> {
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        let have = slot.as_ref().map_or(0, |b| (b.size() / 4) as usize);
        if let Some(b) = slot.as_ref().filter(|_| have >= len) {
            return Ok(Tensor { buffer: b.clone(), offset: 0, shape: vec![have], dtype, slot_stride: 0, slots: 1 });
        }
        let want = if have == 0 { len } else { len.max(2 * have) };
        let limit = (gpu.limits().max_storage_buffer_binding_size / 4) as usize;
        let t = Tensor::zeros(gpu, label, &[want.min(limit).max(len)], dtype)?;
        *slot = Some(t.buffer.clone());
        Ok(t)
    }

    /// `slots` tensors of `shape` in one buffer, `slot_stride()` bytes apart:
    /// the inputs of a run of steps submitted together. The tensor is slot
    /// 0 (uploads and read-backs see it); a recorded dispatch binds it with
    /// a dynamic offset, and replay j of a run reads slot j
    /// (`Plan::run_chunk`). Views keep the slots.
    pub fn slotted(gpu: &Gpu, label: &str, shape: &[usize], slots: usize, dtype: DType) -> Result<Tensor> {
        Tensor::check_fits(gpu, label, shape)?;
        let len = shape.iter().product::<usize>();
        let align = u64::from(gpu.limits().min_storage_buffer_offset_alignment).max(VIEW_ALIGN);
        let stride = binding_bytes(len).div_ceil(align) * align;
        let slots = slots.max(1);
        let bytes = stride.saturating_mul(slots as u64);
        // Dynamic offsets are u32.
        let limit = gpu.limits().max_buffer_size.min(u64::from(u32::MAX) + stride);
        if bytes > limit {
            return Err(Error::TooLarge {
                what: format!("{slots} slots of tensor {label:?} of shape {shape:?}"),
                bytes,
                limit_name: "max_buffer_size",
                limit,
            });
        }
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Tensor { buffer: Arc::new(buffer), offset: 0, shape: shape.to_vec(), dtype, slot_stride: stride, slots })
    }

    /// Slot `j` of a slotted tensor as a plain tensor (to read it back,
    /// or to bind one slot in every replay).
    pub fn slot(&self, j: usize) -> Result<Tensor> {
        if j >= self.slots {
            return Err(Error::InvalidArgument(format!("slot {j} of a tensor with {} slots", self.slots)));
        }
        let offset = self.offset + j as u64 * self.slot_stride;
        Ok(Tensor { buffer: self.buffer.clone(), offset, slot_stride: 0, slots: 1, ..self.clone() })
    }

    /// Bytes between slots (0 for a tensor that is not slotted).
    pub fn slot_stride(&self) -> u64 {
        self.slot_stride
    }

    /// Slots of a slotted tensor; 1 for any other.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Host to device into elements [at, at + data.len()) of slot `slot`,
    /// queued like `upload`.
    pub fn upload_slot<T: Pod>(&self, gpu: &Gpu, slot: usize, at: usize, data: &[T]) -> Result<()> {
        if slot >= self.slots {
            return Err(Error::InvalidArgument(format!("slot {slot} of a tensor with {} slots", self.slots)));
        }
        self.check_at(at, data)?;
        if !data.is_empty() {
            let offset = self.offset + slot as u64 * self.slot_stride + at as u64 * 4;
            gpu.queue.write_buffer(&self.buffer, offset, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Host to device across slots: `data` holds slot 0's elements, then
    /// slot 1's, and so on, the last slot possibly in part; one write where
    /// the slots lie back to back (`slot_stride` is 4 × `len`), one per
    /// slot elsewhere.
    pub fn upload_slots<T: Pod>(&self, gpu: &Gpu, data: &[T]) -> Result<()> {
        let len = self.len().max(1);
        if std::mem::size_of::<T>() != 4 || data.len() > self.slots * len {
            return Err(Error::Shape {
                op: "upload_slots",
                detail: format!("{} host elements for {} slots of shape {:?}", data.len(), self.slots, self.shape),
            });
        }
        if self.slot_stride == len as u64 * 4 || self.slots == 1 {
            if !data.is_empty() {
                gpu.queue.write_buffer(&self.buffer, self.offset, bytemuck::cast_slice(data));
            }
            return Ok(());
        }
        for (j, part) in data.chunks(len).enumerate() {
            self.upload_slot(gpu, j, 0, part)?;
        }
        Ok(())
    }

    /// A one-element f32 tensor holding 1.0, shared by the device.
    pub(crate) fn one(gpu: &Gpu) -> Tensor {
        Tensor { buffer: gpu.one.clone(), offset: 0, shape: vec![1], dtype: DType::F32, slot_stride: 0, slots: 1 }
    }

    /// A one-element u32 zero, shared by the device: the binding of unused inputs.
    pub(crate) fn zero_u32(gpu: &Gpu) -> Tensor {
        Tensor { buffer: gpu.zero_u32.clone(), offset: 0, shape: vec![1], dtype: DType::U32, slot_stride: 0, slots: 1 }
    }

    pub(crate) fn buffer(&self) -> &Arc<wgpu::Buffer> {
        &self.buffer
    }

    /// Byte offset of element 0 in the underlying buffer.
    pub(crate) fn byte_offset(&self) -> u64 {
        self.offset
    }

    pub fn from_f32(gpu: &Gpu, label: &str, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        let t = Tensor::zeros(gpu, label, shape, DType::F32)?;
        t.upload(gpu, data)?;
        Ok(t)
    }

    pub fn from_u32(gpu: &Gpu, label: &str, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        let t = Tensor::zeros(gpu, label, shape, DType::U32)?;
        t.upload(gpu, data)?;
        Ok(t)
    }

    /// A view of `shape` starting `elem_offset` elements into this tensor.
    /// The offset must keep the view aligned for binding (see `aligned_len`).
    pub fn view(&self, elem_offset: usize, shape: &[usize]) -> Result<Tensor> {
        let len = shape.iter().product::<usize>();
        let offset = self.offset + elem_offset as u64 * 4;
        if !offset.is_multiple_of(VIEW_ALIGN) {
            return Err(Error::InvalidArgument(format!(
                "view offset of {elem_offset} elements is not aligned to {VIEW_ALIGN} bytes"
            )));
        }
        if elem_offset + len > self.len() || offset + binding_bytes(len) > self.buffer.size() {
            return Err(Error::Shape {
                op: "view",
                detail: format!("view {shape:?} at {elem_offset} exceeds tensor of {} elements", self.len()),
            });
        }
        Ok(Tensor { buffer: self.buffer.clone(), offset, shape: shape.to_vec(), ..self.clone() })
    }

    /// Whether `other` is this tensor: the same elements of the same buffer.
    pub(crate) fn same_as(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.buffer, &other.buffer)
            && self.offset == other.offset
            && self.shape == other.shape
            && self.slots == other.slots
    }

    /// A view from this tensor's first element through `other`'s last, and
    /// `other`'s distance from this one in elements: where both lie in one
    /// buffer, `other` at or after this one, a multiple of 4 elements
    /// apart, and the span fits one binding (a paired matmul binds both
    /// samples' operands as one). None otherwise.
    pub(crate) fn span_to(&self, other: &Tensor, gpu: &Gpu) -> Option<(Tensor, usize)> {
        if !Arc::ptr_eq(&self.buffer, &other.buffer) || other.offset < self.offset || self.dtype != other.dtype {
            return None;
        }
        if self.same_as(other) {
            // One operand for both (a slotted batch keeps its slots).
            return Some((self.clone(), 0));
        }
        if self.slots > 1 || other.slots > 1 {
            return None;
        }
        let gap = other.offset - self.offset;
        if !gap.is_multiple_of(16) {
            return None;
        }
        let stride = usize::try_from(gap / 4).ok()?;
        // Through whichever ends last (`other` may lie inside this one).
        let len = stride.checked_add(other.len())?.max(self.len());
        let bytes = binding_bytes(len);
        let limit = gpu.limits().max_storage_buffer_binding_size;
        if bytes > limit || self.offset + bytes > self.buffer.size() {
            return None;
        }
        Some((Tensor { shape: vec![len], slot_stride: 0, slots: 1, ..self.clone() }, stride))
    }

    /// The same storage seen with another shape of equal length.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(Error::Shape { op: "reshape", detail: format!("{:?} -> {shape:?}", self.shape) });
        }
        Ok(Tensor { shape: shape.to_vec(), ..self.clone() })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(binding_bytes(self.len())),
        })
    }

    fn check_host<T: Pod>(&self, data: &[T]) -> Result<()> {
        if std::mem::size_of::<T>() != 4 || data.len() != self.len() {
            return Err(Error::Shape {
                op: "upload",
                detail: format!("{} host elements for a tensor of shape {:?}", data.len(), self.shape),
            });
        }
        Ok(())
    }

    /// Host to device. Queued: it lands before the next submitted work.
    pub fn upload<T: Pod>(&self, gpu: &Gpu, data: &[T]) -> Result<()> {
        self.check_host(data)?;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        // write_buffer wants a multiple of 4 bytes, which f32/u32 always are.
        if !bytes.is_empty() {
            gpu.queue.write_buffer(&self.buffer, self.offset, bytes);
        }
        Ok(())
    }

    /// Host to device into elements [at, at + data.len()) (no alignment
    /// beyond 4 bytes needed, unlike a view). Queued like `upload`.
    pub fn upload_at<T: Pod>(&self, gpu: &Gpu, at: usize, data: &[T]) -> Result<()> {
        self.check_at(at, data)?;
        if !data.is_empty() {
            gpu.queue.write_buffer(&self.buffer, self.offset + at as u64 * 4, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    fn check_at<T: Pod>(&self, at: usize, data: &[T]) -> Result<()> {
        if std::mem::size_of::<T>() != 4 || at + data.len() > self.len() {
            return Err(Error::Shape {
                op: "upload",
                detail: format!("{} host elements at {at} for a tensor of shape {:?}", data.len(), self.shape),
            });
        }
        Ok(())
    }

    /// Device to host, counted by the device's read-back statistics.
    pub fn download_f32(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.expect(DType::F32, "download_f32")?;
        Ok(bytemuck::cast_slice(&gpu.read_back(&self.buffer, self.offset, self.len() as u64 * 4)?).to_vec())
    }

    pub fn download_u32(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        self.expect(DType::U32, "download_u32")?;
        Ok(bytemuck::cast_slice(&gpu.read_back(&self.buffer, self.offset, self.len() as u64 * 4)?).to_vec())
    }

    pub(crate) fn expect(&self, dtype: DType, op: &'static str) -> Result<()> {
        if self.dtype != dtype {
            return Err(Error::Shape { op, detail: format!("expected {dtype:?}, got {:?}", self.dtype) });
        }
        Ok(())
    }
}
