//! The device: adapter choice (environment variables, hardware before
//! software), the limits the engine asks for, error capture, and the single
//! read-back path that counts every byte brought back to the host.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::device::pipeline::{Pipeline, PipelineCache};
pub use crate::device::report::{AdapterReport, CoopSupport};
use crate::device::shader::{Constants, Kernel, MatmulChoice, Variant, coop_features};
use crate::error::{Error, Result};

/// How to open a device. `Default` reads the environment.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Backends to consider; `None` reads `SPARSETRAIN_BACKEND` (default: all).
    pub backends: Option<wgpu::Backends>,
    /// Case-insensitive substring of the adapter name; `None` reads `SPARSETRAIN_ADAPTER`.
    pub adapter: Option<String>,
    /// Time the matmul variants when no cached choice exists for this adapter
    /// (`ops::autotune::ensure`, run before the first matmul). Off, the
    /// device-type rule decides.
    pub autotune: bool,
    /// Most workgroups per data-dependent dispatch (`Gpu::grid_cap`); `None`
    /// reads `SPARSETRAIN_GRID_CAP`, else the device-type rule.
    pub grid_cap: Option<u32>,
    /// Whether a sparse step launches the same product of its two mask
    /// samples once (`Matmul::record_pair`); `None` reads
    /// `SPARSETRAIN_PAIRS` (`on`, the default, or `off`, two launches: an
    /// experiment).
    pub pairs: Option<bool>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions { backends: None, adapter: None, autotune: true, grid_cap: None, pairs: None }
    }
}

/// The arithmetic of matmuls recorded on a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands and accumulation (every adapter).
    #[default]
    F32,
    /// f16 operands on tensor cores, f32 accumulation and outputs, f32
    /// master weights and optimizer state (adapters with cooperative
    /// matrices; see `Gpu::coop`).
    Mixed,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Mixed => "mixed",
        }
    }

    pub fn parse(s: &str) -> Option<Precision> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Some(Precision::F32),
            "mixed" | "f16" | "fp16" => Some(Precision::Mixed),
            _ => None,
        }
    }
}

/// Bytes and calls of device-to-host transfers since the device opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadbackStats {
    pub bytes: u64,
    pub calls: u64,
}

/// An open GPU device with its queue, pipeline cache and read-back counter.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    report: AdapterReport,
    pipelines: PipelineCache,
    readback_bytes: AtomicU64,
    readback_calls: AtomicU64,
    /// First uncaptured device error; surfaced by the next submit or read-back.
    error: Arc<Mutex<Option<String>>>,
    lost: Arc<AtomicBool>,
    /// Set by `ops::autotune::ensure`, or by the device-type rule on first use.
    pub(crate) matmul: OnceLock<MatmulChoice>,
    pub(crate) autotune: bool,
    grid_cap: u32,
    pairs: bool,
    /// SPARSETRAIN_IMPLICIT (None: auto; see `implicit_convs`).
    implicit_convs: Option<bool>,
    /// Auto's choice timed on this adapter (`ops::autotune_conv::ensure`).
    pub(crate) convs_tuned: OnceLock<bool>,
    /// `Precision` of the matmuls recorded from now on (0 f32, 1 mixed).
    precision: AtomicU8,
    /// The partial products of split-K matmuls (`Tensor::split_scratch`).
    pub(crate) split_scratch: Mutex<Option<Arc<wgpu::Buffer>>>,
    /// The f16 packs of mixed-precision products' operands, A and B
    /// (`Tensor::coop_pack`).
    pub(crate) coop_packs: [Mutex<Option<Arc<wgpu::Buffer>>>; 2],
    /// The K-major f32 packs of `wide` products' operands, A and B
    /// (`Tensor::kpack`).
    pub(crate) kpacks: [Mutex<Option<Arc<wgpu::Buffer>>>; 2],
    /// 16 bytes holding 1.0: the gradient scale when nothing clips.
    pub(crate) one: Arc<wgpu::Buffer>,
    /// 16 zero bytes: the binding of unused u32 inputs.
    pub(crate) zero_u32: Arc<wgpu::Buffer>,
    /// The step block of recordings made without one of their own (zeros),
    /// made on first use by `Recorder::new`.
    pub(crate) default_step: OnceLock<Arc<wgpu::Buffer>>,
    pub(crate) params_pool: Mutex<Vec<wgpu::Buffer>>,
}

fn env_backends() -> Result<wgpu::Backends> {
    let Ok(v) = std::env::var("SPARSETRAIN_BACKEND") else {
        return Ok(wgpu::Backends::all());
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "all" => Ok(wgpu::Backends::all()),
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "metal" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        _ => Err(Error::InvalidEnv { var: "SPARSETRAIN_BACKEND", value: v, expected: "vulkan, metal, dx12 or gl" }),
    }
}

/// `SPARSETRAIN_GRID_CAP`, else 64 workgroups on CPU adapters, else no cap.
fn grid_cap_for(ty: wgpu::DeviceType) -> Result<u32> {
    if let Ok(v) = std::env::var("SPARSETRAIN_GRID_CAP") {
        return match v.trim() {
            "" => Ok(default_grid_cap(ty)),
            "none" | "0" => Ok(u32::MAX),
            n => n.parse::<u32>().map_err(|_| Error::InvalidEnv {
                var: "SPARSETRAIN_GRID_CAP",
                value: v.clone(),
                expected: "a number of workgroups, or none",
            }),
        };
    }
    Ok(default_grid_cap(ty))
}

fn default_grid_cap(ty: wgpu::DeviceType) -> u32 {
    if ty == wgpu::DeviceType::Cpu { 64 } else { u32::MAX }
}

/// Hardware first; among equals, the native APIs before GL (GL through
/// llvmpipe compiles shaders an order of magnitude slower than lavapipe).
fn adapter_rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (ty, backend)
}

impl Gpu {
    /// Opens the preferred adapter according to `SPARSETRAIN_BACKEND` and
    /// `SPARSETRAIN_ADAPTER`.
    pub fn open() -> Result<Gpu> {
        Gpu::open_with(&GpuOptions::default())
    }

    pub fn open_with(opts: &GpuOptions) -> Result<Gpu> {
        let backends = match opts.backends {
            Some(b) => b,
            None => env_backends()?,
        };
        let filter = match &opts.adapter {
            Some(s) => Some(s.clone()),
            None => std::env::var("SPARSETRAIN_ADAPTER").ok().filter(|s| !s.trim().is_empty()),
        };
        // Native APIs first, GL only when they offer nothing: starting GL
        // makes EGL probe for a display (noise on headless machines), and GL
        // is the slowest path anyway.
        let mut adapters = Vec::new();
        for set in [backends & wgpu::Backends::PRIMARY, backends & wgpu::Backends::GL] {
            if set.is_empty() || !adapters.is_empty() {
                continue;
            }
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = set;
            let instance = wgpu::Instance::new(desc);
            adapters = pollster::block_on(instance.enumerate_adapters(set));
            if let Some(f) = &filter {
                let f = f.to_lowercase();
                adapters.retain(|a| a.get_info().name.to_lowercase().contains(&f));
            }
        }
        adapters.sort_by_key(|a| adapter_rank(&a.get_info()));
        let adapter = adapters.into_iter().next().ok_or_else(|| Error::NoAdapter {
            filter: match (&filter, std::env::var("SPARSETRAIN_BACKEND")) {
                (Some(f), _) => format!(" whose name contains {f:?}"),
                (None, Ok(b)) => format!(" for SPARSETRAIN_BACKEND={b}"),
                _ => String::new(),
            },
            hint: if filter.is_none() { crate::device::icd::hint() } else { String::new() },
        })?;
        let info = adapter.get_info();
        let limits = Gpu::needed_limits(&adapter.limits());
        // Timestamps let `Recorder::profiled` time each kernel; optional.
        let mut features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        // The mixed-precision path's features, where the adapter has all of
        // them and SPARSETRAIN_COOP is not "off".
        let coop_off = std::env::var("SPARSETRAIN_COOP").is_ok_and(|v| v.trim().eq_ignore_ascii_case("off"));
        let coop = if coop_off { Err("SPARSETRAIN_COOP=off".to_string()) } else { CoopSupport::probe(&adapter) };
        let experimental = if coop.is_ok() {
            features |= coop_features();
            // SAFETY: wgpu gates cooperative matrices behind this token
            // because the feature is young (its API may change); we ask for
            // it only where the adapter reports it, only `matmul_coop` uses
            // it, and SPARSETRAIN_COOP=off opts out.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("sparsetrain"),
            required_features: features,
            required_limits: limits,
            experimental_features: experimental,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|error| Error::RequestDevice { adapter: info.name.clone(), error })?;
        let mut gpu = Gpu::from_device(device, queue, &info, opts)?;
        // The adapter's reason rather than "opened without", or the side of
        // its cooperative matrices (`from_device` assumes tensor cores' 16).
        gpu.set_coop(coop);
        Ok(gpu)
    }

    /// Takes the mixed-precision path's shape from `adapter`, the one a
    /// device wrapped by `from_device` came from: the side of its cooperative
    /// matrices (`from_device` assumes tensor cores' 16 × 16; lavapipe's are
    /// 8 × 8), or why it has none. Call it before recording any
    /// mixed-precision product; a device opened without the features keeps
    /// its reason.
    pub fn adopt_adapter_coop(&mut self, adapter: &wgpu::Adapter) {
        if self.device.features().contains(coop_features()) {
            self.set_coop(CoopSupport::probe(adapter));
        }
    }

    fn set_coop(&mut self, coop: std::result::Result<CoopSupport, String>) {
        if let Ok(c) = &coop {
            self.pipelines.set_coop_frag(c.frag);
        }
        self.report.coop = coop;
    }

    /// Wraps a device created elsewhere: an application that renders with
    /// wgpu shares its device by passing clones of its `Device` and `Queue`
    /// (both are reference-counted handles). `info` is the adapter's info,
    /// used for reports and to key the matmul variant choice.
    ///
    /// This installs the device's uncaptured-error handler and device-lost
    /// callback (errors then surface as `Error`s from sparsetrain calls);
    /// an application that needs its own should install them afterwards.
    /// The device's limits must allow 8 storage buffers per shader stage
    /// (the WebGPU default). Mixed precision assumes 16 × 16 cooperative
    /// matrices; `adopt_adapter_coop` reads the adapter's.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: &wgpu::AdapterInfo,
        opts: &GpuOptions,
    ) -> Result<Gpu> {
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        device.set_device_lost_callback(move |_reason, _msg| {
            lost_flag.store(true, Ordering::SeqCst);
        });
        let one = Arc::new(wgpu::util::DeviceExt::create_buffer_init(
            &device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("one"),
                contents: bytemuck::bytes_of(&[1.0f32, 0.0, 0.0, 0.0]),
                usage: wgpu::BufferUsages::STORAGE,
            },
        ));
        let zero_u32 = Arc::new(device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("zero u32"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        }));

        let report = AdapterReport {
            name: info.name.clone(),
            backend: info.backend,
            device_type: info.device_type,
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            limits: device.limits(),
            coop: if device.features().contains(coop_features()) {
                CoopSupport::from_info(info, 16)
            } else {
                Err(format!("the device was opened without {:?}", coop_features() - device.features()))
            },
        };
        // Tuning variables read later, checked now: a bad value fails when
        // the device opens, whichever kernels later run.
        crate::device::variant::wide_depth_env()?;
        crate::device::variant::wide_tile_env()?;
        crate::device::variant::kept_splits_env()?;
        crate::device::variant::coop_mode_env()?;
        crate::device::variant::wide_pad_env()?;
        crate::device::variant::implicit_quads_env()?;
        crate::device::variant::thin_env()?;
        crate::device::variant::wide_kpack_env()?;
        crate::device::variant::kept_matmul_env()?;
        crate::device::variant::coop_shape_env()?;
        crate::device::variant::coop_unroll_env()?;
        crate::device::pipeline::runtime_checks_env()?;
        Ok(Gpu {
            device,
            queue,
            report,
            pipelines: {
                let cache = PipelineCache::default();
                cache.set_coop_frag(16);
                cache.set_robust_buffers(crate::device::pipeline::robust_backend(info.backend));
                cache
            },
            readback_bytes: AtomicU64::new(0),
            readback_calls: AtomicU64::new(0),
            error,
            lost,
            matmul: OnceLock::new(),
            autotune: opts.autotune,
            grid_cap: match opts.grid_cap {
                Some(c) => c.max(1),
                None => grid_cap_for(info.device_type)?,
            },
            pairs: match opts.pairs {
                Some(on) => on,
                None => crate::device::variant::auto_on_off("SPARSETRAIN_PAIRS")?.unwrap_or(true),
            },
            implicit_convs: crate::device::variant::auto_on_off("SPARSETRAIN_IMPLICIT")?,
            convs_tuned: OnceLock::new(),
            precision: AtomicU8::new(0),
            split_scratch: Mutex::new(None),
            coop_packs: [Mutex::new(None), Mutex::new(None)],
            kpacks: [Mutex::new(None), Mutex::new(None)],
            one,
            zero_u32,
            default_step: OnceLock::new(),
            params_pool: Mutex::new(Vec::new()),
        })
    }

    /// The limits the engine asks for: the adapter's best values for the
    /// resources that bound layer and batch sizes, defaults elsewhere.
    fn needed_limits(adapter: &wgpu::Limits) -> wgpu::Limits {
        let mut l = wgpu::Limits::downlevel_defaults().using_alignment(adapter.clone());
        l.max_buffer_size = adapter.max_buffer_size;
        l.max_storage_buffer_binding_size = adapter.max_storage_buffer_binding_size;
        l.max_storage_buffers_per_shader_stage = adapter.max_storage_buffers_per_shader_stage;
        l.max_compute_workgroup_storage_size = adapter.max_compute_workgroup_storage_size;
        l.max_compute_invocations_per_workgroup = adapter.max_compute_invocations_per_workgroup;
        l.max_compute_workgroup_size_x = adapter.max_compute_workgroup_size_x;
        l.max_compute_workgroup_size_y = adapter.max_compute_workgroup_size_y;
        l.max_compute_workgroup_size_z = adapter.max_compute_workgroup_size_z;
        l.max_compute_workgroups_per_dimension = adapter.max_compute_workgroups_per_dimension;
        l.max_uniform_buffer_binding_size = adapter.max_uniform_buffer_binding_size;
        l
    }

    pub fn report(&self) -> &AdapterReport {
        &self.report
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.report.limits
    }

    /// Whether per-kernel GPU timestamps are available (`Recorder::profiled`).
    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Most workgroups a kernel whose size is only known on the device
    /// launches (compressed matmuls, gathers, reductions); the kernel loops
    /// over the rest. Software rasterisers pay for every
    /// launched workgroup, even one that exits at once, so they get a small
    /// persistent grid; GPUs get none, only the launchers' own caps for
    /// work launched for a capacity (matmuls of kept counts 2048 workgroups
    /// per split, `launch_1d` a million threads, lazy SGD 1024 workgroups
    /// per slot and sample), which apply whatever this says.
    pub fn grid_cap(&self) -> u32 {
        self.grid_cap
    }

    /// Whether pairs of products launch once (`GpuOptions::pairs`).
    pub fn pairs(&self) -> bool {
        self.pairs
    }

    /// Whether convolutions read their input in place (implicit operands:
    /// no im2col columns or col2im, and a sparse step's convolutions as
    /// pairs): `SPARSETRAIN_IMPLICIT` on or off; else (auto) the faster way
    /// on this adapter where `ops::autotune::ensure` timed both (GPUs that
    /// autotune, cached per adapter: `ops::autotune_conv`); else where the
    /// matmul variant is `regtile`, which has implicit kernels of its own
    /// (CPU adapters).
    pub fn implicit_convs(&self) -> bool {
        self.implicit_convs
            .or_else(|| self.convs_tuned.get().copied())
            .unwrap_or_else(|| self.matmul_variant() == Variant::RegTile)
    }

    /// Whether `SPARSETRAIN_IMPLICIT` leaves the choice to the device (auto).
    pub(crate) fn implicit_convs_auto(&self) -> bool {
        self.implicit_convs.is_none()
    }

    /// The matmul variant in use and why it was chosen: set by
    /// `ops::autotune::ensure`, else the device-type rule.
    pub fn matmul_choice(&self) -> MatmulChoice {
        self.matmul.get().cloned().unwrap_or_else(|| MatmulChoice::fallback(self.report.device_type))
    }

    /// The mixed-precision path of this device, or why there is none.
    pub fn coop(&self) -> std::result::Result<CoopSupport, String> {
        self.report.coop.clone()
    }

    /// Sets the precision of the matmuls recorded from now on (plans
    /// recorded earlier keep theirs). Mixed fails, saying why, where the
    /// adapter lacks cooperative matrices.
    pub fn set_precision(&self, p: Precision) -> Result<()> {
        if p == Precision::Mixed
            && let Err(why) = &self.report.coop
        {
            return Err(Error::InvalidArgument(format!(
                "--precision mixed needs tensor cores through wgpu's cooperative matrices: {why}"
            )));
        }
        self.precision.store(u8::from(p == Precision::Mixed), Ordering::SeqCst);
        Ok(())
    }

    pub fn precision(&self) -> Precision {
        if self.precision.load(Ordering::SeqCst) == 1 { Precision::Mixed } else { Precision::F32 }
    }

    /// The variant a matmul without a forced one runs: `coop` under mixed
    /// precision, else the device's choice.
    pub fn matmul_variant(&self) -> Variant {
        match self.precision() {
            Precision::Mixed => Variant::Coop,
            Precision::F32 => self.matmul_choice().variant,
        }
    }

    /// `matmul_variant` for an m × n product: on hardware GPUs, products
    /// at least 512 wide both ways and of at least 256 tiles of 128 × 128
    /// run `wide` unless SPARSETRAIN_MATMUL forced a variant (a narrow
    /// product, such as a convolution's few output channels over many
    /// pixels, would leave most of each 128-wide tile empty). The autotuner times one 1024³
    /// product, where `wide`'s 64 tiles of 128 × 128 leave a large GPU half idle
    /// and `shared` wins; from 2048² on, `wide` ran 1.5× faster on an H200
    /// (BENCHMARKS.md).
    pub fn matmul_variant_for(&self, m: u32, n: u32) -> Variant {
        let v = self.matmul_variant();
        let choice = self.matmul_choice();
        let big = m >= 512 && n >= 512 && m.div_ceil(128) * n.div_ceil(128) >= 256;
        if v != Variant::Coop
            && big
            && self.report.device_type != wgpu::DeviceType::Cpu
            && choice.source != crate::device::shader::ChoiceSource::Env
        {
            return Variant::Wide;
        }
        v
    }

    /// The group-0 bindings `kernel` uses (sorted).
    /// The group-0 bindings `kernel` uses (sorted), and how.
    pub(crate) fn kernel_bindings(&self, kernel: Kernel) -> Result<Vec<(u32, crate::device::layout::Use)>> {
        self.pipelines.bindings(&self.device, kernel)
    }

    /// The pipeline of `kernel` with `constants`, binding the storage
    /// bindings set in `dynamic` (a bit each) with dynamic offsets.
    pub(crate) fn pipeline(&self, kernel: Kernel, constants: &Constants, dynamic: u32) -> Result<Arc<Pipeline>> {
        self.pipelines.get(&self.device, kernel, constants, dynamic)
    }

    /// Device-to-host traffic so far.
    pub fn readback_stats(&self) -> ReadbackStats {
        ReadbackStats {
            bytes: self.readback_bytes.load(Ordering::SeqCst),
            calls: self.readback_calls.load(Ordering::SeqCst),
        }
    }

    /// Fails with the first error the device reported since the last check.
    pub fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::DeviceLost("the driver reported the device lost".into()));
        }
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(msg) if msg.to_lowercase().contains("out of memory") => {
                Err(Error::Device(format!("out of memory: {msg}")))
            }
            Some(msg) => Err(Error::Device(msg)),
            None => Ok(()),
        }
    }

    /// Blocks until the submission `index` (and all before it) has finished.
    pub fn wait_for(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None })
            .map_err(|e| Error::Device(e.to_string()))?;
        self.check()
    }

    /// Blocks until all submitted work has finished.
    pub fn wait(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Device(e.to_string()))?;
        self.check()
    }

    /// The one place where data comes back to the host: copies `size` bytes
    /// of `buffer` from `offset` into host memory and counts them.
    pub(crate) fn read_back(&self, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let padded = size.div_ceil(wgpu::COPY_BUFFER_ALIGNMENT) * wgpu::COPY_BUFFER_ALIGNMENT;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded.max(wgpu::COPY_BUFFER_ALIGNMENT),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        if padded > 0 {
            enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, padded);
        }
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Readback(e.to_string()))?;
        self.check()?;
        rx.recv().map_err(|e| Error::Readback(e.to_string()))?.map_err(|e| Error::Readback(e.to_string()))?;
        let bytes = {
            let view = staging.get_mapped_range(..).map_err(|e| Error::Readback(e.to_string()))?;
            view[..size as usize].to_vec()
        };
        staging.unmap();
        self.readback_bytes.fetch_add(size, Ordering::SeqCst);
        self.readback_calls.fetch_add(1, Ordering::SeqCst);
        Ok(bytes)
    }
}
