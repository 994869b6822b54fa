//! Soundness in real Envoy, with the `soundness_fixture` module: Envoy calling back into jisr
//! from inside a call jisr makes into it, and Envoy freeing memory a handler still holds.
//!
//! - item 2: in a Buffer response handler, a response-header value read before a local reply
//!   is still the upstream's exact value after it, although the reply makes Envoy replace (and
//!   free) the response header map it came from; and metadata set after that reply still
//!   reaches the access log, although Envoy ends the stream (and writes the access log) inside
//!   the reply call.
//! - items 3 and 9: a streaming or unary callout to a cluster without endpoints is answered by
//!   Envoy's router (`503 no healthy upstream`) inside the call that starts it. The handler
//!   gets an answer at once and not a hang: that 503 (as `CalloutError::Unavailable`) if Envoy
//!   delivers it (the events arrive before jisr knows the callout's id), or the refusal Envoy
//!   reports instead.
//!   Envoy 1.38–1.40 do the latter: no event reaches the module and the start returns
//!   "cannot create request".
//!
//! - kept body views: a handler reading the request body in small pieces gets exactly the bytes
//!   sent, for bodies of one chunk and of many (more than the 4 views jisr keeps between two
//!   reads of one hook), with calls into Envoy between the reads.
//!
//! Every answer is awaited for at most [`ANSWER_WITHIN`]: a lost event fails the test, it
//! does not hang it.

use jisr_e2e::client::{Client, Response};
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, Listener, Upstream, UpstreamRequest, access_field, module_filter,
    upstream,
};
use std::time::{Duration, Instant};

/// How long the client waits for an answer Envoy gives at once.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// How long to wait for access-log lines.
const WAIT: Duration = Duration::from_secs(5);

/// The cluster without endpoints.
const NOHOST: &str = "nohost";

/// What the fixture shows for Envoy's router answer to a cluster without a healthy host
/// (`503 no healthy upstream`): no answer from the service, `CalloutError::Unavailable`.
const NO_ANSWER: &str = "error=callout got no answer: no healthy host";

/// The upstream's `content-type`: longer than the 128 bytes Envoy keeps inline in a header
/// entry, so the value lives in its own allocation.
fn probe_content_type() -> String {
    format!("text/x-soundness-probe-{}", "0123456789abcdef".repeat(10))
}

fn fixture_envoy(up: &Upstream) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("stream").filter(module_filter(
                "soundness_fixture",
                "stream_nohost",
                Some(NOHOST),
            )))
            .listener(Listener::new("callout").filter(module_filter(
                "soundness_fixture",
                "callout_nohost",
                Some(NOHOST),
            )))
            .listener(
                Listener::new("buffer")
                    .filter(module_filter("soundness_fixture", "buffer_reply", None))
                    .log_metadata("soundness", "replying")
                    .log_metadata("soundness", "ct"),
            )
            .listener(Listener::new("pieces").filter(module_filter(
                "soundness_fixture",
                "pieces",
                None,
            )))
            .upstream(up.port())
            .cluster(Cluster::without_endpoints(NOHOST)),
    )
}

/// Answers every request with the probe `content-type`.
fn probe_upstream() -> Upstream {
    Upstream::start_with(
        "probe",
        |_: &UpstreamRequest, w: &mut upstream::ResponseWriter| {
            w.header("content-type", &probe_content_type());
            w.send(b"from upstream\n");
        },
    )
}

/// `GET path`, failing the test if no complete answer arrives within [`ANSWER_WITHIN`].
fn get_within(port: u16, path: &str) -> Response {
    let started = Instant::now();
    let c = Client::new(ANSWER_WITHIN);
    c.request(port, "GET", path, &[], b"").unwrap_or_else(|e| {
        panic!(
            "GET {path}: no answer after {:?} (limit {ANSWER_WITHIN:?}): {e}",
            started.elapsed()
        )
    })
}

fn access_line(envoy: &Envoy, listener: &str, path: &str) -> String {
    let mut found = None;
    jisr_e2e::wait_until(WAIT, || {
        found = envoy.access_log_lines().into_iter().find(|l| {
            access_field(l, "listener") == Some(listener) && access_field(l, "path") == Some(path)
        });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no access line for {listener} {path}\n{}", envoy.log()))
}

/// The view of `content-type` the response handler took before `send(502, ..)` is the
/// upstream's exact value after the reply, and the metadata the handler sets from it after the
/// reply is in the access log.
///
/// Envoy 1.40 ends the stream and writes the access log inside a reply sent from a Buffer response
/// handler. jisr sends the reply when the poll that made it ends, so effects of the same poll (here
/// the metadata) reach Envoy first; effects after the next `.await` that waits would be lost.
#[test]
fn item02_view_survives_local_reply_in_buffer_mode() {
    let up = probe_upstream();
    let envoy = fixture_envoy(&up);
    let port = envoy.listener_port("buffer");
    let probe = probe_content_type();
    for i in 0..5 {
        let path = format!("/ct/{i}");
        let r = get_within(port, &path);
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert_eq!(r.text(), "replaced\n", "{path}");
        let l = access_line(&envoy, "buffer", &path);
        assert_eq!(access_field(&l, "code"), Some("502"), "{l}");
        // Set before the reply: the access log does show response-phase metadata.
        assert_eq!(access_field(&l, "soundness:replying"), Some("502"), "{l}");
        let ct = access_field(&l, "soundness:ct");
        assert_ne!(
            ct,
            Some("-"),
            "{path}: metadata set after the reply is not in the access log\n{l}"
        );
        assert_eq!(
            ct,
            Some(probe.as_str()),
            "{path}: metadata soundness:ct is not the upstream's content-type\n{l}"
        );
    }
    assert_eq!(up.requests().len(), 5);
    envoy.assert_ready();
}

/// What the fixture answers when Envoy refuses to start the callout: Envoy's
/// `CannotCreateRequest`, as `CalloutError` displays it.
const REFUSED: &str = "error=callout refused: cannot create request";

/// Checks the fixture's account of a callout Envoy answered while starting it: `inline` if the
/// events reached the handler, [`REFUSED`] if Envoy kept them and refused the start.
fn assert_inline_answer_or_refusal(port: u16, inline: &str) {
    for path in ["/first", "/second"] {
        let r = get_within(port, path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let text = r.text();
        assert!(
            text == inline || text == REFUSED,
            "{path}: the handler saw {text:?}; expected {inline:?} or {REFUSED:?}"
        );
    }
}

/// A streaming callout answered while it is being opened: `head()` and `read()` return that
/// answer, or the open fails with Envoy's refusal; they never wait for events that came before
/// the stream's id was known.
#[test]
fn item03_stream_callout_events_during_open() {
    let up = Upstream::start("main");
    let envoy = fixture_envoy(&up);
    let port = envoy.listener_port("stream");
    assert_inline_answer_or_refusal(port, NO_ANSWER);
    // The handler answered locally; the request never went upstream.
    assert!(up.requests().is_empty());
    envoy.assert_ready();
}

/// A unary callout answered inside the call that starts it: the handler gets Envoy's answer
/// (`503 no healthy upstream`, reported as `CalloutError::Unavailable`), or Envoy's refusal
/// when the answer was not delivered; never a hang.
#[test]
fn item09_inline_callout_answer() {
    let up = Upstream::start("main");
    let envoy = fixture_envoy(&up);
    let port = envoy.listener_port("callout");
    assert_inline_answer_or_refusal(port, NO_ANSWER);
    assert!(up.requests().is_empty());
    envoy.assert_ready();
}

/// A body read in pieces (jisr keeps Envoy's views of a chunk between two reads of one hook)
/// comes back byte for byte: bodies of one chunk and of many, pieces from 1 byte to 4 KiB,
/// with a header read and a metadata write (calls that drop the kept views) between reads.
#[test]
fn body_read_in_pieces_is_exact() {
    let up = probe_upstream();
    let envoy = fixture_envoy(&up);
    let port = envoy.listener_port("pieces");
    let body = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 7 + i / 251) as u8).collect() };
    let c = Client::new(Duration::from_secs(20));
    for (len, piece) in [
        (1, 7),
        (100, 64),
        (1000, 7),
        (20_000, 1),
        (300_000, 1000),
        (300_000, 4096),
        (300_000, 13),
    ] {
        let sent = body(len);
        let r = c
            .request(
                port,
                "POST",
                "/pieces",
                &[("x-piece", &piece.to_string())],
                &sent,
            )
            .unwrap_or_else(|e| panic!("{len} bytes in pieces of {piece}: {e}"));
        assert_eq!(r.status, 200, "{len} bytes in pieces of {piece}");
        assert_eq!(r.body.len(), len, "{len} bytes in pieces of {piece}");
        let first_diff = r.body.iter().zip(&sent).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "{len} bytes in pieces of {piece}");
    }
    assert!(
        up.requests().is_empty(),
        "every request is answered by the module"
    );
    envoy.assert_ready();
}
