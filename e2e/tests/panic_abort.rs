//! A module built with `panic = "abort"` in real Envoy: jisr cannot catch a handler panic
//! there, so it warns when the module is built and when Envoy loads it. A normal (unwind)
//! build does not warn.
//!
//! The abort build is the `fault_fixture` module (`e2e/fixtures/`) built with the workspace
//! profile `panic-abort` (`cargo build --example fault_fixture --profile panic-abort`, into
//! `target/panic-abort/`). Its `hello_mw_panic` filter serves normally and panics on request.

use jisr_e2e::{
    Envoy, EnvoyConfig, Listener, Upstream, abi_load_line, build_example_with_profile, client,
    module_filter,
};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// The line the module logs when Envoy loads it.
const LOAD_WARNING: &str = "jisr: this module was built with panic = \"abort\": a panicking \
                            handler aborts Envoy instead of answering 500; build with panic = \
                            \"unwind\"";

/// The compiler warning `jisr::export!` gives in the filter's crate built with `panic = "abort"`.
const BUILD_WARNING: &str = "this module is built with panic = \"abort\": a panicking handler \
                             will abort Envoy instead of answering 500; build with panic = \
                             \"unwind\" (jisr)";

fn mw_config(up: &Upstream) -> EnvoyConfig {
    EnvoyConfig::new()
        .listener(Listener::new("mw").filter(module_filter(
            "fault_fixture",
            "hello_mw_panic",
            None,
        )))
        .upstream(up.port())
}

/// Index of the first log line containing `needle`, panicking with the log if there is none.
fn line_of(log: &str, needle: &str) -> usize {
    log.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no log line contains {needle:?}:\n{log}"))
}

/// The abort build warns at build time, warns once at load (before Envoy's ABI line, at
/// warning level), still serves, and a handler panic then takes Envoy down: the warning is
/// true.
///
/// Building a module with `panic = "abort"` (a profile or `-C panic=abort`) prints a compiler
/// warning where the module calls `jisr::export!`,
/// and the loaded module logs once, before the ABI line: `[warning][dynamic_modules] [:] jisr: this
/// module was built with panic = "abort": a panicking handler aborts Envoy instead of answering
/// 500; build with panic = "unwind"`. The first handler panic aborts Envoy (`SIGABRT`); the
/// client's connection closes without an answer.
#[test]
fn abort_build_warns_at_build_and_load_and_a_panic_aborts_envoy() {
    let built = build_example_with_profile("fault_fixture", "panic-abort");
    assert!(
        built.output.contains(BUILD_WARNING),
        "cargo printed no panic = \"abort\" warning:\n{}",
        built.output
    );

    let up = Upstream::start("abort-up");
    let envoy = Envoy::start(&mw_config(&up).modules_dir(&built.dir));
    let r = client::get(envoy.listener_port("mw"), "/greet");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-hello"].as_str(), Some("from-jisr"));

    let log = envoy.log();
    assert_eq!(log.matches(LOAD_WARNING).count(), 1, "{log}");
    let warning = line_of(&log, LOAD_WARNING);
    let line = log.lines().nth(warning).unwrap_or_default();
    assert!(line.contains("[warning][dynamic_modules]"), "{line}");
    assert!(warning < line_of(&log, abi_load_line()), "{log}");

    // What the warning says: no 500, Envoy itself goes down.
    let answer = client::try_request(
        envoy.listener_port("mw"),
        "GET",
        "/boom",
        &[("x-mw-panic", "1")],
        b"",
    );
    assert!(
        answer.is_err(),
        "Envoy answered a panic in an abort build: {:?}",
        answer.map(|r| r.status)
    );
    let mut status = None;
    jisr_e2e::wait_until(WAIT, || {
        status = envoy.exit_status();
        status.is_some()
    });
    let status = status.unwrap_or_else(|| panic!("Envoy still runs:\n{}", envoy.log()));
    assert_eq!(status.signal(), Some(6), "not SIGABRT: {status}");
}

/// The normal build loads without the warning (and with the ABI line, so the module loaded).
///
/// A normal build logs no such line and answers a panic with `500`.
#[test]
fn unwind_build_does_not_warn() {
    let up = Upstream::start("unwind-up");
    let envoy = Envoy::start(&mw_config(&up));
    let r = client::request(
        envoy.listener_port("mw"),
        "GET",
        "/boom",
        &[("x-mw-panic", "1")],
        b"",
    );
    assert_eq!(r.status, 500, "{}", r.text());
    let log = envoy.log();
    line_of(&log, abi_load_line());
    assert!(!log.contains("panic = \"abort\""), "{log}");
    envoy.assert_ready();
}

/// The build warning reaches a filter author who takes jisr as a git dependency (Cargo hides
/// every warning inside git and crates.io dependencies): it comes from `jisr::export!`, which
/// expands in the author's crate. The package `cargo package` makes of this checkout becomes a
/// one-commit git repository in `target/`, and a crate there depends on it through a `file://`
/// URL and is built with `panic = "abort"`.
#[test]
fn a_git_dependency_still_shows_the_abort_warning() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root");
    let dir = root.join("target/e2e-abort-user");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("user/src")).unwrap();
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().expect("run");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{cmd:?} failed:\n{text}");
        text
    };
    let cargo = env!("CARGO");
    run(std::process::Command::new(cargo)
        .args([
            "package",
            "-p",
            "jisr-buffer",
            "-p",
            "jisr",
            "--no-verify",
            "--allow-dirty",
            "--quiet",
        ])
        .arg("--target-dir")
        .arg(dir.join("pkg"))
        .current_dir(&root));
    // jisr and the crate it depends on, `jisr-buffer`, packaged together (it is not on
    // crates.io yet; the user's manifest below patches it in from its package).
    let packaged = |name: &str| {
        std::fs::read_dir(dir.join("pkg/package"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.extension().is_some_and(|x| x == "crate")
                    && p.file_stem()
                        .and_then(|s| s.to_str())
                        .and_then(|s| s.strip_prefix(name))
                        .is_some_and(|rest| rest.starts_with("-0"))
            })
            .unwrap_or_else(|| panic!("the packaged crate {name}"))
    };
    let krate = packaged("jisr");
    let buffer = packaged("jisr-buffer");
    for k in [&krate, &buffer] {
        run(std::process::Command::new("tar")
            .arg("xzf")
            .arg(k)
            .arg("-C")
            .arg(&dir));
    }
    let buffer_src = dir.join(buffer.file_stem().unwrap());
    let src = dir.join(krate.file_stem().unwrap());
    run(std::process::Command::new("git")
        .arg("init")
        .arg("-q")
        .current_dir(&src));
    run(std::process::Command::new("git")
        .args(["add", "-A"])
        .current_dir(&src));
    run(std::process::Command::new("git")
        .args(["-c", "user.name=jisr", "-c", "user.email=jisr@localhost"])
        .args(["commit", "-q", "-m", "package"])
        .current_dir(&src));
    std::fs::write(
        dir.join("user/Cargo.toml"),
        format!(
            "[package]\nname = \"abort-user\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\
             [dependencies]\njisr = {{ git = \"file://{}\" }}\n\
             [patch.crates-io]\njisr-buffer = {{ path = \"{}\" }}\n\
             [profile.dev]\npanic = \"abort\"\n[workspace]\n",
            src.display(),
            buffer_src.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("user/src/lib.rs"),
        "fn register(r: &mut jisr::Registry) {\n    \
         r.register(\"noop\", |_q: jisr::Request<'_>, _w: jisr::ResponseWriter<'_>| async {});\n}\n\
         jisr::export!(register);\n",
    )
    .unwrap();
    let text = run(std::process::Command::new(cargo)
        .args(["build", "--quiet"])
        .current_dir(dir.join("user"))
        .env("CARGO_TARGET_DIR", dir.join("user/target")));
    assert!(
        text.contains(BUILD_WARNING),
        "no warning for a git dependency:\n{text}"
    );
    assert!(
        text.contains("src/lib.rs:4"),
        "the warning does not point at export!:\n{text}"
    );
}
