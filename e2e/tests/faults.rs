//! Faults in real Envoy with the example modules: clients and upstreams that leave or misbehave
//! at every phase, and bad inputs (non-UTF-8 header bytes, very many headers, 60 KiB header
//! values, bodies past Envoy's buffer limit). The `fault_fixture` module (`e2e/fixtures/`)
//! adds the faults no example should carry: panics in middleware and factories, and a waker
//! woken thousands of times (also after its stream ended).
//!
//! After every case: Envoy is still `/ready`, no stream is left in flight (admin gauge
//! `http.<listener>.downstream_rq_active` back to 0) and the next request succeeds.
//! Cases other suites already cover (disconnect during a callout, callouts to clusters that
//! refuse or reset, bad and empty filter configs, unknown filter names, response-phase panics)
//! are not repeated here.

use jisr_e2e::client::{self, Connection, Response};
use jisr_e2e::upstream::{ResponseWriter, UpstreamRequest, fnv1a64, pattern};
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, access_field, free_port, module_filter,
    module_stat, wait_until,
};
use std::io::Read;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

/// Sum of `http.<listener>.downstream_rq_active` over the given listeners.
fn in_flight(envoy: &Envoy, listeners: &[&str]) -> u64 {
    listeners
        .iter()
        .map(|l| {
            envoy
                .gauge(&format!("http.{l}.downstream_rq_active"))
                .unwrap_or_else(|| panic!("no downstream_rq_active gauge for listener {l}"))
        })
        .sum()
}

/// The three checks after a fault: nothing in flight once things settle, still ready, and
/// `next` (the next request) succeeds.
fn recovered(envoy: &Envoy, listeners: &[&str], next: impl FnOnce()) {
    let mut last = u64::MAX;
    let settled = wait_until(WAIT, || {
        last = in_flight(envoy, listeners);
        last == 0
    });
    assert!(
        settled,
        "{last} streams still in flight on {listeners:?}\n{}",
        envoy.stats()
    );
    envoy.assert_ready();
    next();
    envoy.assert_ready();
}

fn access_line_for(envoy: &Envoy, listener: &str, path: &str) -> String {
    let mut found = None;
    wait_until(WAIT, || {
        found = envoy.access_log_lines().into_iter().find(|l| {
            access_field(l, "listener") == Some(listener) && access_field(l, "path") == Some(path)
        });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no access line for {listener} {path}\n{}", envoy.log()))
}

/// An access line of `listener` with these `details` exists (Envoy's codec rejections log
/// neither method nor path).
fn assert_access_details(envoy: &Envoy, listener: &str, details: &str) {
    let found = wait_until(WAIT, || {
        envoy.access_log_lines().iter().any(|l| {
            access_field(l, "listener") == Some(listener)
                && access_field(l, "details") == Some(details)
        })
    });
    assert!(found, "no {details} line for {listener}\n{}", envoy.log());
}

fn assert_echo_intact(r: &Response, sent: &[u8]) {
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["body_len"].as_u64(), Some(sent.len() as u64));
    let fnv = format!("{:016x}", fnv1a64(sent));
    assert_eq!(echo["body_fnv"].as_str(), Some(fnv.as_str()));
}

fn up_header(r: &Response, name: &str) -> Option<String> {
    r.json()["headers"][name].as_str().map(str::to_string)
}

/// Upstream for the response-phase and upstream-fault cases: slow JSON and binary bodies, a
/// close mid-body, else the echo.
fn faulty_upstream(name: &str) -> Upstream {
    Upstream::start_with(name, |req: &UpstreamRequest, w: &mut ResponseWriter| {
        match req.path_only() {
            // A JSON object sent in 40 chunks, 50 ms apart (2 s): Buffer mode holds it.
            "/slow-json" => {
                w.header("content-type", "application/json");
                w.start_chunked();
                w.chunk(b"{\"items\":[0");
                for i in 1..40 {
                    w.sleep(Duration::from_millis(50));
                    w.chunk(format!(",{i}").as_bytes());
                    if w.is_closed() {
                        return;
                    }
                }
                w.chunk(b"]}");
                w.finish();
            }
            // 10 000 bytes announced, 3000 sent, then FIN.
            "/cut" => {
                let mut raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 10000\r\n\r\n".to_vec();
                raw.extend_from_slice(&pattern(0, 3000));
                w.raw(&raw);
                w.sleep(Duration::from_millis(30));
                w.close();
            }
            _ => jisr_e2e::upstream::echo(req, w),
        }
    })
}

/// The client leaves after 300 of 10 000 announced body bytes while `body` (limit 1 MiB)
/// awaits more; the same for a chunked upload cut mid-chunk.
#[test]
fn client_disconnect_mid_request_body_while_body_reads() {
    let up = Upstream::start("f-body-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("body").filter(module_filter(
                "async_demo",
                "body",
                Some("1048576"),
            )))
            .upstream(up.port()),
    );
    let port = envoy.listener_port("body");
    let mut cl = b"POST /partial HTTP/1.1\r\nhost: x\r\ncontent-length: 10000\r\n\r\n".to_vec();
    cl.extend_from_slice(&pattern(0, 300));
    let chunked =
        b"POST /partial-chunked HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n1000\r\nabc"
            .to_vec();
    for (raw, path) in [(cl, "/partial"), (chunked, "/partial-chunked")] {
        let got = client::send_and_disconnect(port, &raw, Duration::from_millis(80)).unwrap();
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        let l = access_line_for(&envoy, "body", path);
        assert_eq!(access_field(&l, "code"), Some("0"), "{l}");
        recovered(&envoy, &["body"], || {
            let body = pattern(7, 20_000);
            let r = client::request(port, "POST", "/whole", &[], &body);
            assert_echo_intact(&r, &body);
            assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("20000"));
        });
    }
    assert!(
        up.requests()
            .iter()
            .all(|q| !q.path.starts_with("/partial"))
    );
}

/// The client leaves while the response body is still coming: Observe (`resp_tap`) after the
/// first chunks reached it, Buffer (`resp_rewrite`) while the handler holds the headers.
#[test]
fn client_disconnect_mid_response_body_observe_and_buffer() {
    let up = faulty_upstream("f-resp-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("tap")
                    .filter(module_filter("resp_tap", "tap", None))
                    .log_metadata("resp_tap", "aborted_after"),
            )
            .listener(Listener::new("rewrite").filter(module_filter(
                "resp_rewrite",
                "rewrite",
                None,
            )))
            .upstream(up.port()),
    );
    let aborted = module_stat("resp_tap_aborted_total", &[]);

    // Observe: read the head and the first chunk, then leave.
    let tap = envoy.listener_port("tap");
    let mut s = client::stream(
        tap,
        "GET",
        "/stream?chunks=40&delay_ms=50&size=4096",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(s.status, 200);
    let first = s.next_bytes(4096).unwrap().unwrap_or_default();
    assert!(!first.is_empty());
    drop(s);
    assert_eq!(envoy.wait_for_counter(&aborted, 1, WAIT), Some(1));
    recovered(&envoy, &["tap"], || {
        let r = client::get(tap, "/bytes/100000");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, pattern(0, 100_000));
    });

    // Buffer: the handler holds the headers until the JSON body ended; leave before that.
    let rw = envoy.listener_port("rewrite");
    let got =
        client::send_and_disconnect(rw, b"GET /slow-json HTTP/1.1\r\nhost: x\r\n\r\n", WAIT / 20)
            .unwrap();
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    let l = access_line_for(&envoy, "rewrite", "/slow-json");
    assert_eq!(
        access_field(&l, "details"),
        Some("downstream_remote_disconnect"),
        "{l}"
    );
    recovered(&envoy, &["rewrite", "tap"], || {
        let r = client::get(rw, "/json");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-jisr-rewrite"), Some("rewritten"));
    });
}

/// The client leaves during a streamed local reply (`spa` `/big.bin`, 16 MiB in 64 KiB
/// chunks, paced by the client): the handler stops handing chunks to Envoy.
#[test]
fn client_disconnect_during_a_streamed_local_reply() {
    const BIG: usize = 16 * 1024 * 1024;
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .concurrency(1)
            .listener(Listener::new("spa").filter(module_filter(
                "spa",
                "spa",
                Some(&BIG.to_string()),
            )))
            .upstream(free_port()),
    );
    let port = envoy.listener_port("spa");
    let chunks = module_stat("spa_big_chunks_total", &[]);
    let mut s = client::stream(port, "GET", "/big.bin", &[], b"").unwrap();
    assert_eq!(s.status, 200);
    let mut got = 0;
    while got < 256 * 1024 {
        got += s.next_bytes(64 * 1024).unwrap().expect("body").len();
    }
    drop(s);
    let l = access_line_for(&envoy, "spa", "/big.bin");
    assert!(access_field(&l, "code").is_some(), "{l}");
    let after_drop = envoy.counter(&chunks).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let later = envoy.counter(&chunks).unwrap();
    assert_eq!(
        after_drop, later,
        "chunks kept coming after the client left"
    );
    assert!(
        later < (BIG / 65536) as u64,
        "{later} chunks: all of it was sent"
    );
    recovered(&envoy, &["spa"], || {
        let r = client::get(port, "/app.js");
        assert_eq!(r.status, 200);
    });
}

/// Upstream faults behind module filters: connection refused and reset before headers are
/// Envoy's own 503; a close mid-body gives the client the head and a cut body (and the Observe
/// tap an aborted read); a slow body (5 chunks, 200 ms apart) arrives whole.
#[test]
fn upstream_refused_reset_cut_and_slow() {
    let up = faulty_upstream("f-up");
    let resetter = Upstream::start_with("f-resetter", |_r: &UpstreamRequest, w| w.reset());
    let routes = |l: Listener| {
        l.route(Route::to("/refused", "refused"))
            .route(Route::to("/reset", "resetter"))
            .route(Route::to("/", "upstream"))
    };
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(routes(
                Listener::new("hello").filter(module_filter("hello", "hello", None)),
            ))
            .listener(routes(
                Listener::new("tap").filter(module_filter("resp_tap", "tap", None)),
            ))
            .upstream(up.port())
            .cluster(Cluster::new("refused", free_port()))
            .cluster(Cluster::new("resetter", resetter.port())),
    );
    let listeners = ["hello", "tap"];
    for l in listeners {
        let port = envoy.listener_port(l);
        let next = || {
            let r = client::get(port, "/next");
            assert_eq!(r.status, 200, "{}", r.text());
        };

        let r = client::get(port, "/refused");
        assert_eq!(r.status, 503, "{l}: {}", r.text());
        let line = access_line_for(&envoy, l, "/refused");
        let details = access_field(&line, "details").unwrap_or("");
        assert!(
            details.starts_with("upstream_reset_before_response_started"),
            "{line}"
        );
        recovered(&envoy, &listeners, next);

        let r = client::get(port, "/reset");
        assert_eq!(r.status, 503, "{l}: {}", r.text());
        recovered(&envoy, &listeners, next);

        let mut s = client::stream(port, "GET", "/cut", &[], b"").unwrap();
        assert_eq!(s.status, 200);
        let err = s
            .read_to_end()
            .expect_err("a cut body must not end cleanly");
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{l}: {err}");
        recovered(&envoy, &listeners, next);

        let t = Instant::now();
        let r = client::get(port, "/stream?chunks=5&delay_ms=200&size=1000");
        assert!(
            t.elapsed() >= Duration::from_millis(750),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body, pattern(0, 5000));
        recovered(&envoy, &listeners, next);
    }
    let aborted = module_stat("resp_tap_aborted_total", &[]);
    assert_eq!(envoy.wait_for_counter(&aborted, 1, WAIT), Some(1));
}

/// A middleware that panics before calling the rest of the chain: 500 with
/// `jisr_handler_panic`, and the same worker serves the next request through the chain.
#[test]
fn middleware_panic_is_a_500_and_the_chain_keeps_working() {
    let up = Upstream::start("f-mw-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .concurrency(1)
            .listener(Listener::new("mw").filter(module_filter(
                "fault_fixture",
                "hello_mw_panic",
                None,
            )))
            .upstream(up.port()),
    );
    let port = envoy.listener_port("mw");
    for i in 0..3 {
        let path = format!("/boom/{i}");
        let r = client::request(port, "GET", &path, &[("x-mw-panic", "1")], b"");
        assert_eq!(r.status, 500, "{}", r.text());
        let l = access_line_for(&envoy, "mw", &path);
        assert_eq!(
            access_field(&l, "details"),
            Some("jisr_handler_panic"),
            "{l}"
        );
        recovered(&envoy, &["mw"], || {
            let r = client::get(port, "/fine");
            assert_eq!(r.status, 200);
            assert_eq!(up_header(&r, "x-hello").as_deref(), Some("from-jisr"));
        });
    }
    assert!(
        envoy
            .log()
            .contains("middleware asked to panic by x-mw-panic"),
        "{}",
        envoy.log()
    );
    assert!(up.requests().iter().all(|q| !q.path.starts_with("/boom")));
}

/// A factory that panics refuses the config: Envoy exits with an error status (not a signal)
/// and the log names the filter and the panic message.
///
/// The log has `[error][dynamic_modules] [:] jisr: filter 'hello_factory' config factory panicked:
/// <message>` and Envoy's generic `Failed to create filter config: Failed to initialize dynamic
/// module`.
#[test]
fn factory_panic_refuses_the_config_without_a_crash() {
    let cfg = EnvoyConfig::new()
        .listener(Listener::new("main").filter(module_filter(
            "fault_fixture",
            "hello_factory",
            Some("panic"),
        )))
        .upstream(free_port());
    let (status, log) = Envoy::start_expect_failure(&cfg);
    assert!(
        status.code().is_some_and(|c| c != 0),
        "Envoy did not exit with an error code ({status}):\n{log}"
    );
    assert!(!log.contains("Caught "), "Envoy crashed:\n{log}");
    assert!(
        log.contains("hello_factory: asked to panic by its config"),
        "no panic message:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("[error][dynamic_modules]") && l.contains("hello_factory")),
        "no module error line naming the filter:\n{log}"
    );

    // The same filter with another config loads and serves.
    let up = Upstream::start("f-factory-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("main").filter(module_filter(
                "fault_fixture",
                "hello_factory",
                Some("fine"),
            )))
            .upstream(up.port()),
    );
    let r = client::get(envoy.listener_port("main"), "/");
    assert_eq!(up_header(&r, "x-hello").as_deref(), Some("from-jisr"));
}

/// `storm`: a thread wakes the handler's waker 10 000 times, 1000 of them 200 ms after the
/// stream ended. Many requests at once, on one worker; then the late wakes land.
#[test]
fn waker_woken_ten_thousand_times_and_after_the_stream_ended() {
    let up = Upstream::start("f-storm-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .concurrency(1)
            .listener(Listener::new("storm").filter(module_filter("fault_fixture", "storm", None)))
            .listener(Listener::new("wait").filter(module_filter("fault_fixture", "wait", None)))
            .upstream(up.port()),
    );
    let port = envoy.listener_port("storm");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let c = client::Client::keep_alive(client::DEFAULT_TIMEOUT);
                for i in 0..5 {
                    let r = c
                        .request(port, "GET", &format!("/s/{t}/{i}"), &[], b"")
                        .unwrap();
                    assert_eq!(r.status, 200, "{}", r.text());
                    let seen: u32 = up_header(&r, "x-storm-wakes-seen")
                        .and_then(|v| v.parse().ok())
                        .expect("x-storm-wakes-seen");
                    assert!((5000..=10_000).contains(&seen), "{seen}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(up.requests().len(), 20);
    // Let the late bursts (200 ms after each stream ended) land.
    std::thread::sleep(Duration::from_millis(500));
    recovered(&envoy, &["storm", "wait"], || {
        let r = client::request(
            envoy.listener_port("wait"),
            "GET",
            "/after",
            &[("x-delay-ms", "20")],
            b"",
        );
        assert_eq!(up_header(&r, "x-async-value").as_deref(), Some("1020"));
        let r = client::get(port, "/again");
        assert_eq!(r.status, 200);
    });
}

/// A body past Envoy's buffer limit (1 MiB by default): with `limit_body(4096)` the handler
/// reads a prefix and the 3 MiB body streams through; with a limit above Envoy's buffer limit
/// (8 MiB) the handler holds the body in Envoy's buffer, which overflows: Envoy's 413.
///
/// With the 8 MiB limit Envoy answers `413`, `details=request_payload_too_large` (or the client
/// sees a reset while still uploading), the handler is dropped and nothing goes upstream.
#[test]
fn oversized_request_body_with_and_without_a_small_limit() {
    let up = Upstream::start("f-413-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("small").filter(module_filter(
                "async_demo",
                "body",
                Some("4096"),
            )))
            .listener(Listener::new("huge").filter(module_filter(
                "async_demo",
                "body",
                Some("8388608"),
            )))
            .upstream(up.port()),
    );
    let body = pattern(3, 3 * 1024 * 1024);
    let small = envoy.listener_port("small");
    let r = client::request(small, "POST", "/big", &[], &body);
    assert_echo_intact(&r, &body);
    assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("4096"));

    let huge = envoy.listener_port("huge");
    match client::try_request(huge, "POST", "/too-big", &[], &body) {
        Ok(r) => assert_eq!(r.status, 413, "{}", r.text()),
        Err(e) => eprintln!("client saw {e} (Envoy answered 413 and closed mid-upload)"),
    }
    let l = access_line_for(&envoy, "huge", "/too-big");
    assert_eq!(access_field(&l, "code"), Some("413"), "{l}");
    assert_eq!(
        access_field(&l, "details"),
        Some("request_payload_too_large"),
        "{l}"
    );
    recovered(&envoy, &["small", "huge"], || {
        let body = pattern(0, 512 * 1024);
        let r = client::request(huge, "POST", "/fits", &[], &body);
        assert_echo_intact(&r, &body);
        assert_eq!(up_header(&r, "x-body-seen").as_deref(), Some("524288"));
    });
    assert!(up.requests().iter().all(|q| q.path != "/too-big"));
}

fn raw_exchange(port: u16, raw: &[u8]) -> String {
    let mut c = Connection::open(port).unwrap();
    c.send_raw(raw).unwrap();
    // `connection: close` in `raw`: Envoy closes after the answer. (A half-close from this
    // side would make Envoy drop the connection before answering.)
    let mut out = Vec::new();
    let mut s = c.stream();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Header values with bytes that are not UTF-8 (obs-text), written on a raw socket: the
/// module reads them as bytes (`auth` finds no such key: 401; `attrs` copies the user agent),
/// and they reach the upstream.
///
/// `attrs` copies a `user-agent` of `caf\xe9 \xc3\x28` lossily, and the raw header reaches the
/// upstream; `auth` answers `401 jisr_auth_unknown_key`.
#[test]
fn header_values_that_are_not_utf8() {
    let up = Upstream::start("f-utf8-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("auth").filter(module_filter(
                "auth",
                "auth",
                Some(r#"{"allowed_keys":["key-1"]}"#),
            )))
            .listener(Listener::new("attrs").filter(module_filter("hello", "attrs", None)))
            .upstream(up.port()),
    );
    let auth = envoy.listener_port("auth");
    let out = raw_exchange(
        auth,
        b"GET /k HTTP/1.1\r\nhost: x\r\nx-api-key: key-\xff\xfe1\r\nconnection: close\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    let l = access_line_for(&envoy, "auth", "/k");
    assert_eq!(
        access_field(&l, "details"),
        Some("jisr_auth_unknown_key"),
        "{l}"
    );
    recovered(&envoy, &["auth"], || {
        let r = client::request(auth, "GET", "/ok", &[("x-api-key", "key-1")], b"");
        assert_eq!(r.status, 200);
    });

    let attrs = envoy.listener_port("attrs");
    let out = raw_exchange(
        attrs,
        b"GET /ua HTTP/1.1\r\nhost: x\r\nuser-agent: caf\xe9 \xc3\x28\r\nx-raw: \x80\x81\r\nconnection: close\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = up
        .requests()
        .into_iter()
        .find(|q| q.path == "/ua")
        .expect("upstream saw /ua");
    // The module got the bytes and lossily turned them into the x-attr header it set.
    let ua = seen.header("x-attr-user-agent").expect("x-attr-user-agent");
    assert!(ua.starts_with("caf"), "{ua:?}");
    assert!(seen.header("x-raw").is_some(), "{:?}", seen.headers);
    recovered(&envoy, &["attrs"], || {
        let r = client::get(attrs, "/after");
        assert_eq!(r.status, 200);
    });
}

/// Very many headers: Envoy's `max_headers_count` defaults to 100. 95 headers (plus host) pass
/// through the module to the upstream; 150 are refused by Envoy's codec with 431 before any
/// filter runs.
#[test]
fn very_many_headers() {
    let up = Upstream::start("f-many-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("hello").filter(module_filter("hello", "hello", None)))
            .upstream(up.port()),
    );
    let port = envoy.listener_port("hello");
    let names: Vec<String> = (0..150).map(|i| format!("x-many-{i:03}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();

    let r = client::request(port, "GET", "/95", &headers[..95], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let q = up.requests().into_iter().find(|q| q.path == "/95").unwrap();
    assert_eq!(
        q.headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-many-"))
            .count(),
        95
    );
    assert_eq!(q.header("x-hello"), Some("from-jisr"));

    match client::try_request(port, "GET", "/150", &headers, b"") {
        Ok(r) => assert_eq!(r.status, 431, "{}", r.text()),
        Err(e) => panic!("no answer to 150 headers: {e}"),
    }
    assert_access_details(&envoy, "hello", "http1.too_many_headers");
    recovered(&envoy, &["hello"], || {
        let r = client::get(port, "/after");
        assert_eq!(up_header(&r, "x-hello").as_deref(), Some("from-jisr"));
    });
    assert!(up.requests().iter().all(|q| q.path != "/150"));
}

/// A 60 KiB header value: with Envoy's default `max_request_headers_kb` (60) the head is too
/// big and Envoy answers 431; with `max_request_headers_kb: 96` on the HCM the value reaches
/// the module (`auth` compares it: 401) and passes through `hello` to the upstream intact.
///
/// With the default the access log shows `details=http1.headers_too_large`.
#[test]
fn header_value_of_60_kib() {
    let up = Upstream::start("f-big-up");
    let auth_cfg = r#"{"allowed_keys":["key-1"]}"#;
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("default").filter(module_filter("hello", "hello", None)))
            .listener(
                Listener::new("hello96")
                    .hcm_yaml("max_request_headers_kb: 96")
                    .filter(module_filter("hello", "hello", None)),
            )
            .listener(
                Listener::new("auth96")
                    .hcm_yaml("max_request_headers_kb: 96")
                    .filter(module_filter("auth", "auth", Some(auth_cfg))),
            )
            .upstream(up.port()),
    );
    let big: String = (0..60 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let all = ["default", "hello96", "auth96"];

    let port = envoy.listener_port("default");
    match client::try_request(port, "GET", "/big", &[("x-big", &big)], b"") {
        Ok(r) => assert_eq!(r.status, 431, "{}", r.text()),
        Err(e) => panic!("no answer to a 60 KiB header: {e}"),
    }
    assert_access_details(&envoy, "default", "http1.headers_too_large");
    recovered(&envoy, &all, || {
        assert_eq!(client::get(port, "/after").status, 200);
    });

    let port = envoy.listener_port("hello96");
    let r = client::request(port, "GET", "/big", &[("x-big", &big)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let q = up
        .requests()
        .into_iter()
        .find(|q| q.path == "/big")
        .unwrap();
    assert_eq!(q.header("x-big"), Some(big.as_str()));
    assert_eq!(q.header("x-hello"), Some("from-jisr"));
    recovered(&envoy, &all, || {
        assert_eq!(client::get(port, "/after").status, 200);
    });

    let port = envoy.listener_port("auth96");
    let r = client::request(port, "GET", "/bigkey", &[("x-api-key", &big)], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    recovered(&envoy, &all, || {
        let r = client::request(port, "GET", "/ok", &[("x-api-key", "key-1")], b"");
        assert_eq!(r.status, 200);
    });
}
