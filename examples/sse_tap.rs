//! `sse_tap`: token usage of streamed LLM responses, read as the events pass.
//!
//! Filter `sse_tap` ([`ResponseMode::Observe`]: headers and body go to the client at once;
//! the handler only looks):
//!
//! - **Request.** Skips the body and sets request header `x-sse-tap: 1`.
//! - **Response.** A `text/event-stream` response (any parameters, any case) is fed chunk by
//!   chunk, as it passes, to a [`UsageTracker`], which understands OpenAI Chat Completions
//!   (usage chunk before `data: [DONE]`), OpenAI Responses (`response.completed`) and
//!   Anthropic Messages (`message_start` plus cumulative `message_delta`) streams, with events
//!   and lines split anywhere. When the body ends (or the stream is cut: what was reported
//!   until then counts):
//!   - counters `sse_tap_input_tokens{provider}` and `sse_tap_output_tokens{provider}` grow
//!     by the usage, with `provider` = `openai` or `anthropic`;
//!   - metadata `sse_tap:input_tokens` and `sse_tap:output_tokens` hold it (numbers; Envoy
//!     prints round ones such as 100000 as `1e+05`).
//!
//!   A stream that reported no usage changes nothing. Usage from a stream whose provider the
//!   tracker could not tell (no chat chunk `object`, no known event type), or that is neither
//!   OpenAI nor Anthropic (Gemini), is set as metadata but not counted. A count the stream did
//!   not report counts as 0.
//! - Any other response is not read and not counted.
//!
//! A tracker reads events of any size in constant memory (a Responses `response.completed`
//! event repeats the whole output before its usage) and never allocates. Trackers are pooled
//! per worker thread and reset between responses.

use jisr::buffer::{Provider, UsageTracker};
use jisr::{
    ConfigError, ConfigHandle, Counter, Registry, Request, Response, ResponseMode, ResponseWriter,
};
use std::cell::RefCell;

struct Tap {
    input: Counter,
    output: Counter,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Tap, ConfigError> {
    Ok(Tap {
        input: cfg.counter("sse_tap_input_tokens", &["provider"])?,
        output: cfg.counter("sse_tap_output_tokens", &["provider"])?,
    })
}

async fn mark(_tap: &Tap, mut req: Request<'_>, _w: ResponseWriter<'_>) {
    req.skip_body();
    let _ = req.set_header("x-sse-tap", "1");
}

thread_local! {
    /// Idle trackers of this worker thread.
    static IDLE: RefCell<Vec<UsageTracker>> = const { RefCell::new(Vec::new()) };
}

/// A tracker borrowed from this worker's idle list; reset and given back on drop (also when
/// the handler's future is dropped mid-stream).
struct Borrowed(Option<UsageTracker>);

impl Borrowed {
    fn take() -> Borrowed {
        let idle = IDLE.with(|idle| idle.borrow_mut().pop());
        Borrowed(Some(idle.unwrap_or_default()))
    }

    fn get(&mut self) -> &mut UsageTracker {
        self.0.get_or_insert_with(UsageTracker::new)
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        if let Some(mut t) = self.0.take() {
            t.reset();
            // `try_with`: during thread exit the tracker is simply freed.
            let _ = IDLE.try_with(|idle| idle.borrow_mut().push(t));
        }
    }
}

fn is_event_stream(content_type: &[u8]) -> bool {
    const SSE: &[u8] = b"text/event-stream";
    content_type.len() >= SSE.len()
        && content_type[..SSE.len()].eq_ignore_ascii_case(SSE)
        && matches!(
            content_type.get(SSE.len()),
            None | Some(b';' | b' ' | b'\t')
        )
}

async fn tap(tap: &Tap, _: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    if !resp.header("content-type").is_some_and(is_event_stream) {
        resp.skip_body();
        return;
    }
    let mut tracker = Borrowed::take();
    let mut buf = [0u8; 4096];
    // `Err`: the stream was cut; what it reported so far still counts.
    while let Ok(n @ 1..) = resp.read(&mut buf).await {
        tracker.get().feed(&buf[..n]);
    }
    let Some(usage) = tracker.get().usage() else {
        return;
    };
    let input = usage.input_tokens.unwrap_or(0);
    let output = usage.output_tokens.unwrap_or(0);
    w.set_metadata_num("sse_tap", "input_tokens", input as f64);
    w.set_metadata_num("sse_tap", "output_tokens", output as f64);
    let provider = match tracker.get().provider() {
        Provider::OpenAi => "openai",
        Provider::Anthropic => "anthropic",
        _ => return,
    };
    let _ = w.counter_add(tap.input, &[provider], input);
    let _ = w.counter_add(tap.output, &[provider], output);
}

fn register(r: &mut Registry) {
    r.filter("sse_tap")
        .state(load)
        .respond(ResponseMode::Observe, mark, tap);
}

jisr::export!(register);
