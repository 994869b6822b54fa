//! Routing controls of the `callout_demo` module in real Envoy: per-route configs refused at
//! load, and the upstream host override.

use jisr_e2e::client;
use jisr_e2e::{Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, free_port, module_filter};

fn refused_route_config(config_name: &str, config: &str) -> String {
    let cfg = EnvoyConfig::new()
        .listener(
            Listener::new("main")
                .filter(module_filter(
                    "callout_demo",
                    "callout",
                    Some(r#"{"cluster": "upstream"}"#),
                ))
                .route(Route::with_module_config(
                    "/",
                    "upstream",
                    "callout_demo.callout",
                    "callout_demo",
                    config_name,
                    Some(config),
                )),
        )
        .upstream(1);
    let (status, log) = Envoy::start_expect_failure(&cfg);
    assert!(!status.success(), "exit {status}\n{log}");
    log
}

fn assert_logged(log: &str, needle: &str) {
    assert!(log.contains(needle), "no {needle:?} in Envoy's log:\n{log}");
}

/// A per-route config the module's parser rejects stops Envoy at load: the module's line gives
/// the reason, Envoy's own line only says a per-route config failed (spelled `pre-route`).
///
/// Envoy exits non-zero. On 1.40 the module's line is `[error][dynamic_modules] [:] jisr: per-route
/// config 'callout' rejected: "timeout_ms" must be a whole number of milliseconds` (or `invalid
/// JSON: trailing comma ...`); 1.38/1.39 print `[error][dynamic_modules]
/// [source/extensions/dynamic_modules/abi_impl.cc:60] jisr: ...` instead of `[:] jisr: ...`.
/// Envoy's own line is generic, and misspelt: `Failed to create pre-route filter config: Failed to
/// initialize per-route dynamic module`.
#[test]
fn bad_per_route_config_is_refused_at_load_with_the_reason() {
    let log = refused_route_config("callout", r#"{"timeout_ms": "soon"}"#);
    assert_logged(
        &log,
        "jisr: per-route config 'callout' rejected: \"timeout_ms\" must be a whole number of milliseconds",
    );
    // At error level, through the module's logger (1.40 prints `[:]` as the source location,
    // 1.38/1.39 the location of their log callback).
    assert_logged(&log, "[error][dynamic_modules] [");
    assert_logged(
        &log,
        "Failed to create pre-route filter config: Failed to initialize per-route dynamic module",
    );
    let log = refused_route_config("callout", r#"{"cluster": "svc",}"#);
    assert_logged(
        &log,
        "jisr: per-route config 'callout' rejected: invalid JSON: trailing comma",
    );
}

/// A `per_route_config_name` the module does not declare is refused, naming the declared ones.
#[test]
fn unknown_per_route_config_name_is_refused_with_the_declared_names() {
    let log = refused_route_config("nope", "{}");
    assert_logged(
        &log,
        "jisr: no per-route config named 'nope'; this module declares: callout",
    );
    assert_logged(&log, "Failed to initialize per-route dynamic module");
}

fn server(r: &client::Response) -> String {
    r.json()["server"].as_str().unwrap_or("-").to_string()
}

/// `set_upstream_override_host` picks one endpoint of a two-endpoint cluster. Envoy accepts any
/// address (the call returns true); only at load balancing does it matter whether the host is
/// in the cluster: strict → `503 no_healthy_upstream`, not strict → normal load balancing.
///
/// `127.0.0.1:<port of B>` sends every request to B (and likewise for A). With `strict`, an address
/// that is not in the cluster gets `503 no healthy upstream` (`details=no_healthy_upstream`).
#[test]
fn upstream_override_host_picks_the_endpoint() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let closed = free_port();
    let over = |name: &str, host: String, strict: bool| {
        Listener::new(name).filter(module_filter(
            "callout_demo",
            "override",
            Some(&format!(r#"{{"host": "{host}", "strict": {strict}}}"#)),
        ))
    };
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("plain"))
            .listener(over("to_b", format!("127.0.0.1:{}", b.port()), true))
            .listener(over("to_a", format!("127.0.0.1:{}", a.port()), false))
            .listener(over("missing_strict", format!("127.0.0.1:{closed}"), true))
            .listener(over("missing_loose", format!("127.0.0.1:{closed}"), false))
            .cluster(Cluster::new("upstream", a.port()).endpoint(b.port())),
    );
    let servers = |listener: &str, n: usize| -> Vec<String> {
        let port = envoy.listener_port(listener);
        (0..n)
            .map(|_| {
                let r = client::get(port, "/x");
                assert_eq!(r.status, 200, "{listener}: {}", r.text());
                assert_eq!(
                    r.json()["headers"]["x-override-accepted"].as_str(),
                    (listener != "plain").then_some("true")
                );
                server(&r)
            })
            .collect()
    };
    // Without an override both endpoints serve (round robin on a keep-alive connection).
    let port = envoy.listener_port("plain");
    let mut c = client::Connection::open(port).unwrap();
    let seen: Vec<String> = (0..4)
        .map(|_| server(&c.request("GET", "/x", &[], b"").unwrap()))
        .collect();
    assert!(
        seen.iter().any(|s| s == "a") && seen.iter().any(|s| s == "b"),
        "{seen:?}"
    );
    assert!(servers("to_b", 6).iter().all(|s| s == "b"));
    assert!(servers("to_a", 6).iter().all(|s| s == "a"));
    let loose = servers("missing_loose", 6);
    assert!(loose.iter().all(|s| s == "a" || s == "b"), "{loose:?}");
    let r = client::get(envoy.listener_port("missing_strict"), "/x");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.text(), "no healthy upstream");
    let strict_line = |l: &String| {
        l.contains("listener=missing_strict") && l.contains("code=503 details=no_healthy_upstream")
    };
    assert!(
        jisr_e2e::wait_until(std::time::Duration::from_secs(5), || envoy
            .access_log_lines()
            .iter()
            .any(strict_line)),
        "{}",
        envoy.log()
    );
}
