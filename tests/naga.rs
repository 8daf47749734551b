//! Shader validation without a device: every file of `shaders/` parses and
//! validates with naga (the version wgpu uses), every kernel's entry point
//! exists, and every params struct has the size naga lays out for its WGSL
//! twin.

use std::collections::BTreeSet;

use sparsetrain::ops::params_layouts;
use sparsetrain::shader::{Kernel, SHARED, Shader, coop_source, preprocess};

/// Parses and validates with the capabilities the shader's device features
/// give (WebGPU's defaults for all but the mixed-precision matmul).
fn validate(name: &str, src: &str) -> naga::Module {
    validate_with_info(name, src).0
}

fn validate_with_info(name: &str, src: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let caps = Shader::ALL
        .iter()
        .find(|s| name.ends_with(s.file_name()))
        .map_or(naga::valid::Capabilities::default(), |s| s.capabilities());
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name} does not parse:\n{}", e.emit_to_string_with_path(src, name)));
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name} does not validate:\n{}", e.emit_to_string_with_path(src, name)));
    (module, info)
}

/// The constants of a matmul's layout, alignment (all operands alike) and
/// epilogues (all on or all off).
fn matmul_constants((trans_a, trans_b): (f64, f64), vec4: f64, epilogue: f64) -> [(&'static str, f64); 9] {
    [
        ("TRANS_A", trans_a),
        ("TRANS_B", trans_b),
        ("VEC4_A", vec4),
        ("VEC4_B", vec4),
        ("VEC4_C", vec4),
        ("BIAS", epilogue),
        ("RELU", epilogue),
        ("GATE", epilogue),
        ("SCATTER", epilogue),
    ]
}

/// `entry` of `module` specialised with `constants` as a pipeline would be,
/// through naga's SPIR-V writer for SPIR-V `version`; panics naming the
/// constants where either step fails.
fn spirv_of(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    constants: &[(&str, f64)],
    version: (u8, u8),
) {
    let c: naga::back::PipelineConstants = constants.iter().map(|&(k, v)| (k.to_string(), v)).collect();
    let ep = (naga::ShaderStage::Compute, entry);
    let (m, i) = naga::back::pipeline_constants::process_overrides(module, info, Some(ep), &c)
        .unwrap_or_else(|e| panic!("{entry} overrides {c:?}: {e}"));
    let options = naga::back::spv::Options { lang_version: version, ..Default::default() };
    let pipeline =
        naga::back::spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: entry.into() };
    let words = naga::back::spv::write_vec(&m, &i, &options, Some(&pipeline))
        .unwrap_or_else(|e| panic!("SPIR-V of {entry} for {c:?}: {e}"));
    assert!(words.len() > 100);
}

/// The mixed-precision matmul through naga's SPIR-V writer, which is young
/// for cooperative matrices (its writer panicked on an inline uniform
/// operand of `coopStoreT` on the H100 probe): every layout, implicit mode
/// and epilogue combination the launcher can build, every block shape,
/// specialised as a pipeline would be, for cooperative matrices of 16 × 16
/// (GPUs) and of 8 × 8 (lavapipe). No device needed.
#[test]
fn coop_matmul_writes_spirv_for_every_configuration() {
    for frag in [16, 8] {
        let written = coop_spirv(frag);
        assert_eq!(written, 312, "configurations written for {frag} × {frag}");
    }
    assert!(coop_source(12).is_err());
}

fn coop_spirv(frag: u32) -> usize {
    let shader = Shader::MatmulCoop;
    let src = coop_source(frag).unwrap();
    assert_eq!(src.contains("coop_mat8x8"), frag == 8);
    let (module, info) = validate_with_info(shader.file_name(), &src);
    let mut written = 0;
    for (trans_a, trans_b) in [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0)] {
        for implicit in [0.0, 1.0, 2.0, 3.0] {
            for (epilogue, vec4) in [(0.0, 1.0), (1.0, 0.0)] {
                // The staged kernel's shapes, then the direct kernel's
                // (square subgroup blocks; packs padded to the block tile),
                // one piece of K a pass and two (COOP_UNROLL), and the
                // tiled kernel's.
                let shapes = [
                    ("matmul_coop", 2.0, 2.0, 2.0, 128.0, 0.0),
                    ("matmul_coop", 2.0, 4.0, 2.0, 256.0, 0.0),
                    ("matmul_coop", 4.0, 2.0, 2.0, 128.0, 0.0),
                    ("matmul_coop_direct", 2.0, 2.0, 2.0, 128.0, 0.0),
                    ("matmul_coop_direct", 4.0, 2.0, 2.0, 128.0, 0.0),
                    ("matmul_coop_direct", 4.0, 1.0, 1.0, 32.0, 0.0),
                    ("matmul_coop_direct", 2.0, 2.0, 2.0, 128.0, 1.0),
                    ("matmul_coop_direct", 4.0, 2.0, 4.0, 256.0, 1.0),
                    ("matmul_coop_direct", 4.0, 4.0, 2.0, 256.0, 0.0),
                    ("matmul_coop_tiled", 2.0, 2.0, 2.0, 128.0, 0.0),
                    ("matmul_coop_tiled", 4.0, 2.0, 2.0, 128.0, 0.0),
                    ("matmul_coop_tiled", 4.0, 2.0, 4.0, 256.0, 0.0),
                    ("matmul_coop_tiled", 4.0, 4.0, 2.0, 256.0, 0.0),
                ];
                for (entry, tm, wm, wn, threads, unroll) in shapes {
                    let side = f64::from(frag) * tm;
                    let mut constants = matmul_constants((trans_a, trans_b), vec4, epilogue).to_vec();
                    constants.extend([
                        ("WG_X", threads),
                        ("WG_Y", 1.0),
                        ("IMPLICIT", implicit),
                        ("COOP_TM", tm),
                        ("COOP_WM", wm),
                        ("COOP_WN", wn),
                        ("PACK_BM", side * wm),
                        ("PACK_BN", side * wn),
                        ("COOP_UNROLL", unroll),
                        ("COOP_TN", if entry == "matmul_coop_tiled" { tm } else { 2.0 }),
                    ]);
                    if entry == "matmul_coop_tiled" && threads > 128.0 {
                        // Eight subgroups stage K slices of 16 (`coop_tiled_depth`).
                        constants.push(("CBK", 16.0));
                    }
                    spirv_of(&module, &info, entry, &constants, (1, 4));
                    written += 1;
                }
            }
        }
    }
    written
}

/// `matmul_wide` reading K-major packs and `matmul_kpack` writing them,
/// specialised as the launcher builds them (every layout, both block tiles
/// and depths, aligned or not, with and without epilogues), through naga's
/// SPIR-V writer. No device needed.
#[test]
fn wide_from_kpacks_specialises_for_every_layout() {
    let shader = Shader::Matmul;
    let src = shader.source().unwrap();
    let (module, info) = validate_with_info(shader.file_name(), &src);
    let mut written = 0;
    for (trans_a, trans_b) in [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0)] {
        // What the launcher packs: A stored [M, K], B stored [N, K].
        let (kpack_a, kpack_b) = (1.0 - trans_a, trans_b);
        for (wg, bk) in [(16.0, 8.0), (16.0, 16.0), (8.0, 8.0)] {
            for (epilogue, vec4) in [(0.0, 1.0), (1.0, 0.0)] {
                for entry in ["matmul_wide", "matmul_kpack"] {
                    let mut constants = matmul_constants((trans_a, trans_b), vec4, epilogue).to_vec();
                    constants.extend([
                        ("WG_X", wg),
                        ("WG_Y", wg),
                        ("WBK", bk),
                        ("KPACK_A", kpack_a),
                        ("KPACK_B", kpack_b),
                        ("PACK_BM", 8.0 * wg),
                        ("PACK_BN", 8.0 * wg),
                    ]);
                    spirv_of(&module, &info, entry, &constants, (1, 3));
                    written += 1;
                }
            }
        }
    }
    assert_eq!(written, 36);
}

#[test]
fn every_shader_file_validates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    let registered: BTreeSet<String> = Shader::ALL.iter().map(|s| s.file_name().to_string()).collect();
    assert_eq!(on_disk, registered, "every shaders/*.wgsl must be registered in shader::Shader (and vice versa)");
    for name in &on_disk {
        // Read from disk, not the embedded copy, so the test sees the file itself.
        let raw = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        let src = preprocess(&raw, "test").unwrap();
        validate(name, &src);
    }
    for (name, src) in SHARED {
        // A shared file named `<shader>_<part>` is a fragment of that shader
        // (it uses the shader's bindings; the longest such name:
        // matmul_coop_tiled is matmul_coop's): it validates as part of it,
        // which must include it. Other shared files are leaves that stand
        // alone.
        let owner = on_disk
            .iter()
            .filter(|f| name.starts_with(&format!("{}_", f.trim_end_matches(".wgsl"))))
            .max_by_key(|f| f.len());
        match owner {
            Some(f) => {
                let raw = std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
                assert!(
                    raw.contains(&format!("//#include {name}\n")),
                    "{f} must include its fragment shared/{name}.wgsl"
                );
            }
            None => {
                validate(&format!("shared/{name}.wgsl"), src);
            }
        }
    }
}

/// `Kernel::ALL` and the shaders' entry points are the same set: a kernel
/// without an entry point, or an entry point no launcher can reach, fails.
#[test]
fn kernels_and_entry_points_correspond() {
    let mut registered = BTreeSet::new();
    for k in Kernel::ALL {
        assert!(registered.insert((k.shader().file_name(), k.entry_point())), "{k:?} listed twice in Kernel::ALL");
    }
    let mut found = BTreeSet::new();
    for shader in Shader::ALL {
        let module = validate(shader.file_name(), &shader.source().unwrap());
        for e in &module.entry_points {
            found.insert((shader.file_name(), e.name.as_str().to_owned()));
        }
    }
    let registered: BTreeSet<(&str, String)> = registered.into_iter().map(|(f, e)| (f, e.to_owned())).collect();
    assert_eq!(registered, found, "Kernel::ALL must list exactly the shaders' entry points");
}

#[test]
fn params_structs_match_wgsl_layout() {
    let layouts = params_layouts();
    assert!(layouts.len() >= Shader::ALL.len(), "every shader has at least one params struct");
    for (shader, wgsl_name, rust_size) in layouts {
        let module = validate(shader.file_name(), &shader.source().unwrap());
        let (handle, _) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(wgsl_name))
            .unwrap_or_else(|| panic!("struct {wgsl_name} not found in {}", shader.file_name()));
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let wgsl_size = layouter[handle].size as usize;
        assert_eq!(
            rust_size,
            wgsl_size,
            "{wgsl_name}: Rust struct is {rust_size} bytes, WGSL struct in {} is {wgsl_size} bytes",
            shader.file_name()
        );
        // Uniform buffers want sizes in multiples of 16 bytes.
        assert_eq!(rust_size % 16, 0, "{wgsl_name} is {rust_size} bytes, not a multiple of 16");
    }
}

#[test]
fn unknown_include_is_an_error() {
    assert!(preprocess("//#include nothing_here\n", "t.wgsl").is_err());
}

#[test]
fn grid_helpers_cover_every_thread() {
    use sparsetrain::shader::grid_1d;
    for (threads, wg, max) in
        [(1u32, 256u32, 65535u32), (256, 256, 65535), (257, 256, 65535), (70_000_000, 256, 65535), (1000, 8, 12)]
    {
        let g = grid_1d(threads, wg, max);
        assert!(g.x <= max && g.y <= max, "{g} exceeds {max}");
        assert!(g.x as u64 * g.y as u64 * wg as u64 >= threads as u64, "{g} does not cover {threads}");
    }
}

/// The layouts pipelines are built with, read from every shader without a
/// device (the mixed-precision matmul's too, which lavapipe never compiles):
/// every kernel's entry point has its bindings, each a uniform or storage
/// buffer with a non-zero least size, and the step block, where read, is
/// the uniform at `STEP_BINDING` of `StepBlock`'s size.
#[test]
fn every_kernel_has_a_layout_read_from_its_shader() {
    use sparsetrain::device::layout::{Use, used_bindings};
    use sparsetrain::step::{STEP_BINDING, STEP_BYTES};
    for shader in Shader::ALL {
        let uses = used_bindings(&shader.source().unwrap(), shader.file_name())
            .unwrap_or_else(|e| panic!("{}: {e}", shader.file_name()));
        for kernel in Kernel::ALL.iter().filter(|k| k.shader() == shader) {
            let b = uses.get(kernel.entry_point()).unwrap_or_else(|| panic!("{}: no layout", kernel.entry_point()));
            assert!(!b.is_empty(), "{}: binds nothing", kernel.entry_point());
            assert!(b.windows(2).all(|w| w[0].0 < w[1].0), "{}: bindings not sorted: {b:?}", kernel.entry_point());
            for &(binding, u) in b {
                let min = match u {
                    Use::Uniform { min } | Use::Storage { min, .. } => min,
                };
                assert!(min > 0, "{} binding {binding}: no least size", kernel.entry_point());
                if binding == STEP_BINDING {
                    assert_eq!(u, Use::Uniform { min: STEP_BYTES }, "{}: the step block", kernel.entry_point());
                }
            }
        }
    }
}
