//! The testing API speaks the handlers' types: statuses are `u16`, headers are looked up by
//! name as `&[u8]` or `&str`, and `{:?}` shows recorded callouts and replies readably.

use jisr::callout::CalloutRequest;
use jisr::testing::{LocalReply, SimCallout, TestFilter};
use jisr::{Registry, Request, ResponseWriter};

const DENIED: u16 = 451;

async fn ask(req: Request<'_>, w: ResponseWriter<'_>) {
    let token = req.header("x-token").unwrap_or_default();
    let call = CalloutRequest::post("policy", "/decide", "policy.local", &[0, 159, 146, 150])
        .header("X-Token", token)
        .header("x-trace", b"a")
        .header("x-trace", b"b");
    let mut body = Vec::new();
    match w.callout(call, &mut body).await {
        Ok(r) if r.status == 200 => {}
        _ => w.send_with(
            DENIED,
            &[("x-reason", b"policy\xff")],
            b"denied\n",
            "policy",
        ),
    }
}

fn register(r: &mut Registry) {
    r.register("ask", ask);
}

fn asked() -> (TestFilter, SimCallout) {
    let f = TestFilter::new(register, "ask", b"").unwrap();
    let call = {
        let mut s = f.stream();
        s.request_headers(&[(":path", "/"), ("x-token", "t-1")], true);
        s.callouts().remove(0)
    };
    (f, call)
}

#[test]
fn callout_headers_by_name() {
    let (_f, call) = asked();
    assert_eq!(call.header("x-token"), Some(&b"t-1"[..]));
    assert_eq!(call.header_str("X-TOKEN"), Some("t-1"));
    assert_eq!(
        call.header_str("x-trace"),
        Some("a"),
        "the first of repeated values"
    );
    assert_eq!(call.method(), Some("POST"));
    assert_eq!(call.path(), Some("/decide"));
    assert_eq!(call.header("x-missing"), None);
}

#[test]
fn callout_debug_shows_text_as_text_and_bytes_escaped() {
    let (_f, call) = asked();
    assert_eq!(
        format!("{call:?}"),
        format!(
            "SimCallout {{ id: {}, cluster: \"policy\", headers: {{\":method\": \"POST\", \
             \":path\": \"/decide\", \"host\": \"policy.local\", \"X-Token\": \"t-1\", \
             \"x-trace\": \"a\", \"x-trace\": \"b\"}}, body: b\"\\x00\\x9f\\x92\\x96\", \
             timeout_ms: {} }}",
            call.id, call.timeout_ms
        )
    );
}

#[test]
fn reply_status_is_the_handlers_u16() {
    let f = TestFilter::new(register, "ask", b"").unwrap();
    let mut s = f.stream();
    s.request_headers(&[(":path", "/")], true);
    let id = s.callouts()[0].id;
    s.complete_callout(id, 503, &[], b"");
    let reply: LocalReply = s.local_reply().unwrap();
    let status: u16 = reply.status;
    assert_eq!(status, DENIED);
    assert_eq!(reply.header("x-reason"), Some(&b"policy\xff"[..]));
    assert_eq!(reply.header_str("x-reason"), None, "not UTF-8");
    assert_eq!(reply.body_str(), Some("denied\n"));
    assert_eq!(
        format!("{reply:?}"),
        r#"LocalReply { status: 451, headers: {"x-reason": b"policy\xff"}, body: "denied\n", details: "policy" }"#
    );
}
