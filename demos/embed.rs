//! embed: sparsetrain inside an application that already owns a wgpu device.
//!
//! The app creates its instance, adapter, device and queue as it would for
//! rendering, hands clones to sparsetrain, trains a sparse MLP on data from
//! its own memory, and keeps using the same device afterwards.
//!
//!     cargo run --release --example embed

use sparsetrain::nn::{Graph, Net};
use sparsetrain::ops::optim::Sgd;
use sparsetrain::sparse::SparseConfig;
use sparsetrain::train::{Phase, Trainer};
use sparsetrain::{Gpu, GpuOptions};

fn main() -> anyhow::Result<()> {
    // 1. The application's own device (here: any adapter, headless).
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;

    // 2. sparsetrain shares it: Device and Queue are cheap handle clones.
    let gpu = Gpu::from_device(device.clone(), queue.clone(), &adapter.get_info(), &GpuOptions::default())?;
    println!("sharing {} ({:?})", gpu.report().name, gpu.report().backend);

    // 3. Data from the app's memory: 4 classes, the quadrant of two inputs.
    let (batch, dim) = (64, 8);
    let xs: Vec<f32> = (0..batch * dim).map(|i| (((i * 2654435761) >> 7) % 200) as f32 / 100.0 - 1.0).collect();
    let ys: Vec<u32> = (0..batch).map(|r| 2 * (xs[r * dim] > 0.0) as u32 + (xs[r * dim + 1] > 0.0) as u32).collect();

    // 4. A sparse MLP keeping half of its hidden units; each step replays
    //    one recorded plan and reads nothing back.
    let net = Net::new(&gpu, Graph::mlp(dim, &[128, 128], 4)?, 1)?;
    let sgd = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4 };
    let mut trainer = Trainer::new(&gpu, net, batch, sgd, Some(SparseConfig { keep: 0.5, ..Default::default() }))?;
    trainer.set_batch(&gpu, &xs, &ys)?;
    for step in 0..200 {
        trainer.run(&gpu, Phase::Train, batch, 0.05, 0.05, step)?;
        if step % 50 == 49 {
            let l = trainer.loss.download_f32(&gpu)?; // only when we want to see it
            println!("step {:3}: losses of the two masks {:.4} {:.4}", step + 1, l[0], l[1]);
        }
    }

    // 5. The app's device is still its own: a plain wgpu copy after training.
    let probe = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app buffer"),
        size: 256,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&probe, 0, &[0u8; 256]);
    queue.submit([]);
    gpu.wait()?;
    println!("read back {} bytes in total", gpu.readback_stats().bytes);
    Ok(())
}
