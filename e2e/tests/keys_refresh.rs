//! The `keys_refresh` example in real Envoy: a server task fetches the allowed API keys every
//! interval; Envoy serves only after the first valid answer; the `keys_auth` filter follows
//! changes within an interval; when the key server fails or answers anything but one whole,
//! valid key set (truncated, empty, another shape, too large, a bad key), the last good keys
//! stay and a counter counts the rejection by reason; `{"keys": []}` refuses everyone.

use jisr_e2e::client;
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, module_filter, module_stat, wait_until,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct KeyServer {
    keys: Arc<Mutex<(String, u16, Duration)>>,
    up: Upstream,
}

impl KeyServer {
    fn start(keys: &str, first_delay: Duration) -> KeyServer {
        let state = Arc::new(Mutex::new((keys.to_string(), 200u16, first_delay)));
        let s = state.clone();
        let up = Upstream::start_with("keys", move |_req, w| {
            let (body, status, delay) = {
                let mut g = s.lock().unwrap();
                let d = std::mem::take(&mut g.2);
                (g.0.clone(), g.1, d)
            };
            w.sleep(delay);
            w.status(status).send(body.as_bytes());
        });
        KeyServer { keys: state, up }
    }

    fn set(&self, keys: &str, status: u16) {
        let mut g = self.keys.lock().unwrap();
        g.0 = keys.to_string();
        g.1 = status;
    }
}

fn envoy(keys: &KeyServer, every_ms: u64, init_timeout_ms: u64) -> (Envoy, Upstream) {
    envoy_with(keys, every_ms, init_timeout_ms, "")
}

/// `extra`: more fields for the extension's JSON config, each with a leading comma.
fn envoy_with(
    keys: &KeyServer,
    every_ms: u64,
    init_timeout_ms: u64,
    extra: &str,
) -> (Envoy, Upstream) {
    let up = Upstream::start("main");
    let server = format!(
        r#"bootstrap_extensions:
- name: envoy.bootstrap.dynamic_modules
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.bootstrap.dynamic_modules.v3.DynamicModuleBootstrapExtension
    dynamic_module_config: {{ name: keys_refresh }}
    extension_name: keys_refresh
    extension_config:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: '{{"cluster": "keys", "path": "/keys", "every_ms": {every_ms}, "init_timeout_ms": {init_timeout_ms}{extra}}}'"#
    );
    let env = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("api")
                    .filter(module_filter("keys_refresh", "keys_auth", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port()))
            .cluster(Cluster::new("keys", keys.up.port()))
            .raw_top_level(server),
    );
    (env, up)
}

fn status(envoy: &Envoy, key: &str) -> u16 {
    client::request(
        envoy.listener_port("api"),
        "GET",
        "/",
        &[("x-api-key", key)],
        b"",
    )
    .status
}

#[test]
fn keys_follow_the_key_server_and_survive_its_failures() {
    let keys = KeyServer::start(r#"{"keys": ["k1", "k2"]}"#, Duration::from_millis(1200));
    let (envoy, _up) = envoy(&keys, 300, 10_000);
    // Envoy became ready only once the first (slow) fetch was in.
    assert!(
        envoy.ready_after() >= Duration::from_millis(1100),
        "ready after {:?}",
        envoy.ready_after()
    );
    assert_eq!(status(&envoy, "k1"), 200, "{}", envoy.log());
    assert_eq!(status(&envoy, "k3"), 401);
    // New keys are used within an interval; the old one is refused.
    keys.set(r#"{"keys": ["k3"]}"#, 200);
    assert!(
        wait_until(Duration::from_secs(3), || status(&envoy, "k3") == 200),
        "{}",
        envoy.log()
    );
    assert_eq!(status(&envoy, "k1"), 401);
    // The key server fails: the last good set stays, failures are counted.
    keys.set("", 503);
    let failed = module_stat("keys_refresh_rejected_total", &[("reason", "status")]);
    assert!(
        wait_until(Duration::from_secs(3), || envoy
            .counter(&failed)
            .unwrap_or(0)
            >= 2),
        "{:?}\n{}",
        envoy.counter(&failed),
        envoy.stats()
    );
    assert_eq!(status(&envoy, "k3"), 200);
}

#[test]
fn envoy_starts_without_keys_when_the_first_fetch_never_comes() {
    let keys = KeyServer::start(r#"{"keys": ["k1"]}"#, Duration::from_secs(30));
    let (envoy, _up) = envoy(&keys, 500, 1000);
    assert!(
        envoy.ready_after() < Duration::from_secs(10),
        "ready after {:?}",
        envoy.ready_after()
    );
    assert!(
        envoy.log().contains("init not complete after 1s"),
        "{}",
        envoy.log()
    );
    assert_eq!(status(&envoy, "k1"), 401, "no keys yet");
}

fn rejected(envoy: &Envoy, reason: &str) -> u64 {
    envoy
        .counter(&module_stat(
            "keys_refresh_rejected_total",
            &[("reason", reason)],
        ))
        .unwrap_or(0)
}

#[test]
fn malformed_answers_keep_the_last_good_keys_and_are_counted_by_reason() {
    let keys = KeyServer::start(r#"{"keys": ["k1", "k2"]}"#, Duration::ZERO);
    let (envoy, _up) = envoy_with(&keys, 100, 10_000, r#", "max_body_bytes": 4096"#);
    assert_eq!(status(&envoy, "k1"), 200, "{}", envoy.log());
    assert_eq!(status(&envoy, "k2"), 200);
    let oversized = format!(r#"{{"keys": ["k3", "{}"]}}"#, "x".repeat(5000));
    let bad: [(&str, &str, u16, &str); 7] = [
        ("truncated", r#"{"keys": ["k1", "k3""#, 200, "truncated"),
        ("empty 200", "", 200, "empty"),
        ("wrong type", r#"{"keys": "k3"}"#, 200, "wrong_shape"),
        ("not JSON", "k3\nk1", 200, "not_json"),
        ("over max_body_bytes", &oversized, 200, "too_large"),
        (
            "a bad key",
            r#"{"keys": ["k3", "two words"]}"#,
            200,
            "bad_key",
        ),
        ("an error status", r#"{"keys": ["k3"]}"#, 503, "status"),
    ];
    for (what, body, code, reason) in bad {
        keys.set(body, code);
        // Two rejections: at least one whole interval ran on this answer alone.
        assert!(
            wait_until(Duration::from_secs(5), || rejected(&envoy, reason) >= 2),
            "{what}: {}\n{}",
            envoy.stats(),
            envoy.log()
        );
        assert_eq!(status(&envoy, "k1"), 200, "{what} replaced the keys");
        assert_eq!(status(&envoy, "k2"), 200, "{what} replaced the keys");
        assert_eq!(status(&envoy, "k3"), 401, "{what} added a key");
        assert_eq!(status(&envoy, "\"k3\""), 401, "{what} added a fragment");
        assert_eq!(
            envoy.gauge(&module_stat("keys_refresh_keys", &[])),
            Some(2),
            "{what}"
        );
    }
    assert!(
        envoy.log().contains("rejected (truncated)"),
        "rejections are logged: {}",
        envoy.log()
    );
    let rejected_total = module_stat("keys_refresh_total", &[("result", "rejected")]);
    assert!(envoy.counter(&rejected_total).unwrap_or(0) >= 14);
    // A good answer after all that is used at once.
    keys.set(r#"{"keys": ["k3"]}"#, 200);
    assert!(
        wait_until(Duration::from_secs(3), || status(&envoy, "k3") == 200),
        "{}",
        envoy.log()
    );
    assert_eq!(status(&envoy, "k1"), 401);
    // An explicit empty set is an answer: everyone is refused.
    keys.set(r#"{"keys": []}"#, 200);
    assert!(
        wait_until(Duration::from_secs(3), || status(&envoy, "k3") == 401),
        "{}",
        envoy.log()
    );
    assert_eq!(envoy.gauge(&module_stat("keys_refresh_keys", &[])), Some(0));
}
