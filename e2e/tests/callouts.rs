//! The `callout_demo` example module in real Envoy: callouts awaited from a handler (answer,
//! each error kind, two in flight at once, dropped by a client disconnect), per-route configs
//! choosing the callout target, filter state across filters, and a `log` crate line.

use jisr_e2e::client::{self, Response};
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, UpstreamRequest, access_field,
    free_port, module_filter, upstream,
};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
const FILTER: &str = "callout_demo.callout";

/// The callout target: `/auth` with `authorization: Bearer ok` answers `x-auth-user: alice`;
/// every answer is the echo (so `/delay/<ms>` works).
fn svc(req: &UpstreamRequest, w: &mut upstream::ResponseWriter) {
    if req.path_only() == "/auth" && req.header("authorization") == Some("Bearer ok") {
        w.header("x-auth-user", "alice");
    }
    upstream::echo(req, w);
}

/// Resets the connection before any answer; `/cut` first sends headers and 10 body bytes.
fn resetter(req: &UpstreamRequest, w: &mut upstream::ResponseWriter) {
    if req.path_only() == "/cut" {
        w.header("content-type", "text/plain");
        w.chunk(b"0123456789");
        w.sleep(Duration::from_millis(20));
    }
    w.reset();
}

fn per_route(prefix: &str, config: &str) -> Route {
    Route::with_module_config(
        prefix,
        "upstream",
        FILTER,
        "callout_demo",
        "callout",
        Some(config),
    )
}

struct Setup {
    main: Upstream,
    svc: Upstream,
    _resetter: Upstream,
    envoy: Envoy,
}

fn setup() -> Setup {
    let main = Upstream::start("main");
    let svc = Upstream::start_with("svc", svc);
    let resetter = Upstream::start_with("resetter", resetter);
    let closed = free_port(); // nothing listens there
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("callout")
                    .filter(module_filter(
                        "callout_demo",
                        "callout",
                        Some(r#"{"cluster": "svc", "path": "/auth"}"#),
                    ))
                    .route(per_route("/unknown", r#"{"cluster": "nope"}"#))
                    .route(per_route(
                        "/timeout",
                        r#"{"path": "/delay/1000", "timeout_ms": 200}"#,
                    ))
                    .route(per_route("/closed", r#"{"cluster": "closed"}"#))
                    .route(per_route("/reset", r#"{"cluster": "resetter"}"#))
                    .route(per_route(
                        "/cut",
                        r#"{"cluster": "resetter", "path": "/cut"}"#,
                    ))
                    .route(per_route("/status", r#"{"path": "/status/418"}"#))
                    .route(per_route(
                        "/answer504",
                        r#"{"path": "/status/504", "timeout_ms": 5000}"#,
                    ))
                    .route(per_route(
                        "/slowbody",
                        r#"{"path": "/stream?chunks=3&delay_ms=300", "timeout_ms": 200}"#,
                    ))
                    .route(per_route(
                        "/slow",
                        r#"{"path": "/delay/1500", "timeout_ms": 5000}"#,
                    ))
                    .route(Route::to("/", "upstream"))
                    .log_metadata("callout", "status")
                    .log_metadata("callout", "error"),
            )
            .listener(Listener::new("parallel").filter(module_filter(
                "callout_demo",
                "parallel",
                Some(r#"{"cluster": "svc", "path": "/delay/300"}"#),
            )))
            .listener(
                Listener::new("state")
                    .filter(module_filter("callout_demo", "state_set", None))
                    .filter(module_filter("callout_demo", "state_get", None))
                    .log_field("state", "%FILTER_STATE(jisr.demo:PLAIN)%"),
            )
            .upstream(main.port())
            .cluster(Cluster::new("svc", svc.port()))
            .cluster(Cluster::new("resetter", resetter.port()))
            .cluster(Cluster::new("closed", closed)),
    );
    Setup {
        main,
        svc,
        _resetter: resetter,
        envoy,
    }
}

fn up_header(r: &Response, name: &str) -> Option<String> {
    r.json()["headers"][name].as_str().map(str::to_string)
}

fn access_line(envoy: &Envoy, listener: &str, path: &str) -> String {
    let mut found = None;
    jisr_e2e::wait_until(WAIT, || {
        found = envoy.access_log_lines().into_iter().find(|l| {
            access_field(l, "listener") == Some(listener) && access_field(l, "path") == Some(path)
        });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no access line for {listener} {path}\n{}", envoy.log()))
}

/// A callout answered by the target: its header and JSON field reach the upstream request;
/// the `log` crate's `info!` line is in Envoy's log at info in `[dynamic_modules]`.
///
/// The target gets `GET <path>` with `host: <cluster>` and the headers the handler added
/// (`authorization`). The handler gets the status, the headers (`x-auth-user`) and the body (a JSON
/// field read with `jisr::buffer::json`). A non-2xx answer (`418` here, or the target's own `504`
/// well before the timeout in `callout_errors_are_typed`) is an answer, `Ok(status)`. The request
/// goes upstream only after the callout finished.
#[test]
fn callout_answer_is_copied_into_the_request() {
    let s = setup();
    let port = s.envoy.listener_port("callout");
    let r = client::request(port, "GET", "/ok", &[("authorization", "Bearer ok")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up_header(&r, "x-user").as_deref(), Some("alice"));
    assert_eq!(up_header(&r, "x-callout-status").as_deref(), Some("200"));
    assert_eq!(up_header(&r, "x-callout-server").as_deref(), Some("svc"));
    // The callout carried the required headers and the caller's credentials.
    let calls = s.svc.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "GET");
    assert_eq!(calls[0].path, "/auth");
    assert_eq!(calls[0].header("host"), Some("svc"));
    assert_eq!(calls[0].header("authorization"), Some("Bearer ok"));
    // The main upstream saw the request only after the callout.
    assert_eq!(s.main.requests().len(), 1);

    // Without credentials: answered, no x-user.
    let r = client::get(port, "/anon");
    assert_eq!(r.status, 200);
    assert_eq!(up_header(&r, "x-user"), None);

    // A non-2xx answer is an answer, not an error.
    let r = client::get(port, "/status");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up_header(&r, "x-callout-status").as_deref(), Some("418"));

    let l = access_line(&s.envoy, "callout", "/ok");
    assert_eq!(access_field(&l, "callout:status"), Some("200"), "{l}");
    assert_eq!(access_field(&l, "callout:error"), Some("-"), "{l}");
    let needle = "callout_demo: svc/auth answered 200 in ";
    assert!(s.envoy.wait_for_log(needle, WAIT), "no {needle:?}");
    let log = s.envoy.log();
    let line = log.lines().find(|l| l.contains(needle)).unwrap();
    assert!(line.contains("[info][dynamic_modules]"), "{line}");
}

fn failure(envoy: &Envoy, path: &str, kind: &str) -> Duration {
    let port = envoy.listener_port("callout");
    let t = Instant::now();
    let r = client::get(port, path);
    let took = t.elapsed();
    assert_eq!(r.status, 503, "{path}: {}", r.text());
    assert_eq!(
        r.header("x-callout-error"),
        Some(kind),
        "{path}: {}",
        r.text()
    );
    let l = access_line(envoy, "callout", path);
    assert_eq!(
        access_field(&l, "details"),
        Some(format!("callout_{kind}").as_str()),
        "{l}"
    );
    assert_eq!(access_field(&l, "callout:error"), Some(kind), "{l}");
    took
}

/// A callout with a 200 ms timeout to a target slower than that is typed `Timeout`, also when
/// Envoy's timer fires a few ms before jisr's clock says 200 ms (it did: 197–199 ms).
fn timed_out(envoy: &Envoy, path: &str) {
    let port = envoy.listener_port("callout");
    let t = Instant::now();
    let r = client::get(port, path);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(190), "{path} took {took:?}");
    assert!(took < Duration::from_millis(900), "{path} took {took:?}");
    assert_eq!(
        r.header("x-callout-error"),
        Some("timeout"),
        "{path}: {} {}",
        r.status,
        r.text()
    );
    assert_eq!(r.status, 503);
}

/// An unknown cluster is refused when the callout starts; a timeout is Envoy's 504 after the
/// timeout (typed `Timeout`), while a real 504 answer before the timeout stays an answer; a
/// stream reset after the answer began is `Reset`, or `Timeout` when the timeout cut it.
///
/// Envoy reports a timeout in two ways. If no response headers came in time, the callout
/// **succeeds** with status `504` and body `upstream request timeout`. If headers came but the body
/// stalled, the callout fails with result `Reset`. jisr types both as `CalloutError::Timeout`: the
/// first by that exact 504 body (or a 504 at the timeout), the second by a reset at the timeout,
/// with 20 ms of slack (capped at a tenth of the timeout), because Envoy's timer fires up to ~3 ms
/// before jisr's clock says the timeout elapsed (197–199 ms for 200 ms; 997–999 ms for 1000 ms).
///
/// The paths (`/timeout`, `/unknown`, ...) choose the callout target through per-route configs. A
/// route's `typed_per_filter_config` entry, keyed by the HTTP filter's `name`, is
/// `type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilterPerRoute`.
/// It has `dynamic_module_config: {name: <module>}`, `per_route_config_name: <name given to
/// Registry::route_config>`, and `filter_config` (a `StringValue` whose bytes go to the parser).
/// The handler reads the parsed value with `req.route_config::<T>()`. Routes without one get `None`
/// (the filter-wide setting applies). Only route-level entries were tested, not virtual-host ones.
#[test]
fn callout_errors_are_typed() {
    let s = setup();
    let port = s.envoy.listener_port("callout");

    let took = failure(&s.envoy, "/unknown", "cluster_not_found");
    assert!(took < Duration::from_millis(500), "took {took:?}");

    // 200 ms timeout against a target that answers after 1000 ms. Envoy answers the callout
    // itself: 504, body `upstream request timeout`.
    // Several times: Envoy's timer often fires a few ms early by jisr's clock.
    for _ in 0..5 {
        timed_out(&s.envoy, "/timeout");
    }

    // The target's own 504, well before the timeout, is an answer.
    let r = client::get(port, "/answer504");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up_header(&r, "x-callout-status").as_deref(), Some("504"));

    // Headers came, then the body stalled past the timeout: Envoy resets the callout.
    timed_out(&s.envoy, "/slowbody");

    // Reset mid-body (after headers and 10 bytes).
    failure(&s.envoy, "/cut", "reset");
    s.envoy.assert_ready();
}

/// A callout whose connection is refused, or reset before any answer, gets no answer from the
/// service: Envoy's router answers it with its own 503 (body `upstream connect error or
/// disconnect/reset before headers. reset reason: remote connection failure` when refused,
/// `... connection termination` when reset). jisr recognises that answer and reports
/// `CalloutError::Unavailable`, never `Ok(503)`, so `Ok(_) => deny` cannot turn an outage of
/// the service into a denial. `callout_demo` answers `503` with `x-callout-error: unavailable`.
#[test]
fn refused_or_reset_before_headers_is_unavailable_not_an_answer() {
    let s = setup();
    let port = s.envoy.listener_port("callout");
    for (path, why) in [
        ("/closed", "connection failure"),
        ("/reset", "reset before headers"),
    ] {
        let r = client::get(port, path);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.header("x-callout-error"), Some("unavailable"), "{path}");
        assert_eq!(
            r.text(),
            format!("callout failed: callout got no answer: {why}\n"),
            "{path}"
        );
    }
    // Nothing of those requests went upstream.
    assert!(
        s.main
            .requests()
            .iter()
            .all(|q| q.path != "/closed" && q.path != "/reset")
    );
}

/// Two callouts in flight at once with `jisr::join`, each answered after 300 ms: both done in
/// about 300 ms, not 600.
#[test]
fn joined_callouts_run_in_parallel() {
    let s = setup();
    let port = s.envoy.listener_port("parallel");
    let t = Instant::now();
    let r = client::get(port, "/p");
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up_header(&r, "x-a-status").as_deref(), Some("200"));
    assert_eq!(up_header(&r, "x-b-status").as_deref(), Some("200"));
    let ms: u64 = up_header(&r, "x-parallel-ms").unwrap().parse().unwrap();
    assert!((300..550).contains(&ms), "both callouts took {ms} ms");
    assert!(took < Duration::from_millis(600), "request took {took:?}");
    let calls = s.svc.requests();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.path == "/delay/300"));
    // Two connections: the second callout did not wait for the first.
    assert_ne!(calls[0].connection, calls[1].connection);
}

/// The client leaves while the callout is in flight: the handler (and its callout) is dropped,
/// the late answer does nothing, Envoy stays ready and the next request is served.
///
/// Seen: the access log shows `code=0 details=downstream_remote_disconnect`, and the request never
/// goes upstream. 1.5 s later, when the target would have answered, nothing reached the handler (no
/// "answered" log line). The next request (with a callout) is served in < 500 ms.
#[test]
fn client_disconnect_drops_the_callout() {
    let s = setup();
    let port = s.envoy.listener_port("callout");
    client::send_and_disconnect(
        port,
        b"GET /slow HTTP/1.1\r\nhost: localhost\r\n\r\n",
        Duration::from_millis(200),
    )
    .unwrap();
    let l = access_line(&s.envoy, "callout", "/slow");
    assert_eq!(access_field(&l, "code"), Some("0"), "{l}");
    assert_eq!(
        access_field(&l, "details"),
        Some("downstream_remote_disconnect"),
        "{l}"
    );
    assert!(s.svc.requests().iter().any(|c| c.path == "/delay/1500"));
    s.envoy.assert_ready();
    let t = Instant::now();
    let r = client::request(
        port,
        "GET",
        "/after",
        &[("authorization", "Bearer ok")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up_header(&r, "x-user").as_deref(), Some("alice"));
    assert!(t.elapsed() < Duration::from_millis(500));
    // Past the target's answer time: no completion reached the dropped handler.
    std::thread::sleep(Duration::from_millis(1500));
    s.envoy.assert_ready();
    assert!(
        !s.envoy.log().contains("svc/delay/1500 answered"),
        "{}",
        s.envoy.log()
    );
    assert!(s.main.requests().iter().all(|q| q.path != "/slow"));
}

/// `state_set` stores bytes in Envoy's filter state; `state_get`, a later filter, reads them.
#[test]
fn filter_state_crosses_filters() {
    let s = setup();
    let port = s.envoy.listener_port("state");
    let r = client::request(port, "GET", "/s1", &[("x-state-in", "blue")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up_header(&r, "x-state").as_deref(), Some("blue"));
    let r = client::get(port, "/s2");
    assert_eq!(up_header(&r, "x-state").as_deref(), Some("none"));
    // The access log reads it with %FILTER_STATE(jisr.demo:PLAIN)%.
    let l = access_line(&s.envoy, "state", "/s1");
    assert_eq!(access_field(&l, "state"), Some("blue"), "{l}");
    let l = access_line(&s.envoy, "state", "/s2");
    assert_eq!(access_field(&l, "state"), Some("none"), "{l}");
}
