//! The `sse_tap` example module in real Envoy: token usage read from OpenAI Chat Completions,
//! OpenAI Responses and Anthropic Messages streams while they pass (Observe mode), streamed by
//! the upstream in many small chunks cut inside lines and inside `\r\n`, with delays.

use jisr_e2e::client;
use jisr_e2e::upstream::{self, UpstreamRequest};
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, access_field, module_filter, module_stat};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
/// Pause of the upstream between two chunks.
const GAP: Duration = Duration::from_millis(6);

/// One streamed answer the upstream knows, with the usage it reports.
struct Stream {
    path: &'static str,
    content_type: &'static str,
    /// `openai` / `anthropic`, or `None` when the stream reports no usage.
    provider: Option<&'static str>,
    input: u64,
    output: u64,
    body: Vec<u8>,
}

/// Joins events with `eol` line ends: each event is its lines, then a blank line.
fn sse(eol: &str, events: &[&[&str]]) -> Vec<u8> {
    let mut out = String::new();
    for lines in events {
        for l in *lines {
            out.push_str(l);
            out.push_str(eol);
        }
        out.push_str(eol);
    }
    out.into_bytes()
}

/// The streams. The events carrying usage spread their JSON over two `data:` lines (joined by
/// `\n`, still JSON), so a parser that took a `\r` cut off its `\n` for a blank line would
/// dispatch half an event and lose the usage. Decoys: a `"usage"` inside generated text and
/// `"usage": null` chunks.
fn streams() -> Vec<Stream> {
    let chat = sse(
        "\r\n",
        &[
            &[": keep-alive"],
            &[
                r#"data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#,
            ],
            &[
                r#"data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"\"usage\":{\"prompt_tokens\":999,\"completion_tokens\":999}"}}],"usage":null}"#,
            ],
            &[
                r#"data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
            ],
            &[
                r#"data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":1234,"#,
                r#"data: "completion_tokens":567,"total_tokens":1801}}"#,
            ],
            &["data: [DONE]"],
        ],
    );
    let responses = sse(
        "\n",
        &[
            &[
                "event: response.created",
                r#"data: {"type":"response.created","response":{"id":"r1","status":"in_progress","usage":null}}"#,
            ],
            &[
                "event: response.output_text.delta",
                r#"data: {"type":"response.output_text.delta","delta":"{\"usage\":{\"input_tokens\":5}}"}"#,
            ],
            &[
                "event: response.output_text.delta",
                r#"data: {"type":"response.output_text.delta","delta":" done"}"#,
            ],
            &[
                "event: response.completed",
                r#"data: {"type":"response.completed","response":{"id":"r1","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"{\"usage\":{\"input_tokens\":5}} done"}]}],"#,
                r#"data: "usage":{"input_tokens":2048,"output_tokens":321,"total_tokens":2369}}}"#,
            ],
        ],
    );
    let anthropic = sse(
        "\r\n",
        &[
            &[
                "event: message_start",
                r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"#,
                r#"data: "usage":{"input_tokens":4711,"output_tokens":1}}}"#,
            ],
            &["event: ping", r#"data: {"type": "ping"}"#],
            &[
                "event: content_block_start",
                r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ],
            &[
                "event: content_block_delta",
                r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\"usage\":{\"output_tokens\":7}"}}"#,
            ],
            &[
                "event: message_delta",
                r#"data: {"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":20}}"#,
            ],
            &[
                "event: content_block_delta",
                r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" more"}}"#,
            ],
            &[
                "event: content_block_stop",
                r#"data: {"type":"content_block_stop","index":0}"#,
            ],
            &[
                "event: message_delta",
                r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"#,
                r#"data: "usage":{"output_tokens":389}}"#,
            ],
            &["event: message_stop", r#"data: {"type":"message_stop"}"#],
        ],
    );
    let plain = sse(
        "\n",
        &[
            &["data: tick 1"],
            &["event: tock", "data: 2"],
            &[": no usage in this stream"],
            &["id: 3", "data: tick 3"],
            &["data: {\"usage\":null}"],
            &["event: tock", "data: 4"],
            &["data: tick 5"],
        ],
    );
    vec![
        Stream {
            path: "/chat",
            content_type: "text/event-stream",
            provider: Some("openai"),
            input: 1234,
            output: 567,
            body: chat,
        },
        Stream {
            path: "/responses",
            content_type: "text/event-stream",
            provider: Some("openai"),
            input: 2048,
            output: 321,
            body: responses,
        },
        Stream {
            path: "/messages",
            content_type: "Text/Event-Stream; charset=utf-8",
            provider: Some("anthropic"),
            input: 4711,
            output: 389,
            body: anthropic,
        },
        Stream {
            path: "/plain",
            content_type: "text/event-stream",
            provider: None,
            input: 0,
            output: 0,
            body: plain,
        },
    ]
}

/// A non-SSE answer whose bytes would count if they were tapped.
const JSON: &[u8] = b"data: {\"object\":\"chat.completion.chunk\",\"usage\":{\"prompt_tokens\":77,\"completion_tokens\":5}}\n\n";

/// Cuts `body` into chunks of 7 to 40 bytes (a fixed pseudo-random sequence), and also right
/// after every `\r` that starts a blank line or a continuation `data:` line.
fn pieces(body: &[u8]) -> Vec<&[u8]> {
    let mut cuts = vec![0];
    let mut x: u64 = 0x5eed_f00d;
    let mut at = 0;
    loop {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        at += 7 + (x >> 33) as usize % 34;
        if at >= body.len() {
            break;
        }
        cuts.push(at);
    }
    for i in 0..body.len() {
        let rest = &body[i..];
        if rest.starts_with(b"\r\n\r\n") || rest.starts_with(b"\r\ndata: \"") {
            cuts.push(i + 1);
        }
    }
    cuts.push(body.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| &body[w[0]..w[1]]).collect()
}

/// When the upstream sent the head and the last body chunk of each path.
type Timings = Arc<Mutex<Vec<(String, Instant, Instant)>>>;

fn upstream(timings: Timings) -> Upstream {
    Upstream::start_with("llm", move |req: &UpstreamRequest, w| {
        if req.path_only() == "/json" {
            w.header("content-type", "application/json");
            w.send(JSON);
            return;
        }
        let all = streams();
        let Some(s) = all.iter().find(|s| s.path == req.path_only()) else {
            return upstream::echo(req, w);
        };
        w.header("content-type", s.content_type);
        w.start_chunked();
        let started = Instant::now();
        for p in pieces(&s.body) {
            w.sleep(GAP);
            w.chunk(p);
        }
        let last = Instant::now();
        timings
            .lock()
            .unwrap()
            .push((s.path.to_string(), started, last));
        w.finish();
    })
}

fn access_line(envoy: &Envoy, path: &str) -> String {
    let mut found = None;
    jisr_e2e::wait_until(WAIT, || {
        found = envoy
            .access_log_lines()
            .into_iter()
            .find(|l| access_field(l, "path") == Some(path));
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no access line for {path}\n{}", envoy.log()))
}

/// Each stream reaches the client byte for byte and event by event while the upstream is
/// still sending; its usage lands in the per-provider counters (exact sums) and in the access
/// log's metadata. A stream without usage and a JSON answer change nothing.
///
/// The upstream streams OpenAI Chat Completions (CRLF, usage chunk before `data: [DONE]`), OpenAI
/// Responses (LF, `response.completed`) and Anthropic Messages (CRLF, `message_start` plus two
/// cumulative `message_delta`, `content-type: Text/Event-Stream; charset=utf-8`) in chunks of 1–40
/// bytes, 6 ms apart, cut inside lines and inside `\r\n`; the usage events spread their JSON over
/// two `data:` lines. Seen:
///
/// - the counters are exact sums
///   (`dynamicmodulescustom.sse_tap_input_tokens.provider.openai` 3282 = 1234 + 2048, output 888;
///   anthropic 4711 and 389), and the access log shows each stream's
///   `sse_tap:input_tokens` / `sse_tap:output_tokens`;
/// - `usage` inside generated text, or `"usage":null`, is not counted;
/// - the client gets every stream byte for byte, and its first event arrives 7–62 ms after the
///   request while the upstream takes 37–318 ms (the same test with the filter in Buffer mode
///   fails: first event after the last chunk);
/// - an event stream without usage, and an `application/json` answer whose bytes look like a usage
///   chunk, set no metadata (`-`), add to no counter, and pass unchanged with their
///   `content-length`;
/// - the whole test takes about 1.3–1.8 s.
///
/// The Observe handler's reads follow the upstream's chunking. This was checked once, with a
/// temporary log line in `sse_tap` (no standing test covers it): with the upstream's chunks 6 ms
/// apart on loopback, the reads matched them one to one, 114 reads for the 114 chunks of the four
/// streams (1–40 bytes each; 19 ended in the `\r` of a split `\r\n`). So the parser really was fed
/// lines cut inside `\r\n`. Envoy may merge chunks that arrive closer together.
#[test]
fn sse_usage_is_counted_as_the_stream_passes() {
    let timings = Timings::default();
    let up = upstream(timings.clone());
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .concurrency(1)
            .listener(
                Listener::new("tap")
                    .filter(module_filter("sse_tap", "sse_tap", None))
                    .log_metadata("sse_tap", "input_tokens")
                    .log_metadata("sse_tap", "output_tokens"),
            )
            .upstream(up.port()),
    );
    let port = envoy.listener_port("tap");

    for s in streams() {
        let chunks = pieces(&s.body);
        let crlf_cuts = chunks
            .windows(2)
            .filter(|w| w[0].ends_with(b"\r") && w[1].starts_with(b"\n"))
            .count();
        if s.body.contains(&b'\r') {
            assert!(crlf_cuts >= 5, "{}: {crlf_cuts} cuts inside \\r\\n", s.path);
        }
        assert!(chunks.len() >= 5, "{}: {} chunks", s.path, chunks.len());

        let sent = Instant::now();
        let mut r = client::stream(port, "GET", s.path, &[], b"").unwrap();
        assert_eq!(r.status, 200, "{}", s.path);
        assert_eq!(r.header("content-type"), Some(s.content_type));
        let mut got = Vec::new();
        let mut first_event = None;
        while let Some(b) = r.next_bytes(64 * 1024).unwrap() {
            got.extend_from_slice(&b);
            let ended = |end: &[u8]| got.windows(end.len()).any(|w| w == end);
            if first_event.is_none() && (ended(b"\n\n") || ended(b"\r\n\r\n")) {
                first_event = Some(Instant::now());
            }
        }
        let done = Instant::now();
        assert!(
            got == s.body,
            "{}: the client got\n{:?}\nnot\n{:?}",
            s.path,
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&s.body)
        );

        // No buffering: the first event is at the client while at least a quarter of the
        // upstream's sending time is still to come (a buffering filter fails this by far).
        let (_, started, last) = timings
            .lock()
            .unwrap()
            .iter()
            .find(|t| t.0 == s.path)
            .cloned()
            .unwrap();
        let first_event = first_event.unwrap();
        let upstream_took = last - started;
        assert!(
            upstream_took >= GAP * chunks.len() as u32,
            "{upstream_took:?}"
        );
        assert!(
            first_event + upstream_took / 4 < last,
            "{}: first event after {:?}, upstream sent its last chunk after {:?} (of {upstream_took:?})",
            s.path,
            first_event - sent,
            last - sent,
        );
        eprintln!(
            "{}: {} bytes in {} chunks, {crlf_cuts} cuts inside \\r\\n; first event after {:?}, \
             upstream took {upstream_took:?}, client done after {:?}",
            s.path,
            s.body.len(),
            chunks.len(),
            first_event - sent,
            done - sent
        );

        let l = access_line(&envoy, s.path);
        let (input, output) = match s.provider {
            Some(_) => (s.input.to_string(), s.output.to_string()),
            None => ("-".into(), "-".into()),
        };
        assert_eq!(access_field(&l, "code"), Some("200"), "{l}");
        assert_eq!(
            access_field(&l, "sse_tap:input_tokens"),
            Some(&*input),
            "{l}"
        );
        assert_eq!(
            access_field(&l, "sse_tap:output_tokens"),
            Some(&*output),
            "{l}"
        );
    }

    // Not an event stream (by its content type): untouched, unread, uncounted.
    let r = client::get(port, "/json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-length"), Some(&*JSON.len().to_string()));
    assert_eq!(r.body, JSON);
    let l = access_line(&envoy, "/json");
    assert_eq!(access_field(&l, "sse_tap:input_tokens"), Some("-"), "{l}");

    // Every request went upstream marked.
    let reqs = up.requests();
    assert_eq!(reqs.len(), 5);
    for q in &reqs {
        assert_eq!(q.header("x-sse-tap"), Some("1"), "{}", q.path);
    }

    // Counters: exact sums per provider; nothing from `/plain` or `/json`.
    let counter = |kind: &str, provider: &str| {
        let name = module_stat(&format!("sse_tap_{kind}_tokens"), &[("provider", provider)]);
        envoy.counter(&name)
    };
    let sum = |p: &str, f: fn(&Stream) -> u64| {
        streams()
            .iter()
            .filter(|s| s.provider == Some(p))
            .map(f)
            .sum::<u64>()
    };
    assert_eq!(sum("openai", |s| s.input), 3282);
    for p in ["openai", "anthropic"] {
        assert_eq!(counter("input", p), Some(sum(p, |s| s.input)), "{p}");
        assert_eq!(counter("output", p), Some(sum(p, |s| s.output)), "{p}");
    }
    let stats = envoy.stats();
    let ours: Vec<&str> = stats
        .lines()
        .filter(|l| l.starts_with("dynamicmodulescustom.sse_tap_"))
        .collect();
    assert_eq!(ours.len(), 4, "{ours:?}");
}
