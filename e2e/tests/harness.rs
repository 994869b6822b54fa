//! Tests of the harness itself: real Envoy, no jisr module.

use jisr_e2e::client::{self, Connection};
use jisr_e2e::upstream::{fnv1a64, pattern};
use jisr_e2e::{Envoy, EnvoyConfig, HttpFilter, Listener, Route, Upstream};
use std::time::Duration;

fn plain(up: &Upstream) -> EnvoyConfig {
    EnvoyConfig::new()
        .listener(
            Listener::new("main")
                .route(Route::direct("/direct", 418, "short and stout"))
                .route(Route::to("/", "upstream"))
                .log_field("ua", "%REQ(user-agent)%"),
        )
        .upstream(up.port())
}

#[test]
fn request_reaches_upstream_and_echo_comes_back() {
    let up = Upstream::start("echo-1");
    let envoy = Envoy::start(&plain(&up));
    eprintln!("envoy ready after {:?}", envoy.ready_after());
    let port = envoy.listener_port("main");
    let body = pattern(0, 100_000);
    let resp = client::request(
        port,
        "POST",
        "/hello?x=1",
        &[("x-test", "a\"b"), ("user-agent", "e2e")],
        &body,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let echo = resp.json();
    assert_eq!(echo["server"].as_str(), Some("echo-1"));
    assert_eq!(echo["method"].as_str(), Some("POST"));
    assert_eq!(echo["path"].as_str(), Some("/hello?x=1"));
    assert_eq!(echo["headers"]["x-test"].as_str(), Some("a\"b"));
    assert_eq!(echo["body_len"].as_u64(), Some(body.len() as u64));
    assert_eq!(
        echo["body_fnv"].as_str(),
        Some(format!("{:016x}", fnv1a64(&body)).as_str())
    );
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body, body);
    assert_eq!(reqs[0].header("x-test"), Some("a\"b"));

    // The access log line arrives on stdout with the marker.
    let lines = envoy.wait_for_access_lines(1, Duration::from_secs(5));
    assert_eq!(lines.len(), 1, "{}", envoy.log());
    assert!(
        lines[0].contains("method=POST path=/hello?x=1 code=200 details=via_upstream ua=e2e"),
        "{}",
        lines[0]
    );
}

#[test]
fn chunked_request_keepalive_and_streamed_response() {
    let up = Upstream::start("echo-2");
    let envoy = Envoy::start(&plain(&up));
    let port = envoy.listener_port("main");

    let mut c = Connection::open(port).unwrap();
    c.send_chunked(
        "PUT",
        "/c",
        &[],
        &[b"abc", b"", b"defgh"],
        Duration::from_millis(30),
    )
    .unwrap();
    let r = c.read_response("PUT").unwrap();
    assert_eq!(r.json()["body_len"].as_u64(), Some(8));
    // Same connection again (keep-alive).
    let r = c.request("GET", "/bytes/1000", &[], b"").unwrap();
    assert_eq!(r.body, pattern(0, 1000));
    let r = c.request("GET", "/status/503", &[], b"").unwrap();
    assert_eq!(r.status, 503);

    let mut s = client::stream(
        port,
        "GET",
        "/stream?chunks=4&delay_ms=150&size=10",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(s.status, 200);
    let body = s.read_to_end().unwrap();
    assert_eq!(body, pattern(0, 40));
    let first = s.first_body_byte_after().unwrap();
    assert!(
        first < Duration::from_millis(400),
        "first byte after {first:?}"
    );

    // Reading slowly still gets every byte, in order.
    let mut s = client::stream(port, "GET", "/bytes/300000", &[], b"").unwrap();
    let body = s.read_slowly(64 * 1024, Duration::from_millis(5)).unwrap();
    assert_eq!(body.len(), 300_000);
    assert!(body == pattern(0, 300_000));
}

#[test]
fn upstream_custom_handler_trailers_and_reset() {
    let up = Upstream::start_with("custom", |req, w| match req.path_only() {
        "/trailers" => {
            w.header("content-type", "text/plain");
            w.chunk(b"part1 ");
            w.sleep(Duration::from_millis(20));
            w.chunk(b"part2");
            w.trailer("x-checksum", "42");
            w.finish();
        }
        "/reset" => w.reset(),
        "/sse" => {
            w.header("content-type", "text/event-stream");
            w.sse_event(Some("greeting"), "hello\nworld");
            w.sse_event(None, "{}");
        }
        _ => jisr_e2e::upstream::echo(req, w),
    });
    // Direct: the client against the upstream itself.
    let r = client::get_with_trailers(up.port(), "/trailers");
    assert_eq!(r.text(), "part1 part2");
    assert_eq!(
        r.trailers.get("x-checksum").map(|v| v[0].as_str()),
        Some("42")
    );
    assert!(client::try_request(up.port(), "GET", "/reset", &[], b"").is_err());
    let r = client::get(up.port(), "/sse");
    assert_eq!(
        r.text(),
        "event: greeting\ndata: hello\ndata: world\n\ndata: {}\n\n"
    );
    let r = client::request(up.port(), "GET", "/x", &[("connection", "close")], b"");
    assert_eq!(r.json()["server"].as_str(), Some("custom"));

    // Through Envoy: a reset upstream becomes a 503.
    let envoy = Envoy::start(&plain(&up));
    let r = client::get(envoy.listener_port("main"), "/reset");
    assert_eq!(r.status, 503, "{}", r.text());
    let r = client::get(envoy.listener_port("main"), "/trailers");
    assert_eq!(r.text(), "part1 part2");
}

#[test]
fn direct_response_route() {
    let up = Upstream::start("unused");
    let envoy = Envoy::start(&plain(&up));
    let r = client::get(envoy.listener_port("main"), "/direct/x");
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "short and stout");
    assert!(up.requests().is_empty());
    let lines = envoy.wait_for_access_lines(1, Duration::from_secs(5));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("code=418 details=direct_response")),
        "{lines:?}"
    );
}

#[test]
fn admin_stats_readable() {
    let up = Upstream::start("stats");
    let envoy = Envoy::start(&plain(&up));
    for _ in 0..3 {
        assert_eq!(client::get(envoy.listener_port("main"), "/").status, 200);
    }
    assert!(envoy.stats().contains("cluster.upstream."));
    assert_eq!(
        envoy.wait_for_counter("http.main.downstream_rq_2xx", 3, Duration::from_secs(5)),
        Some(3)
    );
    assert_eq!(envoy.counter("cluster.upstream.upstream_rq_total"), Some(3));
    assert_eq!(envoy.counter("no.such.counter"), None);
    assert!(envoy.gauge("server.live").is_some());
    // Histograms show up after the 1 s stats flush.
    assert!(jisr_e2e::wait_until(Duration::from_secs(5), || envoy
        .histogram_present("http.main.downstream_rq_time")));
    assert!(envoy.is_ready());
    envoy.assert_ready();
    assert!(envoy.stop().is_some());
    assert!(!envoy.is_ready());
}

#[test]
fn broken_config_is_refused() {
    let cfg = EnvoyConfig::new().listener(Listener::new("main").filter(HttpFilter::raw(
        "bogus",
        "\"@type\": type.googleapis.com/envoy.extensions.filters.http.does_not_exist.v3.Nope",
    )));
    let (status, log) = Envoy::start_expect_failure(&cfg);
    assert!(!status.success(), "{status}");
    assert!(log.contains("does_not_exist"), "{log}");
}

#[test]
fn client_disconnect_mid_request_keeps_envoy_ready() {
    let up = Upstream::start("disc");
    let envoy = Envoy::start(&plain(&up));
    let port = envoy.listener_port("main");
    let raw = b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\npartial";
    client::send_and_disconnect(port, raw, Duration::from_millis(100)).unwrap();
    let got = client::send_and_disconnect(
        port,
        b"GET /delay/2000 HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_millis(100),
    )
    .unwrap();
    assert!(got.is_empty());
    envoy.assert_ready();
    assert_eq!(client::get(port, "/").status, 200);
}

#[test]
fn example_modules_build() {
    // Builds (or confirms fresh) the jisr examples and the e2e fixtures; fails if they do not
    // compile.
    let dir = jisr_e2e::modules_dir();
    assert!(dir.is_dir(), "{} is not a directory", dir.display());
}

#[test]
#[should_panic(expected = "Envoy exited during startup")]
fn start_panics_with_log_when_envoy_exits() {
    let cfg = EnvoyConfig::new().listener(Listener::new("main").filter(HttpFilter::raw(
        "bogus",
        "\"@type\": type.googleapis.com/envoy.extensions.filters.http.does_not_exist.v3.Nope",
    )));
    let _ = Envoy::start(&cfg);
}
