//! The crate's module structure: no import cycles between the modules under
//! src/ (the command line, src/cli and src/main.rs, stands apart). The same
//! rule as scripts/module_cycles.py, checked by the test suite so that a
//! cycle fails CI rather than waiting for someone to run the script.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path of a source file relative to src/ (`device/gpu.rs` ->
/// `device::gpu`, `nn/mod.rs` -> `nn`).
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        let rel = path.strip_prefix(root).expect("under src/").to_path_buf();
        if path.is_dir() {
            if rel != Path::new("cli") {
                sources(&path, root, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && rel != Path::new("main.rs") {
            let text = std::fs::read_to_string(&path).expect("readable source");
            // Unit tests may reach anywhere.
            let text = text.split("#[cfg(test)]").next().unwrap_or_default().to_string();
            out.insert(module_of(&rel), text);
        }
    }
}

/// The module paths named after each `prefix` (`crate::`, `super::`).
fn paths_after<'t>(text: &'t str, prefix: &str) -> Vec<&'t str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let after = &rest[i + prefix.len()..];
        let end = after.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':'));
        found.push(&after[..end.unwrap_or(after.len())]);
        rest = after;
    }
    found
}

#[test]
fn modules_have_no_import_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    sources(&root, &root, &mut files);
    assert!(files.len() > 20, "found only {} modules under src/", files.len());
    let mods: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (m, text) in &files {
        let parent = m.rsplit_once("::").map_or("", |(p, _)| p);
        let mut named: Vec<String> = paths_after(text, "crate::").into_iter().map(str::to_string).collect();
        for p in paths_after(text, "super::") {
            named.push(if parent.is_empty() { p.to_string() } else { format!("{parent}::{p}") });
        }
        for path in named {
            let parts: Vec<&str> = path.trim_matches(':').split("::").collect();
            // The longest prefix of the path that is a module other than m,
            // its ancestors and its descendants.
            for n in (1..=parts.len()).rev() {
                let cand = parts[..n].join("::");
                let related = m.starts_with(&format!("{cand}::")) || cand.starts_with(&format!("{m}::"));
                if let Some(&c) = mods.get(cand.as_str()).filter(|&&c| c != m.as_str() && !related) {
                    edges.entry(m.as_str()).or_default().insert(c);
                    break;
                }
            }
        }
    }
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(v) = todo.pop() {
            for &w in edges.get(v.as_str()).into_iter().flatten() {
                if seen.insert(w.to_string()) {
                    todo.push(w.to_string());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&str, BTreeSet<String>> = mods.iter().map(|&m| (m, reach(m))).collect();
    let cycles: Vec<String> = edges
        .iter()
        .flat_map(|(&a, bs)| bs.iter().map(move |&b| (a, b)))
        .filter(|&(a, b)| reaches[b].contains(a))
        .map(|(a, b)| format!("{a} -> {b} -> ... -> {a}"))
        .collect();
    assert!(cycles.is_empty(), "import cycles between modules:\n{}", cycles.join("\n"));
}
