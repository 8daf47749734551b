//! What to tell a user when no adapter is found although a Vulkan driver
//! may be installed: the driver manifests (ICD files) on the machine's
//! usual paths, which the Vulkan loader did not use. On the lent NVIDIA
//! machine the loader ignored `/usr/share/vulkan/icd.d/nvidia_icd.json`
//! until `VK_DRIVER_FILES` named it, and the error said only to install a
//! driver.

use std::path::{Path, PathBuf};

/// The folders the Vulkan loader reads driver manifests from on Linux:
/// `$XDG_CONFIG_DIRS`, `/etc`, `$XDG_DATA_DIRS` (or `/usr/local/share` and
/// `/usr/share`), each with `vulkan/icd.d`, and where NVIDIA's container
/// runtime puts them.
fn icd_dirs() -> Vec<PathBuf> {
    let split = |var: &str, default: &str| {
        let v = std::env::var(var).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_string());
        v.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect::<Vec<_>>()
    };
    let mut roots = split("XDG_CONFIG_DIRS", "/etc/xdg");
    roots.push(PathBuf::from("/etc"));
    roots.extend(split("XDG_DATA_DIRS", "/usr/local/share:/usr/share"));
    roots.extend(["/usr/share", "/usr/local/share", "/usr/local/nvidia/share"].map(PathBuf::from));
    let mut dirs: Vec<PathBuf> = roots.into_iter().map(|r| r.join("vulkan/icd.d")).collect();
    dirs.dedup();
    dirs
}

/// The hint for `Error::NoAdapter` (empty where there is nothing to add):
/// what `VK_DRIVER_FILES` / `VK_ICD_FILENAMES` name that does not exist,
/// else the driver manifests found in `dirs` and how to name one.
pub fn hint_in(dirs: &[PathBuf], driver_files: Option<&str>) -> String {
    if let Some(files) = driver_files.filter(|f| !f.trim().is_empty()) {
        let missing: Vec<&str> = files.split(':').filter(|f| !f.is_empty() && !Path::new(f).exists()).collect();
        return if missing.is_empty() {
            format!("; VK_DRIVER_FILES / VK_ICD_FILENAMES name {files}, and the loader found no adapter through them")
        } else {
            format!("; VK_DRIVER_FILES / VK_ICD_FILENAMES name files that do not exist: {}", missing.join(", "))
        };
    }
    let mut found: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut here: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
        here.sort();
        for p in here {
            if !found.contains(&p) {
                found.push(p);
            }
        }
    }
    match found.first() {
        None => String::new(),
        Some(first) => format!(
            "; driver manifests found that the Vulkan loader did not use: {} (to name one: VK_DRIVER_FILES={})",
            found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            first.display()
        ),
    }
}

/// `hint_in` for this machine (empty off Linux, where the loader finds
/// drivers its own way).
pub fn hint() -> String {
    if !cfg!(target_os = "linux") {
        return String::new();
    }
    let files = std::env::var("VK_DRIVER_FILES").or_else(|_| std::env::var("VK_ICD_FILENAMES")).ok();
    hint_in(&icd_dirs(), files.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_manifests_found_and_the_missing_ones_asked_for() {
        let dir = std::env::temp_dir().join(format!("sparsetrain-icd-{}", std::process::id()));
        let (a, b) = (dir.join("a/vulkan/icd.d"), dir.join("b/vulkan/icd.d"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("nvidia_icd.json"), "{}").unwrap();
        std::fs::write(a.join("readme.txt"), "").unwrap();
        std::fs::write(b.join("lvp_icd.x86_64.json"), "{}").unwrap();
        let dirs = [a.clone(), b.clone(), dir.join("none/vulkan/icd.d")];
        let h = hint_in(&dirs, None);
        let first = a.join("nvidia_icd.json").display().to_string();
        assert!(h.contains(&first) && h.contains("lvp_icd.x86_64.json"), "{h}");
        assert!(h.contains(&format!("VK_DRIVER_FILES={first}")) && !h.contains("readme"), "{h}");
        // Nothing found: nothing to add.
        assert_eq!(hint_in(&[dir.join("none")], None), "");
        // A variable naming a file that is not there says so.
        let h = hint_in(&dirs, Some("/nonexistent/nvidia_icd.json"));
        assert!(h.contains("do not exist: /nonexistent/nvidia_icd.json"), "{h}");
        let h = hint_in(&dirs, Some(&first));
        assert!(h.contains("found no adapter through them"), "{h}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
