//! Soundness: tests for the rules of the "Soundness" table in CONSTRAINTS.md, each written the
//! way a user would write the handler, on a simulated host that behaves as hostile as Envoy may
//! (header values move between hooks, a local reply frees the response header map, events
//! arrive inside the calls that start callouts and streams, hooks re-enter during a poll, the
//! stream is destroyed inside a reply). `.ci/miri.sh` runs this file under Miri, which turns any
//! use-after-free into a failure even where the plain run would not notice.

mod common;

use common::GET;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use jisr::testing::{MetaValue, TestFilter};
use jisr::{
    ConfigError, Level, Registry, Request, Response, ResponseMode, ResponseWriter,
    callout::{CalloutError, CalloutRequest},
    raw::{BodyStatus, HeadersStatus, RawFactory, RawFilter, RawStream},
};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Poll, Waker};

/// Polls `fut` once and reports whether it completed.
async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> bool {
    poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await
}

// ---- 1. A forgotten callout must not write into memory its caller freed.

async fn forgetful(_req: Request<'_>, w: ResponseWriter<'_>) {
    let mut body = Vec::with_capacity(16);
    {
        let mut first = Box::pin(w.callout(CalloutRequest::get("svc", "/1", "svc"), &mut body));
        assert!(!poll_once(first.as_mut()).await, "callout 1 pending");
        // Safe code may do this: the future (and its borrow of `body`) is gone without `Drop`.
        std::mem::forget(first);
    }
    drop(body);
    let mut second = Vec::new();
    let r = w
        .callout(CalloutRequest::get("svc", "/2", "svc"), &mut second)
        .await;
    let status = r.map(|r| r.status).unwrap_or(0);
    w.send(
        200,
        format!("{status} {}", String::from_utf8_lossy(&second)).as_bytes(),
    );
}

/// `mem::forget` of a pending callout: Envoy writes callout answers and stream events into storage
/// the stream slot owns, never into the caller's buffer, which gets a copy only when the future
/// completes. A forgotten callout keeps its table entry until the stream ends.
#[test]
fn item01_forgotten_callout_cannot_write_freed_memory() {
    let f = TestFilter::new(
        |r| {
            r.register("f", forgetful);
        },
        "f",
        b"",
    )
    .unwrap();
    for _ in 0..2 {
        let mut s = f.stream();
        assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
        assert_eq!(s.callouts().len(), 2);
        let (one, two) = (s.callouts()[0].id, s.callouts()[1].id);
        // The forgotten callout's answer arrives: it lands in stream-owned storage.
        s.complete_callout(one, 200, &[("x-a", "1")], &[b'x'; 4096]);
        s.complete_callout(two, 201, &[], b"second");
        let reply = s.local_reply().expect("answered");
        assert_eq!(reply.body, b"201 second");
    }
    assert_eq!(f.stats().slots_allocated, 1, "the slot is reused");
}

// ---- 2. A header value read before something that frees Envoy's header map stays valid.

async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}

async fn reply_keeps_view(_: (), resp: Response<'_>, w: ResponseWriter<'_>) {
    let ct = resp.header("content-type").unwrap_or_default();
    // In Buffer mode, Envoy's local reply replaces (frees) the response header map.
    w.send(502, b"replaced");
    w.set_metadata_str("t", "ct", std::str::from_utf8(ct).unwrap_or("?"));
}

/// A response-header value read before a local reply that frees Envoy's response header map (Buffer
/// mode) is still the exact value after it. Handler header values (`header`, `trailer`, `attr_str`,
/// `header_values`) are copies in a per-stream arena, reused by the slot (no allocation per
/// request); repeats are deduplicated, and over 1 MiB of copies per stream is a handler panic. That
/// they cannot outlive the handler is checked by the `compile_fail` doctests on `Request`.
#[test]
fn item02_view_survives_local_reply_in_buffer_mode() {
    let f = TestFilter::new(
        |r| {
            r.filter("r")
                .respond(ResponseMode::Buffer, pass, reply_keeps_view);
        },
        "r",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    let ct = "text/x-probe-0123456789abcdef0123456789abcdef";
    s.response_headers(&[(":status", "200"), ("content-type", ct)], true);
    assert_eq!(s.local_reply().unwrap().status, 502);
    assert_eq!(s.metadata("t", "ct"), Some(MetaValue::Str(ct.to_string())));
}

async fn view_across_await(req: Request<'_>, w: ResponseWriter<'_>) {
    let v = req.header("x-value").unwrap_or_default();
    let mut body = Vec::new();
    // The callout's answer comes in a later hook; Envoy's header memory may change meanwhile.
    let _ = w
        .callout(CalloutRequest::get("svc", "/", "svc"), &mut body)
        .await;
    w.set_metadata_str("t", "v", std::str::from_utf8(v).unwrap_or("?"));
    let mut all = String::new();
    req.for_each_header(|k, _| {
        // Iterating is safe even when the callback replies (which frees the response map).
        all.push_str(std::str::from_utf8(k).unwrap_or("?"));
        all.push(',');
    });
    w.set_metadata_str("t", "all", &all);
}

/// A request-header value read before an `.await` (a callout answered in a later hook) is still
/// valid after it, and `for_each_header` iterates a snapshot of the headers.
#[test]
fn item02_view_survives_await_across_hooks() {
    let f = TestFilter::new(
        |r| {
            r.register("f", view_across_await);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    let value = "a-value-long-enough-to-live-on-the-heap-0123456789";
    let mut h = GET.to_vec();
    h.push(("x-value", value));
    assert_eq!(s.request_headers(&h, true), HeadersStatus::StopIteration);
    let id = s.callouts()[0].id;
    s.complete_callout(id, 200, &[], b"");
    assert_eq!(
        s.metadata("t", "v"),
        Some(MetaValue::Str(value.to_string()))
    );
    let all = match s.metadata("t", "all") {
        Some(MetaValue::Str(a)) => a,
        other => panic!("{other:?}"),
    };
    assert!(all.contains("x-value,"), "{all}");
}

async fn metadata_views_across_await_and_reply(_req: Request<'_>, w: ResponseWriter<'_>) {
    use jisr::MetadataSource::Route;
    let tier = w.metadata_str(Route, "acme", "tier").unwrap_or("-");
    let zone = w
        .metadata_list_str(Route, "acme", "zones", 1)
        .unwrap_or("-");
    let keys = w.metadata_keys(Route, "acme");
    let cluster = w.cluster_name().unwrap_or("-");
    let mut body = Vec::new();
    // Answered in a later hook; the test replaces Envoy's metadata and cluster meanwhile.
    let _ = w
        .callout(CalloutRequest::get("svc", "/", "svc"), &mut body)
        .await;
    let keys: Vec<&str> = keys.collect();
    w.send(200, b"");
    // After the reply, every view still holds what was read before the await.
    w.set_metadata_str("t", "seen", &format!("{tier} {zone} {keys:?} {cluster}"));
}

/// Metadata, list items, key names and the cluster name read before an `.await` and a local
/// reply are copies: they keep their values after Envoy's metadata and cluster info are
/// replaced (under Miri, a view into the freed memory would fail).
#[test]
fn item02_metadata_views_survive_await_and_reply() {
    use jisr::MetadataSource::Route;
    let f = TestFilter::new(
        |r| {
            r.register("f", metadata_views_across_await_and_reply);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    let long = |v: &str| format!("{v}-long-enough-to-live-on-the-heap-0123456789");
    s.set_source_metadata(Route, "acme", "tier", MetaValue::Str(long("gold")));
    let zones = vec![MetaValue::Str(long("z0")), MetaValue::Str(long("z1"))];
    s.set_source_metadata(Route, "acme", "zones", MetaValue::List(zones));
    s.set_cluster(&long("main"), &[[1, 1, 0]]);
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    // Envoy's memory behind every view changes before the handler resumes.
    s.set_source_metadata(Route, "acme", "tier", MetaValue::Str(long("silver")));
    s.set_source_metadata(Route, "acme", "zones", MetaValue::Num(0.0));
    s.set_cluster(&long("other"), &[]);
    let id = s.callouts()[0].id;
    s.complete_callout(id, 200, &[], b"");
    assert_eq!(s.local_reply().unwrap().status, 200);
    let want = format!(
        "{} {} [\"tier\", \"zones\"] {}",
        long("gold"),
        long("z1"),
        long("main")
    );
    assert_eq!(s.metadata("t", "seen"), Some(MetaValue::Str(want)));
}

// ---- 3. Events Envoy delivers inside the call that opens a streaming callout are kept.

async fn stream_nohost(_req: Request<'_>, w: ResponseWriter<'_>) {
    let mut s = match w.stream_callout(CalloutRequest::get("nohost", "/", "svc"), true) {
        Ok(s) => s,
        Err(e) => return w.send(500, e.to_string().as_bytes()),
    };
    let head = match s.head().await {
        Ok(h) => h,
        Err(e) => return w.send(500, e.to_string().as_bytes()),
    };
    let mut body = Vec::new();
    while let Ok(n) = s.read(&mut body).await {
        if n == 0 {
            break;
        }
    }
    w.send(
        200,
        format!(
            "head={} body={}",
            head.status,
            String::from_utf8_lossy(&body)
        )
        .as_bytes(),
    );
}

/// A streaming callout whose head and body Envoy delivers inside the call that opens it: the entry
/// being opened takes those events, and `head()` and `read()` return them instead of waiting for
/// events that already came.
#[test]
fn item03_stream_events_during_open_are_kept() {
    let f = TestFilter::new(
        |r| {
            r.register("f", stream_nohost);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.answer_inline("nohost", 503, b"no healthy upstream");
    s.request_headers(GET, true);
    let reply = s.local_reply().expect("the handler did not hang");
    // Envoy's own "no healthy upstream" answer is no answer from the service.
    assert_eq!(reply.body, b"callout got no answer: no healthy host");
    let mut s = f.stream();
    s.answer_inline("nohost", 503, b"the service's own 503");
    s.request_headers(GET, true);
    let reply = s.local_reply().expect("the handler did not hang");
    assert_eq!(reply.body, b"head=503 body=the service's own 503");
}

// ---- 4. A hook re-entered during a poll must not lose the outer poll's wake.

async fn nested_event(_req: Request<'_>, w: ResponseWriter<'_>) {
    let mut s = w
        .stream_callout(CalloutRequest::get("svc", "/", "svc"), false)
        .expect("open");
    let mut sent = false;
    poll_fn(|cx| {
        if sent {
            return Poll::Ready(());
        }
        sent = true;
        // Wake ourselves, then call into Envoy, which delivers a stream event re-entrantly.
        cx.waker().wake_by_ref();
        let _ = s.send(b"ping", false);
        Poll::Pending
    })
    .await;
    let mut body = Vec::new();
    let _ = s.read(&mut body).await;
    w.send(200, &body);
}

/// A hook Envoy runs while a poll of the same stream is on the stack records its event and marks
/// that poll woken; the poll goes again before its hook returns, so the handler's own wake is not
/// lost.
#[test]
fn item04_nested_hook_keeps_outer_wake() {
    let f = TestFilter::new(
        |r| {
            r.register("f", nested_event);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.stream_data_during_next_send(1, b"pong", false);
    s.request_headers(GET, true);
    assert_eq!(
        s.local_reply().map(|r| r.body),
        Some(b"pong".to_vec()),
        "the handler hung: the self-wake was lost"
    );
    assert_eq!(s.pending_events(), 0);
}

// ---- 5. jisr's futures register the waker they are given (waker-precise combinators).

async fn fu_body(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let mut buf = [0u8; 64];
    let n = {
        let mut set = FuturesUnordered::new();
        set.push(req.read(&mut buf));
        set.next().await.expect("one").expect("read")
    };
    w.send(200, &buf[..n]);
}

/// A body read polled inside `FuturesUnordered`. Every jisr future (body reads, callouts, streaming
/// sends, streaming-callout reads: the `item05_*` tests) registers the waker it is polled with when
/// that is not the stream's own, and the hook that delivers its event wakes it inside the poll
/// window (no extra scheduler hop).
#[test]
fn item05_body_read_under_futures_unordered() {
    let f = TestFilter::new(
        |r| {
            r.register("f", fu_body);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, false), HeadersStatus::StopIteration);
    s.request_body(b"hello", true);
    s.run_scheduled();
    assert_eq!(s.local_reply().map(|r| r.body), Some(b"hello".to_vec()));
}

async fn fu_callout(_req: Request<'_>, w: ResponseWriter<'_>) {
    let mut body = Vec::new();
    let status = {
        let mut set = FuturesUnordered::new();
        set.push(w.callout(CalloutRequest::get("svc", "/", "svc"), &mut body));
        set.next().await.expect("one").map(|r| r.status)
    };
    w.send(200, format!("{status:?}").as_bytes());
}

/// A callout polled inside `FuturesUnordered` (see `item05_body_read_under_futures_unordered`).
#[test]
fn item05_callout_under_futures_unordered() {
    let f = TestFilter::new(
        |r| {
            r.register("f", fu_callout);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let id = s.callouts()[0].id;
    s.complete_callout(id, 204, &[], b"");
    s.run_scheduled();
    assert_eq!(s.local_reply().map(|r| r.body), Some(b"Ok(204)".to_vec()));
}

async fn fu_stream_send(_req: Request<'_>, w: ResponseWriter<'_>) {
    let Ok(mut out) = w.stream(200, &[]) else {
        return;
    };
    {
        let mut set = FuturesUnordered::new();
        set.push(out.send(b"chunk"));
        let _ = set.next().await;
    }
    out.finish();
}

/// A streaming send held back by the downstream watermark, polled inside `FuturesUnordered` (see
/// `item05_body_read_under_futures_unordered`).
#[test]
fn item05_streaming_send_under_futures_unordered() {
    let f = TestFilter::new(
        |r| {
            r.register("f", fu_stream_send);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.watermark_above();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    assert!(s.streamed_reply().unwrap().data.is_empty(), "held back");
    s.watermark_below();
    s.run_scheduled();
    s.run_scheduled();
    let r = s.streamed_reply().unwrap();
    assert_eq!(r.data, vec![b"chunk".to_vec(), Vec::new()]);
    assert!(r.ended);
}

async fn fu_stream_callout(_req: Request<'_>, w: ResponseWriter<'_>) {
    let mut s = w
        .stream_callout(CalloutRequest::get("svc", "/", "svc"), true)
        .expect("open");
    let mut body = Vec::new();
    let n = {
        let mut set = FuturesUnordered::new();
        set.push(s.read(&mut body));
        set.next().await.expect("one")
    };
    w.send(
        200,
        format!("{n:?} {}", String::from_utf8_lossy(&body)).as_bytes(),
    );
}

/// A streaming-callout read polled inside `FuturesUnordered` (see
/// `item05_body_read_under_futures_unordered`).
#[test]
fn item05_stream_callout_read_under_futures_unordered() {
    let f = TestFilter::new(
        |r| {
            r.register("f", fu_stream_callout);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    s.stream_callout_headers(1, 200, &[], false);
    s.stream_callout_data(1, b"data", false);
    s.run_scheduled();
    assert_eq!(
        s.local_reply().map(|r| r.body),
        Some(b"Ok(4) data".to_vec())
    );
}

// ---- 6. Nothing unwinds into Envoy; failures inside jisr fail closed.

struct PanickyFactory;
struct NeverBuilt;
impl RawFilter for NeverBuilt {}
impl RawFactory for PanickyFactory {
    type Filter = NeverBuilt;
    fn new_filter(&self) -> NeverBuilt {
        panic!("factory failed")
    }
}

/// A raw filter factory that panics: the stream is refused and the panic logged; nothing unwinds
/// into Envoy. Registration, config factories, per-route parsers, their drops, raw filter factories
/// and every hook run guarded; a raw filter's panic in a hook answers 500, or resets once the
/// response started.
#[test]
fn item06_raw_factory_panic_does_not_unwind() {
    let f = TestFilter::new(
        |r| {
            r.register_raw("raw", |_| Ok(PanickyFactory));
        },
        "raw",
        b"",
    )
    .unwrap();
    let err = f.try_stream().err().expect("stream refused");
    assert!(err.contains("factory failed"), "{err}");
    assert!(
        f.logs()
            .iter()
            .any(|(l, m)| *l == jisr::Level::Error && m.contains("factory failed"))
    );
}

struct BombState;
impl Drop for BombState {
    fn drop(&mut self) {
        panic!("state drop failed");
    }
}

async fn with_state(_s: &BombState, _req: Request<'_>, _w: ResponseWriter<'_>) {}

/// A config state whose `Drop` panics: dropping the config (Envoy's config destroy) does not unwind
/// into Envoy.
#[test]
fn item06_config_drop_panic_does_not_unwind() {
    let f = TestFilter::new(
        |r| {
            r.filter("f")
                .state(|_| Ok::<_, ConfigError>(BombState))
                .handle(with_state);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    drop(s);
    // Dropping the config (Envoy's config destroy) runs the state's panicking `Drop`.
    drop(f);
}

async fn body_reader(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let mut buf = Vec::new();
    let _ = req.read_to_end(&mut buf).await;
    w.set_metadata_num("t", "n", buf.len() as f64);
}

/// A panic inside jisr's own bookkeeping (outside the handler's poll) fails closed: the client gets
/// 500 with details `jisr_internal_error` (a reset once the response started), and
/// `internal_failures` counts it.
#[test]
fn item06_internal_failure_fails_closed() {
    let f = TestFilter::new(
        |r| {
            r.register("f", body_reader);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, false), HeadersStatus::StopIteration);
    // jisr's own bookkeeping in the body hook fails (outside the handler's poll).
    s.panic_in_host_call("body_len");
    assert_eq!(
        s.request_body(b"x", true),
        BodyStatus::StopIterationNoBuffer
    );
    let reply = s.local_reply().expect("failed closed");
    assert_eq!(reply.status, 500);
    assert_eq!(reply.details, "jisr_internal_error");
    assert_eq!(f.stats().internal_failures, 1);
}

struct PayloadBomb;
impl Drop for PayloadBomb {
    fn drop(&mut self) {
        panic!("payload drop failed");
    }
}

async fn panics_with_bomb(_req: Request<'_>, _w: ResponseWriter<'_>) {
    std::panic::panic_any(PayloadBomb);
}

/// A handler panic whose payload's `Drop` panics too: the payload is forgotten and the client gets
/// 500.
#[test]
fn item06_panic_payload_with_panicking_drop_does_not_escape() {
    let f = TestFilter::new(
        |r| {
            r.register("f", panics_with_bomb);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    assert_eq!(s.local_reply().unwrap().status, 500);
}

// ---- 8. After Envoy destroyed the stream inside a reply, nothing more is called on it.

async fn busy_after_reply(mut req: Request<'_>, w: ResponseWriter<'_>) {
    w.send(401, b"no");
    w.set_metadata_str("t", "after", "1");
    let _ = req.set_header("x-after", "1");
    let _ = req.header("x-after");
    w.log(Level::Info, format_args!("after the reply"));
}

/// Envoy destroys the stream inside the local reply: nothing is called on the stream after that,
/// although the handler goes on calling after `send` (metadata, a header, a log line). The reply is
/// sent when the poll that made it ends, so effects made after `send` in the same poll reach Envoy
/// before it. That matters because Envoy 1.40 ends the stream and writes the access log inside a
/// reply sent from a Buffer response handler: effects after the next `.await` that waits would be
/// lost.
#[test]
fn item08_nothing_called_after_deferred_destroy() {
    let f = TestFilter::new(
        |r| {
            r.register("f", busy_after_reply);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.destroy_during_local_reply();
    s.request_headers(GET, true);
    assert!(s.is_destroyed());
    assert_eq!(s.local_reply().unwrap().status, 401);
    assert_eq!(s.calls_after_destroy(), Vec::<&str>::new());
}

// ---- 9. A callout Envoy answers inside its start call reaches the handler as that answer.

async fn callout_nohost(_req: Request<'_>, w: ResponseWriter<'_>) {
    let mut body = Vec::new();
    match w
        .callout(CalloutRequest::get("nohost", "/", "svc"), &mut body)
        .await
    {
        Ok(r) => w.send(
            200,
            format!(
                "status={} body={}",
                r.status,
                String::from_utf8_lossy(&body)
            )
            .as_bytes(),
        ),
        Err(e) => w.send(500, e.to_string().as_bytes()),
    }
}

/// A unary callout answered inside the call that starts it: the entry being opened takes the
/// answer, so the handler gets it and does not hang: Envoy's own `503 no healthy upstream` as
/// `CalloutError::Unavailable`, a service's 503 as `Ok(503)`. A start refused without an
/// answer (an unknown cluster) is still an error.
#[test]
fn item09_inline_callout_answer() {
    let f = TestFilter::new(
        |r| {
            r.register("f", callout_nohost);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.answer_inline("nohost", 503, b"no healthy upstream");
    s.request_headers(GET, true);
    let reply = s.local_reply().expect("answered in the same hook");
    assert_eq!(reply.body, b"callout got no answer: no healthy host");
    let mut s = f.stream();
    s.answer_inline("nohost", 503, b"busy");
    s.request_headers(GET, true);
    let reply = s.local_reply().expect("answered in the same hook");
    assert_eq!(String::from_utf8_lossy(&reply.body), "status=503 body=busy");
    // A refusal without an answer is still an error.
    let mut s = f.stream();
    s.set_unknown_cluster("nohost");
    s.request_headers(GET, true);
    assert_eq!(
        s.local_reply().unwrap().body,
        CalloutError::ClusterNotFound.to_string().into_bytes()
    );
}

// ---- 11. Idle slots keep a bounded amount of memory.

async fn big_everything(req: Request<'_>, w: ResponseWriter<'_>) {
    let _ = req.header("x-big");
    let mut s = w
        .stream_callout(CalloutRequest::get("svc", "/", "svc"), true)
        .expect("open");
    let mut body = Vec::new();
    while let Ok(n) = s.read(&mut body).await {
        if n == 0 {
            break;
        }
    }
    w.set_metadata_num("t", "n", body.len() as f64);
}

/// A stream with a 200 KB header copy and a 3 MiB streaming-callout body: once it ends, its idle
/// slot keeps nothing (what it grew went back to the worker's bounded shelves, or was freed).
#[test]
fn item11_idle_slot_retains_bounded_memory() {
    let f = TestFilter::new(
        |r| {
            r.register("f", big_everything);
        },
        "f",
        b"",
    )
    .unwrap();
    let big = "b".repeat(200_000);
    {
        let mut s = f.stream();
        let mut h = GET.to_vec();
        h.push(("x-big", big.as_str()));
        s.request_headers(&h, true);
        s.stream_callout_headers(1, 200, &[], false);
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..3 {
            s.stream_callout_data(1, &chunk, false);
        }
        s.stream_callout_data(1, b"", true);
        assert_eq!(s.metadata("t", "n"), Some(MetaValue::Num((3 << 20) as f64)));
    }
    let kept = f.idle_retained_bytes();
    assert_eq!(kept, 0, "an idle slot keeps {kept} bytes");
}

async fn reads_a_header(req: Request<'_>, w: ResponseWriter<'_>) {
    let n = req.header("x-key").map_or(0, |v| v.len());
    w.set_metadata_num("t", "n", n as f64);
}

/// A stream that read a few header values leaves its slot exactly the arena's first block
/// (256 bytes), kept for the slot's next stream; a stream that grew more leaves nothing, and
/// one that read nothing changes nothing.
#[test]
fn item11_idle_slot_keeps_at_most_the_first_arena_block() {
    let f = TestFilter::new(
        |r| {
            r.register("f", reads_a_header);
        },
        "f",
        b"",
    )
    .unwrap();
    let run = |key: &str| {
        let mut s = f.stream();
        let mut h = GET.to_vec();
        h.push(("x-key", key));
        s.request_headers(&h, true);
        assert_eq!(s.metadata("t", "n"), Some(MetaValue::Num(key.len() as f64)));
    };
    assert_eq!(f.idle_retained_bytes(), 0);
    for _ in 0..3 {
        run("secret");
        assert_eq!(f.idle_retained_bytes(), 256, "the first block stays");
    }
    run(&"k".repeat(10_000));
    assert_eq!(
        f.idle_retained_bytes(),
        0,
        "a grown arena goes to the shelf"
    );
    run("secret");
    assert_eq!(f.idle_retained_bytes(), 256);
    // A stream that copies nothing: the kept block stays, rewound.
    run("");
    assert_eq!(f.idle_retained_bytes(), 256);
}

async fn replies_with_the_size_asked(req: Request<'_>, w: ResponseWriter<'_>) {
    let n: usize = req
        .header("x-size")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0);
    let body = vec![b'x'; n];
    w.send_with(
        401,
        &[("www-authenticate", b"ApiKey")],
        &body,
        "jisr_test_denied",
    );
}

/// A slot whose stream replied keeps the reply's buffer for its next reply only while it is
/// small (at most 512 bytes); a big reply's buffer goes back to the shelf, and the next reply
/// of the same slot is whole either way.
#[test]
fn item11_idle_slot_keeps_only_a_small_reply_buffer() {
    let f = TestFilter::new(
        |r| {
            r.register("f", replies_with_the_size_asked);
        },
        "f",
        b"",
    )
    .unwrap();
    let run = |size: usize| {
        let mut s = f.stream();
        let size_text = size.to_string();
        let mut h = GET.to_vec();
        h.push(("x-size", size_text.as_str()));
        s.request_headers(&h, true);
        let reply = s.local_reply().unwrap();
        assert_eq!((reply.status, reply.body.len()), (401, size));
        assert!(reply.body.iter().all(|&b| b == b'x'));
    };
    // Reading `x-size` keeps the arena's first block (see the test above): 256 bytes.
    const ARENA: usize = 256;
    assert_eq!(f.idle_retained_bytes(), 0);
    for _ in 0..3 {
        run(27);
        let reply = f.idle_retained_bytes() - ARENA;
        assert!(
            reply > 0 && reply <= 512,
            "a small reply buffer stays: {reply}"
        );
    }
    run(100_000);
    assert_eq!(
        f.idle_retained_bytes(),
        ARENA,
        "a big reply buffer goes back"
    );
    run(27);
    let reply = f.idle_retained_bytes() - ARENA;
    assert!(reply > 0 && reply <= 512, "{reply}");
}

// ---- 12. A future whose destructor panics does not cost a slot.

struct DropBomb;
impl Drop for DropBomb {
    fn drop(&mut self) {
        panic!("future drop failed");
    }
}

async fn pending_with_bomb(_req: Request<'_>, _w: ResponseWriter<'_>) {
    let _bomb = DropBomb;
    std::future::pending::<()>().await;
}

/// A handler future whose `Drop` panics, dropped by three client disconnects: each time the slot is
/// emptied and reused, `drop_panics` counts it and the panic is logged. A slot that cannot be
/// cleaned is leaked and counted (`slots_leaked`), at most 64 per config; then new streams are
/// refused.
#[test]
fn item12_drop_panic_keeps_the_slot_clean() {
    let f = TestFilter::new(
        |r| {
            r.register("f", pending_with_bomb);
        },
        "f",
        b"",
    )
    .unwrap();
    for _ in 0..3 {
        let mut s = f.stream();
        assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
        s.disconnect();
    }
    let st = f.stats();
    assert_eq!(st.drop_panics, 3);
    assert_eq!(st.slots_leaked, 0);
    assert_eq!(st.slots_allocated, 1, "the slot was cleaned and reused");
    assert_eq!(st.idle_slots, 1);
    assert!(
        f.logs()
            .iter()
            .any(|(l, m)| *l == jisr::Level::Error && m.contains("future drop failed"))
    );
}

// ---- 13. A stale waker from another thread cannot wake the slot's next stream.

static STASH: Mutex<Option<Waker>> = Mutex::new(None);

async fn stash_waker(_req: Request<'_>, _w: ResponseWriter<'_>) {
    poll_fn(|cx| {
        *STASH.lock().unwrap() = Some(cx.waker().clone());
        Poll::Ready(())
    })
    .await;
}

async fn wait_forever(_req: Request<'_>, _w: ResponseWriter<'_>) {
    std::future::pending::<()>().await;
}

/// A waker kept by another thread after its stream ended, woken while the slot serves the next
/// stream: wake cells are recycled only through `Arc::get_mut`, so it cannot wake that stream.
#[test]
fn item13_stale_waker_cannot_wake_the_next_stream() {
    let mut r = Registry::default();
    r.register("stash", stash_waker);
    let f = TestFilter::from_registry(&r, "stash", b"").unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    drop(s);
    let stale = STASH.lock().unwrap().take().expect("stashed");
    std::thread::scope(|scope| {
        let t = scope.spawn(move || {
            stale.wake_by_ref();
            stale
        });
        let stale = t.join().unwrap();
        // The slot is reused while the other thread's waker may still be alive.
        let mut s = f.stream();
        s.request_headers(GET, true);
        scope.spawn(move || {
            stale.wake();
        });
        drop(s);
    });
    let g = TestFilter::new(
        |r| {
            r.register("w", wait_forever);
        },
        "w",
        b"",
    )
    .unwrap();
    let mut s = g.stream();
    s.request_headers(GET, true);
    assert_eq!(s.pending_events(), 0);
}

static HANDOFF: Mutex<Option<Waker>> = Mutex::new(None);

/// Hands its waker to the test and waits for ever.
async fn hand_off_and_wait(_req: Request<'_>, _w: ResponseWriter<'_>) {
    poll_fn(|cx| {
        *HANDOFF.lock().unwrap() = Some(cx.waker().clone());
        Poll::<()>::Pending
    })
    .await;
}

/// Another thread wakes the stream over and over while the worker completes and destroys it:
/// the scheduler handle is used by those wakes and retired by the stream's end at the same
/// time, and must be released exactly once, by whichever side is last, and never used after.
/// (A double release or a use after release is what Miri reports here: the simulated
/// scheduler owns a reference count of the host's event queue.)
#[test]
fn item13_wakes_racing_the_stream_end_release_the_scheduler_once() {
    let mut r = Registry::default();
    r.register("handoff", hand_off_and_wait);
    let f = TestFilter::from_registry(&r, "handoff", b"").unwrap();
    for _ in 0..16 {
        let mut s = f.stream();
        s.request_headers(GET, true);
        assert_eq!(
            s.schedulers_created(),
            1,
            "a cloned waker left behind a scheduler"
        );
        let w = HANDOFF.lock().unwrap().take().expect("handed off");
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for _ in 0..8 {
                    w.wake_by_ref();
                    std::thread::yield_now();
                }
                w.wake();
            });
            // Completed and destroyed while the other thread wakes.
            drop(s);
        });
    }
    let st = f.stats();
    assert_eq!(st.slots_leaked, 0);
    assert_eq!(st.slots_allocated, 1, "the one slot served every stream");
}

// Compile-time rules (handles cannot cross threads, header views cannot outlive the handler,
// raw views cannot cross a reply, a continue or a header change) are `compile_fail` doctests
// on `Request` and `RawStream`.

#[allow(dead_code)]
fn raw_is_usable(s: &mut RawStream<'_>) {
    let ct = s.response_header("content-type").map(<[u8]>::to_vec);
    s.send_response(502, &[], b"", "x");
    let _ = ct;
}

// ---- 14. A child span is finished exactly once, whatever safe code does with its handle.

async fn span_games(_req: Request<'_>, w: ResponseWriter<'_>) {
    let span = w.span().expect("traced");
    // Leaked: finished when the stream completes.
    std::mem::forget(span.child("forgotten").unwrap());
    // Dropped: finished now, and not again at stream end.
    drop(span.child("dropped").unwrap());
    // Held across an await by a future that is cancelled by the stream's end.
    let held = span.child("held").unwrap();
    held.set_tag("k", "v");
    common::Forever.await;
    drop(held);
}

#[test]
fn item14_child_spans_finish_exactly_once() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("spans", span_games);
        },
        "spans",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.enable_tracing("ingress");
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let open: Vec<_> = s.spans().iter().map(|sp| sp.finished).collect();
    assert_eq!(open, [false, false, true, false]);
    s.complete();
    let spans = s.spans();
    assert!(spans[1..].iter().all(|sp| sp.finished), "{spans:?}");
    // The held child's tag went in before the stream ended, and nothing after.
    assert_eq!(spans[3].tags, [("k".to_string(), "v".to_string())]);
}

// ---- 15. Filter-state objects: only values this module stored are read, each dropped once.

async fn object_games(_req: Request<'_>, w: ResponseWriter<'_>) {
    use jisr::control::StateLife;
    use std::sync::Arc;
    assert_eq!(
        w.set_filter_state_object("k", vec![1u8, 2, 3], StateLife::Request),
        Ok(true)
    );
    let held: Arc<Vec<u8>> = w.filter_state_object("k").unwrap().unwrap();
    // Replacing the object frees Envoy's reference; ours stays valid (it is an `Arc`).
    assert_eq!(
        w.set_filter_state_object("k", String::from("x"), StateLife::Request),
        Ok(true)
    );
    assert_eq!(*held, [1, 2, 3]);
    // Asked as the old type, the new object is not read.
    assert!(w.filter_state_object::<Vec<u8>>("k").unwrap().is_none());
    std::mem::forget(w.filter_state_object::<String>("k").unwrap());
    w.send(200, b"ok");
}

#[test]
fn item15_filter_state_objects_are_typed_and_dropped_once() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("objects", object_games);
        },
        "objects",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    assert_eq!(s.local_reply().unwrap().status, 200);
}

// ---- 16. Timers: a forgotten or dropped sleep, and sleeps under a waker-precise combinator.

async fn timer_games(_req: Request<'_>, w: ResponseWriter<'_>) {
    use jisr::time::{sleep, timeout};
    use std::time::Duration;
    // Forgotten while registered: its entry keeps a waker of this stream; firing it later
    // must be harmless (the stream may be gone, its slot reused).
    let mut forgotten = Box::pin(sleep(Duration::from_millis(20)));
    // (Under Miri the deadline may already have passed here: then nothing stays registered.)
    let _ = poll_once(forgotten.as_mut()).await;
    std::mem::forget(forgotten);
    // Dropped while registered: removed.
    let mut dropped = Box::pin(sleep(Duration::from_secs(3600)));
    assert!(!poll_once(dropped.as_mut()).await);
    drop(dropped);
    // Polled only when woken, by a combinator with wakers of its own.
    let mut set: FuturesUnordered<_> = [3u64, 1, 2]
        .into_iter()
        .map(|ms| async move {
            sleep(Duration::from_millis(ms)).await;
            ms
        })
        .collect();
    let mut order = Vec::new();
    while let Some(ms) = set.next().await {
        order.push(ms);
    }
    // Every sleep completes (the order depends on the clock, slower under Miri).
    order.sort_unstable();
    let cut = timeout(Duration::from_millis(1), common::Forever).await;
    w.send(200, format!("{order:?} {}", cut.is_err()).as_bytes());
}

#[test]
fn item16_sleeps_forgotten_dropped_and_under_futures_unordered() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("timers", timer_games);
        },
        "timers",
        b"",
    )
    .unwrap();
    for _ in 0..2 {
        // The second stream reuses the slot while the first one's forgotten sleep may fire.
        let mut s = f.stream();
        s.request_headers(GET, true);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while s.local_reply().is_none() && std::time::Instant::now() < until {
            s.wait_scheduled(std::time::Duration::from_millis(50));
            s.run_scheduled();
        }
        let reply = s.local_reply().expect("a reply");
        assert_eq!(reply.body, b"[1, 2, 3] true");
        s.complete();
    }
}

// ---- The futures added for the response's end and the callout's 503 head: waker-precise and
// forgettable.

async fn fu_finished(_: (), mut resp: jisr::Response<'_>, w: ResponseWriter<'_>) {
    // A wait polled once (its waker registered) and abandoned leaves nothing behind: the
    // type has no destructor, so forgetting it is the same as this.
    {
        let abandoned = resp.finished();
        futures::pin_mut!(abandoned);
        assert!(futures::poll!(abandoned).is_pending());
    }
    let r = {
        let mut set = FuturesUnordered::new();
        set.push(resp.finished());
        set.next().await.expect("one")
    };
    w.set_metadata_str("t", "end", &format!("{r:?}"));
}

/// `Response::finished` polled inside `FuturesUnordered`, after another one was forgotten: the
/// last body hook wakes the waker it registered.
#[test]
fn item05_finished_under_futures_unordered() {
    let f = TestFilter::new(
        |r| {
            r.filter("f")
                .respond(jisr::ResponseMode::Observe, pass_req, fu_finished);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    s.response_headers(&[(":status", "200")], false);
    s.response_body(b"a", false);
    assert_eq!(s.metadata("t", "end"), None);
    s.response_body(b"b", true);
    s.run_scheduled();
    assert_eq!(
        s.metadata("t", "end"),
        Some(MetaValue::Str("Ok(())".into()))
    );
    assert_eq!(s.forwarded_response_body(), b"ab");
}

async fn pass_req(_req: Request<'_>, _w: ResponseWriter<'_>) {}

async fn fu_stream_head(_req: Request<'_>, w: ResponseWriter<'_>) {
    let Ok(mut s) = w.stream_callout(CalloutRequest::get("svc", "/", "svc"), true) else {
        return;
    };
    let r = {
        let mut set = FuturesUnordered::new();
        set.push(s.head());
        set.next().await.expect("one").map(|h| h.status)
    };
    w.send(200, format!("{r:?}").as_bytes());
}

/// A streaming callout's head that waits for a 503's body (to tell Envoy's own answer from the
/// service's), polled inside `FuturesUnordered`: the data event wakes it.
#[test]
fn item05_callout_head_waiting_for_a_503_body_under_futures_unordered() {
    let f = TestFilter::new(
        |r| {
            r.register("f", fu_stream_head);
        },
        "f",
        b"",
    )
    .unwrap();
    for (body, want) in [
        (
            &b"no healthy upstream"[..],
            "Err(Unavailable(NoHealthyHost))",
        ),
        (b"busy", "Ok(503)"),
    ] {
        let mut s = f.stream();
        s.request_headers(GET, true);
        let id = s.callouts()[0].id;
        s.stream_callout_headers(id, 503, &[], false);
        assert!(s.local_reply().is_none(), "the head waits for the body");
        s.stream_callout_data(id, body, true);
        s.run_scheduled();
        assert_eq!(
            s.local_reply().map(|r| r.body),
            Some(want.as_bytes().to_vec())
        );
    }
}

// ---- Failing closed by hook: a 500 while the client has seen nothing, a reset after.

async fn read_response(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
    let mut body = Vec::new();
    let _ = resp.read_to_end(&mut body).await;
}

/// A jisr failure inside a response hook: the stream's state says whether the response went
/// downstream. Observe mode passed the headers on (reset, no reply); Buffer mode holds them (a 500
/// still replaces the response).
#[test]
fn internal_failure_in_a_response_hook_resets_once_the_response_started() {
    fn observe(r: &mut Registry) {
        r.filter("f")
            .respond(ResponseMode::Observe, pass, read_response);
    }
    fn buffer(r: &mut Registry) {
        r.filter("f")
            .respond(ResponseMode::Buffer, pass, read_response);
    }
    for (register, mode, started) in [
        (observe as fn(&mut Registry), ResponseMode::Observe, true),
        (buffer, ResponseMode::Buffer, false),
    ] {
        let f = TestFilter::new(register, "f", b"").unwrap();
        let mut s = f.stream();
        assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
        s.response_headers(&[(":status", "200")], false);
        s.panic_in_host_call("body_len");
        assert_eq!(
            s.response_body(b"x", false),
            BodyStatus::StopIterationNoBuffer
        );
        if started {
            assert!(
                s.local_reply().is_none(),
                "{mode:?}: no reply after the headers went"
            );
            assert_eq!(s.reset_details().as_deref(), Some("jisr_internal_error"));
        } else {
            assert_eq!(s.local_reply().expect("a 500").status, 500, "{mode:?}");
            assert!(s.reset_details().is_none(), "{mode:?}");
        }
        assert_eq!(f.stats().internal_failures, 1);
    }
}

struct HookPanic {
    on_response: bool,
}
impl RawFilter for HookPanic {
    fn on_request_headers(&mut self, _s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
        assert!(self.on_response, "raw filter failed on the request");
        HeadersStatus::Continue
    }
    fn on_response_headers(&mut self, _s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
        panic!("raw filter failed on the response");
    }
}
struct HookPanicFactory(bool);
impl RawFactory for HookPanicFactory {
    type Filter = HookPanic;
    fn new_filter(&self) -> HookPanic {
        HookPanic {
            on_response: self.0,
        }
    }
}

/// A raw filter has no state jisr can read, so the hook kind decides: a panic in a request hook
/// answers 500; in a response hook the stream is reset.
#[test]
fn a_raw_filter_panic_fails_closed_by_hook_kind() {
    let f = TestFilter::new(
        |r| {
            r.register_raw("req", |_| Ok(HookPanicFactory(false)));
            r.register_raw("resp", |_| Ok(HookPanicFactory(true)));
        },
        "req",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    assert_eq!(s.local_reply().expect("a 500").status, 500);
    assert!(s.reset_details().is_none());

    let f = TestFilter::new(
        |r| {
            r.register_raw("req", |_| Ok(HookPanicFactory(false)));
            r.register_raw("resp", |_| Ok(HookPanicFactory(true)));
        },
        "resp",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    assert_eq!(
        s.response_headers(&[(":status", "200")], false),
        HeadersStatus::StopIteration
    );
    assert!(s.local_reply().is_none());
    assert_eq!(s.reset_details().as_deref(), Some("jisr_handler_panic"));
}
