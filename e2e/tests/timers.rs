//! jisr timers in real Envoy, driven by a server extension's main-thread timer: a `timeout`
//! whose future won must not freeze the timers of the process (requests, init hold, shutdown
//! grace).

use jisr_e2e::client;
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Route, module_filter, wait_until};
use std::time::{Duration, Instant};

fn server_yaml(config: &str) -> String {
    format!(
        r#"bootstrap_extensions:
- name: envoy.bootstrap.dynamic_modules
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.bootstrap.dynamic_modules.v3.DynamicModuleBootstrapExtension
    dynamic_module_config: {{ name: timer_fixture }}
    extension_name: timers
    extension_config:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: "{config}""#
    )
}

fn config(server: &str) -> EnvoyConfig {
    config_with(&server_yaml(server))
}

/// The two filters' listeners plus `bootstrap` (a whole `bootstrap_extensions:` list).
fn config_with(bootstrap: &str) -> EnvoyConfig {
    EnvoyConfig::new()
        .listener(
            Listener::new("guarded")
                .filter(module_filter("timer_fixture", "guarded", None))
                .route(Route::direct("/", 200, "not reached")),
        )
        .listener(
            Listener::new("nap")
                .filter(module_filter("timer_fixture", "nap", None))
                .route(Route::direct("/", 200, "not reached")),
        )
        .raw_top_level(bootstrap.to_string())
}

fn nap(envoy: &Envoy, ms: u64) -> (u16, Duration) {
    let t = Instant::now();
    let c = client::Client::new(Duration::from_secs(8));
    let ms = ms.to_string();
    let r = c.request(
        envoy.listener_port("nap"),
        "GET",
        "/",
        &[("x-nap-ms", ms.as_str())],
        b"",
    );
    (r.map_or(0, |r| r.status), t.elapsed())
}

fn sigterm(envoy: &Envoy) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &envoy.pid().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -TERM");
}

/// A body read under a 1 s `timeout` that arrives in time (the body comes 100 ms after the
/// head, so the timeout's deadline is registered first), then a 100 ms sleep that fires.
fn cancel_the_top_deadline(envoy: &Envoy) {
    let mut c = client::Connection::open(envoy.listener_port("guarded")).unwrap();
    c.send_chunked(
        "POST",
        "/",
        &[],
        &[b"", b"hello"],
        Duration::from_millis(100),
    )
    .unwrap();
    let r = c.read_response("POST").unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), envoy.log());
    assert_eq!(r.text(), "read 5\n");
    let (status, took) = nap(envoy, 100);
    assert_eq!(status, 200, "{}", envoy.log());
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// Three ordinary requests: the two above, then a 1.5 s sleep, which must answer after 1.5 s.
#[test]
fn timers_keep_firing_after_a_timeout_whose_future_won() {
    let envoy = Envoy::start(&config("0,0"));
    cancel_the_top_deadline(&envoy);
    let (status, took) = nap(&envoy, 1500);
    assert_eq!(status, 200, "the 1.5 s sleep never fired\n{}", envoy.log());
    assert!(
        (Duration::from_millis(1500)..Duration::from_millis(2500)).contains(&took),
        "{took:?}"
    );
}

/// After the same two requests, SIGTERM ends Envoy once the shutdown grace (5 s) is over: a
/// server task never finishes, so only the grace timer lets Envoy exit.
#[test]
fn sigterm_exits_after_the_grace_when_a_timeout_future_won() {
    let envoy = Envoy::start(&config("0,0"));
    cancel_the_top_deadline(&envoy);
    let t = Instant::now();
    sigterm(&envoy);
    let exited = wait_until(Duration::from_secs(15), || envoy.exit_status().is_some());
    let took = t.elapsed();
    assert!(
        exited,
        "Envoy still runs {took:?} after SIGTERM\n{}",
        envoy.log()
    );
    assert!(
        (Duration::from_millis(4500)..Duration::from_secs(9)).contains(&took),
        "exited {took:?} after SIGTERM (grace 5 s)"
    );
}

/// A task holding readiness runs the same sequence (a `timeout` whose future won, a short
/// sleep) and then sleeps 500 ms: readiness comes after about 0.6 s, not at the hold's 8 s
/// timeout.
#[test]
fn an_init_hold_is_released_on_time_after_a_timeout_whose_future_won() {
    let envoy = Envoy::start(&config("500,8000"));
    let after = envoy.ready_after();
    assert!(
        after < Duration::from_secs(5),
        "ready after {after:?}\n{}",
        envoy.log()
    );
    assert!(
        !envoy.log().contains("init not complete"),
        "{}",
        envoy.log()
    );
}

/// Two server extensions of one module in one Envoy. The first loaded drives the process's
/// timers from its Envoy timer; the second's init hold is released by its own sleeps on time
/// all the same. On SIGTERM each has a task that never ends, so each waits for its own 5 s
/// grace (one flag per extension) and Envoy exits after it, not at once and not never.
#[test]
fn two_server_extensions_share_the_timers_and_each_gets_its_grace() {
    let first = server_yaml("0,0");
    let second = server_yaml("500,8000");
    let second = second
        .strip_prefix("bootstrap_extensions:\n")
        .expect("one list");
    let envoy = Envoy::start(&config_with(&format!("{first}\n{second}")));
    let after = envoy.ready_after();
    // The second extension's hold (a 300 ms timeout won by 10 ms, 50 ms, then 500 ms) counted.
    assert!(
        (Duration::from_millis(550)..Duration::from_secs(5)).contains(&after),
        "ready after {after:?}\n{}",
        envoy.log()
    );
    assert!(
        !envoy.log().contains("init not complete"),
        "{}",
        envoy.log()
    );
    cancel_the_top_deadline(&envoy);
    let (status, took) = nap(&envoy, 300);
    assert_eq!(status, 200, "{}", envoy.log());
    assert!(took < Duration::from_secs(2), "{took:?}");
    let t = Instant::now();
    sigterm(&envoy);
    let exited = wait_until(Duration::from_secs(15), || envoy.exit_status().is_some());
    let took = t.elapsed();
    assert!(
        exited,
        "Envoy still runs {took:?} after SIGTERM\n{}",
        envoy.log()
    );
    assert!(
        (Duration::from_millis(4500)..Duration::from_secs(9)).contains(&took),
        "exited {took:?} after SIGTERM (grace 5 s)"
    );
}
