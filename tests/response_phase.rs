//! Every status the response phase returns, per mode, through the simulated stream.

mod common;

use common::{GET, Oneshot};
use jisr::testing::{MetaValue, TestFilter};
use jisr::{
    ConfigError, ConfigHandle, Counter, Registry, Request, Response, ResponseMode, ResponseWriter,
    handler::BodyError,
    raw::{BodyStatus, HeadersStatus, TrailersStatus},
    response::{ResponseError, ResponseNext, response_chain},
};
use std::cell::RefCell;

thread_local! {
    static ONESHOT: RefCell<Option<Oneshot>> = const { RefCell::new(None) };
    static ORDER: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

fn oneshot() -> Oneshot {
    ONESHOT.with(|o| o.borrow_mut().get_or_insert_with(Oneshot::default).clone())
}

fn fresh() {
    ONESHOT.with(|o| *o.borrow_mut() = None);
}

async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}

async fn method_of(req: Request<'_>, _w: ResponseWriter<'_>) -> String {
    req.method().unwrap_or("-").to_owned()
}

async fn stamp(method: String, mut resp: Response<'_>, w: ResponseWriter<'_>) {
    let status = resp.status().unwrap_or(0);
    resp.set_header("x-stamp", format!("{method} {status}"))
        .unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(resp.read(&mut buf).await, Ok(0), "no body in Passthrough");
    w.set_metadata_str("resp", "stamped", "yes");
}

async fn stamp_later(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
    let v = oneshot().recv().await;
    resp.set_header("x-later", v.to_string()).unwrap();
}

async fn tap(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    let refused = resp.set_header("x-too-late", "1");
    w.set_metadata_str("tap", "set_header", &format!("{refused:?}"));
    let mut total = 0usize;
    let mut buf = [0u8; 3];
    loop {
        match resp.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => {
                w.set_metadata_str("tap", "error", &e.to_string());
                return;
            }
        }
    }
    w.set_metadata_num("tap", "bytes", total as f64);
}

async fn tap_then_wait(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    let mut buf = [0u8; 2];
    let n = resp.read(&mut buf).await.unwrap();
    w.set_metadata_num("tap", "first", n as f64);
    oneshot().recv().await;
    // Everything that passed meanwhile is gone; reading resumes with the current chunk.
    let mut rest = Vec::new();
    resp.read_to_end(&mut rest).await.unwrap();
    w.set_metadata_str("tap", "rest", &String::from_utf8_lossy(&rest));
}

async fn rewrite(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
    let mut body = Vec::new();
    resp.read_to_end(&mut body).await.unwrap();
    let mut new = b"<<".to_vec();
    new.extend_from_slice(&body);
    new.extend_from_slice(b">>");
    resp.replace_body(&new).unwrap();
    resp.set_header("x-rewritten", "1").unwrap();
}

async fn early_replace(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    let r = resp.replace_body(b"x");
    w.set_metadata_str("t", "early", &format!("{r:?}"));
    let mut body = Vec::new();
    resp.read_to_end(&mut body).await.unwrap();
    let trailer = resp
        .trailer("grpc-status")
        .map(|v| String::from_utf8_lossy(v).into_owned());
    w.set_metadata_str("t", "trailer", &trailer.unwrap_or_default());
    w.set_metadata_num("t", "len", body.len() as f64);
}

async fn resp_boom(_: (), _resp: Response<'_>, _w: ResponseWriter<'_>) {
    panic!("response boom");
}

async fn deny(_req: Request<'_>, w: ResponseWriter<'_>) {
    w.send(403, b"no");
}

async fn never_called(_: (), _resp: Response<'_>, w: ResponseWriter<'_>) {
    w.set_metadata_bool("t", "ran", true);
}

async fn streamer(_req: Request<'_>, w: ResponseWriter<'_>) {
    let mut out = w
        .stream(200, &[("content-type", b"text/event-stream")])
        .unwrap();
    for chunk in [&b"data: 1\n\n"[..], b"data: 2\n\n", b"data: 3\n\n"] {
        if out.send(chunk).await.is_err() {
            return;
        }
    }
    let _ = out.finish_with_trailers(&[("x-done", b"1")]);
}

async fn outer(mut resp: Response<'_>, mut w: ResponseWriter<'_>, next: ResponseNext<'_>) {
    ORDER.with(|o| o.borrow_mut().push("outer-in"));
    next.run(&mut resp, &mut w).await;
    ORDER.with(|o| o.borrow_mut().push("outer-out"));
    resp.set_header("x-outer", "1").unwrap();
}

async fn inner(v: String, mut resp: Response<'_>, _w: ResponseWriter<'_>) {
    ORDER.with(|o| o.borrow_mut().push("inner"));
    resp.set_header("x-inner", v).unwrap();
}

struct Counted {
    responses: Counter,
}

fn counted_config(cfg: &mut ConfigHandle<'_>) -> Result<Counted, ConfigError> {
    Ok(Counted {
        responses: cfg.counter("responses_total", &["code"])?,
    })
}

async fn counted_req(_s: &Counted, _req: Request<'_>, _w: ResponseWriter<'_>) -> u32 {
    7
}

async fn counted_resp(s: &Counted, seven: u32, resp: Response<'_>, w: ResponseWriter<'_>) {
    let code = resp.status().unwrap_or(0).to_string();
    w.counter_add(s.responses, &[&code], u64::from(seven))
        .unwrap();
}

async fn counted_only(s: &Counted, _: (), resp: Response<'_>, w: ResponseWriter<'_>) {
    let code = resp.status().unwrap_or(0).to_string();
    w.counter_add(s.responses, &[&code], 1).unwrap();
}

fn register(r: &mut Registry) {
    // Response handlers only (`on_response`): no request handler to start or poll.
    r.filter("only_rewrite")
        .on_response(ResponseMode::Buffer, rewrite);
    r.filter("only_tap").on_response(ResponseMode::Observe, tap);
    r.filter("only_later")
        .on_response(ResponseMode::Passthrough, stamp_later);
    r.filter("only_boom")
        .on_response(ResponseMode::Passthrough, resp_boom);
    r.filter("only_counted")
        .state(counted_config)
        .on_response(ResponseMode::Passthrough, counted_only);
    r.filter("stamp")
        .respond(ResponseMode::Passthrough, method_of, stamp);
    r.filter("stamp_later")
        .respond(ResponseMode::Passthrough, pass, stamp_later);
    r.filter("tap").respond(ResponseMode::Observe, pass, tap);
    r.filter("tap_then_wait")
        .respond(ResponseMode::Observe, pass, tap_then_wait);
    r.filter("rewrite")
        .respond(ResponseMode::Buffer, pass, rewrite);
    r.filter("early_replace")
        .respond(ResponseMode::Buffer, pass, early_replace);
    r.filter("boom_passthrough")
        .respond(ResponseMode::Passthrough, pass, resp_boom);
    r.filter("boom_observe")
        .respond(ResponseMode::Observe, pass, resp_boom);
    r.filter("deny")
        .respond(ResponseMode::Passthrough, deny, never_called);
    r.register("streamer", streamer);
    r.filter("chain").respond(
        ResponseMode::Passthrough,
        method_of,
        response_chain(outer, inner),
    );
    r.filter("counted").state(counted_config).respond(
        ResponseMode::Passthrough,
        counted_req,
        counted_resp,
    );
    r.filter("counted_factory").state(counted_config).respond(
        ResponseMode::Passthrough,
        counted_req,
        counted_resp,
    );
}

fn filter(name: &str) -> TestFilter {
    TestFilter::new(register, name, b"").unwrap()
}

const OK: &[(&str, &str)] = &[(":status", "200"), ("content-length", "6")];

#[test]
fn passthrough_sets_headers_inline_with_the_request_value() {
    let f = filter("stamp");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    assert_eq!(s.response_headers(OK, false), HeadersStatus::Continue);
    assert_eq!(s.response_header("x-stamp").as_deref(), Some("GET 200"));
    assert_eq!(
        s.metadata("resp", "stamped"),
        Some(MetaValue::Str("yes".into()))
    );
    assert_eq!(s.response_body(b"abcdef", true), BodyStatus::Continue);
    assert_eq!(s.forwarded_response_body(), b"abcdef");
    assert_eq!(s.schedulers_created(), 0);
}

#[test]
fn passthrough_holds_headers_and_body_until_the_handler_is_done() {
    fresh();
    let f = filter("stamp_later");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    assert_eq!(s.response_headers(OK, false), HeadersStatus::StopIteration);
    assert_eq!(
        s.response_body(b"abc", false),
        BodyStatus::StopIterationAndWatermark
    );
    assert_eq!(
        s.response_body(b"def", true),
        BodyStatus::StopIterationAndWatermark
    );
    assert!(
        s.forwarded_response_body().is_empty(),
        "nothing forwarded before the handler is done"
    );
    oneshot().send(3);
    assert_eq!(s.run_scheduled(), 1);
    assert_eq!(s.response_header("x-later").as_deref(), Some("3"));
    assert_eq!(s.continue_encoding_calls(), 1);
    assert_eq!(s.forwarded_response_body(), b"abcdef");
}

#[test]
fn observe_taps_chunks_as_they_pass_and_refuses_header_changes() {
    let f = filter("tap");
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(s.response_headers(OK, false), HeadersStatus::Continue);
    assert_eq!(
        s.metadata("tap", "set_header"),
        Some(MetaValue::Str(format!(
            "{:?}",
            Err::<(), _>(ResponseError::HeadersSent)
        )))
    );
    assert!(
        f.logs()
            .iter()
            .any(|(l, m)| *l == jisr::Level::Debug && m.contains("headers already sent"))
    );
    assert_eq!(s.response_body(b"abcd", false), BodyStatus::Continue);
    assert_eq!(s.response_body(b"efghij", false), BodyStatus::Continue);
    assert_eq!(s.response_body(b"", true), BodyStatus::Continue);
    assert_eq!(s.metadata("tap", "bytes"), Some(MetaValue::Num(10.0)));
    assert_eq!(s.forwarded_response_body(), b"abcdefghij");
}

#[test]
fn observe_handler_that_stops_reading_never_stalls_the_stream() {
    fresh();
    let f = filter("tap_then_wait");
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(s.response_headers(OK, false), HeadersStatus::Continue);
    assert_eq!(s.response_body(b"1234", false), BodyStatus::Continue);
    assert_eq!(s.metadata("tap", "first"), Some(MetaValue::Num(2.0)));
    assert_eq!(s.response_body(b"5678", false), BodyStatus::Continue);
    oneshot().send(1);
    s.run_scheduled();
    assert_eq!(s.response_body(b"9", true), BodyStatus::Continue);
    assert_eq!(s.metadata("tap", "rest"), Some(MetaValue::Str("9".into())));
    assert_eq!(s.forwarded_response_body(), b"123456789");
    assert_eq!(
        s.continue_encoding_calls(),
        0,
        "Observe never stops the response"
    );
}

#[test]
fn buffer_holds_everything_and_replaces_the_body_with_right_content_length() {
    let f = filter("rewrite");
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(s.response_headers(OK, false), HeadersStatus::StopIteration);
    assert_eq!(
        s.response_body(b"abc", false),
        BodyStatus::StopIterationAndBuffer
    );
    assert_eq!(s.response_body(b"def", true), BodyStatus::Continue);
    assert_eq!(s.forwarded_response_body(), b"<<abcdef>>");
    assert_eq!(s.response_header("content-length").as_deref(), Some("10"));
    assert_eq!(s.response_header("x-rewritten").as_deref(), Some("1"));
}

#[test]
fn buffer_without_content_length_stays_chunked() {
    let f = filter("rewrite");
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(
        s.response_headers(&[(":status", "200")], false),
        HeadersStatus::StopIteration
    );
    assert_eq!(s.response_body(b"x", true), BodyStatus::Continue);
    assert_eq!(s.forwarded_response_body(), b"<<x>>");
    assert_eq!(s.response_header("content-length"), None);
}

#[test]
fn buffer_with_trailers_completes_at_trailers_and_keeps_them() {
    let f = filter("early_replace");
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(
        s.response_headers(&[(":status", "200")], false),
        HeadersStatus::StopIteration
    );
    assert_eq!(
        s.metadata("t", "early"),
        Some(MetaValue::Str(format!(
            "{:?}",
            Err::<(), _>(ResponseError::BodyIncomplete)
        )))
    );
    assert_eq!(
        s.response_body(b"grpc", false),
        BodyStatus::StopIterationAndBuffer
    );
    assert_eq!(
        s.response_body(b"-frames", false),
        BodyStatus::StopIterationAndBuffer
    );
    assert_eq!(
        s.response_trailers(&[("grpc-status", "0")]),
        TrailersStatus::Continue
    );
    assert_eq!(s.metadata("t", "len"), Some(MetaValue::Num(11.0)));
    assert_eq!(s.metadata("t", "trailer"), Some(MetaValue::Str("0".into())));
    assert_eq!(s.forwarded_response_body(), b"grpc-frames");
}

/// With a request handler (`respond`) or without one (`on_response`).
#[test]
fn response_panic_before_headers_left_is_a_500() {
    for name in ["boom_passthrough", "only_boom"] {
        let f = filter(name);
        for _ in 0..2 {
            let mut s = f.stream();
            s.request_headers(GET, true);
            assert_eq!(s.response_headers(OK, false), HeadersStatus::StopIteration);
            let reply = s.local_reply().unwrap();
            assert_eq!(
                (reply.status, reply.details.as_str()),
                (500, jisr::stats::PANIC_DETAILS)
            );
        }
        let line = format!("filter '{name}' panicked");
        assert!(
            f.logs()
                .iter()
                .any(|(l, m)| *l == jisr::Level::Error && m.contains(&line))
        );
    }
}

#[test]
fn response_panic_after_headers_left_resets_the_stream() {
    let f = filter("boom_observe");
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(s.response_headers(OK, false), HeadersStatus::StopIteration);
    assert!(s.local_reply().is_none());
    assert_eq!(
        s.reset_details().as_deref(),
        Some(jisr::stats::PANIC_DETAILS)
    );
}

#[test]
fn own_local_reply_skips_the_response_handler() {
    let f = filter("deny");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    assert_eq!(
        s.response_headers(&[(":status", "403")], false),
        HeadersStatus::Continue
    );
    assert_eq!(s.response_body(b"no", true), BodyStatus::Continue);
    assert_eq!(s.metadata("t", "ran"), None);
}

#[test]
fn upstream_reset_mid_body_is_seen_by_the_reader() {
    let f = filter("tap");
    let mut s = f.stream();
    s.request_headers(GET, true);
    s.response_headers(OK, false);
    assert_eq!(s.response_body(b"abc", false), BodyStatus::Continue);
    s.complete();
    assert_eq!(
        s.metadata("tap", "error"),
        Some(MetaValue::Str(BodyError::Aborted.to_string()))
    );
}

#[test]
fn disconnect_while_response_handler_waits_drops_it() {
    fresh();
    let f = filter("stamp_later");
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(s.response_headers(OK, false), HeadersStatus::StopIteration);
    let waker = oneshot().waker().unwrap();
    s.disconnect();
    waker.wake();
    assert_eq!(f.idle_slots(), 1);
}

#[test]
fn streaming_reply_honours_backpressure() {
    let f = filter("streamer");
    let mut s = f.stream();
    s.watermark_above();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let r = s.streamed_reply().unwrap();
    assert_eq!(r.headers[0], (":status".to_string(), b"200".to_vec()));
    assert!(r.data.is_empty(), "nothing sent above the high watermark");
    s.watermark_below();
    assert!(
        s.streamed_reply().unwrap().data.is_empty(),
        "resumes from the scheduler, not inside the watermark callback"
    );
    assert_eq!(s.run_scheduled(), 1);
    let r = s.streamed_reply().unwrap();
    assert_eq!(
        r.data,
        vec![
            b"data: 1\n\n".to_vec(),
            b"data: 2\n\n".to_vec(),
            b"data: 3\n\n".to_vec()
        ]
    );
    assert_eq!(
        r.trailers,
        Some(vec![("x-done".to_string(), b"1".to_vec())])
    );
    assert!(r.ended);
    assert_eq!(
        s.continue_decoding_calls(),
        0,
        "a streamed reply never goes upstream"
    );
    // Envoy runs our encoder hooks for our own reply: they let it through.
    assert_eq!(
        s.response_headers(&[(":status", "200")], false),
        HeadersStatus::Continue
    );
}

#[test]
fn response_middleware_runs_outermost_first() {
    ORDER.with(|o| o.borrow_mut().clear());
    let f = filter("chain");
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(s.response_headers(OK, true), HeadersStatus::Continue);
    assert_eq!(
        ORDER.with(|o| o.borrow().clone()),
        ["outer-in", "inner", "outer-out"]
    );
    assert_eq!(s.response_header("x-inner").as_deref(), Some("GET"));
    assert_eq!(s.response_header("x-outer").as_deref(), Some("1"));
}

#[test]
fn state_forms_count_in_the_response_phase() {
    for name in ["counted", "counted_factory"] {
        let f = filter(name);
        for _ in 0..2 {
            let mut s = f.stream();
            s.request_headers(GET, true);
            assert_eq!(
                s.response_headers(&[(":status", "204")], true),
                HeadersStatus::Continue
            );
        }
        assert_eq!(f.metric("responses_total.204"), Some(14), "{name}");
    }
}

thread_local! {
    static CHUNK_ERRORS: RefCell<Vec<Result<(), ResponseError>>> = const { RefCell::new(Vec::new()) };
}

/// Observe: a chunk is replaced only once read whole, in its own hook; a partly read chunk,
/// or none passing, is `NoChunk`, and the bytes then pass unchanged.
async fn drop_marked(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
    let mut buf = [0u8; 3];
    let record = |r| CHUNK_ERRORS.with(|e| e.borrow_mut().push(r));
    record(resp.replace_chunk(b"early")); // no chunk yet
    let mut seen = Vec::new();
    while let Ok(n @ 1..) = resp.read(&mut buf).await {
        seen.extend_from_slice(&buf[..n]);
        if resp.chunk_unread() > 0 {
            if seen == b"par" {
                record(resp.replace_chunk(b"")); // part of "partial" only
            }
            continue;
        }
        if seen.starts_with(b"drop") {
            record(resp.replace_chunk(b""));
        } else if seen == b"swap" {
            record(resp.replace_chunk(b"SWAPPED!"));
        }
        seen.clear();
    }
}

#[test]
fn observe_replaces_whole_chunks_only() {
    fn register(r: &mut Registry) {
        r.filter("drop_marked")
            .respond(ResponseMode::Observe, pass, drop_marked);
    }
    CHUNK_ERRORS.with(|e| e.borrow_mut().clear());
    let f = TestFilter::new(register, "drop_marked", b"").unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    s.response_headers(&[(":status", "200")], false);
    for chunk in [&b"keep,"[..], b"drop me,", b"partial,", b"swap"] {
        assert_eq!(s.response_body(chunk, false), BodyStatus::Continue);
    }
    assert_eq!(s.response_body(b"", true), BodyStatus::Continue);
    assert_eq!(s.forwarded_response_body(), b"keep,partial,SWAPPED!");
    let errors = CHUNK_ERRORS.with(|e| e.borrow().clone());
    assert_eq!(
        errors,
        [
            Err(ResponseError::NoChunk),
            Ok(()),
            Err(ResponseError::NoChunk),
            Ok(()),
        ]
    );
}

// ---- The request handler's value is dropped at stream end even when no response handler runs.

thread_local! {
    static DROPPED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

struct Ticket;

impl Drop for Ticket {
    fn drop(&mut self) {
        DROPPED.with(|d| d.set(d.get() + 1));
    }
}

async fn hand_ticket(_req: Request<'_>, _w: ResponseWriter<'_>) -> Ticket {
    Ticket
}

async fn use_ticket(t: Ticket, _resp: Response<'_>, _w: ResponseWriter<'_>) {
    drop(t);
}

#[test]
fn the_request_handlers_value_is_dropped_at_stream_end_without_a_response() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.filter("ticket")
                .respond(ResponseMode::Passthrough, hand_ticket, use_ticket);
        },
        "ticket",
        b"",
    )
    .unwrap();
    DROPPED.with(|d| d.set(0));
    // The client leaves before any response: no response handler runs, the value still drops.
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(
        DROPPED.with(|d| d.get()),
        0,
        "held for the response handler"
    );
    s.disconnect();
    assert_eq!(DROPPED.with(|d| d.get()), 1);
    // With a response, the response handler gets it (and drops it).
    let mut s = f.stream();
    s.request_headers(GET, true);
    s.response_headers(&[(":status", "200")], true);
    assert_eq!(DROPPED.with(|d| d.get()), 2);
    drop(s);
    assert_eq!(DROPPED.with(|d| d.get()), 2);
}

// ---- Waiting for the end of an Observe response without reading it.

async fn until_end(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    let r = resp.finished().await;
    let path = resp
        .attr_str(jisr::Attr::PATH)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    w.set_metadata_str("end", "result", &format!("{r:?} {path}"));
}

fn end_filter(mode: ResponseMode) -> TestFilter {
    let register: fn(&mut Registry) = match mode {
        ResponseMode::Observe => |r| {
            r.filter("end")
                .respond(ResponseMode::Observe, pass, until_end);
        },
        _ => |r| {
            r.filter("end")
                .respond(ResponseMode::Passthrough, pass, until_end);
        },
    };
    TestFilter::new(register, "end", b"").unwrap()
}

#[test]
fn finished_waits_for_the_end_of_an_observed_response_without_holding_it() {
    let f = end_filter(ResponseMode::Observe);
    let result = |s: &jisr::testing::TestStream<'_>| s.metadata("end", "result");
    // Chunks flow at once (Continue), the handler resumes only at the end.
    let mut s = f.stream();
    s.request_headers(&[(":path", "/dl")], true);
    assert_eq!(
        s.response_headers(&[(":status", "200")], false),
        HeadersStatus::Continue
    );
    assert_eq!(s.response_body(b"a", false), BodyStatus::Continue);
    assert_eq!(s.response_body(b"b", false), BodyStatus::Continue);
    assert_eq!(result(&s), None);
    assert_eq!(
        s.response_trailers(&[("x-sum", "2")]),
        TrailersStatus::Continue
    );
    assert_eq!(result(&s), Some(MetaValue::Str("Ok(()) /dl".into())));
    assert_eq!(s.forwarded_response_body(), b"ab");
    // A headers-only response ends at once.
    let mut s = f.stream();
    s.request_headers(&[(":path", "/h")], true);
    s.response_headers(&[(":status", "204")], true);
    assert_eq!(result(&s), Some(MetaValue::Str("Ok(()) /h".into())));
    // The client leaves mid-body: one last poll says so.
    let mut s = f.stream();
    s.request_headers(&[(":path", "/cut")], true);
    s.response_headers(&[(":status", "200")], false);
    s.response_body(b"a", false);
    s.complete();
    assert_eq!(
        result(&s),
        Some(MetaValue::Str("Err(Detached) /cut".into()))
    );
    // In Passthrough the response waits for the handler: no waiting for its end there.
    let f = end_filter(ResponseMode::Passthrough);
    let mut s = f.stream();
    s.request_headers(&[(":path", "/p")], true);
    assert_eq!(
        s.response_headers(&[(":status", "200")], false),
        HeadersStatus::Continue
    );
    assert_eq!(
        result(&s),
        Some(MetaValue::Str("Err(NotObserved) /p".into()))
    );
}

/// `on_response`: the request passes untouched (headers, every body chunk, trailers: nothing
/// stops or buffers it, nothing is polled), and the response handler runs as with `respond`.
#[test]
fn a_response_only_filter_lets_the_request_through_and_handles_the_response() {
    let f = filter("only_rewrite");
    for _ in 0..2 {
        let mut s = f.stream();
        let post = &[(":method", "POST"), (":path", "/up")];
        assert_eq!(s.request_headers(post, false), HeadersStatus::Continue);
        assert_eq!(s.request_body(b"abc", false), BodyStatus::Continue);
        assert_eq!(s.request_body(b"def", false), BodyStatus::Continue);
        assert_eq!(
            s.request_trailers(&[("x-t", "1")]),
            TrailersStatus::Continue
        );
        assert_eq!(s.forwarded_request_body(), b"abcdef");
        assert_eq!(s.continue_decoding_calls(), 0);
        assert_eq!(s.response_headers(OK, false), HeadersStatus::StopIteration);
        assert_eq!(
            s.response_body(b"xyz", false),
            BodyStatus::StopIterationAndBuffer
        );
        assert_eq!(s.response_body(b"!", true), BodyStatus::Continue);
        assert_eq!(s.forwarded_response_body(), b"<<xyz!>>");
        assert_eq!(s.response_header("content-length").as_deref(), Some("8"));
    }

    let f = filter("only_tap");
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    assert_eq!(s.response_headers(OK, false), HeadersStatus::Continue);
    assert_eq!(s.response_body(b"abcd", false), BodyStatus::Continue);
    assert_eq!(s.response_body(b"ef", true), BodyStatus::Continue);
    assert_eq!(s.metadata("tap", "bytes"), Some(MetaValue::Num(6.0)));
}

/// A response that arrives before the request ended (an upstream answering early) starts the
/// response handler at once: there is no request handler to wait for. A handler that waits is
/// woken through the scheduler as with `respond`.
#[test]
fn a_response_only_filter_handles_an_early_response_and_waits_like_any_handler() {
    fresh();
    let f = filter("only_later");
    let mut s = f.stream();
    let post = &[(":method", "POST"), (":path", "/up")];
    assert_eq!(s.request_headers(post, false), HeadersStatus::Continue);
    assert_eq!(s.response_headers(OK, false), HeadersStatus::StopIteration);
    assert_eq!(s.request_body(b"late", true), BodyStatus::Continue);
    oneshot().send(5);
    assert_eq!(s.run_scheduled(), 1);
    assert_eq!(s.response_header("x-later").as_deref(), Some("5"));
    assert_eq!(s.continue_encoding_calls(), 1);
}

/// A response-only filter takes state like any other; a stream that ends before any response
/// never starts its handler.
#[test]
fn a_response_only_filter_takes_state() {
    let f = filter("only_counted");
    for _ in 0..3 {
        let mut s = f.stream();
        s.request_headers(GET, true);
        assert_eq!(
            s.response_headers(&[(":status", "204")], true),
            HeadersStatus::Continue
        );
    }
    // A stream that ends before any response never starts the handler.
    let mut s = f.stream();
    s.request_headers(GET, true);
    drop(s);
    assert_eq!(f.metric("responses_total.204"), Some(3));
}

// ---- `chunk_unread` inside a hook before its first read, and after a chunk passed unread.

thread_local! {
    static UNREAD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Records `chunk_unread` before the first read of a chunk, after one byte, the rest's length
/// and `chunk_unread` after it; leaves every third chunk unread.
async fn measure_first(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
    let record = |n| UNREAD.with(|u| u.borrow_mut().push(n));
    let mut one = [0u8; 1];
    let mut rest = [0u8; 64];
    let mut chunk = 0;
    loop {
        chunk += 1;
        if chunk % 3 == 0 {
            // Not read: the chunk passes while the handler waits.
            oneshot().recv().await;
            continue;
        }
        record(resp.chunk_unread());
        match resp.read(&mut one).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        record(resp.chunk_unread());
        let n = resp.read(&mut rest).await.unwrap_or(0);
        record(n);
        record(resp.chunk_unread());
    }
}

#[test]
fn observe_chunk_unread_counts_from_the_hooks_start() {
    fn register(r: &mut Registry) {
        r.filter("measure_first")
            .respond(ResponseMode::Observe, pass, measure_first);
    }
    fresh();
    UNREAD.with(|u| u.borrow_mut().clear());
    let f = TestFilter::new(register, "measure_first", b"").unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    s.response_headers(&[(":status", "200")], false);
    assert_eq!(s.response_body(b"abcd", false), BodyStatus::Continue);
    assert_eq!(s.response_body(b"efghijk", false), BodyStatus::Continue);
    // The third chunk passes unread while the handler waits.
    assert_eq!(s.response_body(b"skipped", false), BodyStatus::Continue);
    // Woken before the next chunk's hook, which polls it: it asks for `chunk_unread` inside
    // the hook before any read there.
    oneshot().send(1);
    assert_eq!(s.response_body(b"xyz", false), BodyStatus::Continue);
    assert_eq!(s.response_body(b"", true), BodyStatus::Continue);
    assert_eq!(
        UNREAD.with(|u| u.borrow().clone()),
        [0, 3, 3, 0, 0, 6, 6, 0, 3, 2, 2, 0, 0],
        "chunk_unread before a chunk's first read, after one byte, the rest's length, after \
         the rest"
    );
    assert_eq!(s.forwarded_response_body(), b"abcdefghijkskippedxyz");
}
