//! Building the module `.so` files (`lib<name>.so`) once per process: the jisr examples and the
//! test-only fixtures of `e2e/fixtures/` (package `jisr-fixtures`).

use crate::paths::{target_dir, workspace_root};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest time a module build may take before the harness gives up.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// Directory holding the module `.so` files, for `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
///
/// `JISR_MODULES_DIR` overrides it (no build). Otherwise the first call runs
/// `cargo build --examples -p jisr -p jisr-fixtures` (same cargo as the caller, same target
/// dir) and returns `<target>/debug/examples`, where the examples of both packages land;
/// later calls reuse the result. Under `cargo test` this is a quick no-op check: cargo
/// releases the target-dir lock before it runs test binaries (checked with cargo 1.95; the
/// nested build finished in ~0.1 s). Panics with cargo's output if the build fails.
pub fn modules_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("JISR_MODULES_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        build_examples()
    })
    .clone()
}

/// Path of `lib<name>.so` in [`modules_dir`].
pub fn module_path(name: &str) -> PathBuf {
    modules_dir().join(format!("lib{name}.so"))
}

fn build_examples() -> PathBuf {
    let started = Instant::now();
    cargo_build(&["--examples"], "modules-build");
    eprintln!("jisr-e2e: modules built in {:?}", started.elapsed());
    target_dir().join("debug").join("examples")
}

/// One module built with a Cargo profile of the workspace: where it is, and what cargo printed
/// (compiler warnings included).
#[derive(Debug, Clone)]
pub struct ProfileBuild {
    /// `<target>/<profile>/examples`, for [`crate::EnvoyConfig::modules_dir`].
    pub dir: PathBuf,
    /// Cargo's output (stdout and stderr). Cargo replays cached warnings, so a warning is
    /// here even when nothing was recompiled.
    pub output: String,
}

/// Builds module `name` (a jisr example or a fixture) with the Cargo profile `profile`
/// (`cargo build --example <name> --profile <profile> -p jisr -p jisr-fixtures`, same cargo
/// and target dir as [`modules_dir`]). Each call runs cargo; a build that is already fresh
/// takes well under a second. Panics with cargo's output if the build fails.
pub fn build_example_with_profile(name: &str, profile: &str) -> ProfileBuild {
    let started = Instant::now();
    let output = cargo_build(
        &["--example", name, "--profile", profile],
        &format!("{name}-{profile}-build"),
    );
    eprintln!(
        "jisr-e2e: module {name} (profile {profile}) built in {:?}",
        started.elapsed()
    );
    ProfileBuild {
        dir: target_dir().join(profile).join("examples"),
        output,
    }
}

/// The packages whose examples are modules: the jisr examples and the test fixtures.
const MODULE_PACKAGES: [&str; 4] = ["-p", "jisr", "-p", "jisr-fixtures"];

/// Runs `cargo build <what>` for [`MODULE_PACKAGES`] in the workspace with its output in a log
/// file; returns the output, or panics with it if cargo fails or takes longer than
/// [`BUILD_TIMEOUT`].
fn cargo_build(what: &[&str], log_stem: &str) -> String {
    let target = target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let log = crate::paths::log_dir().join(format!("{log_stem}-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).expect("create module build log");
    let started = Instant::now();
    let mut child = Command::new(&cargo)
        .current_dir(workspace_root())
        .arg("build")
        .args(what)
        .args(MODULE_PACKAGES)
        .arg("--target-dir")
        .arg(&target)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("dup log"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    let command = format!(
        "cargo build {} {}",
        what.join(" "),
        MODULE_PACKAGES.join(" ")
    );
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for cargo") {
            break s;
        }
        if started.elapsed() > BUILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{command}` took longer than {BUILD_TIMEOUT:?}; log: {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "`{command}` failed ({status}):\n{output}");
    output
}
