//! Callouts as futures, through the simulated stream.

mod common;

use common::GET;
use jisr::testing::{MetaValue, TestFilter};
use jisr::{
    Registry, Request, Response, ResponseMode, ResponseWriter,
    callout::{CalloutError, CalloutRequest},
    join,
    raw::HeadersStatus,
};
use std::time::Duration;

async fn check(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let mut body = Vec::new();
    let r = w
        .callout(
            CalloutRequest::post("auth", "/check", "auth.local", b"payload")
                .header("x-api-key", b"k1")
                .timeout(Duration::from_secs(30)),
            &mut body,
        )
        .await;
    match r {
        Ok(resp) if resp.status == 200 => {
            let user = resp.headers.get("x-user").unwrap_or_default();
            let _ = req.set_header("x-user", user);
            let _ = req.set_header("x-auth-body", body);
        }
        Ok(resp) => w.send(403, format!("denied {}", resp.status).as_bytes()),
        Err(e) => w.send(503, e.to_string().as_bytes()),
    }
}

async fn parallel(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (ra, rb) = join(
        w.callout(CalloutRequest::get("a", "/a", "a"), &mut a),
        w.callout(CalloutRequest::get("b", "/b", "b"), &mut b),
    )
    .await;
    let _ = req.set_header(
        "x-a",
        format!("{} {}", ra.unwrap().status, String::from_utf8_lossy(&a)),
    );
    let _ = req.set_header(
        "x-b",
        format!("{} {}", rb.unwrap().status, String::from_utf8_lossy(&b)),
    );
}

async fn bad_headers(_req: Request<'_>, w: ResponseWriter<'_>) {
    let mut body = Vec::new();
    // An empty host is still a header; a missing one is what Envoy refuses. Simulate via raw
    // header names: CalloutRequest always sets all three, so use an unknown cluster here.
    let r = w
        .callout(CalloutRequest::get("nowhere", "/", "h"), &mut body)
        .await;
    w.set_metadata_str("t", "err", &format!("{:?}", r.err()));
}

async fn abandon(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let mut body = Vec::new();
    let call = w.callout(CalloutRequest::get("slow", "/", "h"), &mut body);
    // Give up on the callout after one poll: start it, then drop it.
    let mut call = Box::pin(call);
    let waker = std::task::Waker::noop();
    let _ = call
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker));
    drop(call);
    let _ = req.set_header("x-abandoned", "1");
}

async fn in_response(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    let mut body = Vec::new();
    let r = w
        .callout(CalloutRequest::get("audit", "/log", "audit"), &mut body)
        .await;
    let _ = resp.set_header(
        "x-audit",
        r.map(|r| r.status.to_string())
            .unwrap_or_else(|e| e.to_string()),
    );
}

async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}

use std::future::Future;

fn register(r: &mut Registry) {
    r.register("check", check);
    r.register("parallel", parallel);
    r.register("bad_headers", bad_headers);
    r.register("abandon", abandon);
    r.filter("in_response")
        .respond(ResponseMode::Passthrough, pass, in_response);
}

#[test]
fn callout_success_delivers_status_headers_and_body() {
    let f = TestFilter::new(register, "check", b"").unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let c = &s.callouts()[0];
    assert_eq!(c.cluster, "auth");
    assert_eq!(c.timeout_ms, 30_000);
    assert_eq!(c.body, b"payload");
    let names: Vec<&str> = c.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, [":method", ":path", "host", "x-api-key"]);
    let id = c.id;
    s.complete_callout(id, 200, &[("x-user", "alice")], b"a long enough body");
    assert_eq!(s.request_header("x-user").as_deref(), Some("alice"));
    assert_eq!(
        s.request_header("x-auth-body").as_deref(),
        Some("a long enough body")
    );
    assert_eq!(s.continue_decoding_calls(), 1);
}

#[test]
fn callout_errors_are_typed() {
    let f = TestFilter::new(register, "check", b"").unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    let id = s.callouts()[0].id;
    s.fail_callout(id, true);
    assert_eq!(
        s.local_reply().unwrap().body,
        CalloutError::Reset.to_string().as_bytes()
    );
    drop(s);

    let mut s = f.stream();
    s.request_headers(GET, true);
    let id = s.callouts()[0].id;
    s.fail_callout(id, false);
    assert_eq!(
        s.local_reply().unwrap().body,
        CalloutError::ResponseTooLarge.to_string().as_bytes()
    );
    drop(s);

    let f = TestFilter::new(register, "bad_headers", b"").unwrap();
    let mut s = f.stream();
    s.set_unknown_cluster("nowhere");
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    assert_eq!(
        s.metadata("t", "err"),
        Some(MetaValue::Str("Some(ClusterNotFound)".into()))
    );
    assert!(
        CalloutError::MissingRequiredHeaders
            .to_string()
            .contains(":method, :path and host")
    );
}

#[test]
fn parallel_callouts_complete_independently() {
    let f = TestFilter::new(register, "parallel", b"").unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let ids: Vec<u64> = s.callouts().iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 2, "both in flight at once");
    s.complete_callout(ids[1], 201, &[], b"bee");
    assert_eq!(s.continue_decoding_calls(), 0);
    s.complete_callout(ids[0], 200, &[], b"ay");
    assert_eq!(s.request_header("x-a").as_deref(), Some("200 ay"));
    assert_eq!(s.request_header("x-b").as_deref(), Some("201 bee"));
    assert_eq!(s.continue_decoding_calls(), 1);
}

#[test]
fn dropped_callout_ignores_its_late_completion() {
    let f = TestFilter::new(register, "abandon", b"").unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    let id = s.callouts()[0].id;
    s.complete_callout(id, 200, &[], b"late");
    assert_eq!(s.request_header("x-abandoned").as_deref(), Some("1"));
}

#[test]
fn callout_from_a_response_handler() {
    let f = TestFilter::new(register, "in_response", b"").unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(
        s.response_headers(&[(":status", "200")], true),
        HeadersStatus::StopIteration
    );
    let id = s.callouts()[0].id;
    s.complete_callout(id, 204, &[], b"");
    assert_eq!(s.response_header("x-audit").as_deref(), Some("204"));
    assert_eq!(s.continue_encoding_calls(), 1);
}

#[test]
fn disconnect_with_callout_in_flight_is_safe() {
    let f = TestFilter::new(register, "check", b"").unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    s.disconnect();
    // The slot is reused; a stale id must not reach the new stream.
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(s.callouts().len(), 1);
}

async fn streamed(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let mut s = w
        .stream_callout(CalloutRequest::post("llm", "/v1", "llm", b"{\"a\":"), false)
        .unwrap();
    s.send(b"1}", true).unwrap();
    let head = s.head().await.unwrap();
    let mut body = Vec::new();
    let mut reads = 0;
    while s.read(&mut body).await.unwrap() > 0 {
        reads += 1;
    }
    let t = s.trailers();
    let _ = req.set_header(
        "x-stream",
        format!(
            "{} {} {} reads={reads} trailer={}",
            head.status,
            String::from_utf8_lossy(head.headers.get("content-type").unwrap_or_default()),
            // A header value cannot hold line breaks: show them as `|`.
            String::from_utf8_lossy(&body).replace('\n', "|"),
            String::from_utf8_lossy(t.get("x-tokens").unwrap_or_default())
        ),
    );
}

async fn streamed_reset(_req: Request<'_>, w: ResponseWriter<'_>) {
    let mut s = w
        .stream_callout(CalloutRequest::get("llm", "/", "llm"), true)
        .unwrap();
    let r = s.head().await;
    w.set_metadata_str("t", "head", &format!("{:?}", r.err()));
}

fn register_streams(r: &mut Registry) {
    r.register("streamed", streamed);
    r.register("streamed_reset", streamed_reset);
    r.register("abandon_stream", abandon_stream);
}

#[test]
fn streaming_callout_sends_chunks_and_reads_events_as_they_come() {
    let f = TestFilter::new(register_streams, "streamed", b"").unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let id = s.callouts()[0].id;
    assert_eq!(
        s.stream_callout_log(),
        vec![
            (id, "start body=5 end=false".to_string()),
            (id, "data 1} end=true".to_string())
        ]
    );
    s.stream_callout_headers(id, 200, &[("content-type", "text/event-stream")], false);
    s.stream_callout_data(id, b"data: a\n\n", false);
    s.stream_callout_data(id, b"data: b\n\n", false);
    assert_eq!(s.continue_decoding_calls(), 0);
    s.stream_callout_trailers(id, &[("x-tokens", "42")]);
    s.stream_callout_complete(id);
    assert_eq!(
        s.request_header("x-stream").as_deref(),
        Some("200 text/event-stream data: a||data: b|| reads=2 trailer=42")
    );
    assert_eq!(s.continue_decoding_calls(), 1);
}

#[test]
fn streaming_callout_reset_is_an_error_and_drop_resets() {
    let f = TestFilter::new(register_streams, "streamed_reset", b"").unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    let id = s.callouts()[0].id;
    s.stream_callout_reset(id, 0);
    assert_eq!(
        s.metadata("t", "head"),
        Some(MetaValue::Str("Some(Reset)".into()))
    );
    drop(s);

    let f = TestFilter::new(register_streams, "abandon_stream", b"").unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    let id = s.callouts()[0].id;
    assert_eq!(
        s.stream_callout_log().last(),
        Some(&(id, "reset".to_string()))
    );
    // Events for the abandoned stream are ignored.
    s.stream_callout_data(id, b"late", true);
}

async fn abandon_stream(_req: Request<'_>, w: ResponseWriter<'_>) {
    let _s = w
        .stream_callout(CalloutRequest::get("llm", "/", "llm"), true)
        .unwrap();
}

// ---- An outage of the service is an error, never an answer.

/// The pattern the docs show: a 200 lets the request on, any other answer denies, an error
/// answers 503.
async fn authz(_req: Request<'_>, w: ResponseWriter<'_>) {
    let mut body = Vec::new();
    match w
        .callout(CalloutRequest::get("auth", "/check", "auth"), &mut body)
        .await
    {
        Ok(r) if r.status == 200 => {}
        Ok(_) => w.send(403, b"denied"),
        Err(e) => w.send(503, e.to_string().as_bytes()),
    }
}

async fn authz_stream(_req: Request<'_>, w: ResponseWriter<'_>) {
    let Ok(mut s) = w.stream_callout(CalloutRequest::get("auth", "/check", "auth"), true) else {
        return;
    };
    match s.head().await {
        Ok(h) if h.status == 200 => {}
        Ok(_) => w.send(403, b"denied"),
        Err(e) => w.send(503, e.to_string().as_bytes()),
    }
}

#[test]
fn envoy_answering_for_an_unreachable_service_is_unavailable_not_a_denial() {
    let cases: [(&[u8], &str); 5] = [
        (
            b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused",
            "callout got no answer: connection failure",
        ),
        (
            b"upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            "callout got no answer: reset before headers",
        ),
        (
            b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
            "callout got no answer: overflow",
        ),
        (b"no healthy upstream", "callout got no answer: no healthy host"),
        // The service's own 503 is its answer: denied.
        (b"maintenance", "denied"),
    ];
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("authz", authz);
        },
        "authz",
        b"",
    )
    .unwrap();
    let g = TestFilter::new(
        |r: &mut Registry| {
            r.register("authz", authz_stream);
        },
        "authz",
        b"",
    )
    .unwrap();
    for (body, want) in cases {
        let mut s = f.stream();
        s.request_headers(GET, true);
        let id = s.callouts()[0].id;
        s.complete_callout(id, 503, &[("content-type", "text/plain")], body);
        let reply = s.local_reply().unwrap();
        assert_eq!(String::from_utf8_lossy(&reply.body), want);
        assert_eq!(reply.status, if want == "denied" { 403 } else { 503 });

        let mut s = g.stream();
        s.request_headers(GET, true);
        let id = s.callouts()[0].id;
        s.stream_callout_headers(id, 503, &[("content-type", "text/plain")], false);
        s.stream_callout_data(id, body, true);
        let reply = s.local_reply().unwrap();
        assert_eq!(String::from_utf8_lossy(&reply.body), want, "streaming");
    }
}
