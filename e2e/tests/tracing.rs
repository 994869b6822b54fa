//! Feature `tracing` in real Envoy: a handler's `tracing` events, with their fields, are lines
//! of Envoy's `dynamic_modules` log, at the event's level, and Envoy's level filters them.

use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, client, module_filter};
use std::time::Duration;

#[test]
fn tracing_events_with_their_fields_reach_envoys_log() {
    let up = Upstream::start("tracing-up");
    // The harness runs Envoy with `--component-log-level dynamic_modules:debug`.
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("main").filter(module_filter(
                "tracing_fixture",
                "traced",
                None,
            )))
            .upstream(up.port()),
    );
    let r = client::request(
        envoy.listener_port("main"),
        "GET",
        "/orders/7",
        &[("x-user", "ana maria")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let info = r#"[info][dynamic_modules] "#;
    let line = r#"request seen path=/orders/7 user="ana maria" attempts=2"#;
    assert!(
        envoy.wait_for_log(line, Duration::from_secs(5)),
        "no {line:?} in Envoy's log:\n{}",
        envoy.log()
    );
    let log = envoy.log();
    let info_line = log.lines().find(|l| l.contains(line)).unwrap();
    assert!(info_line.contains(info), "{info_line}");
    // Envoy 1.40 shows the event's own source location.
    if jisr_e2e::envoy_minor() >= (1, 40) {
        assert!(
            info_line.contains("[e2e/fixtures/examples/tracing_fixture.rs:"),
            "{info_line}"
        );
    }
    let debug_line = log
        .lines()
        .find(|l| l.ends_with("details checked=true"))
        .unwrap_or_else(|| panic!("no debug event line:\n{log}"));
    assert!(
        debug_line.contains("[debug][dynamic_modules]"),
        "{debug_line}"
    );
    assert!(
        !log.contains("too fine for the log level"),
        "a trace event was written at debug level:\n{log}"
    );
}
