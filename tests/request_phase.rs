//! Every status the request phase returns, through the simulated stream.

mod common;

use common::{DropFlag, Forever, GET, Oneshot, YieldOnce};
use jisr::testing::{Hook, MetaValue, TestFilter};
use jisr::{
    ConfigError, ConfigHandle, Counter, Level, LogValue, Next, Registry, Request, ResponseWriter,
    chain,
    raw::{BodyStatus, HeadersStatus, TrailersStatus},
};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

thread_local! {
    static ONESHOT: RefCell<Option<Oneshot>> = const { RefCell::new(None) };
    static DROPPED: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
    static ORDER: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

fn oneshot() -> Oneshot {
    ONESHOT.with(|o| o.borrow_mut().get_or_insert_with(Oneshot::default).clone())
}

async fn tag(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let _ = req.set_header("x-tag", "1");
    w.set_metadata_str("t", "k", "v");
}

async fn deny(_req: Request<'_>, w: ResponseWriter<'_>) {
    w.set_metadata_bool("t", "before", true);
    w.send_with(403, &[("content-type", b"text/plain")], b"no", "test_deny");
    w.set_metadata_num("t", "after", 2.0);
    w.send(500, b"second send is ignored");
}

async fn await_thread(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    let v = oneshot().recv().await;
    let _ = req.set_header("x-value", v.to_string());
}

async fn yield_once(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    YieldOnce(false).await;
    let _ = req.set_header("x-yielded", "1");
}

async fn forever(_req: Request<'_>, _w: ResponseWriter<'_>) {
    let _flag = DROPPED.with(|d| DropFlag(d.borrow().clone().unwrap()));
    Forever.await;
}

async fn boom(req: Request<'_>, _w: ResponseWriter<'_>) {
    if req.header("x-boom").is_some() {
        panic!("boom requested");
    }
}

async fn boom_after_wait(_req: Request<'_>, _w: ResponseWriter<'_>) {
    oneshot().recv().await;
    panic!("late boom");
}

async fn limited(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    req.limit_body(10);
    let mut seen = Vec::new();
    req.read_to_end(&mut seen).await.unwrap();
    let _ = req.set_header("x-seen", String::from_utf8(seen).unwrap());
}

async fn read_all(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    let mut seen = Vec::new();
    req.read_to_end(&mut seen).await.unwrap();
    let _ = req.set_header("x-len", seen.len().to_string());
}

async fn skip_then_wait(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    req.skip_body();
    oneshot().recv().await;
}

async fn headers_api(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    let first = req.header_str("X-Multi").unwrap().to_owned();
    let all: Vec<String> = req
        .header_values("x-multi")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let mut n = 0;
    req.for_each_header(|_, _| n += 1);
    let line = format!(
        "{} {} {} {} first={first} all={} n={n}",
        req.method().unwrap(),
        req.path().unwrap(),
        req.authority().unwrap(),
        req.scheme().unwrap(),
        all.join(",")
    );
    let _ = req.set_header("x-summary", line);
    let _ = req.add_header("x-added", "a");
    let _ = req.add_header("x-added", "b");
    let _ = req.remove_header("x-remove-me");
    let _ = req.set_header("x-multi", "replaced");
}

struct Metrics {
    hits: Counter,
}

fn metrics_config(cfg: &mut ConfigHandle<'_>) -> Result<Metrics, ConfigError> {
    Ok(Metrics {
        hits: cfg.counter("hits_total", &["kind"])?,
    })
}

async fn metrics(state: &Metrics, _req: Request<'_>, w: ResponseWriter<'_>) {
    w.counter_inc(state.hits, &["a"]).unwrap();
    w.counter_add(state.hits, &["b"], 5).unwrap();
    let err = w.counter_inc(state.hits, &[]).unwrap_err();
    w.set_metadata_str("t", "err", &err.to_string());
}

async fn logs(req: Request<'_>, w: ResponseWriter<'_>) {
    w.log(Level::Debug, format_args!("debug line {}", 7));
    w.log_attrs(
        Level::Info,
        "request",
        &[
            ("method", LogValue::Str(req.method().unwrap())),
            ("path", LogValue::Str("/a b")),
            ("n", 3u64.into()),
        ],
    );
}

async fn mw_outer(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
    ORDER.with(|o| o.borrow_mut().push("outer-in"));
    next.run(&mut req, &mut w).await;
    ORDER.with(|o| o.borrow_mut().push("outer-out"));
    let _ = req.set_header("x-outer-after", "1");
}

async fn mw_gate(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
    ORDER.with(|o| o.borrow_mut().push("gate"));
    if req.header("x-key").is_none() {
        w.send(401, b"no key");
        return;
    }
    next.run(&mut req, &mut w).await;
}

async fn mw_inner(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    ORDER.with(|o| o.borrow_mut().push("handler"));
    let v = oneshot().recv().await;
    let _ = req.set_header("x-inner", v.to_string());
}

fn bad_config(cfg: &mut ConfigHandle<'_>) -> Result<(), ConfigError> {
    let text = cfg.config_str()?;
    if text != "ok" {
        return Err(ConfigError::new(format!("expected 'ok', got '{text}'")));
    }
    Ok(())
}

fn panicking_config(_cfg: &mut ConfigHandle<'_>) -> Result<(), ConfigError> {
    panic!("factory exploded")
}

async fn noop(_: &(), _req: Request<'_>, _w: ResponseWriter<'_>) {}

fn register(r: &mut Registry) {
    r.register("tag", tag);
    r.register("deny", deny);
    r.register("await_thread", await_thread);
    r.register("yield_once", yield_once);
    r.register("forever", forever);
    r.register("boom", boom);
    r.register("boom_after_wait", boom_after_wait);
    r.register("limited", limited);
    r.register("read_all", read_all);
    r.register("skip_then_wait", skip_then_wait);
    r.register("headers_api", headers_api);
    r.filter("metrics").state(metrics_config).handle(metrics);
    r.register("logs", logs);
    r.register("chain", chain(mw_outer, chain(mw_gate, mw_inner)));
    r.filter("bad_config").state(bad_config).handle(noop);
    r.filter("panicking_config")
        .state(panicking_config)
        .handle(noop);
}

fn filter(name: &str) -> TestFilter {
    TestFilter::new(register, name, b"").unwrap()
}

#[test]
fn inline_completion_continues_without_scheduler() {
    let f = filter("tag");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, false), HeadersStatus::Continue);
    assert_eq!(s.request_body(b"abc", true), BodyStatus::Continue);
    assert_eq!(s.request_header("x-tag").as_deref(), Some("1"));
    assert_eq!(s.metadata("t", "k"), Some(MetaValue::Str("v".into())));
    assert_eq!(s.schedulers_created(), 0);
    assert_eq!(s.continue_decoding_calls(), 0);
    assert_eq!(s.forwarded_request_body(), b"abc");
}

#[test]
fn local_reply_stops_and_effects_around_send_apply() {
    let f = filter("deny");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let reply = s.local_reply().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body, b"no");
    assert_eq!(reply.details, "test_deny");
    assert_eq!(
        reply.headers,
        vec![("content-type".to_string(), b"text/plain".to_vec())]
    );
    assert_eq!(s.metadata("t", "before"), Some(MetaValue::Bool(true)));
    assert_eq!(s.metadata("t", "after"), Some(MetaValue::Num(2.0)));
    assert_eq!(s.continue_decoding_calls(), 0);
    assert!(
        f.logs()
            .iter()
            .any(|(l, m)| *l == jisr::Level::Debug && m.contains("send ignored"))
    );
}

#[test]
fn pending_handler_resumes_through_scheduler_after_wake_from_thread() {
    let f = filter("await_thread");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    assert_eq!(s.schedulers_created(), 1);
    assert_eq!(s.pending_events(), 0);
    let tx = oneshot();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        tx.send(42);
    });
    assert!(s.wait_scheduled(Duration::from_secs(5)));
    t.join().unwrap();
    assert_eq!(s.request_header("x-value").as_deref(), Some("42"));
    assert_eq!(s.continue_decoding_calls(), 1);
    assert_eq!(
        s.hooks(),
        &[
            Hook::RequestHeaders(HeadersStatus::StopIteration),
            Hook::Scheduled
        ]
    );
}

#[test]
fn repeated_wakes_coalesce_into_one_event() {
    let f = filter("await_thread");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let waker = oneshot().waker().unwrap();
    std::thread::spawn(move || {
        for _ in 0..1000 {
            waker.wake_by_ref();
        }
    })
    .join()
    .unwrap();
    assert_eq!(s.pending_events(), 1);
    // A spurious wake re-polls; the handler is still waiting, so nothing continues.
    assert_eq!(s.run_scheduled(), 1);
    assert_eq!(s.continue_decoding_calls(), 0);
    oneshot().send(1);
    assert_eq!(s.run_scheduled(), 1);
    assert_eq!(s.continue_decoding_calls(), 1);
}

#[test]
fn wake_during_poll_repolls_inline() {
    let f = filter("yield_once");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    assert_eq!(s.request_header("x-yielded").as_deref(), Some("1"));
    assert_eq!(s.schedulers_created(), 0);
    assert_eq!(s.pending_events(), 0);
}

#[test]
fn waker_after_stream_end_is_a_noop() {
    let f = filter("await_thread");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let waker = oneshot().waker().unwrap();
    s.disconnect();
    // The slot may already serve another stream; the stale waker must not touch it.
    let mut s2 = f.stream();
    ONESHOT.with(|o| *o.borrow_mut() = None);
    assert_eq!(s2.request_headers(GET, true), HeadersStatus::StopIteration);
    std::thread::spawn(move || {
        for _ in 0..10_000 {
            waker.wake_by_ref();
        }
    })
    .join()
    .unwrap();
    assert_eq!(s2.pending_events(), 0);
    oneshot().send(5);
    assert_eq!(s2.run_scheduled(), 1);
    assert_eq!(s2.request_header("x-value").as_deref(), Some("5"));
}

#[test]
fn disconnect_drops_the_pending_future_and_calls_nothing_more() {
    let dropped = Arc::new(AtomicBool::new(false));
    DROPPED.with(|d| *d.borrow_mut() = Some(dropped.clone()));
    let f = filter("forever");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, false), HeadersStatus::StopIteration);
    assert!(!dropped.load(Ordering::SeqCst));
    s.complete();
    assert!(
        dropped.load(Ordering::SeqCst),
        "future dropped at stream end"
    );
    assert_eq!(s.continue_decoding_calls(), 0);
    assert!(s.local_reply().is_none());
}

#[test]
fn panic_fails_closed_with_500_and_next_stream_works() {
    let f = filter("boom");
    let mut s = f.stream();
    let hdrs = [(":method", "GET"), (":path", "/"), ("x-boom", "1")];
    assert_eq!(s.request_headers(&hdrs, true), HeadersStatus::StopIteration);
    let reply = s.local_reply().unwrap();
    assert_eq!(reply.status, 500);
    assert_eq!(reply.details, jisr::stats::PANIC_DETAILS);
    assert!(f.logs().iter().any(|(l, m)| *l == jisr::Level::Error
        && m.contains("filter 'boom' panicked")
        && m.contains("boom requested")));
    drop(s);
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
}

#[test]
fn panic_after_wait_replies_500_from_scheduled() {
    let f = filter("boom_after_wait");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    oneshot().send(1);
    s.run_scheduled();
    assert_eq!(s.local_reply().unwrap().status, 500);
    assert_eq!(s.continue_decoding_calls(), 0);
}

#[test]
fn limit_body_reads_prefix_then_forwards_everything() {
    let f = filter("limited");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, false), HeadersStatus::StopIteration);
    assert_eq!(
        s.request_body(b"01234", false),
        BodyStatus::StopIterationAndBuffer
    );
    assert_eq!(s.buffered_request_body(), 5);
    assert_eq!(s.request_body(b"56789abcdef", false), BodyStatus::Continue);
    assert_eq!(s.request_header("x-seen").as_deref(), Some("0123456789"));
    assert_eq!(s.request_body(b"tail", true), BodyStatus::Continue);
    assert_eq!(s.forwarded_request_body(), b"0123456789abcdeftail");
    assert_eq!(s.continue_decoding_calls(), 0);
}

#[test]
fn body_end_is_signalled_by_empty_final_chunk_and_by_trailers() {
    let f = filter("read_all");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, false), HeadersStatus::StopIteration);
    assert_eq!(
        s.request_body(b"abc", false),
        BodyStatus::StopIterationAndBuffer
    );
    assert_eq!(s.request_body(b"", true), BodyStatus::Continue);
    assert_eq!(s.request_header("x-len").as_deref(), Some("3"));
    drop(s);

    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, false), HeadersStatus::StopIteration);
    assert_eq!(
        s.request_body(b"abcd", false),
        BodyStatus::StopIterationAndBuffer
    );
    assert_eq!(
        s.request_trailers(&[("grpc-status", "0")]),
        TrailersStatus::Continue
    );
    assert_eq!(s.request_header("x-len").as_deref(), Some("4"));
    assert_eq!(s.forwarded_request_body(), b"abcd");
}

#[test]
fn skipped_body_is_held_with_watermark_while_handler_waits() {
    let f = filter("skip_then_wait");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, false), HeadersStatus::StopIteration);
    assert_eq!(
        s.request_body(b"abc", false),
        BodyStatus::StopIterationAndWatermark
    );
    assert_eq!(
        s.request_body(b"def", true),
        BodyStatus::StopIterationAndWatermark
    );
    oneshot().send(1);
    s.run_scheduled();
    assert_eq!(s.continue_decoding_calls(), 1);
    assert_eq!(s.forwarded_request_body(), b"abcdef");
}

#[test]
fn header_views_and_mutations() {
    let f = filter("headers_api");
    let mut s = f.stream();
    let hdrs = [
        (":method", "POST"),
        (":path", "/p"),
        (":authority", "h"),
        (":scheme", "https"),
        ("x-multi", "1"),
        ("X-Multi", "2"),
        ("x-remove-me", "bye"),
    ];
    assert_eq!(s.request_headers(&hdrs, true), HeadersStatus::Continue);
    assert_eq!(
        s.request_header("x-summary").as_deref(),
        Some("POST /p h https first=1 all=1,2 n=7")
    );
    assert_eq!(s.request_header("x-remove-me"), None);
    assert_eq!(s.request_header("x-multi").as_deref(), Some("replaced"));
    let added: Vec<_> = s
        .request_headers_now()
        .into_iter()
        .filter(|(k, _)| k == "x-added")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(added, ["a", "b"]);
}

#[test]
fn metrics_with_labels_and_label_mismatch_is_reported() {
    let f = filter("metrics");
    for _ in 0..3 {
        let mut s = f.stream();
        assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
        assert_eq!(
            s.metadata("t", "err"),
            Some(MetaValue::Str(
                "metric expects 1 label values, got 0".into()
            ))
        );
    }
    assert_eq!(f.metric("hits_total.a"), Some(3));
    assert_eq!(f.metric("hits_total.b"), Some(15));
    assert!(
        f.logs()
            .iter()
            .any(|(l, m)| *l == jisr::Level::Debug && m.contains("metric update dropped"))
    );
}

#[test]
fn logs_are_logfmt_and_respect_the_level() {
    let mut f = filter("logs");
    {
        let mut s = f.stream();
        s.request_headers(GET, true);
    }
    let lines: Vec<String> = f.logs().into_iter().map(|(_, m)| m).collect();
    assert!(lines.contains(&"debug line 7".to_string()));
    assert!(
        lines.contains(&r#"request filter=logs method=GET path="/a b" n=3"#.to_string()),
        "{lines:?}"
    );
    f.set_log_level(Level::Error);
    let before = f.logs().len();
    {
        let mut s = f.stream();
        s.request_headers(GET, true);
    }
    assert_eq!(f.logs().len(), before, "disabled levels emit nothing");
}

#[test]
fn middleware_runs_outermost_first_and_can_short_circuit() {
    ORDER.with(|o| o.borrow_mut().clear());
    let f = filter("chain");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    assert_eq!(s.local_reply().unwrap().status, 401);
    assert_eq!(
        ORDER.with(|o| o.borrow().clone()),
        ["outer-in", "gate", "outer-out"]
    );
    drop(s);

    ORDER.with(|o| o.borrow_mut().clear());
    let mut s = f.stream();
    let hdrs = [(":method", "GET"), (":path", "/"), ("x-key", "k")];
    assert_eq!(s.request_headers(&hdrs, true), HeadersStatus::StopIteration);
    oneshot().send(9);
    s.run_scheduled();
    assert_eq!(
        ORDER.with(|o| o.borrow().clone()),
        ["outer-in", "gate", "handler", "outer-out"]
    );
    assert_eq!(s.request_header("x-inner").as_deref(), Some("9"));
    assert_eq!(s.request_header("x-outer-after").as_deref(), Some("1"));
    assert_eq!(s.continue_decoding_calls(), 1);
}

#[test]
fn config_errors_name_the_filter_and_the_problem() {
    let err = TestFilter::new(register, "bad_config", b"nope")
        .err()
        .unwrap();
    assert_eq!(
        err,
        "jisr: filter 'bad_config' rejected its config: expected 'ok', got 'nope'"
    );
    assert!(TestFilter::new(register, "bad_config", b"ok").is_ok());
    let err = TestFilter::new(register, "missing", b"").err().unwrap();
    assert!(
        err.starts_with("jisr: unknown filter name 'missing'; this module registers: tag, deny,"),
        "{err}"
    );
    let err = TestFilter::new(register, "panicking_config", b"")
        .err()
        .unwrap();
    assert!(
        err.contains("'panicking_config'") && err.contains("factory exploded"),
        "{err}"
    );
}

#[test]
fn slots_are_reused_across_streams() {
    let f = filter("await_thread");
    for i in 0..50u64 {
        ONESHOT.with(|o| *o.borrow_mut() = None);
        let mut s = f.stream();
        assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
        oneshot().send(i);
        assert_eq!(s.run_scheduled(), 1);
        assert_eq!(s.request_header("x-value"), Some(i.to_string()));
        drop(s);
        assert_eq!(f.idle_slots(), 1, "one slot serves every sequential stream");
    }
    assert_eq!(f.name(), "await_thread");
}

/// Envoy completes the stream, and may destroy it, inside the `continue_decoding` that resumes
/// it after a wake, as it does when a direct response answers at once. The handler is done by
/// then, so the completion is left to the destroy: either way the handler's work reached
/// Envoy, nothing is called after the destroy, and the slot goes back clean and serves the
/// next stream.
#[test]
fn a_stream_completed_inside_the_continue_that_resumed_it_ends_cleanly() {
    let f = filter("await_thread");
    for destroy_inside in [false, true] {
        for i in 0..3u64 {
            ONESHOT.with(|o| *o.borrow_mut() = None);
            let mut s = f.stream();
            assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
            s.complete_during_continue(destroy_inside);
            oneshot().send(i);
            assert_eq!(s.run_scheduled(), 1);
            assert_eq!(s.request_header("x-value"), Some(i.to_string()));
            assert_eq!(s.is_destroyed(), destroy_inside);
            assert!(
                s.calls_after_destroy().is_empty(),
                "{:?}",
                s.calls_after_destroy()
            );
            // Completed inside: a later completion from the test does nothing.
            s.complete();
            drop(s);
            assert_eq!((f.stats().in_flight, f.idle_slots()), (0, 1));
        }
    }
    ONESHOT.with(|o| *o.borrow_mut() = None);
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    oneshot().send(9);
    assert_eq!(s.run_scheduled(), 1);
    assert_eq!(s.request_header("x-value"), Some("9".into()));
}

#[test]
fn envoy_destroying_the_stream_inside_a_local_reply_is_deferred_until_the_hook_unwinds() {
    let f = filter("deny");
    let mut s = f.stream();
    s.destroy_during_local_reply();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    assert!(s.is_destroyed(), "destroyed once the hook unwound");
    assert_eq!(s.local_reply().unwrap().status, 403);
    drop(s);
    assert_eq!(
        f.idle_slots(),
        1,
        "the slot went back to the pool, not freed under the hook"
    );
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    assert_eq!(f.stats().in_flight, 1);
}
