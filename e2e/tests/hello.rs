//! The `hello` example module in real Envoy: header injection, middleware log line, metadata,
//! counter, and the `attrs` filter reporting stream attributes.

use jisr_e2e::client::{self, Connection};
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, access_field, module_filter, module_stat};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn hello_envoy(up: &Upstream) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("hello")
                    .filter(module_filter("hello", "hello", None))
                    .log_metadata("jisr", "filter"),
            )
            .listener(Listener::new("attrs").filter(module_filter("hello", "attrs", None)))
            .upstream(up.port()),
    )
}

/// One Envoy, several requests: what the upstream saw, the access log, the module log line and
/// the exact counter value.
///
/// The counter `hello_requests_total` shows in `/stats` as
/// `dynamicmodulescustom.hello_requests_total`, and in Prometheus format as
/// `envoy_dynamicmodulescustom_hello_requests_total{} N`. It exists at 0 as soon as the config
/// loads, and the count is exact: N requests give N, with no double count from response hooks,
/// visible in `/stats` right away (no flush interval needed).
#[test]
fn hello_injects_header_logs_sets_metadata_and_counts() {
    let up = Upstream::start("hello-up");
    let envoy = hello_envoy(&up);
    let port = envoy.listener_port("hello");

    // Defined at config load: present at 0 before any request.
    let name = module_stat("hello_requests_total", &[]);
    assert_eq!(name, "dynamicmodulescustom.hello_requests_total");
    assert_eq!(envoy.counter(&name), Some(0));

    const N: u64 = 5;
    for i in 0..N {
        let r = client::request(
            port,
            "GET",
            &format!("/greet/{i}"),
            &[("x-hello", "client-value")],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        // set_header replaces whatever the client sent.
        assert_eq!(r.json()["headers"]["x-hello"].as_str(), Some("from-jisr"));
    }
    let seen = up.requests();
    assert_eq!(seen.len(), N as usize);
    for q in &seen {
        let values: Vec<&str> = q
            .headers
            .iter()
            .filter(|(k, _)| k == "x-hello")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(values, ["from-jisr"], "{:?}", q.headers);
    }

    // A POST with a body: the handler skips the body, which still reaches the upstream.
    let body = jisr_e2e::upstream::pattern(0, 10_000);
    let r = client::request(port, "POST", "/post", &[], &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"].as_u64(), Some(10_000));

    // Access log: metadata jisr:filter set by the handler.
    let lines = envoy.wait_for_access_lines(N as usize + 1, WAIT);
    assert_eq!(lines.len(), N as usize + 1, "{}", envoy.log());
    for l in &lines {
        assert_eq!(access_field(l, "code"), Some("200"), "{l}");
        assert_eq!(access_field(l, "details"), Some("via_upstream"), "{l}");
        assert_eq!(access_field(l, "jisr:filter"), Some("hello"), "{l}");
    }

    // The middleware's structured line, through Envoy's dynamic_modules logger.
    for i in 0..N {
        let needle = format!("request filter=hello method=GET path=/greet/{i}");
        assert!(envoy.wait_for_log(&needle, WAIT), "no {needle:?} in log");
    }
    assert!(envoy.wait_for_log("request filter=hello method=POST path=/post", WAIT));
    let log = envoy.log();
    let line = log
        .lines()
        .find(|l| l.contains("request filter=hello method=GET path=/greet/0"))
        .unwrap();
    assert!(line.contains("[info][dynamic_modules]"), "{line}");

    // Exact counter value: one per request, nothing else.
    assert_eq!(envoy.wait_for_counter(&name, N + 1, WAIT), Some(N + 1));
    // Stays exact (not counted twice, e.g. on response hooks).
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(envoy.counter(&name), Some(N + 1));
    // The attrs listener does not count.
    assert_eq!(client::get(envoy.listener_port("attrs"), "/").status, 200);
    assert_eq!(envoy.counter(&name), Some(N + 1));
}

/// The ABI string matched Envoy 1.40 (info line once per `.so`; the deprecation warning on
/// 1.38/1.39), and loading the module twice (two filter configs) initialised it once.
///
/// The line is `Dynamic module ABI version v0.2.0 matched.`, at info in `[dynamic_modules]`. It
/// appears once per `.so` per Envoy process, however many filter configs use the module: the two
/// filters from `libhello.so` here (`hello` and `attrs`) give one line, and so do two `auth`
/// listeners (`auth::two_listeners_share_the_module_but_not_the_keys`). Three modules give three
/// lines (the `demo` binary loads three).
#[test]
fn abi_version_matched_once_per_module() {
    let up = Upstream::start("abi-up");
    let envoy = hello_envoy(&up);
    let log = envoy.log();
    // 1.40 logs "matched" at info; 1.38 and 1.39 log "is deprecated" at warning and load it.
    let matched = log
        .lines()
        .filter(|l| l.contains(jisr_e2e::abi_load_line()))
        .count();
    assert_eq!(matched, 1, "{log}");
    if jisr_e2e::envoy_minor() >= (1, 40) {
        assert!(!log.contains("is deprecated"), "{log}");
    } else {
        assert!(!log.contains("v0.2.0 matched"), "{log}");
    }
}

/// The `attrs` filter copies what Envoy reports into request headers; compare with what the
/// client did and what the upstream saw.
///
/// Seen: the path with its query (`/a/b?q=1`), the method, the host (`:authority`), scheme `http`,
/// protocol `HTTP/1.1`, the user agent, source address `127.0.0.1:<client port>`, the source port,
/// and the request id. The request id equals the `x-request-id` the upstream receives, and it
/// changes per request on the same connection.
#[test]
fn attrs_report_path_method_host_scheme_protocol_source_and_request_id() {
    let up = Upstream::start("attrs-up");
    let envoy = hello_envoy(&up);
    let port = envoy.listener_port("attrs");

    let mut c = Connection::open(port).unwrap();
    let local = c.stream().local_addr().unwrap();
    let r = c
        .request(
            "PUT",
            "/a/b?q=1",
            &[("host", "example.test"), ("user-agent", "jisr-e2e/1")],
            b"xyz",
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let h = r.json()["headers"].clone();
    let get = |k: &str| h[k].as_str().map(str::to_string);
    assert_eq!(get("x-attr-path").as_deref(), Some("/a/b?q=1"));
    assert_eq!(get("x-attr-method").as_deref(), Some("PUT"));
    assert_eq!(get("x-attr-host").as_deref(), Some("example.test"));
    assert_eq!(get("x-attr-scheme").as_deref(), Some("http"));
    assert_eq!(get("x-attr-protocol").as_deref(), Some("HTTP/1.1"));
    assert_eq!(get("x-attr-user-agent").as_deref(), Some("jisr-e2e/1"));
    assert_eq!(
        get("x-attr-source").as_deref(),
        Some(format!("127.0.0.1:{}", local.port()).as_str())
    );
    assert_eq!(
        get("x-attr-source-port").as_deref(),
        Some(local.port().to_string().as_str())
    );
    assert_eq!(get("x-attr-filter").as_deref(), Some("attrs"));
    let rid = get("x-request-id").expect("upstream saw x-request-id");
    assert!(!rid.is_empty());
    assert_eq!(get("x-attr-request-id"), Some(rid));

    // A second request on the same connection: same source, a new request id.
    let r2 = c.request("GET", "/again", &[], b"").unwrap();
    let h2 = r2.json()["headers"].clone();
    assert_eq!(h2["x-attr-path"].as_str(), Some("/again"));
    assert_eq!(
        h2["x-attr-source"].as_str(),
        Some(format!("127.0.0.1:{}", local.port()).as_str())
    );
    assert_ne!(
        h2["x-attr-request-id"].as_str(),
        h["x-attr-request-id"].as_str()
    );
    assert_eq!(
        h2["x-attr-request-id"].as_str(),
        h2["x-request-id"].as_str()
    );
}
