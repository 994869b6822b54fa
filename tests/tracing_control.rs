//! Tracing, socket options, GOAWAY, stream recreation and typed filter state, through the
//! simulated stream.

mod common;

use common::{Forever, GET, YieldOnce};
use jisr::control::{SocketOption, SocketSide, SocketState};
use jisr::raw::HeadersStatus;
use jisr::testing::{MetaValue, TestFilter};
use jisr::{Registry, Request, ResponseWriter};

async fn traced(req: Request<'_>, w: ResponseWriter<'_>) {
    let Some(span) = w.span() else {
        w.send(200, b"untraced\n");
        return;
    };
    span.set_tag("tenant", req.header_str("x-tenant").unwrap_or("none"));
    span.set_tags(&[("a", "1"), ("b", "2")]);
    span.log("checked");
    span.set_baggage("user", "alice");
    span.set_sampled(true);
    span.disable_local_decision().unwrap();
    let trace = span.trace_id().unwrap_or("-");
    {
        let child = span.child("lookup").expect("child");
        child.set_tag("step", "1");
        // The child survives an await and reads the baggage of its parent.
        YieldOnce(false).await;
        let user = child.baggage("user").unwrap_or("-");
        child.set_tag("user", user);
        assert!(child.is_child() && !span.is_child());
    }
    // A leaked child is finished when the stream completes.
    let leaked = span.child("leaked").expect("child");
    leaked.set_operation("leaked-renamed");
    core::mem::forget(leaked);
    w.send(200, format!("trace={trace}\n").as_bytes());
}

fn register(r: &mut Registry) {
    r.register("traced", traced);
    r.register("sockets", sockets);
    r.register("goaway", goaway);
    r.register("recreate", recreate);
    r.register("typed_state", typed_state);
    r.register("child_then_hang", child_then_hang);
    r.register("values", values);
}

async fn values(req: Request<'_>, w: ResponseWriter<'_>) {
    let all: Vec<_> = req
        .header_values("x-v")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let many = req.header_values("x-many").count();
    w.set_metadata_strs(
        "jisr.batch",
        &[("first", &all[0]), ("n", "3"), ("n", "three")],
    );
    w.send(200, format!("{all:?} {many}").as_bytes());
}

#[test]
fn header_values_come_in_one_batch() {
    let f = TestFilter::new(register, "values", b"").unwrap();
    let mut s = f.stream();
    let mut headers = GET.to_vec();
    headers.extend([("x-v", "a"), ("x-v", "b"), ("x-v", "c")]);
    let many: Vec<_> = (0..12).map(|_| ("x-many", "m")).collect();
    headers.extend(many);
    s.request_headers(&headers, true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        r#"["a", "b", "c"] 12"#
    );
    // `x-v` came in one batch; `x-many` has more values than a batch holds and was read one
    // value per call (the batch call refused it before passing anything).
    assert_eq!(s.header_batches(), 1);
    assert_eq!(s.metadata_batches(), 1);
    assert_eq!(
        s.metadata("jisr.batch", "first"),
        Some(MetaValue::Str("a".into()))
    );
    assert_eq!(
        s.metadata("jisr.batch", "n"),
        Some(MetaValue::Str("three".into()))
    );
}

#[test]
fn span_tags_logs_baggage_and_child_spans_reach_the_tracer() {
    let f = TestFilter::new(register, "traced", b"").unwrap();
    let mut s = f.stream();
    s.enable_tracing("ingress");
    let mut headers = GET.to_vec();
    headers.push(("x-tenant", "acme"));
    assert_eq!(
        s.request_headers(&headers, true),
        HeadersStatus::StopIteration
    );
    s.run_scheduled();
    assert_eq!(s.local_reply().unwrap().body, b"trace=0000000000000abc\n");
    let spans = s.spans();
    assert_eq!(spans.len(), 3, "{spans:?}");
    let active = &spans[0];
    assert_eq!(
        active.tags,
        [("tenant", "acme"), ("a", "1"), ("b", "2")].map(|(k, v)| (k.into(), v.into()))
    );
    assert_eq!(active.logs, ["checked"]);
    assert_eq!(active.sampled, Some(true));
    assert!(active.local_decision_disabled && !active.finished);
    let lookup = &spans[1];
    assert_eq!(lookup.operation, "lookup");
    assert_eq!(lookup.parent, Some(0));
    assert_eq!(
        lookup.tags,
        [("step", "1"), ("user", "alice")].map(|(k, v)| (k.into(), v.into()))
    );
    assert!(lookup.finished, "dropped child is finished");
    assert_eq!(spans[2].operation, "leaked-renamed");
    assert!(!spans[2].finished, "still open until the stream completes");
    s.complete();
    assert!(s.spans()[2].finished, "leaked child finished at stream end");
}

#[test]
fn without_tracing_there_is_no_span() {
    let f = TestFilter::new(register, "traced", b"").unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(s.local_reply().unwrap().body, b"untraced\n");
    assert!(s.spans().is_empty());
}

async fn child_then_hang(_req: Request<'_>, w: ResponseWriter<'_>) {
    let span = w.span().unwrap();
    let _child = span.child("waits").unwrap();
    Forever.await;
}

/// A stream that completes under a waiting handler (a client disconnect) drops it while its child span is open: the child is finished
/// exactly once (a second finish would be a double free in Envoy; the simulated tracer's
/// reference count catches it under Miri and in debug builds).
#[test]
fn child_span_of_a_cancelled_handler_is_finished_once() {
    let f = TestFilter::new(register, "child_then_hang", b"").unwrap();
    let mut s = f.stream();
    s.enable_tracing("ingress");
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    assert!(!s.spans()[1].finished);
    s.complete();
    assert!(s.spans()[1].finished);
}

const KEEPALIVE: SocketOption = SocketOption {
    level: 1,
    name: 9,
    state: SocketState::Prebind,
    side: SocketSide::Downstream,
};

const CONGESTION: SocketOption = SocketOption {
    level: 6,
    name: 13,
    state: SocketState::Prebind,
    side: SocketSide::Upstream,
};

async fn sockets(_req: Request<'_>, w: ResponseWriter<'_>) {
    let before = w.socket_option_int(KEEPALIVE);
    assert!(w.set_socket_option_int(KEEPALIVE, 1));
    assert!(w.set_socket_option_bytes(CONGESTION, b"cubic"));
    let after = w.socket_option_int(KEEPALIVE);
    let cc = w.socket_option_bytes(CONGESTION).map(|b| b.to_vec());
    w.send(200, format!("{before:?} {after:?} {cc:?}").as_bytes());
}

#[test]
fn socket_options_set_and_read_back() {
    let f = TestFilter::new(register, "sockets", b"").unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        "None Some(1) Some([99, 117, 98, 105, 99])"
    );
    let set = s.socket_options_set();
    assert_eq!(set[0], (KEEPALIVE, Ok(1)));
    assert_eq!(set[1], (CONGESTION, Err(b"cubic".to_vec())));
}

async fn goaway(req: Request<'_>, w: ResponseWriter<'_>) {
    w.goaway_and_close(req.header("x-graceful").is_some());
    if req.header("x-reply").is_some() {
        w.send(503, b"draining\n");
    }
    // Effects after the call still happen before Envoy closes anything.
    w.set_metadata_str("jisr", "after", "yes");
}

#[test]
fn goaway_is_sent_after_the_poll_and_after_its_reply() {
    let f = TestFilter::new(register, "goaway", b"").unwrap();
    let mut s = f.stream();
    let mut headers = GET.to_vec();
    headers.push(("x-reply", "1"));
    headers.push(("x-graceful", "1"));
    assert_eq!(
        s.request_headers(&headers, true),
        HeadersStatus::StopIteration
    );
    assert_eq!(s.local_reply().unwrap().status, 503);
    assert_eq!(s.goaways(), [true]);
    assert!(s.metadata("jisr", "after").is_some());

    // Without a reply the request goes on; GOAWAY is still sent once.
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    assert_eq!(s.goaways(), [false]);
    assert!(s.local_reply().is_none());
}

async fn recreate(mut req: Request<'_>, w: ResponseWriter<'_>) {
    if req.header("x-recreated").is_some() {
        return;
    }
    let _ = req.set_header(":path", "/v2/items");
    let _ = req.set_header("x-recreated", "1");
    assert!(w.recreate_stream());
    // The stream is answered: a reply or a second recreation is refused.
    w.send(200, b"ignored");
    assert!(!w.recreate_stream());
}

#[test]
fn recreate_stream_restarts_with_the_changed_headers() {
    let f = TestFilter::new(register, "recreate", b"").unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    assert_eq!(s.recreated(), 1);
    assert!(s.local_reply().is_none());
    assert_eq!(s.request_header(":path").as_deref(), Some("/v2/items"));
}

#[test]
fn refused_recreation_fails_closed() {
    let f = TestFilter::new(register, "recreate", b"").unwrap();
    let mut s = f.stream();
    s.refuse_recreate();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let reply = s.local_reply().unwrap();
    assert_eq!(
        (reply.status, reply.details.as_str()),
        (500, "jisr_recreate_refused")
    );
    assert!(
        f.logs()
            .iter()
            .any(|(_, l)| l.contains("refused to recreate the stream")),
        "{:?}",
        f.logs()
    );
}

async fn typed_state(_req: Request<'_>, w: ResponseWriter<'_>) {
    let ok = w.set_filter_state_typed("envoy.network.upstream_server_name", b"api.internal");
    let no_factory = w.set_filter_state_typed("acme.unknown", b"x");
    w.set_filter_state("acme.bytes", b"raw");
    let back = w
        .filter_state_typed("envoy.network.upstream_server_name")
        .map(|b| b.to_vec());
    let bytes = w.filter_state_typed("acme.bytes").map(|b| b.to_vec());
    w.send(
        200,
        format!("{ok} {no_factory} {back:?} {bytes:?}").as_bytes(),
    );
}

#[test]
fn typed_filter_state_goes_through_envoy_factories() {
    let f = TestFilter::new(register, "typed_state", b"").unwrap();
    let mut s = f.stream();
    s.add_filter_state_factory("envoy.network.upstream_server_name");
    s.request_headers(GET, true);
    let body = String::from_utf8(s.local_reply().unwrap().body).unwrap();
    assert_eq!(
        body,
        format!(
            "true false {:?} {:?}",
            Some(b"api.internal".to_vec()),
            Some(b"raw".to_vec())
        )
    );
    assert_eq!(
        s.typed_filter_state("envoy.network.upstream_server_name"),
        Some(b"api.internal".to_vec())
    );
}
