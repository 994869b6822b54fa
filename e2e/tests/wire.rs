//! Untrusted bytes through safe calls in real Envoy over HTTP/1.1: a response-splitting
//! payload copied into a response header, a reply header, a streamed reply's head, a status
//! or the request line never gives a pipelining client more responses than it asked for, and
//! the upstream sees the request line Envoy routed on. Also: log lines stay lines, and a
//! handler panic with `RUST_BACKTRACE` set prints no backtrace.
//!
//! The fixture (`e2e/fixtures/examples/wire_fixture.rs`) takes its payload hex-encoded in
//! `x-payload-hex`, because a request header cannot carry a line break.

use jisr_e2e::client::Connection;
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, module_filter};
use std::io::ErrorKind;
use std::time::Duration;

/// With a pipelined second request, a client reads a forged third response if this reaches
/// the wire inside a header.
const SPLIT: &[u8] =
    b"a\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\nx-forged: 1\r\ncontent-length: 0\r\n\r\n";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const FILTERS: [&str; 6] = [
    "resp_header",
    "reply_header",
    "stream_header",
    "status",
    "path",
    "log",
];

fn envoy(up: &Upstream, extra: impl FnOnce(EnvoyConfig) -> EnvoyConfig) -> Envoy {
    let mut cfg = EnvoyConfig::new().concurrency(1).upstream(up.port());
    for f in FILTERS.into_iter().chain(["panic"]) {
        cfg = cfg.listener(Listener::new(f).filter(module_filter("wire_fixture", f, None)));
    }
    Envoy::start(&extra(cfg))
}

/// Sends two pipelined requests in one write (the second closes the connection) and returns
/// both responses; fails if a third one, or any stray byte, follows.
fn pipelined(port: u16, first: &[(&str, &str)]) -> [jisr_e2e::client::Response; 2] {
    let mut c = Connection::open(port).expect("connect");
    c.set_timeout(Duration::from_secs(5)).unwrap();
    let mut bytes = String::from("GET /first HTTP/1.1\r\nhost: localhost\r\n");
    for (k, v) in first {
        bytes.push_str(&format!("{k}: {v}\r\n"));
    }
    bytes.push_str("\r\nGET /second HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    c.send_raw(bytes.as_bytes()).expect("send");
    let a = c.read_response("GET").expect("first response");
    let b = c.read_response("GET").expect("second response");
    match c.read_response("GET") {
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
        other => panic!("a third response (or stray bytes) after two requests: {other:?}"),
    }
    [a, b]
}

#[test]
fn a_splitting_payload_gives_exactly_one_response_per_request() {
    let up = Upstream::start("wire-up");
    let envoy = envoy(&up, |c| c);
    let payload = hex(SPLIT);
    for f in ["resp_header", "reply_header", "stream_header"] {
        let [a, b] = pipelined(envoy.listener_port(f), &[("x-payload-hex", &payload)]);
        assert_eq!(a.header("x-forged"), None, "{f}: {a:?}");
        assert_eq!(a.header("x-echo"), None, "{f}: {a:?}");
        assert_eq!(b.header("x-forged"), None, "{f}: {b:?}");
        match f {
            // The upstream's answer goes on, without the refused header.
            "resp_header" => {
                assert_eq!(a.status, 200, "{a:?}");
                assert_eq!(a.header("x-echo-result"), Some("refused"));
            }
            // A reply with the payload fails closed.
            _ => {
                assert_eq!(a.status, 500, "{f}: {a:?}");
                assert!(a.body.is_empty(), "{f}: {a:?}");
            }
        }
        // The second request is answered as itself.
        assert_ne!(b.status, 0);
    }
    // Valid bytes still go through, so the refusals above are about the payload.
    let [a, _] = pipelined(
        envoy.listener_port("reply_header"),
        &[("x-payload-hex", &hex(b"req-42"))],
    );
    assert_eq!((a.status, a.header("x-echo")), (200, Some("req-42")));
    let log = envoy.log();
    assert!(
        log.contains("jisr: filter 'reply_header': reply refused (header value: byte 0x0d at 1"),
        "{log}"
    );
}

#[test]
fn statuses_outside_200_to_599_never_reach_the_client() {
    let up = Upstream::start("wire-status-up");
    let envoy = envoy(&up, |c| c);
    let port = envoy.listener_port("status");
    for bad in ["0", "99", "101", "103", "600", "1000", "65535"] {
        let [a, b] = pipelined(port, &[("x-status", bad)]);
        assert_eq!(a.status, 500, "status {bad}: {a:?}");
        assert_eq!(b.status, 500, "status {bad}: second request: {b:?}");
    }
    // 204 and 304 go without the body the handler gave; the next response is read right.
    for (ok, status) in [("204", 204), ("304", 304)] {
        let [a, b] = pipelined(port, &[("x-status", ok)]);
        assert_eq!((a.status, a.body.len()), (status, 0), "{a:?}");
        assert_eq!(b.status, 500, "{b:?}");
    }
    let [a, _] = pipelined(port, &[("x-status", "418")]);
    assert_eq!(
        (a.status, a.body.as_slice()),
        (418, b"status body\n".as_slice())
    );
}

#[test]
fn the_upstream_sees_the_request_line_envoy_routed_on() {
    let up = Upstream::start("wire-line-up");
    let envoy = envoy(&up, |c| c);
    let port = envoy.listener_port("path");
    let cases: [(&str, &[u8]); 5] = [
        (":path", b"/a HTTP/1.0\tb"),
        (":path", b"/x\r\nx-injected: 1"),
        (":path", b""),
        (":method", b"GET /x"),
        (":authority", b"a b"),
    ];
    for (field, value) in cases {
        let [a, _] = pipelined(port, &[("x-field", field), ("x-payload-hex", &hex(value))]);
        assert_eq!(a.status, 200, "{field} {value:?}: {a:?}");
    }
    let [a, _] = pipelined(port, &[("x-payload-hex", &hex(b"/rewritten?q=1"))]);
    assert_eq!(a.status, 200);
    let seen = up.requests();
    let firsts: Vec<_> = seen
        .iter()
        .filter(|r| r.header("x-payload-hex").is_some())
        .collect();
    assert_eq!(firsts.len(), 6, "{seen:?}");
    for r in &firsts[..5] {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("GET", "/first"),
            "{r:?}"
        );
        assert_eq!(r.header("x-set-result"), Some("refused"), "{r:?}");
        assert_eq!(r.header("x-injected"), None);
    }
    assert_eq!(firsts[5].path, "/rewritten?q=1");
    assert_eq!(firsts[5].header("x-set-result"), Some("ok"));
}

#[test]
fn log_lines_from_request_text_stay_one_line_each() {
    let up = Upstream::start("wire-log-up");
    let envoy = envoy(&up, |c| c);
    let text = b"ada\n[2026-12-07 00:00:00.000][1][critical][main] forged\x1b[2J level=error";
    let [a, _] = pipelined(envoy.listener_port("log"), &[("x-payload-hex", &hex(text))]);
    assert_eq!(a.status, 204);
    let log = envoy.log();
    assert!(
        !log.contains("\n[2026-12-07 00:00:00.000][1][critical][main] forged"),
        "{log}"
    );
    assert!(!log.contains('\x1b'), "an escape sequence reached the log");
    assert!(
        log.contains(r"wire_fixture text: ada\n[2026-12-07 00:00:00.000][1][critical][main] forged\u001b[2J level=error"),
        "{log}"
    );
    assert!(
        log.contains(r#""ada\n[2026-12-07 00:00:00.000][1][critical][main] forged\u001b[2J level=error" filter=log user="#),
        "{log}"
    );
    // Envoy 1.40 shows where the module logged (`log_v2`); older Envoys have no such callback
    // and show a place in their own code.
    let line = log
        .lines()
        .find(|l| l.contains("wire_fixture text: "))
        .expect("the log line");
    if jisr_e2e::envoy_minor() >= (1, 40) {
        assert!(
            line.contains("[e2e/fixtures/examples/wire_fixture.rs:"),
            "no source location: {line}"
        );
    } else {
        assert!(!line.contains("wire_fixture.rs:"), "{line}");
    }
}

/// Envoy inherits `RUST_BACKTRACE`; the module's panic hook writes one line into Envoy's log
/// and captures no backtrace unless `JISR_BACKTRACE` asks, so a panic costs no symbolisation
/// on the worker. The hook the fixture's `register` set still runs after jisr's line.
#[test]
fn a_handler_panic_with_rust_backtrace_set_prints_no_backtrace() {
    let up = Upstream::start("wire-panic-up");
    let envoy = envoy(&up, |c| c.env("RUST_BACKTRACE", "full"));
    let port = envoy.listener_port("panic");
    let before = envoy.rss_kib().expect("rss");
    for _ in 0..3 {
        let [a, b] = pipelined(port, &[]);
        assert_eq!((a.status, b.status), (500, 500));
    }
    let after = envoy.rss_kib().expect("rss");
    let log = envoy.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("jisr: panic in thread"))
        .collect();
    assert_eq!(lines.len(), 6, "{log}");
    assert!(
        lines.iter().all(|l| l.contains("[error][dynamic_modules]")
            && l.contains("wire_fixture.rs:")
            && l.ends_with("wire_fixture asked to panic (JISR_BACKTRACE=1 for a backtrace)")),
        "{lines:#?}"
    );
    assert_eq!(
        log.matches("wire_fixture hook saw: wire_fixture asked to panic")
            .count(),
        6,
        "the filter's own hook did not run:\n{log}"
    );
    assert!(!log.contains("stack backtrace"), "{log}");
    assert!(
        !log.contains("panicked at"),
        "the standard hook ran:\n{log}"
    );
    // Symbolising a backtrace grew Envoy by ~55 MB; without it, six panics cost next to nothing.
    assert!(
        after.saturating_sub(before) < 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}
