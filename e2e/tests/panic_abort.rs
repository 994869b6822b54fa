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

/// The compiler warning while building jisr with `panic = "abort"`.
const BUILD_WARNING: &str = "jisr is built with panic = \"abort\": a panicking handler will \
                             abort Envoy instead of answering 500; build with panic = \"unwind\"";

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
/// Building jisr with `panic = "abort"` (a profile or `-C panic=abort`) prints a compiler warning,
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
