//! Response-phase modules in real Envoy: `resp_stamp` (Passthrough), `resp_tap` (Observe),
//! `resp_rewrite` (Buffer); response-phase metrics and metadata, panics, a client leaving while
//! a response handler is pending, and an upstream that closes or resets mid-body.

use jisr_e2e::client::{self, Connection};
use jisr_e2e::upstream::pattern;
use jisr_e2e::{
    Envoy, EnvoyConfig, Listener, Upstream, UpstreamRequest, access_field, module_filter,
    module_stat,
};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
const DROP_LINE: &str = "resp_stamp: handler dropped before completion";

/// The echo upstream plus paths that misbehave on purpose:
/// - `/cut/<n>`: announces 10 000 bytes, sends `n`, closes (FIN);
/// - `/reset-mid`: a chunked body, one 4000-byte chunk, then a reset (RST);
/// - `/json-chunked`: a JSON object in two chunks, no content-length;
/// - `/json-array`, `/json-broken`: `application/json` that is not an object / not JSON.
fn upstream(name: &str) -> Upstream {
    Upstream::start_with(name, |req: &UpstreamRequest, w| {
        let path = req.path_only();
        if let Some(n) = path.strip_prefix("/cut/").and_then(|n| n.parse().ok()) {
            let mut raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 10000\r\n\r\n".to_vec();
            raw.extend_from_slice(&pattern(0, n));
            w.raw(&raw);
            w.sleep(Duration::from_millis(50));
            w.close();
            return;
        }
        match path {
            "/reset-mid" => {
                w.header("content-type", "application/octet-stream");
                w.chunk(&pattern(0, 4000));
                w.sleep(Duration::from_millis(50));
                w.reset();
            }
            "/json-chunked" => {
                w.header("content-type", "application/json; charset=utf-8");
                w.chunk(br#"{"a":1,"#);
                w.sleep(Duration::from_millis(20));
                w.chunk(br#""b":[true,null]}"#);
                w.finish();
            }
            "/reset" => w.reset(),
            "/json-array" => {
                w.header("content-type", "application/json");
                w.send(b"[1,2,3]");
            }
            "/json-broken" => {
                w.header("content-type", "application/json");
                w.send(b"{\"a\":");
            }
            _ => jisr_e2e::upstream::echo(req, w),
        }
    })
}

fn resp_envoy(up: &Upstream, concurrency: usize) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .concurrency(concurrency)
            .listener(
                Listener::new("stamp")
                    .filter(module_filter("resp_stamp", "stamp", None))
                    .log_metadata("resp_stamp", "status"),
            )
            .listener(
                Listener::new("tap")
                    .filter(module_filter("resp_tap", "tap", None))
                    .log_metadata("resp_tap", "bytes")
                    .log_metadata("resp_tap", "aborted_after")
                    .log_field("flags", "%RESPONSE_FLAGS%"),
            )
            .listener(
                Listener::new("ended")
                    .filter(module_filter("resp_tap", "ended", None))
                    .log_metadata("resp_tap", "ended")
                    .log_metadata("resp_tap", "status"),
            )
            .listener(Listener::new("rewrite").filter(module_filter(
                "resp_rewrite",
                "rewrite",
                None,
            )))
            .upstream(up.port()),
    )
}

fn access_line_for(envoy: &Envoy, listener: &str, path: &str) -> String {
    let mut found = None;
    jisr_e2e::wait_until(WAIT, || {
        found = envoy.access_log_lines().into_iter().find(|l| {
            access_field(l, "listener") == Some(listener) && access_field(l, "path") == Some(path)
        });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no access line for {listener} {path}\n{}", envoy.log()))
}

/// Passthrough: the status is stamped on upstream responses of any status, the metadata set in
/// the response handler reaches the access log, and a waiting handler holds the response.
///
/// `x-jisr-stamp: <status>` reaches the client on 200 and 404 upstream answers. A handler that
/// waits 200 ms for another thread holds the headers and the body: the client gets both after at
/// least 200 ms, with the headers the handler set after the wait. A 300 KB body passes intact.
#[test]
fn passthrough_stamps_the_status_and_can_hold_the_response() {
    let up = upstream("stamp-up");
    let envoy = resp_envoy(&up, 2);
    let port = envoy.listener_port("stamp");

    let r = client::get(port, "/ok");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-jisr-stamp"), Some("200"));
    assert_eq!(r.json()["path"].as_str(), Some("/ok"));

    let r = client::get(port, "/status/404");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-jisr-stamp"), Some("404"));

    // A body on the request still goes upstream; the response body is untouched.
    let body = pattern(0, 50_000);
    let r = client::request(port, "POST", "/post", &[], &body);
    assert_eq!(r.json()["body_len"].as_u64(), Some(50_000));
    assert_eq!(r.header("x-jisr-stamp"), Some("200"));
    let r = client::get(port, "/bytes/300000");
    assert!(r.body == pattern(0, 300_000));

    // The handler waits 200 ms for another thread: headers and body are held meanwhile.
    let t = Instant::now();
    let r = client::request(port, "GET", "/held", &[("x-stamp-delay-ms", "200")], b"");
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.header("x-jisr-stamp-waited"), Some("200"));
    assert_eq!(r.header("x-jisr-stamp"), Some("200"));
    assert_eq!(r.json()["path"].as_str(), Some("/held"));

    for (path, code) in [("/ok", "200"), ("/status/404", "404"), ("/held", "200")] {
        let l = access_line_for(&envoy, "stamp", path);
        assert_eq!(access_field(&l, "code"), Some(code), "{l}");
        assert_eq!(access_field(&l, "resp_stamp:status"), Some(code), "{l}");
    }
}

/// Observe: the counter incremented chunk by chunk in the response handler is exact in /stats,
/// and the metadata set at the end of the body is in the access log.
///
/// The counter is exact in `/stats` and in Prometheus format
/// (`envoy_dynamicmodulescustom_resp_tap_bytes_total{} 228456`); the metadata shows through
/// `%DYNAMIC_METADATA(..)%`. Metadata numbers use exponent form when that is shorter (Envoy's
/// number format): 100000 logs as `1e+05`, while 123456, 5000 and 0 log as they are. Use
/// `set_metadata_str` when the exact digits matter.
#[test]
fn observe_counts_response_bytes_into_stats_and_access_log() {
    let up = upstream("tap-up");
    let envoy = resp_envoy(&up, 2);
    let port = envoy.listener_port("tap");
    let bytes = module_stat("resp_tap_bytes_total", &[]);
    assert_eq!(envoy.counter(&bytes), Some(0));

    let r = client::get(port, "/bytes/100000");
    assert!(r.body == pattern(0, 100_000));
    let r = client::get(port, "/stream?chunks=5&delay_ms=20&size=1000");
    assert!(r.body == pattern(0, 5000));
    let r = client::get(port, "/bytes/0");
    assert!(r.body.is_empty());
    let r = client::get(port, "/bytes/123456");
    assert_eq!(r.body.len(), 123_456);
    let total = 228_456;
    assert_eq!(envoy.wait_for_counter(&bytes, total, WAIT), Some(total));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(envoy.counter(&bytes), Some(total), "counted once per byte");

    for (path, n) in [
        // Envoy prints metadata numbers with 6 significant digits: exponent form from 1e5 up.
        ("/bytes/100000", "1e+05"),
        ("/bytes/123456", "123456"),
        ("/stream?chunks=5&delay_ms=20&size=1000", "5000"),
        ("/bytes/0", "0"),
    ] {
        let l = access_line_for(&envoy, "tap", path);
        assert_eq!(access_field(&l, "code"), Some("200"), "{l}");
        assert_eq!(access_field(&l, "resp_tap:bytes"), Some(n), "{l}");
        assert_eq!(access_field(&l, "resp_tap:aborted_after"), Some("-"), "{l}");
    }
    let prom = envoy.admin_get("/stats/prometheus").text();
    assert!(
        prom.contains(&format!(
            "envoy_dynamicmodulescustom_resp_tap_bytes_total{{}} {total}"
        )),
        "{prom}"
    );
    assert_eq!(
        envoy.counter(&module_stat("resp_tap_aborted_total", &[])),
        Some(0)
    );
}

/// Buffer: JSON objects get `"x_jisr_rewritten": true` with a right content-length (or stay
/// chunked); anything else passes byte for byte.
///
/// Non-JSON bodies and bodies that do not parse as JSON objects pass byte for byte with their
/// original `content-length`. Keep-alive works across rewritten responses.
#[test]
fn buffer_rewrites_json_objects_and_leaves_the_rest() {
    let up = upstream("rewrite-up");
    let envoy = resp_envoy(&up, 2);
    let port = envoy.listener_port("rewrite");

    let r = client::request(port, "GET", "/echo?q=1", &[("x-test", "1")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-jisr-rewrite"), Some("rewritten"));
    let cl: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(cl, r.body.len());
    let j = r.json();
    assert_eq!(j["x_jisr_rewritten"].as_bool(), Some(true));
    assert_eq!(j["path"].as_str(), Some("/echo?q=1"));
    assert_eq!(j["headers"]["x-test"].as_str(), Some("1"));
    assert_eq!(j["server"].as_str(), Some("rewrite-up"));

    // The filter has a response handler only (`on_response`): a request body of many chunks
    // reaches the upstream whole and unchanged, and its JSON answer is still rewritten.
    let body = pattern(7, 300_000);
    let r = client::request(port, "POST", "/echo", &[], &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-jisr-rewrite"), Some("rewritten"));
    let j = r.json();
    assert_eq!(j["body_len"].as_u64(), Some(300_000));
    assert_eq!(
        j["body_fnv"].as_str(),
        Some(format!("{:016x}", jisr_e2e::upstream::fnv1a64(&body)).as_str())
    );

    // Chunked JSON stays chunked (no content-length) and is rewritten.
    let r = client::get(port, "/json-chunked");
    assert_eq!(r.header("x-jisr-rewrite"), Some("rewritten"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        r.text(),
        r#"{"a":1,"b":[true,null],"x_jisr_rewritten":true}"#
    );

    // Not JSON, not an object, not parseable: untouched, byte for byte.
    let r = client::get(port, "/bytes/200000");
    assert_eq!(r.header("x-jisr-rewrite"), Some("skipped"));
    assert_eq!(r.header("content-length"), Some("200000"));
    assert!(r.body == pattern(0, 200_000));
    let r = client::get(port, "/json-array");
    assert_eq!(r.header("x-jisr-rewrite"), Some("not-an-object"));
    assert_eq!(r.text(), "[1,2,3]");
    let r = client::get(port, "/json-broken");
    assert_eq!(r.header("x-jisr-rewrite"), Some("not-json"));
    assert_eq!(r.text(), "{\"a\":");
    assert_eq!(r.header("content-length"), Some("5"));

    // Keep-alive across rewritten responses: the lengths are right or the next one would break.
    let mut c = Connection::open(port).unwrap();
    for i in 0..3 {
        let r = c.request("GET", &format!("/k{i}"), &[], b"").unwrap();
        assert_eq!(r.json()["x_jisr_rewritten"].as_bool(), Some(true));
        let r = c.request("GET", "/json-chunked", &[], b"").unwrap();
        assert_eq!(r.json()["b"][0].as_bool(), Some(true));
    }
}

/// A response handler that panics before the headers left (Passthrough) gives a 500 with
/// `jisr_handler_panic`; after the headers left (Observe, mid-body) the stream is reset. The
/// same worker keeps serving.
///
/// In the Observe case the client gets the `200` head and then a cut body (stream reset), and the
/// access log cannot tell this apart: it shows `code=200 details=via_upstream flags=-`. Only the
/// module's error line (`handler of filter 'tap' panicked`) says what happened.
#[test]
fn response_phase_panic_fails_closed_and_envoy_keeps_serving() {
    let up = upstream("panic-up");
    let envoy = resp_envoy(&up, 1);

    let stamp = envoy.listener_port("stamp");
    let r = client::request(stamp, "GET", "/boom", &[("x-resp-panic", "1")], b"");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("x-jisr-stamp"), None);
    let l = access_line_for(&envoy, "stamp", "/boom");
    assert_eq!(access_field(&l, "code"), Some("500"), "{l}");
    assert_eq!(
        access_field(&l, "details"),
        Some("jisr_handler_panic"),
        "{l}"
    );
    assert!(envoy.wait_for_log("of filter 'stamp' panicked", WAIT));
    let r = client::get(stamp, "/after");
    assert_eq!((r.status, r.header("x-jisr-stamp")), (200, Some("200")));

    let tap = envoy.listener_port("tap");
    let mut c = Connection::open(tap).unwrap();
    c.send("GET", "/bytes/300000", &[("x-resp-panic", "1")], b"")
        .unwrap();
    let mut s = c.stream_response("GET").unwrap();
    assert_eq!(s.status, 200, "Observe: the headers were already sent");
    let got = s.read_to_end();
    assert!(
        got.as_ref().map_or(true, |b| b.len() < 300_000),
        "the body must be cut short: {:?}",
        got.as_ref().map(Vec::len)
    );
    assert!(envoy.wait_for_log("of filter 'tap' panicked", WAIT));
    let l = access_line_for(&envoy, "tap", "/bytes/300000");
    // The reset's details do not replace the 200's: the access log cannot tell this apart.
    assert_eq!(access_field(&l, "code"), Some("200"), "{l}");
    assert_eq!(access_field(&l, "details"), Some("via_upstream"), "{l}");
    assert_eq!(access_field(&l, "flags"), Some("-"), "{l}");
    envoy.assert_ready();
    let r = client::get(tap, "/bytes/1000");
    assert!(r.body == pattern(0, 1000));
}

/// The client leaves while a Passthrough response handler waits: the handler is dropped at
/// once, the late wake is harmless, and Envoy serves the next request.
///
/// The upstream answered, and the Passthrough handler was waiting 1 s: it is dropped in well under
/// 0.8 s. The access log shows `code=200 details=downstream_remote_disconnect`: the code is the
/// held upstream status, not 0. Metadata the handler would have set logs `-`. Envoy stays ready.
#[test]
fn client_disconnect_while_response_handler_pending() {
    let up = upstream("disc-up");
    let envoy = resp_envoy(&up, 1);
    let port = envoy.listener_port("stamp");

    let raw = b"GET /leaving HTTP/1.1\r\nhost: x\r\nx-stamp-delay-ms: 1000\r\n\r\n";
    let t = Instant::now();
    let got = client::send_and_disconnect(port, raw, Duration::from_millis(150)).unwrap();
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(envoy.wait_for_log(DROP_LINE, WAIT), "{}", envoy.log());
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    // The upstream answered; the response was held by the handler when the client left.
    assert!(up.requests().iter().any(|q| q.path == "/leaving"));
    let l = access_line_for(&envoy, "stamp", "/leaving");
    assert_eq!(access_field(&l, "code"), Some("200"), "{l}");
    assert_eq!(
        access_field(&l, "details"),
        Some("downstream_remote_disconnect"),
        "{l}"
    );
    assert_eq!(access_field(&l, "resp_stamp:status"), Some("-"), "{l}");

    std::thread::sleep(Duration::from_millis(1050).saturating_sub(t.elapsed()));
    envoy.assert_ready();
    let r = client::request(port, "GET", "/next", &[("x-stamp-delay-ms", "10")], b"");
    assert_eq!(r.header("x-jisr-stamp-waited"), Some("10"));
}

/// The upstream closes (FIN) or resets (RST) mid-body under an Observe tap: the handler's read
/// ends with `BodyError::Aborted` (counted, and the bytes seen so far in the access log); a
/// reset before any response is Envoy's 503; Envoy keeps serving.
///
/// The upstream announces 10 000 bytes and sends 3000 before a FIN, or sends one 4000-byte chunk
/// before an RST. The client gets the `200` head and a body that does not end cleanly. Counter
/// increments and metadata set during the last poll still land: `resp_tap_aborted_total` counts it,
/// and the access log shows `resp_tap:aborted_after=3000` (or `4000`), with
/// `details=upstream_reset_after_response_started{protocol_error} flags=UPE`.
#[test]
fn upstream_close_or_reset_mid_body_aborts_the_tap() {
    let up = upstream("cut-up");
    let envoy = resp_envoy(&up, 1);
    let port = envoy.listener_port("tap");
    let aborted = module_stat("resp_tap_aborted_total", &[]);

    let mut c = Connection::open(port).unwrap();
    c.send("GET", "/cut/3000", &[], b"").unwrap();
    let mut s = c.stream_response("GET").unwrap();
    assert_eq!(s.header("content-length"), Some("10000"));
    let got = s.read_to_end();
    assert!(
        got.is_err(),
        "a 10000-byte body cut at 3000 must not end cleanly"
    );
    assert_eq!(envoy.wait_for_counter(&aborted, 1, WAIT), Some(1));
    let l = access_line_for(&envoy, "tap", "/cut/3000");
    assert_eq!(access_field(&l, "resp_tap:bytes"), Some("-"), "{l}");
    assert_eq!(
        access_field(&l, "resp_tap:aborted_after"),
        Some("3000"),
        "{l}"
    );
    assert_eq!(
        access_field(&l, "details"),
        Some("upstream_reset_after_response_started{protocol_error}"),
        "{l}"
    );
    assert_eq!(access_field(&l, "flags"), Some("UPE"), "{l}");

    let mut c = Connection::open(port).unwrap();
    c.send("GET", "/reset-mid", &[], b"").unwrap();
    let mut s = c.stream_response("GET").unwrap();
    assert_eq!(s.status, 200);
    assert!(
        s.read_to_end().is_err(),
        "the chunked body must not end cleanly"
    );
    assert_eq!(envoy.wait_for_counter(&aborted, 2, WAIT), Some(2));
    let l = access_line_for(&envoy, "tap", "/reset-mid");
    assert_eq!(
        access_field(&l, "resp_tap:aborted_after"),
        Some("4000"),
        "{l}"
    );
    assert_eq!(access_field(&l, "flags"), Some("UPE"), "{l}");

    // Reset before any response: Envoy answers 503 itself; the tap sees that reply whole.
    let r = client::get(port, "/reset");
    assert_eq!(r.status, 503, "{}", r.text());
    envoy.assert_ready();
    let r = client::get(port, "/bytes/5000");
    assert!(r.body == pattern(0, 5000));
    assert_eq!(envoy.counter(&aborted), Some(2));
}

/// Observe, waiting for the end without reading (`Response::finished`): a body streamed over
/// 400 ms reaches the client whole, and the handler acts once at the end: metadata `complete`
/// with the status; `cut` when the upstream closes mid-body.
#[test]
fn observe_handler_acts_at_the_end_without_reading() {
    let up = upstream("ended-up");
    let envoy = resp_envoy(&up, 1);
    let port = envoy.listener_port("ended");
    let started = Instant::now();
    let r = client::get(port, "/stream?chunks=5&delay_ms=100&size=1000");
    assert_eq!(r.status, 200);
    assert!(r.body == pattern(0, 5000));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the body was not streamed"
    );
    let l = access_line_for(&envoy, "ended", "/stream?chunks=5&delay_ms=100&size=1000");
    assert_eq!(access_field(&l, "resp_tap:ended"), Some("complete"), "{l}");
    assert_eq!(access_field(&l, "resp_tap:status"), Some("200"), "{l}");
    let _ = client::try_request(port, "GET", "/cut/3000", &[], b"");
    let l = access_line_for(&envoy, "ended", "/cut/3000");
    assert_eq!(access_field(&l, "resp_tap:ended"), Some("cut"), "{l}");
}
