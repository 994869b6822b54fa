//! Where things live: workspace root, target dir, log dir. Computed at run time.

use std::path::PathBuf;

/// The workspace root (parent of the `e2e` crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The workspace target dir: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// `target/e2e-logs/`, created on demand: Envoy logs and rendered configs. The first call in
/// a process deletes files there older than a day, so the directory does not grow forever.
pub fn log_dir() -> PathBuf {
    static PRUNED: std::sync::Once = std::sync::Once::new();
    let d = target_dir().join("e2e-logs");
    let _ = std::fs::create_dir_all(&d);
    PRUNED.call_once(|| prune(&d, std::time::Duration::from_secs(24 * 3600)));
    d
}

fn prune(dir: &std::path::Path, max_age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > max_age);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
