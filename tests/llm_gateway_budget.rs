//! The `llm_gateway` example's budget reservations on the simulated stream: admitted while the
//! estimates fit, settled to the usage when the response ends, released when the upstream
//! fails, the response reports nothing, or the client leaves.

#[path = "../examples/llm_gateway.rs"]
mod llm_gateway;

use jisr::raw::HeadersStatus;
use jisr::testing::{TestFilter, TestStream};

/// 41 bytes: 11 input tokens by the estimate, plus `max_tokens` 100: 111 reserved.
const BODY: &[u8] = br#"{"model":"gpt-4o","max_tokens":100,"x":1}"#;

/// An OpenAI answer with usage 8 + 3.
const ANSWER: &[u8] = br#"{"id":"c2","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":8,"completion_tokens":3,"total_tokens":11}}"#;

fn gateway(budget: u64) -> TestFilter {
    let config = format!(r#"{{"keys": ["k1", "k2"], "budget_tokens": {budget}}}"#);
    TestFilter::new(llm_gateway::register, "llm_gateway", config.as_bytes()).unwrap()
}

/// Sends a request for `key`; `true` when the gateway let it go upstream.
fn admitted(s: &mut TestStream<'_>, key: &str) -> bool {
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gw"),
        ("x-api-key", key),
        ("content-type", "application/json"),
    ];
    s.request_headers(&headers, false);
    s.request_body(BODY, true);
    match s.local_reply() {
        None => true,
        Some(r) => {
            assert_eq!(r.status, 429, "{r:?}");
            let secs: u64 = std::str::from_utf8(
                &r.headers
                    .iter()
                    .find(|(k, _)| k == "retry-after")
                    .unwrap()
                    .1,
            )
            .unwrap()
            .parse()
            .unwrap();
            assert!((1..=60).contains(&secs), "{secs}");
            false
        }
    }
}

fn answer(s: &mut TestStream<'_>, status: &str, body: &[u8]) {
    let headers = [(":status", status), ("content-type", "application/json")];
    assert_eq!(s.response_headers(&headers, false), HeadersStatus::Continue);
    s.response_body(body, true);
    s.complete();
}

/// Budget 300, 111 reserved per request: two fit, the third waits. The first ends having used
/// 11: its reservation becomes 11, and a third fits (11 + 111 + 111), a fourth does not.
#[test]
fn a_reservation_is_settled_to_the_usage() {
    let f = gateway(300);
    let (mut a, mut b, mut c) = (f.stream(), f.stream(), f.stream());
    assert!(admitted(&mut a, "k1"));
    assert!(admitted(&mut b, "k1"));
    assert!(!admitted(&mut c, "k1"), "111 + 111 + 111 > 300");
    assert!(
        admitted(&mut f.stream(), "k2"),
        "another key, another budget"
    );
    answer(&mut a, "200", ANSWER);
    let mut d = f.stream();
    assert!(admitted(&mut d, "k1"), "settled to 11");
    assert!(
        !admitted(&mut f.stream(), "k1"),
        "11 + 111 + 111 + 111 > 300"
    );
    assert_eq!(
        f.metric("llm_gateway_reservation_overrun_tokens"),
        None,
        "nothing used beyond its reservation"
    );
}

/// Reservations given back: an upstream error without usage, a response cut short before
/// its usage, a client that leaves mid-response, a request refused after admission.
#[test]
fn a_reservation_is_released_on_error_and_disconnect() {
    let f = gateway(230);
    let (mut a, mut b) = (f.stream(), f.stream());
    assert!(admitted(&mut a, "k1"));
    assert!(admitted(&mut b, "k1"));
    assert!(!admitted(&mut f.stream(), "k1"));
    // The provider fails: no usage, nothing charged.
    answer(
        &mut a,
        "500",
        br#"{"error":{"message":"overloaded","type":"server_error"}}"#,
    );
    let mut c = f.stream();
    assert!(admitted(&mut c, "k1"), "released after the error");
    assert!(!admitted(&mut f.stream(), "k1"));
    // The client leaves while the answer streams.
    let sse = [(":status", "200"), ("content-type", "text/event-stream")];
    b.response_headers(&sse, false);
    b.response_body(
        b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        false,
    );
    b.disconnect();
    let mut d = f.stream();
    assert!(admitted(&mut d, "k1"), "released when the client left");
    // The upstream cuts the answer before its usage.
    c.response_headers(&sse, false);
    c.response_body(b"data: {\"choices\":[]", false);
    c.complete();
    drop(c);
    let mut e = f.stream();
    assert!(
        admitted(&mut e, "k1"),
        "released when the answer was cut short"
    );
    assert!(!admitted(&mut f.stream(), "k1"), "d and e hold it all");
    // A request dropped before it went upstream gives its reservation back too.
    e.disconnect();
    assert!(admitted(&mut f.stream(), "k1"));
}

/// A response that uses more than its reservation is charged all of it, and the excess is
/// counted.
#[test]
fn usage_beyond_the_reservation_is_charged_and_counted() {
    let f = gateway(300);
    let mut a = f.stream();
    assert!(admitted(&mut a, "k1"));
    let big = br#"{"id":"c3","object":"chat.completion","choices":[],"usage":{"prompt_tokens":150,"completion_tokens":100,"total_tokens":250}}"#;
    answer(&mut a, "200", big);
    assert_eq!(
        f.metric("llm_gateway_reservation_overrun_tokens"),
        Some(250 - 111)
    );
    assert!(!admitted(&mut f.stream(), "k1"), "250 + 111 > 300");
}
