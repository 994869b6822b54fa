//! Filter configs Envoy must refuse at startup because a jisr module rejects them, with the
//! module's reason in Envoy's log.
//!
//! Envoy refuses to start and exits non-zero. The module's line is `[error][dynamic_modules] jisr:
//! filter '<name>' rejected its config: <reason>`, e.g. `filter_config: at `allowed_keys`:
//! trailing comma at line 1 column 27` or `limit must be a byte count: invalid digit found in
//! string`. Envoy's own line is generic: `Failed to create filter config: Failed to initialize dynamic module`. It names neither
//! the filter nor the reason, so the reason is only visible through the module's log line.

use jisr_e2e::{Envoy, EnvoyConfig, Listener, module_filter};

fn refused(module: &str, filter: &str, config: Option<&str>) -> String {
    let cfg = EnvoyConfig::new()
        .listener(Listener::new("main").filter(module_filter(module, filter, config)))
        .upstream(1);
    let (status, log) = Envoy::start_expect_failure(&cfg);
    assert!(!status.success(), "exit {status}\n{log}");
    // Envoy's own line names neither the filter nor the reason; the module's line does.
    assert_logged(
        &log,
        "Failed to create filter config: Failed to initialize dynamic module",
    );
    assert!(
        log.lines()
            .any(|l| l.contains("[error][dynamic_modules]") && l.contains("jisr: ")),
        "no jisr error line from the dynamic_modules logger:\n{log}"
    );
    log
}

fn assert_logged(log: &str, needle: &str) {
    assert!(log.contains(needle), "no {needle:?} in Envoy's log:\n{log}");
}

#[test]
fn malformed_auth_json_is_refused_with_the_parse_error() {
    let log = refused("auth", "auth", Some(r#"{"allowed_keys": ["key-1",]"#));
    // The typed loader's error: where in the JSON, with serde_json's position.
    assert_logged(
        &log,
        "jisr: filter 'auth' rejected its config: filter_config: at `allowed_keys`: \
         trailing comma at line 1 column 27",
    );
}

/// JSON of the wrong shape is refused with the reason, naming the bad field's path (`auth`
/// parses its config with `ConfigHandle::json`). The module gets the raw bytes of the
/// `google.protobuf.StringValue`'s `value`; with no `filter_config` at all it gets zero-length
/// bytes, which the loader refuses as empty.
#[test]
fn auth_config_with_wrong_shape_is_refused() {
    let log = refused("auth", "auth", Some(r#"{"keys":["key-1"]}"#));
    assert_logged(
        &log,
        "jisr: filter 'auth' rejected its config: filter_config: at `keys`: unknown field \
         `keys`, expected `allowed_keys` or `keys_secret` at line 1 column 7",
    );
    let log = refused("auth", "auth", Some(r#"{"allowed_keys":["key-1",7]}"#));
    assert_logged(
        &log,
        "jisr: filter 'auth' rejected its config: filter_config: at `allowed_keys[1]`: \
         invalid type: integer `7`, expected a string at line 1 column 26",
    );
    let log = refused("auth", "auth", Some("{}"));
    assert_logged(
        &log,
        "jisr: filter 'auth' rejected its config: filter_config: `allowed_keys` or \
         `keys_secret` is required",
    );
    // No filter_config at all.
    let log = refused("auth", "auth", None);
    assert_logged(
        &log,
        "jisr: filter 'auth' rejected its config: filter_config: empty, expected a JSON document",
    );
}

#[test]
fn body_limit_that_is_not_a_number_is_refused() {
    let log = refused("async_demo", "body", Some("lots"));
    assert_logged(
        &log,
        "jisr: filter 'body' rejected its config: limit must be a byte count",
    );
}

#[test]
fn unknown_filter_name_is_refused_with_the_registered_names() {
    let log = refused("auth", "autth", None);
    assert_logged(
        &log,
        "jisr: unknown filter name 'autth'; this module registers: auth",
    );
    let log = refused("async_demo", "sleep", None);
    assert_logged(
        &log,
        "jisr: unknown filter name 'sleep'; this module registers: ",
    );
    let names = log
        .lines()
        .find_map(|l| l.split("this module registers: ").nth(1))
        .unwrap();
    for n in ["wait", "body"] {
        assert!(names.contains(n), "{names}");
    }
}

/// The messages of the README's troubleshooting table, as Envoy prints them: a module that
/// forgot `jisr::export!`, and a module that is not in the search path.
#[test]
fn troubleshooting_messages_are_what_envoy_prints() {
    let start = |module: &str| {
        let cfg = EnvoyConfig::new()
            .listener(Listener::new("main").filter(module_filter(module, "hello", None)))
            .upstream(1);
        let (status, log) = Envoy::start_expect_failure(&cfg);
        assert!(!status.success(), "exit {status}\n{log}");
        log
    };
    let log = start("no_export_fixture");
    assert_logged(
        &log,
        "Failed to resolve symbol envoy_dynamic_module_on_program_init",
    );
    let log = start("not_built_anywhere");
    assert_logged(
        &log,
        "libnot_built_anywhere.so not found in any search path",
    );
}
