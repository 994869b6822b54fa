//! The `async_demo` example module in real Envoy: a handler resumed from another thread, body
//! reads with a limit, chaining and client disconnects while pending; and a handler panic
//! (the `panic` filter of the `fault_fixture` module, `e2e/fixtures/`).

use jisr_e2e::client::{self, Connection, Response};
use jisr_e2e::upstream::{fnv1a64, pattern};
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, access_field, module_filter};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
const DROP_LINE: &str = "wait: handler dropped before completion";

/// Listeners: `wait`, `body` (limit 4096), `body_default` (no config: 1024), `chain`
/// (`wait` then `body` with limit 1024), `panic` (`fault_fixture`).
fn async_envoy(up: &Upstream, concurrency: usize) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .concurrency(concurrency)
            .listener(
                Listener::new("wait")
                    .filter(module_filter("async_demo", "wait", None))
                    .log_metadata("jisr", "async_value"),
            )
            .listener(
                Listener::new("body")
                    .filter(module_filter("async_demo", "body", Some("4096")))
                    .log_metadata("jisr", "body_bytes"),
            )
            .listener(Listener::new("body_default").filter(module_filter(
                "async_demo",
                "body",
                None,
            )))
            .listener(
                Listener::new("chain")
                    .filter(module_filter("async_demo", "wait", None))
                    .filter(module_filter("async_demo", "body", Some("1024")))
                    .log_metadata("jisr", "async_value")
                    .log_metadata("jisr", "body_bytes"),
            )
            .listener(Listener::new("panic").filter(module_filter("fault_fixture", "panic", None)))
            .upstream(up.port()),
    )
}

fn up_header(r: &Response, name: &str) -> Option<String> {
    r.json()["headers"][name].as_str().map(str::to_string)
}

fn fnv_hex(b: &[u8]) -> String {
    format!("{:016x}", fnv1a64(b))
}

/// The upstream got exactly `sent`.
fn assert_body_intact(r: &Response, sent: &[u8]) {
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["body_len"].as_u64(), Some(sent.len() as u64));
    assert_eq!(echo["body_fnv"].as_str(), Some(fnv_hex(sent).as_str()));
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

#[test]
fn wait_resumes_from_another_thread_after_the_delay() {
    let up = Upstream::start("wait-up");
    let envoy = async_envoy(&up, 2);
    let port = envoy.listener_port("wait");

    let t = Instant::now();
    let r = client::request(port, "GET", "/w200", &[("x-delay-ms", "200")], b"");
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(took >= Duration::from_millis(200), "took {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(up_header(&r, "x-async-value").as_deref(), Some("1200"));
    // The upstream saw the request only after the value arrived.
    assert_eq!(up.requests().len(), 1);

    // Default delay (50 ms).
    let r = client::get(port, "/wdefault");
    assert_eq!(r.status, 200);
    assert_eq!(up_header(&r, "x-async-value").as_deref(), Some("1050"));

    // Zero delay: the other thread may finish before the hook returns; still one clean resume.
    for i in 0..10 {
        let r = client::request(
            port,
            "GET",
            &format!("/w0-{i}"),
            &[("x-delay-ms", "0")],
            b"",
        );
        assert_eq!(r.status, 200);
        assert_eq!(up_header(&r, "x-async-value").as_deref(), Some("1000"));
    }

    let l = access_line_for(&envoy, "wait", "/w200");
    assert_eq!(access_field(&l, "code"), Some("200"), "{l}");
    assert_eq!(access_field(&l, "jisr:async_value"), Some("1200"), "{l}");
}

/// Several requests pending at once on one worker: they all complete, each with its own value,
/// in about the longest delay rather than the sum.
#[test]
fn concurrent_waits_on_one_worker_all_complete() {
    let up = Upstream::start("conc-up");
    let envoy = async_envoy(&up, 1);
    let port = envoy.listener_port("wait");

    const N: u64 = 8;
    let t = Instant::now();
    let handles: Vec<_> = (0..N)
        .map(|i| {
            std::thread::spawn(move || {
                let delay = 200 + 20 * i;
                let r = client::request(
                    port,
                    "GET",
                    &format!("/c{i}"),
                    &[("x-delay-ms", &delay.to_string())],
                    b"",
                );
                (delay, r)
            })
        })
        .collect();
    for h in handles {
        let (delay, r) = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            up_header(&r, "x-async-value"),
            Some((delay + 1000).to_string())
        );
    }
    let took = t.elapsed();
    let longest = Duration::from_millis(200 + 20 * (N - 1));
    assert!(took >= longest, "took {took:?}");
    // Serial would be ~2.2 s; concurrent is ~0.35 s.
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    assert_eq!(up.requests().len(), N as usize);
}

/// The client leaves while `wait` is pending: the handler future is dropped, the other thread's
/// later wake is harmless, Envoy stays ready and serves the next request.
///
/// Seen: the access log shows `code=0 details=downstream_remote_disconnect`, and the handler future
/// is dropped at once, before the producer thread finishes; the next request succeeds. The
/// example's drop message appears in Envoy's log file through stderr only: its `w.log(...)` inside
/// `Drop` does not reach Envoy's logger, because the stream is being destroyed. Do not rely on
/// stream-bound logging in `Drop`.
#[test]
fn client_disconnect_while_waiting_drops_the_handler() {
    let up = Upstream::start("disc-up");
    let envoy = async_envoy(&up, 1);
    let port = envoy.listener_port("wait");

    let raw = b"GET /leaving HTTP/1.1\r\nhost: x\r\nx-delay-ms: 1000\r\n\r\n";
    let t = Instant::now();
    let got = client::send_and_disconnect(port, raw, Duration::from_millis(50)).unwrap();
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(envoy.wait_for_log(DROP_LINE, WAIT), "{}", envoy.log());
    // Dropped at the disconnect, not when the value arrived (1 s).
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    let l = access_line_for(&envoy, "wait", "/leaving");
    assert_eq!(access_field(&l, "code"), Some("0"), "{l}");
    assert_eq!(
        access_field(&l, "details"),
        Some("downstream_remote_disconnect"),
        "{l}"
    );
    // Metadata never set: the access log prints `-`.
    assert_eq!(access_field(&l, "jisr:async_value"), Some("-"), "{l}");

    // Let the producer thread finish and wake a waker whose stream is gone.
    std::thread::sleep(Duration::from_millis(1050).saturating_sub(t.elapsed()));
    envoy.assert_ready();
    let r = client::request(port, "GET", "/next", &[("x-delay-ms", "10")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up_header(&r, "x-async-value").as_deref(), Some("1010"));
    assert!(up.requests().iter().all(|q| q.path != "/leaving"));
    // The probe's stderr line lands in Envoy's log file; its `w.log` call made while the stream
    // is being destroyed does not reach Envoy's logger (Envoy 1.40), so one copy.
    assert!(envoy.log().matches(DROP_LINE).count() >= 1);
}

/// With limit 4096, a 1 MiB body and a 3 MiB body (larger than Envoy's buffer limit) both reach the
/// upstream intact (`body_len` and FNV-1a match), with `x-body-seen: 4096` and `x-body-fnv` = the
/// FNV-1a of the first 4096 bytes.
#[test]
fn body_limit_reads_a_prefix_and_forwards_one_mib_intact() {
    let up = Upstream::start("body-up");
    let envoy = async_envoy(&up, 2);
    let port = envoy.listener_port("body");

    let body = pattern(7, 1024 * 1024);
    let r = client::request(port, "POST", "/big", &[], &body);
    assert_body_intact(&r, &body);
    assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("4096"));
    assert_eq!(up_header(&r, "x-body-fnv"), Some(fnv_hex(&body[..4096])));
    let l = access_line_for(&envoy, "body", "/big");
    assert_eq!(access_field(&l, "jisr:body_bytes"), Some("4096"), "{l}");

    // Larger than Envoy's 1 MiB buffer limit: the handler stops at its limit, so nothing is
    // buffered beyond it and the body streams through.
    let body = pattern(0, 3 * 1024 * 1024);
    let r = client::request(port, "POST", "/bigger", &[], &body);
    assert_body_intact(&r, &body);
    assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("4096"));
}

/// Bodies of 100 bytes and of exactly the limit are read whole, a GET without a body reads 0 bytes.
/// The config reaches the module as the raw bytes of the `StringValue` (`body`'s `"4096"`); with no
/// `filter_config` the module gets zero-length bytes and `body` falls back to its default limit of
/// 1024.
#[test]
fn body_smaller_than_the_limit_is_read_whole() {
    let up = Upstream::start("small-up");
    let envoy = async_envoy(&up, 2);

    let port = envoy.listener_port("body");
    let body = pattern(3, 100);
    let r = client::request(port, "POST", "/small", &[], &body);
    assert_body_intact(&r, &body);
    assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("100"));
    assert_eq!(up_header(&r, "x-body-fnv"), Some(fnv_hex(&body)));

    // Exactly the limit.
    let body = pattern(0, 4096);
    let r = client::request(port, "POST", "/exact", &[], &body);
    assert_body_intact(&r, &body);
    assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("4096"));
    assert_eq!(up_header(&r, "x-body-fnv"), Some(fnv_hex(&body)));

    // No body at all.
    let r = client::get(port, "/none");
    assert_eq!(r.status, 200);
    assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("0"));
    assert_eq!(up_header(&r, "x-body-fnv"), Some(fnv_hex(b"")));

    // No filter_config: the default limit of 1024.
    let port = envoy.listener_port("body_default");
    let body = pattern(0, 5000);
    let r = client::request(port, "POST", "/default", &[], &body);
    assert_body_intact(&r, &body);
    assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("1024"));
    assert_eq!(up_header(&r, "x-body-fnv"), Some(fnv_hex(&body[..1024])));
}

#[test]
fn chunked_upload_through_body() {
    let up = Upstream::start("chunk-up");
    let envoy = async_envoy(&up, 2);
    let port = envoy.listener_port("body");

    // Five chunks of 1500 bytes, 20 ms apart: the limit (4096) falls inside the third.
    let body = pattern(11, 7500);
    let chunks: Vec<&[u8]> = body.chunks(1500).collect();
    let mut c = Connection::open(port).unwrap();
    c.send_chunked("POST", "/chunked", &[], &chunks, Duration::from_millis(20))
        .unwrap();
    let r = c.read_response("POST").unwrap();
    assert_body_intact(&r, &body);
    assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("4096"));
    assert_eq!(up_header(&r, "x-body-fnv"), Some(fnv_hex(&body[..4096])));

    // Smaller than the limit, same connection: the end of the chunked body ends the read.
    let body = pattern(0, 900);
    let chunks: Vec<&[u8]> = body.chunks(300).collect();
    c.send_chunked(
        "POST",
        "/chunked-small",
        &[],
        &chunks,
        Duration::from_millis(20),
    )
    .unwrap();
    let r = c.read_response("POST").unwrap();
    assert_body_intact(&r, &body);
    assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("900"));
    assert_eq!(up_header(&r, "x-body-fnv"), Some(fnv_hex(&body)));
}

/// `wait` then `body` on one listener: the body is held while `wait` runs, then `body` reads
/// its prefix and the whole body reaches the upstream.
#[test]
fn wait_then_body_chained_holds_and_forwards_the_body() {
    let up = Upstream::start("chain-up");
    let envoy = async_envoy(&up, 2);
    let port = envoy.listener_port("chain");

    let body = pattern(5, 256 * 1024);
    let t = Instant::now();
    let r = client::request(port, "POST", "/chain", &[("x-delay-ms", "200")], &body);
    let took = t.elapsed();
    assert_body_intact(&r, &body);
    assert!(took >= Duration::from_millis(200), "took {took:?}");
    assert_eq!(up_header(&r, "x-async-value").as_deref(), Some("1200"));
    assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("1024"));
    assert_eq!(up_header(&r, "x-body-fnv"), Some(fnv_hex(&body[..1024])));
    let l = access_line_for(&envoy, "chain", "/chain");
    assert_eq!(access_field(&l, "jisr:async_value"), Some("1200"), "{l}");
    assert_eq!(access_field(&l, "jisr:body_bytes"), Some("1024"), "{l}");

    // Chunked, with the chunks arriving while `wait` is still pending.
    let body = pattern(0, 3000);
    let chunks: Vec<&[u8]> = body.chunks(1000).collect();
    let mut c = Connection::open(port).unwrap();
    let t = Instant::now();
    c.send_chunked(
        "POST",
        "/chain-chunked",
        &[("x-delay-ms", "150")],
        &chunks,
        Duration::from_millis(30),
    )
    .unwrap();
    let r = c.read_response("POST").unwrap();
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_body_intact(&r, &body);
    assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("1024"));
}

/// While a handler holds the request (here `wait`), Envoy buffers the body; past the buffer
/// limit (1 MiB by default) Envoy answers 413 and closes. The client may see the 413 or, while
/// still uploading, a connection reset.
///
/// The buffer limit is the listener's `per_connection_buffer_limit_bytes`. The access log shows
/// `code=413 details=request_payload_too_large`, the handler future is dropped, and the upstream
/// never sees the request. Envoy replies and closes while the client is still uploading: with 2 MiB
/// on loopback (this test) the client read the 413; with 8 MiB it got `Connection reset by peer`.
/// Handlers that must hold large uploads need a larger buffer limit, or they must read/limit the
/// body instead of waiting first.
#[test]
fn body_beyond_buffer_limit_while_waiting_is_413() {
    let up = Upstream::start("413-up");
    let envoy = async_envoy(&up, 2);
    let port = envoy.listener_port("wait");

    let body = pattern(0, 2 * 1024 * 1024);
    match client::try_request(port, "POST", "/too-big", &[("x-delay-ms", "300")], &body) {
        Ok(r) => assert_eq!(r.status, 413, "{}", r.text()),
        Err(e) => eprintln!("client saw {e} (Envoy answered 413 and closed mid-upload)"),
    }
    let l = access_line_for(&envoy, "wait", "/too-big");
    assert_eq!(access_field(&l, "code"), Some("413"), "{l}");
    assert_eq!(
        access_field(&l, "details"),
        Some("request_payload_too_large"),
        "{l}"
    );
    // The handler was dropped by the local reply; the upstream never saw the request.
    assert!(envoy.wait_for_log(DROP_LINE, WAIT), "{}", envoy.log());
    assert!(up.requests().is_empty());
    envoy.assert_ready();
    let r = client::request(port, "GET", "/after", &[("x-delay-ms", "0")], b"");
    assert_eq!(r.status, 200);
}

/// A handler panic: the client gets 500, nothing goes upstream, the access log shows
/// `details=jisr_handler_panic`, and Envoy's log has `[error][dynamic_modules] ... jisr: handler of
/// filter 'panic' panicked: <message>`; Rust's default panic hook also prints `thread '<unnamed>'
/// panicked at ...` on stderr. The same worker then serves the next requests, including another
/// panic.
#[test]
fn handler_panic_is_a_500_and_the_next_request_succeeds() {
    let up = Upstream::start("panic-up");
    let envoy = async_envoy(&up, 1);
    let port = envoy.listener_port("panic");

    let r = client::request(port, "GET", "/boom", &[("x-panic", "1")], b"");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(up.requests().is_empty());
    assert!(
        envoy.wait_for_log("handler of filter 'panic' panicked", WAIT),
        "{}",
        envoy.log()
    );
    let log = envoy.log();
    let line = log
        .lines()
        .find(|l| l.contains("handler of filter 'panic' panicked"))
        .unwrap();
    assert!(line.contains("[error]"), "{line}");
    let l = access_line_for(&envoy, "panic", "/boom");
    assert_eq!(access_field(&l, "code"), Some("500"), "{l}");
    assert_eq!(
        access_field(&l, "details"),
        Some("jisr_handler_panic"),
        "{l}"
    );

    // Same worker (concurrency 1), same filter: the next requests work, and so does a panic
    // again.
    envoy.assert_ready();
    for i in 0..3 {
        let r = client::get(port, &format!("/fine{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = client::request(port, "GET", "/boom2", &[("x-panic", "1")], b"");
    assert_eq!(r.status, 500);
    let r = client::get(port, "/fine-again");
    assert_eq!(r.status, 200);
    assert_eq!(up.requests().len(), 4);
}

/// Many short waits from several client threads: the wake often races the hook's return
/// (delay 0–2 ms), on two workers. Every request completes once with its own value.
#[test]
fn many_short_waits_race_the_scheduler() {
    let up = Upstream::start("race-up");
    let envoy = async_envoy(&up, 2);
    let port = envoy.listener_port("wait");

    const THREADS: u64 = 6;
    const PER_THREAD: u64 = 40;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let c = client::Client::keep_alive(client::DEFAULT_TIMEOUT);
                for i in 0..PER_THREAD {
                    let delay = (t + i) % 3;
                    let r = c
                        .request(
                            port,
                            "GET",
                            &format!("/r{t}-{i}"),
                            &[("x-delay-ms", &delay.to_string())],
                            b"",
                        )
                        .unwrap_or_else(|e| panic!("request {t}-{i}: {e}"));
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert_eq!(
                        up_header(&r, "x-async-value"),
                        Some((delay + 1000).to_string())
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(up.requests().len(), (THREADS * PER_THREAD) as usize);
    assert!(!envoy.log().contains(DROP_LINE));
    envoy.assert_ready();
}

/// The client leaves in the middle of an upload that `body` is reading (the handler awaits
/// more bytes): the future is dropped, Envoy stays ready, the next upload works.
#[test]
fn client_disconnect_mid_body_read_keeps_envoy_ready() {
    let up = Upstream::start("midbody-up");
    let envoy = async_envoy(&up, 1);
    for listener in ["body", "chain"] {
        let port = envoy.listener_port(listener);
        let mut raw =
            b"POST /partial HTTP/1.1\r\nhost: x\r\nx-delay-ms: 20\r\ncontent-length: 10000\r\n\r\n"
                .to_vec();
        raw.extend_from_slice(&pattern(0, 300));
        let got = client::send_and_disconnect(port, &raw, Duration::from_millis(80)).unwrap();
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        let l = access_line_for(&envoy, listener, "/partial");
        assert_eq!(access_field(&l, "code"), Some("0"), "{l}");
        envoy.assert_ready();
        let body = pattern(1, 5000);
        let r = client::request(port, "POST", "/whole", &[("x-delay-ms", "0")], &body);
        assert_body_intact(&r, &body);
    }
    assert!(up.requests().iter().all(|q| q.path != "/partial"));
}
