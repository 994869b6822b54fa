//! Replies the filter writes itself, in real Envoy: the `spa` static site (local replies with
//! headers) and `stream_demo` (server-sent events paced by another thread).
//!
//! The spa's large asset (`/big.bin`) streamed past Envoy's downstream high watermark, to fast,
//! stalled and departing clients, is tested in `backpressure.rs`.

use jisr_e2e::client;
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, access_field, module_filter};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
/// Size of the spa's `/big.bin` here. This file does not stream it; `backpressure.rs` does.
const BIG: usize = 32 * 1024 * 1024;

fn stream_envoy(up: &Upstream) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .concurrency(1)
            .listener(Listener::new("spa").filter(module_filter(
                "spa",
                "spa",
                Some(&BIG.to_string()),
            )))
            .listener(Listener::new("sse").filter(module_filter("stream_demo", "sse", None)))
            .upstream(up.port()),
    )
}

/// Files with their content types and cache headers, etags with 304, the index.html fallback,
/// and 405; nothing reaches the upstream.
///
/// The local replies' details (`spa_file`) show in the access log.
#[test]
fn spa_serves_files_with_types_and_cache_headers_and_falls_back_to_index() {
    let up = Upstream::start("spa-up");
    let envoy = stream_envoy(&up);
    let port = envoy.listener_port("spa");

    let index = client::get(port, "/");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert!(
        index.text().contains("<script src=\"/app.js\">"),
        "{}",
        index.text()
    );
    assert_eq!(index.header("x-spa-fallback"), None);
    let etag = index.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(client::get(port, "/index.html").body, index.body);

    for (path, ct, needle) in [
        (
            "/app.js",
            "text/javascript; charset=utf-8",
            "served by jisr",
        ),
        ("/style.css", "text/css; charset=utf-8", "font-family"),
    ] {
        let r = client::get(port, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ct), "{path}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{path}"
        );
        assert_eq!(
            r.header("content-length")
                .map(|v| v.parse::<usize>().unwrap()),
            Some(r.body.len())
        );
        assert!(r.text().contains(needle), "{path}: {}", r.text());
        // Conditional request with the etag: 304, no body.
        let et = r.header("etag").unwrap().to_string();
        let r304 = client::request(port, "GET", path, &[("if-none-match", &et)], b"");
        assert_eq!(r304.status, 304, "{path}");
        assert!(r304.body.is_empty());
        assert_eq!(r304.header("etag"), Some(et.as_str()));
    }

    // Client-side routes fall back to index.html.
    for path in ["/settings", "/users/42/profile?tab=1", "/missing.png"] {
        let r = client::get(port, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, index.body, "{path}");
        assert_eq!(r.header("x-spa-fallback"), Some("1"), "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    }
    let r = client::request(port, "POST", "/", &[], b"x");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));

    assert!(up.requests().is_empty(), "{:?}", up.requests());
    let lines = envoy.wait_for_access_lines(10, WAIT);
    let l = lines
        .iter()
        .find(|l| access_field(l, "path") == Some("/app.js"))
        .unwrap();
    assert_eq!(access_field(l, "details"), Some("spa_file"), "{l}");
}

/// Events arrive one by one as the other thread produces them, not all at the end.
///
/// The head arrives at once (under 120 ms), before the first event. Each event arrives when the
/// other thread produces it (150 ms apart), chunked to an HTTP/1 client, and the text is exact. A
/// client that leaves mid-stream ends the handler (its next `send` fails), and Envoy stays ready.
#[test]
fn sse_stream_is_paced_by_another_thread() {
    let up = Upstream::start("sse-up");
    let envoy = stream_envoy(&up);
    let port = envoy.listener_port("sse");

    let t = Instant::now();
    let mut s = client::stream(port, "GET", "/events?n=4&gap_ms=150", &[], b"").unwrap();
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    assert_eq!(s.header("cache-control"), Some("no-cache"));
    assert_eq!(s.header("transfer-encoding"), Some("chunked"));
    assert!(
        s.head_after() < Duration::from_millis(120),
        "head after {:?}",
        s.head_after()
    );
    let mut text = String::new();
    let mut arrivals = Vec::new();
    while let Some(b) = s.next_bytes(64 * 1024).unwrap() {
        text.push_str(std::str::from_utf8(&b).unwrap());
        arrivals.push((t.elapsed(), text.matches("\n\n").count()));
    }
    let mut expected = String::new();
    for i in 0..4u64 {
        expected.push_str(&format!(
            "id: {i}\nevent: tick\ndata: {{\"i\":{i},\"value\":{}}}\n\n",
            i * i
        ));
    }
    expected.push_str("event: done\ndata: {}\n\n");
    assert_eq!(text, expected);
    // Event k (1-based) completes no earlier than k gaps after the request.
    for k in 1..=4usize {
        let at = arrivals.iter().find(|(_, n)| *n >= k).unwrap().0;
        assert!(
            at >= Duration::from_millis(150 * k as u64 - 20),
            "event {k} after {at:?}: {arrivals:?}"
        );
    }
    let first = arrivals[0].0;
    let last = arrivals.last().unwrap().0;
    assert!(last - first >= Duration::from_millis(400), "{arrivals:?}");

    // A client that leaves after the first event; the next one is served.
    let mut s = client::stream(port, "GET", "/events?n=50&gap_ms=20", &[], b"").unwrap();
    let _ = s.next_bytes(16).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(100));
    envoy.assert_ready();
    let r = client::get(port, "/events?n=2&gap_ms=0");
    assert_eq!(r.text().matches("event: tick").count(), 2);
    assert!(up.requests().is_empty());
}
