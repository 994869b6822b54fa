//! Request bodies read whole (bounded) and replaced before they go upstream, through the
//! simulated stream.

mod common;

use jisr::handler::{BodyError, ReplaceError};
use jisr::raw::{BodyStatus, HeadersStatus};
use jisr::testing::TestFilter;
use jisr::{Registry, Request, ResponseWriter};

async fn upper(mut req: Request<'_>, w: ResponseWriter<'_>) {
    // Before the body is read, it cannot be replaced.
    assert_eq!(req.replace_body(b"x"), Err(ReplaceError::BodyIncomplete));
    let mut body = Vec::new();
    match req.read_body(16, &mut body).await {
        Ok(_) => {
            body.make_ascii_uppercase();
            body.extend_from_slice(b"!");
            req.replace_body(&body).unwrap();
        }
        Err(BodyError::TooLarge { limit }) => {
            w.send(413, format!("over {limit}").as_bytes());
        }
        Err(BodyError::Aborted) => {}
    }
}

fn register(r: &mut Registry) {
    r.register("upper", upper);
}

const POST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":path", "/v1/chat"),
    (":authority", "x"),
    ("content-length", "11"),
];

#[test]
fn a_body_read_whole_is_replaced_and_content_length_follows() {
    let f = TestFilter::new(register, "upper", b"").unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(POST, false), HeadersStatus::StopIteration);
    assert_eq!(
        s.request_body(b"hello ", false),
        BodyStatus::StopIterationAndBuffer
    );
    assert_eq!(s.request_body(b"world", true), BodyStatus::Continue);
    assert_eq!(s.forwarded_request_body(), b"HELLO WORLD!");
    assert_eq!(s.request_header("content-length").as_deref(), Some("12"));
    assert!(s.local_reply().is_none());
}

#[test]
fn a_body_over_the_limit_is_a_413() {
    let f = TestFilter::new(register, "upper", b"").unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(POST, false), HeadersStatus::StopIteration);
    s.request_body(b"0123456789", false);
    s.request_body(b"0123456789", true);
    let reply = s.local_reply().unwrap();
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (413, b"over 16".as_slice())
    );
}
