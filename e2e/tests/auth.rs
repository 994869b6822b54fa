//! The `auth` example module in real Envoy: 401 local replies with details, allowed keys,
//! labelled counters, and one `.so` serving two listeners with different key sets.

use jisr_e2e::client::{self, Connection};
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, access_field, module_filter, module_stat};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const KEYS_A: &str = r#"{"allowed_keys":["key-1","key-2"]}"#;
const KEYS_B: &str = r#"{"allowed_keys":["key-3","key-1"]}"#;

fn auth_listener(name: &str, config: &str) -> Listener {
    Listener::new(name)
        .filter(module_filter("auth", "auth", Some(config)))
        .log_field("user", "%REQ(x-user-id)%")
        .log_field("key", "%REQ(x-api-key)%")
}

fn upstream_header(r: &client::Response, name: &str) -> Option<String> {
    r.json()["headers"][name].as_str().map(str::to_string)
}

/// Missing and unknown keys get a 401 local reply; an allowed key passes with `x-user-id` set and
/// `x-api-key` removed.
///
/// `%RESPONSE_CODE_DETAILS%` shows the details passed to the local reply (`jisr_auth_missing_key`,
/// `jisr_auth_unknown_key`; a handler panic shows `jisr_handler_panic`, see
/// `async::handler_panic_is_a_500_and_the_next_request_succeeds`). Requests that went upstream show
/// `via_upstream`. Envoy's own decisions keep Envoy's details (`request_payload_too_large`,
/// `downstream_remote_disconnect`).
#[test]
fn missing_and_unknown_keys_get_401_with_details_allowed_key_passes() {
    let up = Upstream::start("auth-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(auth_listener("a", KEYS_A))
            .upstream(up.port()),
    );
    let port = envoy.listener_port("a");

    let r = client::get(port, "/missing");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), r#"{"error":"missing api key"}"#);

    let r = client::request(port, "GET", "/unknown", &[("x-api-key", "key-9")], b"");
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), r#"{"error":"unknown api key"}"#);

    // Neither reached the upstream.
    assert!(up.requests().is_empty(), "{:?}", up.requests());

    let r = client::request(port, "GET", "/ok", &[("x-api-key", "key-2")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(upstream_header(&r, "x-user-id").as_deref(), Some("user-2"));
    assert_eq!(upstream_header(&r, "x-api-key"), None);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/ok");
    assert_eq!(seen[0].header("x-api-key"), None, "{:?}", seen[0].headers);
    assert_eq!(seen[0].header("x-user-id"), Some("user-2"));

    // A client-supplied x-user-id is replaced, not appended.
    let r = client::request(
        port,
        "GET",
        "/spoof",
        &[("x-api-key", "key-1"), ("x-user-id", "admin")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(upstream_header(&r, "x-user-id").as_deref(), Some("user-1"));

    // Access log: %RESPONSE_CODE_DETAILS% carries the handler's details; the request headers
    // the log sees are the mutated ones.
    let lines = envoy.wait_for_access_lines(4, WAIT);
    assert_eq!(lines.len(), 4, "{}", envoy.log());
    let by_path = |p: &str| {
        lines
            .iter()
            .find(|l| access_field(l, "path") == Some(p))
            .unwrap_or_else(|| panic!("no access line for {p}: {lines:?}"))
    };
    let l = by_path("/missing");
    assert_eq!(access_field(l, "code"), Some("401"), "{l}");
    assert_eq!(
        access_field(l, "details"),
        Some("jisr_auth_missing_key"),
        "{l}"
    );
    let l = by_path("/unknown");
    assert_eq!(access_field(l, "code"), Some("401"), "{l}");
    assert_eq!(
        access_field(l, "details"),
        Some("jisr_auth_unknown_key"),
        "{l}"
    );
    assert_eq!(access_field(l, "user"), Some("-"), "{l}");
    let l = by_path("/ok");
    assert_eq!(access_field(l, "code"), Some("200"), "{l}");
    assert_eq!(access_field(l, "details"), Some("via_upstream"), "{l}");
    assert_eq!(access_field(l, "user"), Some("user-2"), "{l}");
    assert_eq!(access_field(l, "key"), Some("-"), "{l}");
}

/// The labelled counter `auth_requests_total` counts exactly, per `result`.
///
/// It shows in `/stats` as `dynamicmodulescustom.auth_requests_total.result.allowed`, and in
/// Prometheus format as `envoy_dynamicmodulescustom_auth_requests_total{result="allowed"} 3`. N
/// requests give N, right away (no flush interval needed). A labelled counter has no stat until a
/// label value is first used.
#[test]
fn labelled_counters_count_exactly() {
    let up = Upstream::start("auth-count-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(auth_listener("a", KEYS_A))
            .upstream(up.port()),
    );
    let port = envoy.listener_port("a");
    let allowed = module_stat("auth_requests_total", &[("result", "allowed")]);
    let missing = module_stat("auth_requests_total", &[("result", "missing")]);
    let unknown = module_stat("auth_requests_total", &[("result", "unknown")]);
    assert_eq!(
        allowed,
        "dynamicmodulescustom.auth_requests_total.result.allowed"
    );

    // A labelled counter has no stat until a label value is first used.
    assert_eq!(envoy.counter(&allowed), None);
    assert!(!envoy.stats().contains("auth_requests_total"));

    // Envoy's HTTP/1 codec trims trailing whitespace from header values: "key-1 " is key-1.
    for key in ["key-1", "key-2", "key-1 "] {
        let r = client::request(port, "GET", "/", &[("x-api-key", key)], b"");
        assert_eq!(r.status, 200, "key {key:?}");
    }
    for _ in 0..2 {
        assert_eq!(client::get(port, "/").status, 401);
    }
    for k in ["nope", "KEY-1", "key-10", "key-"] {
        let r = client::request(port, "GET", "/", &[("x-api-key", k)], b"");
        assert_eq!(r.status, 401, "key {k:?}");
    }
    // Counters are in /stats as soon as the responses are back (no stats flush involved).
    assert_eq!(envoy.counter(&unknown), Some(4));
    assert_eq!(envoy.counter(&allowed), Some(3));
    assert_eq!(envoy.counter(&missing), Some(2));
    // Prometheus output names the same counter with the label as a tag.
    let prom = envoy.admin_get("/stats/prometheus").text();
    for line in [
        "# TYPE envoy_dynamicmodulescustom_auth_requests_total counter",
        "envoy_dynamicmodulescustom_auth_requests_total{result=\"allowed\"} 3",
        "envoy_dynamicmodulescustom_auth_requests_total{result=\"missing\"} 2",
        "envoy_dynamicmodulescustom_auth_requests_total{result=\"unknown\"} 4",
    ] {
        assert!(prom.lines().any(|l| l == line), "no {line:?} in\n{prom}");
    }
}

/// Two listeners, one `.so`, two filter configs with different key sets: each config keeps its
/// own keys (and its own user numbering).
///
/// Envoy logs the ABI "matched" line once for both listeners: it loads and checks `libauth.so`
/// once.
#[test]
fn two_listeners_share_the_module_but_not_the_keys() {
    let up = Upstream::start("auth-iso-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(auth_listener("a", KEYS_A))
            .listener(auth_listener("b", KEYS_B))
            .upstream(up.port()),
    );
    let (a, b) = (envoy.listener_port("a"), envoy.listener_port("b"));
    let call = |port: u16, key: &str| {
        client::request(port, "GET", &format!("/{key}"), &[("x-api-key", key)], b"")
    };

    let r = call(a, "key-1");
    assert_eq!(r.status, 200);
    assert_eq!(upstream_header(&r, "x-user-id").as_deref(), Some("user-1"));
    let r = call(a, "key-2");
    assert_eq!(r.status, 200);
    assert_eq!(upstream_header(&r, "x-user-id").as_deref(), Some("user-2"));
    assert_eq!(call(a, "key-3").status, 401);

    let r = call(b, "key-3");
    assert_eq!(r.status, 200);
    assert_eq!(upstream_header(&r, "x-user-id").as_deref(), Some("user-1"));
    let r = call(b, "key-1");
    assert_eq!(r.status, 200);
    assert_eq!(upstream_header(&r, "x-user-id").as_deref(), Some("user-2"));
    assert_eq!(call(b, "key-2").status, 401);

    // The module was loaded (and its ABI checked) once for both configs.
    let matched = envoy
        .log()
        .lines()
        .filter(|l| l.contains(jisr_e2e::abi_load_line()))
        .count();
    assert_eq!(matched, 1);

    // Both configs define `auth_requests_total`: Envoy gives them one stat name, so the
    // counts add up across listeners (4 allowed, 2 unknown).
    let allowed = module_stat("auth_requests_total", &[("result", "allowed")]);
    let unknown = module_stat("auth_requests_total", &[("result", "unknown")]);
    assert_eq!(envoy.wait_for_counter(&allowed, 4, WAIT), Some(4));
    assert_eq!(envoy.counter(&unknown), Some(2));

    let lines = envoy.wait_for_access_lines(6, WAIT);
    let details: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                access_field(l, "listener").unwrap(),
                access_field(l, "details").unwrap(),
            )
        })
        .collect();
    assert!(
        details.contains(&("a", "jisr_auth_unknown_key")),
        "{lines:?}"
    );
    assert!(
        details.contains(&("b", "jisr_auth_unknown_key")),
        "{lines:?}"
    );
}

/// A 401 local reply: the client gets the status, body and `content-type` the handler set, and the
/// upstream never sees the request. After a bodiless GET the connection stays keep-alive and
/// carries the next request. If the request has a body the handler never read, Envoy adds
/// `connection: close` and closes the connection instead of draining the body (its HCM rule for a
/// response sent before the request finished), so the client must reconnect; a new connection then
/// carries an allowed request.
#[test]
fn local_reply_keeps_the_connection_usable() {
    let up = Upstream::start("auth-ka-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(auth_listener("a", KEYS_A))
            .upstream(up.port()),
    );
    let mut c = Connection::open(envoy.listener_port("a")).unwrap();
    let r = c.request("GET", "/no-key", &[], b"").unwrap();
    assert_eq!(r.status, 401);
    let body = jisr_e2e::upstream::pattern(0, 20_000);
    let r = c.request("POST", "/no-key-body", &[], &body).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), r#"{"error":"missing api key"}"#);
    // Envoy answered before reading the request body, so it closes this connection
    // (`connection: close`) rather than drain the body.
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    let r = client::request(
        envoy.listener_port("a"),
        "POST",
        "/ok",
        &[("x-api-key", "key-1")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"].as_u64(), Some(20_000));
    let seen = up.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/ok");
}

/// The raw escape hatch in real Envoy: `raw_auth` (a `RawFilter` on Envoy's hooks) sits in the
/// same `.so` as the jisr `auth` filter and answers the same way, with its own counter.
///
/// Without a key both answer 401 with the same JSON; with one, the upstream gets `x-user-id` and no
/// `x-api-key`.
#[test]
fn raw_filter_beside_jisr_filter_in_one_module() {
    let up = Upstream::start("raw-auth-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(auth_listener("jisr", KEYS_A))
            .listener(Listener::new("raw").filter(module_filter("auth", "raw_auth", Some(KEYS_A))))
            .upstream(up.port()),
    );
    for listener in ["jisr", "raw"] {
        let port = envoy.listener_port(listener);
        let r = client::get(port, "/private");
        assert_eq!(r.status, 401, "{listener}");
        assert_eq!(r.text(), r#"{"error":"missing api key"}"#, "{listener}");
        let r = client::request(port, "GET", "/private", &[("x-api-key", "key-2")], b"");
        assert_eq!(r.status, 200, "{listener}: {}", r.text());
        assert_eq!(
            upstream_header(&r, "x-user-id").as_deref(),
            Some("user-2"),
            "{listener}"
        );
        assert_eq!(upstream_header(&r, "x-api-key"), None, "{listener}");
    }
    let raw_allowed = module_stat("raw_auth_requests_total", &[("result", "allowed")]);
    assert_eq!(envoy.counter(&raw_allowed), Some(1), "{}", envoy.stats());
    let jisr_allowed = module_stat("auth_requests_total", &[("result", "allowed")]);
    assert_eq!(envoy.counter(&jisr_allowed), Some(1));
    envoy.assert_ready();
}

/// With `keys_secret`, the allowed keys come from an SDS generic secret in a watched file:
/// rewriting the file changes them without a restart (Envoy 1.40; older Envoys refuse the
/// config, naming the secret).
#[test]
fn keys_from_a_file_sds_secret_rotate_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("jisr-e2e-auth-sds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.yaml");
    jisr_e2e::write_generic_secret(&path, "api-keys", "key-a, key-b");
    let config = format!(
        r#"{{"keys_secret": {{"name": "api-keys", "path": "{}"}}}}"#,
        path.display()
    );
    let up = Upstream::start("auth-sds-up");
    let cfg = EnvoyConfig::new()
        .listener(auth_listener("s", &config))
        .upstream(up.port())
        .node_identity();
    if jisr_e2e::envoy_minor() < (1, 40) {
        let (status, log) = Envoy::start_expect_failure(&cfg);
        assert!(!status.success());
        assert!(
            log.contains("jisr: filter 'auth' rejected its config: secret 'api-keys'"),
            "{log}"
        );
        return;
    }
    let envoy = Envoy::start(&cfg);
    let port = envoy.listener_port("s");
    let get = |key: &str| client::request(port, "GET", "/", &[("x-api-key", key)], b"");
    let r = get("key-b");
    assert_eq!(r.status, 200, "{}", envoy.log());
    assert_eq!(upstream_header(&r, "x-user-id").as_deref(), Some("user-2"));
    assert_eq!(get("key-c").status, 401);
    jisr_e2e::write_generic_secret(&path, "api-keys", "key-c");
    assert!(
        jisr_e2e::wait_until(std::time::Duration::from_secs(10), || get("key-c").status
            == 200),
        "rotation not seen: {}",
        envoy.log()
    );
    assert_eq!(get("key-b").status, 401);
    let r = get("key-c");
    assert_eq!(upstream_header(&r, "x-user-id").as_deref(), Some("user-1"));
    let _ = std::fs::remove_dir_all(&dir);
}
