use sparsetrain::ops::fill::{fill_f32, fill_u32};
use sparsetrain::{DType, Recorder, Tensor};

use crate::common::*;

#[test]
fn upload_download_copy_fill_and_counting() {
    let Some(gpu) = gpu("upload_download_copy_fill_and_counting") else { return };
    let before = gpu.readback_stats();
    let data: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
    let a = Tensor::from_f32(&gpu, "a", &[37], &data).unwrap();
    let b = Tensor::zeros(&gpu, "b", &[37], DType::F32).unwrap();
    let u = Tensor::zeros(&gpu, "u", &[5], DType::U32).unwrap();
    let mut rec = Recorder::new(&gpu);
    rec.copy_tensor(&b, &a).unwrap();
    fill_f32(&mut rec, &a, -1.25).unwrap();
    fill_u32(&mut rec, &u, 0xdead_beef).unwrap();
    rec.finish().unwrap();
    // Recording and running work reads nothing back.
    assert_eq!(gpu.readback_stats(), before);
    assert_eq!(b.download_f32(&gpu).unwrap(), data);
    assert_eq!(a.download_f32(&gpu).unwrap(), vec![-1.25; 37]);
    assert_eq!(u.download_u32(&gpu).unwrap(), vec![0xdead_beef; 5]);
    let after = gpu.readback_stats();
    assert_eq!(after.calls - before.calls, 3);
    assert_eq!(after.bytes - before.bytes, (37 + 37 + 5) * 4);
}

#[test]
fn shape_and_dtype_errors_are_typed() {
    let Some(gpu) = gpu("shape_and_dtype_errors_are_typed") else { return };
    let a = Tensor::zeros(&gpu, "a", &[4], DType::F32).unwrap();
    assert!(a.upload(&gpu, &[1.0f32; 3]).is_err());
    assert!(a.download_u32(&gpu).is_err());
    assert!(a.view(1, &[2]).is_err(), "unaligned view must be refused");
    assert!(a.view(0, &[5]).is_err(), "view past the end must be refused");
    assert!(a.reshape(&[2, 2]).is_ok());
    assert!(a.reshape(&[3]).is_err());
    let b = Tensor::zeros(&gpu, "b", &[5], DType::F32).unwrap();
    assert!(Recorder::new(&gpu).copy_tensor(&b, &a).is_err());
    assert!(fill_u32(&mut Recorder::new(&gpu), &a, 1).is_err(), "u32 fill of an f32 tensor");
    // Larger than any binding this engine allows: a typed error, not a wgpu panic.
    let huge = gpu.limits().max_storage_buffer_binding_size as usize / 4 + 1;
    let err = Tensor::zeros(&gpu, "huge", &[huge], DType::F32).unwrap_err();
    assert!(err.to_string().contains("huge"), "{err}");
}

/// A device error (here: a buffer wgpu refuses to create, made through the
/// device an embedding application shares) surfaces as a typed
/// `Error::Device` from the next submit, not as a panic, and the device stays
/// usable. A binding the launcher leaves out, and one buffer bound for
/// reading and for writing in the same dispatch (which wgpu rejects), are
/// caught before wgpu sees them, naming the kernel.
#[test]
fn device_errors_are_typed() {
    use sparsetrain::Error;
    use sparsetrain::ops::fill::FillParams;
    use sparsetrain::shader::Kernel;
    let Some(gpu) = gpu("device_errors_are_typed") else { return };
    let params = FillParams { n: 4, bits: 0, _pad: [0; 2] };
    let missing = Recorder::new(&gpu).dispatch(Kernel::Fill, &vec![("WG", 256.0)], (0, &params), &[], glam::UVec3::ONE);
    let err = missing.unwrap_err().to_string();
    assert!(err.contains("binding 1"), "{err}");
    let t = Tensor::zeros(&gpu, "t", &[8], DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    let err = sparsetrain::ops::relu::relu_backward(&mut rec, &t, &t, 1, 8).unwrap_err().to_string();
    assert!(err.contains("relu_backward") && err.contains("read and write"), "{err}");
    // Mapped at creation, a size must be a multiple of 4.
    let _bad = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("bad"),
        size: 6,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: true,
    });
    let err = Recorder::new(&gpu).submit().and_then(|_| gpu.wait()).unwrap_err();
    assert!(matches!(err, Error::Device(_)), "expected a typed device error, got {err:?}");
    // The error was reported once; ordinary work goes on.
    let t = Tensor::from_f32(&gpu, "t", &[3], &[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(t.download_f32(&gpu).unwrap(), vec![1.0, 2.0, 3.0]);
}

/// Slotted tensors: uploads across slots (back to back where the slots are,
/// slot by slot where alignment pads them), each slot read back on its own,
/// and a replayed plan whose run j works on slot j (`Plan::run_chunk`).
#[test]
fn slotted_tensors_upload_and_replay_by_slot() {
    let Some(gpu) = gpu("slotted_tensors_upload_and_replay_by_slot") else { return };
    // 37 floats pad to a 256-byte slot; 64 fill theirs exactly.
    for len in [37usize, 64, 1] {
        let slots = 5;
        let t = Tensor::slotted(&gpu, "slotted", &[len], slots, DType::F32).unwrap();
        assert_eq!((t.slots(), t.slot_stride() % 256), (slots, 0));
        let mut r = rng(700 + len as u64);
        let data = rand_f32(&mut r, 4 * len + len.div_ceil(2), -1.0, 1.0);
        t.upload_slots(&gpu, &data).unwrap();
        for j in 0..4 {
            let got = t.slot(j).unwrap().download_f32(&gpu).unwrap();
            assert_eq!(got, data[j * len..(j + 1) * len], "len {len}: slot {j}");
        }
        let last = t.slot(4).unwrap().download_f32(&gpu).unwrap();
        assert_eq!(last[..len.div_ceil(2)], data[4 * len..], "len {len}: the partial slot");
        assert_eq!(t.download_f32(&gpu).unwrap(), data[..len], "len {len}: the tensor is slot 0");
        // Errors: too much data, a slot past the end.
        assert!(t.upload_slots(&gpu, &vec![0.0f32; slots * len + 1]).is_err());
        assert!(t.upload_slot(&gpu, slots, 0, &[0.0f32]).is_err());
        assert!(t.slot(slots).is_err());
        // ReLU in place on the slotted tensor, replayed 3 times in one run:
        // slots 0-2 change, 3 and 4 keep their data.
        let mut rec = Recorder::new(&gpu);
        sparsetrain::ops::relu::relu_forward(&mut rec, &t, 1, len).unwrap();
        let plan = rec.into_plan();
        assert_eq!(plan.slots(), slots);
        plan.run_chunk(&gpu, &[sparsetrain::step::StepBlock::default(); 3]).unwrap();
        gpu.wait().unwrap();
        for j in 0..slots {
            let got = t.slot(j).unwrap().download_f32(&gpu).unwrap();
            let src = &data[j * len..(j * len + len).min(data.len())];
            let want: Vec<f32> = src.iter().map(|&v| if j < 3 { v.max(0.0) } else { v }).collect();
            assert_eq!(got[..want.len()], want, "len {len}: slot {j} after a run of 3");
        }
        let e = plan.run_chunk(&gpu, &[sparsetrain::step::StepBlock::default(); 6]).unwrap_err();
        assert!(e.to_string().contains("1 to 5"), "{e}");
        // A Recorder::new plan reads the device's shared, all-zero block.
        let block = sparsetrain::step::StepBlock { batch: 1, ..Default::default() };
        let e = plan.run_chunk(&gpu, &[block]).unwrap_err();
        assert!(e.to_string().contains("shared step block"), "{e}");
    }
}
