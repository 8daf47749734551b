//! Shader validation without a device: every file of `shaders/` parses and
//! validates with naga (the version wgpu uses), every kernel's entry point
//! exists, and every params struct has the size naga lays out for its WGSL
//! twin.

use std::collections::BTreeSet;

use sparsetrain::ops::params_layouts;
use sparsetrain::shader::{Kernel, SHARED, Shader, preprocess};

fn validate(name: &str, src: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name} does not parse:\n{}", e.emit_to_string_with_path(src, name)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name} does not validate:\n{}", e.emit_to_string_with_path(src, name)));
    module
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
        // (it uses the shader's bindings): it validates as part of it, which
        // must include it. Other shared files are leaves that stand alone.
        let owner = on_disk.iter().find(|f| name.starts_with(&format!("{}_", f.trim_end_matches(".wgsl"))));
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
