//! Untrusted bytes through safe calls never reach the wire as HTTP that the grammar forbids:
//! every setter of a header, trailer, status or request-line field refuses them with a typed
//! reason and changes nothing, and replies fail closed.

mod common;

use common::GET;
use jisr::callout::{CalloutError, CalloutRequest};
use jisr::handler::{HeaderError, INVALID_REPLY_DETAILS, ReplyError};
use jisr::raw::{HeadersStatus, RawFactory, RawFilter, RawStream};
use jisr::response::{ResponseError, StreamError};
use jisr::testing::TestFilter;
use jisr::wire::{Field, WireError};
use jisr::{Level, LogValue, Registry, Request, Response, ResponseMode, ResponseWriter};
use std::cell::RefCell;

/// The payload of a response-splitting attempt: with a pipelined second request, an HTTP/1.1
/// client would read a forged third response.
const SPLIT: &str = "a\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\nx-forged: 1\r\n\r\n";

/// A query value that, percent-encoded, does not fit a callout path.
static LONG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| "é".repeat(700));

const BAD_VALUES: &[&str] = &[
    SPLIT,
    "a\nb",
    "a\rb",
    "a\0b",
    "a\x7fb",
    "a\x1b[31mb",
    "a\x01",
    " a",
    "a\t",
];
const BAD_NAMES: &[&str] = &["a\r\nb", "a:b", "a b", "", "x\0", "x(y)", "caf\u{e9}"];
const BAD_STATUSES: &[u16] = &[0, 99, 100, 101, 103, 199, 600, 1000, 65535];

thread_local! {
    static SEEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn seen(s: impl Into<String>) {
    SEEN.with(|v| v.borrow_mut().push(s.into()));
}

fn take_seen() -> Vec<String> {
    SEEN.with(|v| std::mem::take(&mut *v.borrow_mut()))
}

/// The `x-case` index the test put on the request.
fn case(req: &Request<'_>) -> usize {
    req.header_str("x-case")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn stream_with_case<'f>(f: &'f TestFilter, i: usize) -> jisr::testing::TestStream<'f> {
    let mut s = f.stream();
    let i = i.to_string();
    s.request_headers(&[(":method", "GET"), (":path", "/"), ("x-case", &i)], true);
    s
}

async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}

async fn set_bad_response_headers(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
    for v in BAD_VALUES {
        seen(format!("{:?}", resp.set_header("x-id", v)));
        seen(format!("{:?}", resp.add_header("x-id", v)));
    }
    for n in BAD_NAMES {
        seen(format!("{:?}", resp.set_header(n, "v")));
    }
    for n in ["content-length", "transfer-encoding", ":path", ":x"] {
        seen(format!("{:?}", resp.set_header(n, "1")));
    }
    seen(format!("{:?}", resp.remove_header(":status")));
    for st in ["101", "999", "20", "abc"] {
        seen(format!("{:?}", resp.set_header(":status", st)));
    }
    seen(format!("{:?}", resp.set_header(":status", "404")));
    seen(format!("{:?}", resp.set_header("x-ok", "req-42")));
}

#[test]
fn response_header_setters_refuse_what_would_split_the_response() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.filter("split")
                .respond(ResponseMode::Passthrough, pass, set_bad_response_headers);
        },
        "split",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    s.response_headers(&[(":status", "200"), ("content-length", "2")], false);
    let got = take_seen();
    let (ok, refused): (Vec<_>, Vec<_>) = got.iter().partition(|r| r.as_str() == "Ok(())");
    assert_eq!(ok.len(), 2, "{got:?}");
    assert!(
        refused.iter().all(|r| r.starts_with("Err(Invalid(")),
        "{got:?}"
    );
    assert_eq!(
        got[0],
        format!(
            "{:?}",
            Err::<(), _>(ResponseError::Invalid(WireError::Byte {
                field: Field::Value,
                byte: b'\r',
                at: 1
            }))
        )
    );
    // Nothing of the refused calls reached the response.
    assert_eq!(s.response_header("x-id"), None);
    assert_eq!(s.response_header("content-length").as_deref(), Some("2"));
    assert_eq!(s.response_header("transfer-encoding"), None);
    assert_eq!(s.response_header(":status").as_deref(), Some("404"));
    assert_eq!(s.response_header("x-ok").as_deref(), Some("req-42"));
}

enum ReplyCase {
    Value(&'static str),
    Name(&'static str),
    Status(u16),
    Framing(&'static str),
    Pseudo,
    Details(&'static str),
    TooMany,
}

fn reply_cases() -> Vec<ReplyCase> {
    let mut v: Vec<ReplyCase> = BAD_VALUES.iter().map(|s| ReplyCase::Value(s)).collect();
    v.extend(BAD_NAMES.iter().map(|s| ReplyCase::Name(s)));
    v.extend(BAD_STATUSES.iter().map(|&s| ReplyCase::Status(s)));
    v.extend(["content-length", "Transfer-Encoding"].map(ReplyCase::Framing));
    v.push(ReplyCase::Pseudo);
    v.extend(["two words", "line\nbreak"].map(ReplyCase::Details));
    v.push(ReplyCase::TooMany);
    v
}

async fn bad_reply(req: Request<'_>, w: ResponseWriter<'_>) {
    let many: Vec<(&str, &[u8])> = (0..33).map(|_| ("x-a", b"1".as_slice())).collect();
    match reply_cases().swap_remove(case(&req)) {
        ReplyCase::Value(v) => w.send_with(403, &[("x-request-id", v.as_bytes())], b"no", ""),
        ReplyCase::Name(n) => w.send_with(403, &[(n, b"v")], b"no", ""),
        ReplyCase::Status(st) => w.send(st, b"body"),
        ReplyCase::Framing(n) => w.send_with(200, &[(n, b"0")], b"body", ""),
        ReplyCase::Pseudo => w.send_with(200, &[(":status", b"101")], b"", ""),
        ReplyCase::Details(d) => w.send_with(403, &[], b"no", d),
        ReplyCase::TooMany => w.send_with(200, &many, b"", ""),
    }
}

#[test]
fn local_replies_with_invalid_parts_fail_closed_as_a_plain_500() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("reply", bad_reply);
        },
        "reply",
        b"",
    )
    .unwrap();
    for i in 0..reply_cases().len() {
        let s = stream_with_case(&f, i);
        let reply = s
            .local_reply()
            .unwrap_or_else(|| panic!("case {i}: no reply"));
        assert_eq!(reply.status, 500, "case {i}");
        assert_eq!(reply.details, INVALID_REPLY_DETAILS, "case {i}");
        assert!(
            reply.headers.is_empty() && reply.body.is_empty(),
            "case {i}: {reply:?}"
        );
    }
    let errors: Vec<String> = f
        .logs()
        .into_iter()
        .filter(|(l, _)| *l == Level::Error)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(errors.len(), reply_cases().len(), "{errors:?}");
    assert!(errors[0].starts_with("jisr: filter 'reply': reply refused (header value: byte 0x0d"));
    // Every log line is one line: the payloads' line breaks are escaped.
    assert!(errors.iter().all(|e| !e.contains(['\r', '\n'])));
}

async fn bodiless(req: Request<'_>, w: ResponseWriter<'_>) {
    let st = if case(&req) == 0 { 204 } else { 304 };
    w.send_with(
        st,
        &[("etag", b"\"v1\"")],
        b"this body must not be sent",
        "",
    );
}

#[test]
fn no_content_and_not_modified_replies_carry_no_body() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("nb", bodiless);
        },
        "nb",
        b"",
    )
    .unwrap();
    for (i, status) in [(0, 204), (1, 304)] {
        let reply = stream_with_case(&f, i).local_reply().unwrap();
        assert_eq!(reply.status, status);
        assert!(reply.body.is_empty());
        assert_eq!(reply.headers, [("etag".to_string(), b"\"v1\"".to_vec())]);
    }
}

async fn try_reply(req: Request<'_>, w: ResponseWriter<'_>) {
    let to = req.header("x-next").unwrap_or(b"/");
    match w.try_send_with(302, &[("location", to)], b"", "") {
        Ok(()) => seen("sent"),
        Err(e) => {
            seen(format!("{e:?}"));
            assert!(!w.replied());
            w.send(400, b"bad redirect");
        }
    }
}

#[test]
fn try_send_with_refuses_without_replying() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("t", try_reply);
        },
        "t",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.request_headers(&[(":path", "/"), ("x-next", SPLIT)], true);
    assert_eq!(s.local_reply().unwrap().status, 400);
    assert_eq!(
        take_seen(),
        [format!(
            "{:?}",
            ReplyError::Invalid(WireError::Byte {
                field: Field::Value,
                byte: b'\r',
                at: 1
            })
        )]
    );
    let mut s = f.stream();
    s.request_headers(&[(":path", "/"), ("x-next", "/home")], true);
    let reply = s.local_reply().unwrap();
    assert_eq!(
        (reply.status, reply.headers[0].1.as_slice()),
        (302, b"/home".as_slice())
    );
}

async fn bad_stream(req: Request<'_>, w: ResponseWriter<'_>) {
    let r = match case(&req) {
        0 => w.stream(200, &[("x-id", SPLIT.as_bytes())]),
        1 => w.stream(101, &[]),
        2 => w.stream(204, &[]),
        3 => w.stream(200, &[("transfer-encoding", b"chunked")]),
        _ => w.stream(200, &[("content-length", b"5"), ("content-length", b"5")]),
    };
    seen(format!("{:?}", r.err()));
}

#[test]
fn streamed_replies_with_invalid_heads_fail_closed() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("st", bad_stream);
        },
        "st",
        b"",
    )
    .unwrap();
    for i in 0..5 {
        let s = stream_with_case(&f, i);
        assert!(s.streamed_reply().is_none(), "case {i}");
        let reply = s.local_reply().unwrap();
        assert_eq!(
            (reply.status, reply.details.as_str()),
            (500, INVALID_REPLY_DETAILS)
        );
    }
    let got = take_seen();
    assert!(
        got.iter().all(|g| g.starts_with("Some(Invalid(")),
        "{got:?}"
    );
    assert_eq!(
        got[2],
        format!("{:?}", Some(ReplyError::Invalid(WireError::Bodiless(204))))
    );
}

async fn sized_stream(req: Request<'_>, w: ResponseWriter<'_>) {
    let Ok(mut out) = w.stream(200, &[("content-length", b"5")]) else {
        return;
    };
    seen(format!("{:?}", out.send(b"abc").await));
    match case(&req) {
        // Past the declared length: refused, nothing sent.
        0 => {
            seen(format!("{:?}", out.send(b"def").await));
            seen(format!("{:?}", out.send(b"de").await));
            out.finish();
        }
        // Short of it: the reply is reset, never ended as if whole.
        _ => out.finish(),
    }
}

#[test]
fn a_streamed_reply_is_held_to_its_content_length() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("sz", sized_stream);
        },
        "sz",
        b"",
    )
    .unwrap();
    let s = stream_with_case(&f, 0);
    let reply = s.streamed_reply().unwrap();
    assert_eq!(reply.data.concat(), b"abcde");
    assert!(reply.ended);
    assert_eq!(
        take_seen(),
        [
            "Ok(())".to_string(),
            format!(
                "{:?}",
                Err::<(), _>(StreamError::Length {
                    declared: 5,
                    sent: 3
                })
            ),
            "Ok(())".to_string()
        ]
    );
    let s = stream_with_case(&f, 1);
    assert!(!s.streamed_reply().unwrap().ended);
    assert_eq!(
        s.reset_details().as_deref(),
        Some("jisr_reply_shorter_than_content_length")
    );
}

async fn bad_trailers(_req: Request<'_>, w: ResponseWriter<'_>) {
    let Ok(mut out) = w.stream(200, &[("content-type", b"application/grpc")]) else {
        return;
    };
    let _ = out.send(b"x").await;
    seen(format!(
        "{:?}",
        out.finish_with_trailers(&[("grpc-message", SPLIT.as_bytes())])
    ));
}

#[test]
fn invalid_trailers_reset_the_stream_instead_of_ending_it() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("tr", bad_trailers);
        },
        "tr",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    let reply = s.streamed_reply().unwrap();
    assert!(reply.trailers.is_none() && !reply.ended);
    assert_eq!(s.reset_details().as_deref(), Some("jisr_invalid_trailers"));
    assert!(take_seen()[0].starts_with("Err(Invalid(Byte { field: Value, byte: 13"));
}

async fn bad_request_headers(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    for v in BAD_VALUES {
        seen(format!("{:?}", req.set_header("x-user", v)));
        seen(format!("{:?}", req.add_header("x-user", v)));
    }
    for n in BAD_NAMES {
        seen(format!("{:?}", req.set_header(n, "v")));
    }
    let line_changes = [
        (":path", "/a HTTP/1.0\tb"),
        (":path", "/a b"),
        (":path", ""),
        (":path", "no-slash"),
        (":method", "GET /x"),
        (":method", "GE T"),
        (":method", ""),
        (":authority", ""),
        (":authority", "a b"),
        ("host", "evil\r\nx: y"),
        (":scheme", "ht tp"),
        (":status", "200"),
        (":protocol", "websocket"),
        ("content-length", "0"),
        ("transfer-encoding", "chunked"),
    ];
    for (n, v) in line_changes {
        seen(format!("{:?}", req.set_header(n, v)));
    }
    seen(format!("{:?}", req.add_header(":path", "/x")));
    seen(format!("{:?}", req.remove_header(":path")));
    seen(format!("{:?}", req.remove_header("")));
    // What is valid still works.
    seen(format!("{:?}", req.set_header(":path", "/v2/items?id=7")));
    seen(format!("{:?}", req.set_header("x-user", "ada lovelace")));
}

#[test]
fn request_changes_that_http_forbids_are_refused_and_change_nothing() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("rq", bad_request_headers);
        },
        "rq",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.request_headers(
        &[(":method", "GET"), (":path", "/a"), (":authority", "h")],
        true,
    );
    let got = take_seen();
    let n = got.len();
    assert!(
        got[..n - 2].iter().all(|g| g.starts_with("Err(Invalid(")),
        "{got:?}"
    );
    assert_eq!(got[n - 2..], ["Ok(())", "Ok(())"]);
    assert_eq!(
        got[0],
        format!(
            "{:?}",
            Err::<(), _>(HeaderError::Invalid(WireError::Byte {
                field: Field::Value,
                byte: b'\r',
                at: 1
            }))
        )
    );
    let now = s.request_headers_now();
    assert_eq!(
        now,
        [
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), "/v2/items?id=7".to_string()),
            (":authority".to_string(), "h".to_string()),
            ("x-user".to_string(), "ada lovelace".to_string()),
        ]
    );
}

fn bad_callouts() -> Vec<(CalloutRequest<'static>, WireError)> {
    let nine = (0..9).fold(CalloutRequest::get("c", "/", "h"), |r, _| {
        r.header("x-a", b"1")
    });
    vec![
        (
            CalloutRequest::new("c", "GE T", "/", "h"),
            WireError::Byte {
                field: Field::Method,
                byte: b' ',
                at: 2,
            },
        ),
        (
            CalloutRequest::new("c", "", "/", "h"),
            WireError::Empty(Field::Method),
        ),
        (
            CalloutRequest::get("c", "/a b c", "h"),
            WireError::Byte {
                field: Field::Path,
                byte: b' ',
                at: 2,
            },
        ),
        (
            CalloutRequest::get("c", "", "h"),
            WireError::Empty(Field::Path),
        ),
        (
            CalloutRequest::get("c", "/", ""),
            WireError::Empty(Field::Authority),
        ),
        (
            CalloutRequest::get("c", "/", "h\r\nx: y"),
            WireError::Byte {
                field: Field::Authority,
                byte: b'\r',
                at: 1,
            },
        ),
        (
            CalloutRequest::get("c", "/", "h").header("x-k", SPLIT.as_bytes()),
            WireError::Byte {
                field: Field::Value,
                byte: b'\r',
                at: 1,
            },
        ),
        (
            CalloutRequest::get("c", "/", "h").header("", b"v"),
            WireError::Empty(Field::Name),
        ),
        (
            CalloutRequest::get("c", "/", "h").header("host", b"other"),
            WireError::Reserved,
        ),
        (
            CalloutRequest::get("c", "/", "h").header(":path", b"/x"),
            WireError::Reserved,
        ),
        (
            CalloutRequest::post("c", "/", "h", b"{}").header("content-length", b"99"),
            WireError::Reserved,
        ),
        (nine, WireError::TooManyHeaders),
        (
            (0..9).fold(CalloutRequest::get("c", "/", "h"), |r, _| {
                r.query("q", b"1")
            }),
            WireError::TooManyHeaders,
        ),
        (
            CalloutRequest::get("c", "/", "h").query("big", LONG.as_bytes()),
            WireError::TooLong,
        ),
        // A query cannot repair a path that is not one.
        (
            CalloutRequest::get("c", "no-slash", "h").query("q", b"1"),
            WireError::Byte {
                field: Field::Path,
                byte: b'n',
                at: 0,
            },
        ),
    ]
}

async fn bad_callout(req: Request<'_>, w: ResponseWriter<'_>) {
    let (r, _) = bad_callouts().swap_remove(case(&req));
    let mut body = Vec::new();
    seen(format!("{:?}", w.callout(r, &mut body).await.err()));
    seen(format!("{:?}", w.stream_callout(r, true).err()));
}

#[test]
fn callouts_with_invalid_request_lines_or_headers_are_never_sent() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("co", bad_callout);
        },
        "co",
        b"",
    )
    .unwrap();
    for (i, (_, want)) in bad_callouts().into_iter().enumerate() {
        let s = stream_with_case(&f, i);
        assert!(s.callouts().is_empty(), "case {i}");
        assert!(s.stream_callout_log().is_empty(), "case {i}");
        let want = format!("{:?}", Some(CalloutError::Invalid(want)));
        assert_eq!(take_seen(), [want.clone(), want], "case {i}");
    }
    assert_eq!(
        CalloutError::Invalid(WireError::Empty(Field::Path)).to_string(),
        "callout refused: path: empty"
    );
}

async fn stream_bad_trailers(_req: Request<'_>, w: ResponseWriter<'_>) {
    let Ok(mut s) = w.stream_callout(CalloutRequest::post("c", "/", "h", b"x"), false) else {
        return;
    };
    seen(format!("{:?}", s.send_trailers(&[("x-sum", b"1\r\n2")])));
    seen(format!("{:?}", s.send_trailers(&[("x-sum", b"12")])));
}

#[test]
fn streaming_callout_trailers_are_checked() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("cs", stream_bad_trailers);
        },
        "cs",
        b"",
    )
    .unwrap();
    let s = stream_with_case(&f, 0);
    let log: Vec<String> = s.stream_callout_log().into_iter().map(|(_, l)| l).collect();
    // The refused trailers never went; the valid ones did (then the handler's end resets it).
    assert_eq!(
        log[..2],
        ["start body=1 end=false", "trailers 1"],
        "{log:?}"
    );
    let got = take_seen();
    assert!(
        got[0].starts_with("Err(Invalid(Byte { field: Value, byte: 13"),
        "{got:?}"
    );
    assert_eq!(got[1], "Ok(())");
}

struct RawSplit;

impl RawFilter for RawSplit {
    fn on_request_headers(&mut self, s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
        seen(format!("{}", s.set_header(false, ":path", Some(b"/a b"))));
        seen(format!(
            "{}",
            s.set_header(false, "x-a", Some(SPLIT.as_bytes()))
        ));
        seen(format!("{}", s.add_header(true, "content-length", b"0")));
        seen(format!("{}", s.set_header(false, ":path", None)));
        seen(format!("{}", s.set_header(false, "x-ok", Some(b"1"))));
        s.send_response(200, &[("x-id", SPLIT.as_bytes())], b"forged", "raw");
        HeadersStatus::StopIteration
    }
}

struct RawSplitFactory;

impl RawFactory for RawSplitFactory {
    type Filter = RawSplit;
    fn new_filter(&self) -> RawSplit {
        RawSplit
    }
}

#[test]
fn raw_filters_get_the_same_checks() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register_raw("raw", |_cfg: &mut jisr::ConfigHandle<'_>| {
                Ok(RawSplitFactory)
            });
        },
        "raw",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(take_seen(), ["false", "false", "false", "false", "true"]);
    assert_eq!(s.request_header("x-a"), None);
    let reply = s.local_reply().unwrap();
    assert_eq!(
        (reply.status, reply.details.as_str()),
        (500, INVALID_REPLY_DETAILS)
    );
    assert!(reply.body.is_empty());
}

async fn logs_user_text(req: Request<'_>, w: ResponseWriter<'_>) {
    let user = req.header_str("x-user").unwrap_or("-");
    w.log(Level::Info, format_args!("login by {user}"));
    w.log_attrs(Level::Info, user, &[("user", LogValue::Str(user))]);
}

#[test]
fn log_lines_cannot_be_forged_from_request_text() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("lg", logs_user_text);
        },
        "lg",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.request_headers(
        &[
            (":path", "/"),
            ("x-user", "ada\n[info] admin logged in\x1b[2J level=error"),
        ],
        true,
    );
    let lines: Vec<String> = f.logs().into_iter().map(|(_, l)| l).collect();
    assert_eq!(
        lines,
        [
            r"login by ada\n[info] admin logged in\u001b[2J level=error".to_string(),
            r#""ada\n[info] admin logged in\u001b[2J level=error" filter=lg user="ada\n[info] admin logged in\u001b[2J level=error""#
                .to_string(),
        ]
    );
}

async fn long_names(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    let long = format!("X-{}", "Long".repeat(40));
    seen(format!("{:?}", req.set_header(&long, "v")));
    seen(format!("{:?}", req.header_str(&long)));
}

/// Header names are lower-cased before Envoy sees them whatever their length (a name over the
/// 128 bytes copied on the stack used to reach Envoy in upper case, which HTTP/2 refuses).
#[test]
fn long_header_names_are_lower_cased_too() {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.register("long", long_names);
        },
        "long",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    let long = format!("x-{}", "long".repeat(40));
    assert_eq!(s.request_header(&long).as_deref(), Some("v"));
    assert!(
        s.request_headers_now()
            .iter()
            .all(|(k, _)| k == &k.to_ascii_lowercase()),
        "{:?}",
        s.request_headers_now()
    );
    assert_eq!(take_seen(), ["Ok(())", "Some(\"v\")"]);
}

/// A listener filter closing with what the client sent: the same rule as network filters'
/// close details (one word of visible ASCII), the socket closed all the same.
#[test]
fn listener_close_details_from_the_client_are_checked() {
    async fn closes_with_line(mut s: jisr::listener::Socket<'_>) {
        let mut buf = [0u8; 64];
        loop {
            let p = s.peek(&mut buf).await;
            let got = &buf[..p.len()];
            if let Some(end) = got.iter().position(|b| *b == b'\n') {
                let line = String::from_utf8_lossy(&got[..end]).into_owned();
                s.close(&line);
                return;
            }
            if p.is_end() {
                return;
            }
        }
    }
    fn reg(r: &mut Registry) {
        r.listener("closes_with_line")
            .max_read_bytes(64)
            .handle(closes_with_line);
    }
    use jisr::testing::{SocketOutcome, TestListenerFilter};
    let f = TestListenerFilter::new(reg, "closes_with_line", b"").unwrap();
    let mut s = f.accept();
    s.client_sends(b"fine_word\n");
    assert_eq!(s.outcome(), SocketOutcome::Closed("fine_word".into()));
    assert!(s.logs().is_empty());
    let mut s = f.accept();
    s.client_sends(SPLIT.as_bytes());
    assert_eq!(
        s.outcome(),
        SocketOutcome::Closed(jisr::wire::INVALID_CLOSE_DETAILS.into())
    );
    let logs = s.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].0, Level::Error);
    assert!(
        logs[0].1.contains("close details: byte 0x0d at 1"),
        "{logs:?}"
    );
}
