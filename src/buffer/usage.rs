//! [`UsageTracker`]: token usage from streamed LLM responses (server-sent events).

use super::{Event, HeadTail, SseParser, json};

/// Token counts of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt / input tokens (0 if the stream never said).
    pub input_tokens: u64,
    /// Completion / output tokens (0 if the stream never said).
    pub output_tokens: u64,
}

/// Which API produced the stream, as far as the events seen so far tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Provider {
    /// Nothing recognisable yet.
    #[default]
    Unknown,
    /// OpenAI Chat Completions or Responses.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// Follows a streamed LLM response and extracts its token usage, without allocating after
/// construction.
///
/// Understood streams, detected from the events themselves:
///
/// * **OpenAI Chat Completions** (`stream_options.include_usage`): the last chunk before
///   `data: [DONE]` carries top-level `usage.prompt_tokens` / `usage.completion_tokens`
///   (earlier chunks have `"usage": null`).
/// * **OpenAI Responses**: `response.completed` (or `response.incomplete` / `response.failed`)
///   carries `response.usage.input_tokens` / `response.usage.output_tokens`.
/// * **Anthropic Messages**: `message_start` carries `message.usage.input_tokens` (and a first
///   `output_tokens`); each `message_delta` carries a cumulative `usage.output_tokens`, so the
///   last one wins, and may also carry `usage.input_tokens`, which then wins too.
///
/// Usage is read with the path-exact [`json`](super::json) scanner, so a `"usage"` inside
/// generated text or another object is never mistaken for the real one.
///
/// When only a [`HeadTail`] capture of the response is available,
/// [`UsageTracker::scan_head_tail`] parses the head, skips the dropped middle by resyncing at
/// the next event boundary in the tail, and parses the rest.
///
/// ```
/// use jisr::buffer::{Provider, Usage, UsageTracker};
///
/// let mut tracker = UsageTracker::new();
/// tracker.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":");
/// tracker.feed(b"{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n");
/// tracker.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",");
/// tracker.feed(b"\"usage\":{\"output_tokens\":15}}\n\n");
/// assert_eq!(tracker.provider(), Provider::Anthropic);
/// assert_eq!(tracker.usage(), Some(Usage { input_tokens: 25, output_tokens: 15 }));
/// ```
#[derive(Debug, Clone)]
pub struct UsageTracker {
    parser: SseParser,
    state: State,
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    provider: Provider,
    input: Option<u64>,
    output: Option<u64>,
}

impl UsageTracker {
    /// A tracker whose parser keeps 256-byte event types and 64 KiB of data per event.
    ///
    /// A Responses API `response.completed` event repeats the whole output before its usage;
    /// when it is larger than the data capacity its usage is lost, so size the capacity with
    /// [`UsageTracker::with_capacity`] for long Responses outputs.
    ///
    /// ```
    /// assert_eq!(jisr::buffer::UsageTracker::new().usage(), None);
    /// ```
    pub fn new() -> Self {
        Self::with_capacity(256, 64 * 1024)
    }

    /// A tracker whose parser has the given capacities (see [`SseParser::with_capacity`]).
    ///
    /// ```
    /// let tracker = jisr::buffer::UsageTracker::with_capacity(128, 16 * 1024);
    /// # let _ = tracker;
    /// ```
    pub fn with_capacity(field_cap: usize, data_cap: usize) -> Self {
        UsageTracker {
            parser: SseParser::with_capacity(field_cap, data_cap),
            state: State::default(),
        }
    }

    /// Feeds the next chunk of the response body, split anywhere.
    ///
    /// ```
    /// let mut tracker = jisr::buffer::UsageTracker::new();
    /// tracker.feed(b"data: {\"object\":\"chat.completion.chunk\",\"usage\":");
    /// tracker.feed(b"{\"prompt_tokens\":9,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n");
    /// assert_eq!(tracker.usage().unwrap().input_tokens, 9);
    /// ```
    pub fn feed(&mut self, chunk: &[u8]) {
        let state = &mut self.state;
        self.parser.feed(chunk, |event| state.observe(event));
    }

    /// The API the stream came from, once an event has shown it.
    ///
    /// ```
    /// let mut tracker = jisr::buffer::UsageTracker::new();
    /// tracker.feed(b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n");
    /// assert_eq!(tracker.provider(), jisr::buffer::Provider::OpenAi);
    /// ```
    pub fn provider(&self) -> Provider {
        self.state.provider
    }

    /// The usage seen so far, or `None` if the stream has reported no token count yet.
    ///
    /// ```
    /// let tracker = jisr::buffer::UsageTracker::new();
    /// assert!(tracker.usage().is_none());
    /// ```
    pub fn usage(&self) -> Option<Usage> {
        if self.state.input.is_none() && self.state.output.is_none() {
            return None;
        }
        Some(Usage {
            input_tokens: self.state.input.unwrap_or(0),
            output_tokens: self.state.output.unwrap_or(0),
        })
    }

    /// Forgets the stream, ready for a new response; the storage is kept.
    ///
    /// ```
    /// let mut tracker = jisr::buffer::UsageTracker::new();
    /// tracker.feed(b"data: {\"usage\":{\"prompt_tokens\":1}}\n\n");
    /// tracker.reset();
    /// assert!(tracker.usage().is_none());
    /// ```
    pub fn reset(&mut self) {
        self.parser.reset();
        self.state = State::default();
    }

    /// Extracts usage from a capture: `head`, then `dropped` bytes never seen, then `tail`.
    ///
    /// `tail` must not repeat bytes of `head` (use [`HeadTail::tail_after_head`]). When bytes
    /// were dropped the parser resyncs at the first event boundary in the tail, so an event
    /// cut by the gap is skipped, never misread. Resets the tracker first.
    ///
    /// ```
    /// let mut tracker = jisr::buffer::UsageTracker::new();
    /// let head = b"data: {\"choices\":[]}\n\ndata: {\"choi";
    /// let tail = b"ces\":[]}\n\ndata: {\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\n";
    /// let usage = tracker.scan_capture(head, 1000, (tail, b"")).unwrap();
    /// assert_eq!((usage.input_tokens, usage.output_tokens), (4, 2));
    /// ```
    pub fn scan_capture(
        &mut self,
        head: &[u8],
        dropped: u64,
        tail: (&[u8], &[u8]),
    ) -> Option<Usage> {
        self.reset();
        self.feed(head);
        if dropped > 0 {
            self.parser.resync();
        }
        self.feed(tail.0);
        self.feed(tail.1);
        self.usage()
    }

    /// [`UsageTracker::scan_capture`] over a [`HeadTail`] capture of the response body.
    ///
    /// Size the capture for the events that carry usage: the head must hold the first event
    /// (Anthropic `message_start`), the tail the last ones (OpenAI's usage chunk, Anthropic's
    /// `message_delta`, or the whole `response.completed`, which repeats the full output).
    ///
    /// ```
    /// use jisr::buffer::{HeadTail, UsageTracker};
    ///
    /// let mut capture = HeadTail::new(128, 256);
    /// capture.write(b"event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":7}}}\n\n");
    /// for _ in 0..100 {
    ///     capture.write(b"event: content_block_delta\ndata: {\"delta\":{\"text\":\"hi\"}}\n\n");
    /// }
    /// capture.write(b"event: message_delta\ndata: {\"usage\":{\"output_tokens\":100}}\n\n");
    ///
    /// let usage = UsageTracker::new().scan_head_tail(&capture).unwrap();
    /// assert_eq!((usage.input_tokens, usage.output_tokens), (7, 100));
    /// ```
    pub fn scan_head_tail(&mut self, capture: &HeadTail) -> Option<Usage> {
        self.scan_capture(capture.head(), capture.dropped(), capture.tail_after_head())
    }
}

impl Default for UsageTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    fn observe(&mut self, event: &Event<'_>) {
        let data = event.data;
        if !event.is_type("message") {
            self.on_kind(event.event_type, data);
            return;
        }
        // No `event:` line: a chat completion chunk, or a stream whose type is in the JSON.
        let is_chat = || {
            json::find(data, &["object"])
                .is_some_and(|o| json::string_eq(o, "chat.completion.chunk"))
        };
        if data == b"[DONE]" || is_chat() {
            self.provider = Provider::OpenAi;
        } else if let Some(kind) = json::find(data, &["type"]).and_then(json::string_body) {
            self.on_kind(kind, data);
            return;
        }
        self.take(data, &["usage"], "prompt_tokens", "completion_tokens");
    }

    fn on_kind(&mut self, kind: &[u8], data: &[u8]) {
        match kind {
            b"message_start" => {
                self.provider = Provider::Anthropic;
                self.take(data, &["message", "usage"], "input_tokens", "output_tokens");
            }
            b"message_delta" => {
                self.provider = Provider::Anthropic;
                self.take(data, &["usage"], "input_tokens", "output_tokens");
            }
            b"response.completed" | b"response.incomplete" | b"response.failed" => {
                self.provider = Provider::OpenAi;
                self.take(
                    data,
                    &["response", "usage"],
                    "input_tokens",
                    "output_tokens",
                );
            }
            k if k.starts_with(b"response.") => self.provider = Provider::OpenAi,
            b"message_stop"
            | b"content_block_start"
            | b"content_block_delta"
            | b"content_block_stop" => self.provider = Provider::Anthropic,
            _ => {}
        }
    }

    /// Records the counts named `input` and `output` in the object at `usage`; a count that
    /// is missing (or `null`) leaves the old value.
    fn take(&mut self, data: &[u8], usage: &[&str], input: &str, output: &str) {
        let Some(usage) = json::find(data, usage) else {
            return;
        };
        if let Some(n) = json::find_u64(usage, &[input]) {
            self.input = Some(n);
        }
        if let Some(n) = json::find_u64(usage, &[output]) {
            self.output = Some(n);
        }
    }
}

#[cfg(test)]
mod tests;
