//! [`UsageTracker`]: token usage from LLM responses, streamed (server-sent events) or not
//! (JSON), read as the bytes pass in constant memory.

use super::HeadTail;
use super::json_stream::{Hit, PathMatcher, PathSet, Value};
use super::sse_lines::{Field, Fields, Lines};

/// Token counts of one response, as the provider reported them.
///
/// Each count is `None` when the response did not report it (never a made-up 0). Where each
/// comes from:
///
/// | field | OpenAI Chat Completions | OpenAI Responses | Anthropic Messages | Google Gemini |
/// |---|---|---|---|---|
/// | `input_tokens` | `prompt_tokens` | `input_tokens` | `input_tokens` | `promptTokenCount` |
/// | `output_tokens` | `completion_tokens` | `output_tokens` | `output_tokens` | `candidatesTokenCount` |
/// | `cached_input_tokens` | `prompt_tokens_details.cached_tokens` | `input_tokens_details.cached_tokens` | `cache_read_input_tokens` | `cachedContentTokenCount` |
/// | `cache_creation_input_tokens` | | | `cache_creation_input_tokens` | |
/// | `reasoning_tokens` | `completion_tokens_details.reasoning_tokens` | `output_tokens_details.reasoning_tokens` | | `thoughtsTokenCount` |
///
/// The numbers are not normalised across providers: OpenAI and Gemini count cached tokens
/// inside the input, Anthropic does not (its input excludes cache reads and writes); OpenAI
/// counts reasoning tokens inside the output, Gemini does not.
///
/// ```
/// use jisr_buffer::UsageTracker;
///
/// let mut tracker = UsageTracker::new();
/// tracker.feed(br#"{"object":"chat.completion","usage":{"prompt_tokens":12,"completion_tokens":5}}"#);
/// let usage = tracker.usage().unwrap();
/// assert_eq!(usage.input_tokens, Some(12));
/// assert_eq!(usage.output_tokens, Some(5));
/// assert_eq!(usage.cached_input_tokens, None); // not sent: absent, not 0
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt / input tokens.
    pub input_tokens: Option<u64>,
    /// Completion / output tokens.
    pub output_tokens: Option<u64>,
    /// Input tokens read from the provider's prompt cache.
    pub cached_input_tokens: Option<u64>,
    /// Input tokens written to the prompt cache (Anthropic only).
    pub cache_creation_input_tokens: Option<u64>,
    /// Reasoning ("thinking") tokens.
    pub reasoning_tokens: Option<u64>,
}

/// Which API produced the response, as far as the bytes seen so far tell.
///
/// ```
/// use jisr_buffer::{Provider, UsageTracker};
///
/// let mut tracker = UsageTracker::new();
/// assert_eq!(tracker.provider(), Provider::Unknown);
/// tracker.feed(br#"{"modelVersion":"gemini-2.0-flash","usageMetadata":{"promptTokenCount":3}}"#);
/// assert_eq!(tracker.provider(), Provider::Gemini);
/// ```
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
    /// Google Gemini (`generateContent` / `streamGenerateContent`).
    Gemini,
}

/// How a response body is framed.
///
/// ```
/// use jisr_buffer::{BodyFormat, UsageTracker};
///
/// let mut sse = UsageTracker::new();
/// sse.feed(b"data: {}\n\n");
/// assert_eq!(sse.format(), Some(BodyFormat::Sse));
///
/// let mut json = UsageTracker::new();
/// json.feed(b"  {\"usage\": {}}");
/// assert_eq!(json.format(), Some(BodyFormat::Json));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// Server-sent events (`text/event-stream`): each event's `data` is one JSON document.
    Sse,
    /// JSON: one document (a non-streamed answer), several one after another (JSON lines), or
    /// a top-level array whose elements are documents (Gemini `streamGenerateContent` without
    /// `alt=sse`).
    Json,
}

/// Follows an LLM response body and extracts its token usage and provider, in constant
/// memory and without allocating at all.
///
/// Feed it the raw body bytes, split anywhere. Unless a format is forced with
/// [`UsageTracker::with_format`], the first byte that is not a byte order mark or JSON
/// whitespace decides: `{` or `[` means a [`BodyFormat::Json`] body, anything else server-sent
/// events (no event stream starts with `{` or `[`: such a line would be an unknown field). The
/// content type is not needed.
///
/// Understood responses, told apart by their content:
///
/// * **OpenAI Chat Completions**: streamed (`stream_options.include_usage`), the last chunk
///   before `data: [DONE]` carries top-level `usage` (earlier chunks have `"usage": null`);
///   a JSON answer (`"object": "chat.completion"`) carries top-level `usage`.
/// * **OpenAI Responses**: streamed, `response.completed` (or `response.incomplete` /
///   `response.failed`) carries `response.usage`, after repeating the whole output; a JSON
///   answer (`"object": "response"`) carries top-level `usage`.
/// * **Anthropic Messages**: streamed, `message_start` carries `message.usage` and each
///   `message_delta` a cumulative `usage`, so later counts win; a JSON answer
///   (`"type": "message"`) carries top-level `usage`.
/// * **Google Gemini**: every chunk of `streamGenerateContent?alt=sse` (and the JSON answer
///   of `generateContent`, or each element of a non-SSE stream) carries `usageMetadata`; the
///   last count of each kind wins.
///
/// Each shape's counts are read only at its own path and, for typed events, only from the
/// event types above. An event or document with neither a known type nor a known `object`
/// still has its top-level `usage` read (OpenAI-compatible servers), with the provider left
/// [`Provider::Unknown`]. A count missing from a later report (or `null`, or not a plain
/// integer) keeps the earlier value.
///
/// Event data is never stored: the SSE framing is read incrementally and each event's `data`
/// bytes (lines joined by `\n`) flow through a streaming, path-exact
/// [`json_stream`](super::json_stream) matcher that is reset at each event boundary. So an
/// event of any size (a `response.completed` of many megabytes) keeps its usage, and a
/// `"usage"` inside generated text or inside another object is never mistaken for the real
/// one. An event still open when the input ends is not counted (the SSE rule), nor is a JSON
/// document that never closes.
///
/// When only a [`HeadTail`] capture of the response is available,
/// [`UsageTracker::scan_head_tail`] parses the head, skips the dropped middle by resyncing at
/// the next event boundary in the tail, and parses the rest.
///
/// ```
/// use jisr_buffer::{Provider, Usage, UsageTracker};
///
/// let mut tracker = UsageTracker::new();
/// tracker.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":");
/// tracker.feed(b"{\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n");
/// tracker.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",");
/// tracker.feed(b"\"usage\":{\"output_tokens\":15}}\n\n");
/// assert_eq!(tracker.provider(), Provider::Anthropic);
/// let usage = tracker.usage().unwrap();
/// assert_eq!(usage.input_tokens, Some(25));
/// assert_eq!(usage.output_tokens, Some(15));
/// assert_eq!(usage.cached_input_tokens, Some(100));
/// assert_eq!(usage.reasoning_tokens, None);
/// ```
///
/// A non-streamed answer, fed the same way:
///
/// ```
/// use jisr_buffer::{BodyFormat, Provider, UsageTracker};
///
/// let mut tracker = UsageTracker::new();
/// tracker.feed(br#"{"candidates":[{"content":{"parts":[{"text":"usageMetadata"}]}}],"#);
/// tracker.feed(br#""usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":3,"thoughtsTokenCount":5}}"#);
/// assert_eq!(tracker.format(), Some(BodyFormat::Json));
/// assert_eq!(tracker.provider(), Provider::Gemini);
/// let usage = tracker.usage().unwrap();
/// assert_eq!((usage.input_tokens, usage.output_tokens), (Some(8), Some(3)));
/// assert_eq!(usage.reasoning_tokens, Some(5));
/// ```
#[derive(Debug, Clone)]
pub struct UsageTracker {
    forced: Option<BodyFormat>,
    mode: Mode,
    /// Byte order mark bytes matched at the start; `BOM.len()` once past it.
    bom: usize,
    /// While detecting: a space or tab since the last line end.
    line_dirty: bool,
    lines: Lines,
    sse: Framer,
    matcher: PathMatcher<'static>,
    seen: Seen,
    totals: Totals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing but a byte order mark or whitespace yet.
    Detect,
    Sse,
    Json,
    /// A JSON body lost bytes: nothing more can be read safely.
    Stopped,
}

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// Event type bytes kept: enough for every type the tracker knows.
const EVENT_CAP: usize = 32;

/// The event being read: whether it has data, its type, and the first bytes of its data
/// (the lines themselves are read by [`Lines`]; only `data` and `event` matter to usage).
#[derive(Debug, Clone)]
struct Framer {
    has_data: bool,
    event: [u8; EVENT_CAP],
    event_len: usize,
    event_over: bool,
    /// The first bytes of the event's data and its length, to recognise `[DONE]`.
    head: [u8; 6],
    data_len: usize,
}

impl Framer {
    const NEW: Framer = Framer {
        has_data: false,
        event: [0; EVENT_CAP],
        event_len: 0,
        event_over: false,
        head: [0; 6],
        data_len: 0,
    };

    /// The kind named by the `event` field, unless absent or `message`.
    fn kind(&self) -> Option<Kind> {
        if self.event_len == 0 {
            return None;
        }
        Some(Kind::of(&self.event[..self.event_len], !self.event_over))
            .filter(|k| *k != Kind::Message)
    }

    fn push_event(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(EVENT_CAP - self.event_len);
        self.event[self.event_len..self.event_len + n].copy_from_slice(&bytes[..n]);
        self.event_len += n;
        self.event_over |= n < bytes.len();
    }
}

/// Where each watched value goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A count: group (which usage object) and field.
    Count(usize, usize),
    /// The top-level `type` string.
    Type,
    /// The top-level `object` string.
    Object,
    /// A key only Gemini sends.
    Gemini,
}

// Usage objects.
const TOP: usize = 0; // `usage`
const MESSAGE: usize = 1; // `message.usage` (Anthropic `message_start`)
const RESPONSE: usize = 2; // `response.usage` (OpenAI Responses events)
const GEMINI: usize = 3; // `usageMetadata`
const GROUPS: usize = 4;

// Fields of `Usage`, in order.
const INPUT: usize = 0;
const OUTPUT: usize = 1;
const CACHED: usize = 2;
const CACHE_WRITE: usize = 3;
const REASONING: usize = 4;
const FIELDS: usize = 5;

const TABLE: [(&[&str], Target); 26] = [
    (&["type"], Target::Type),
    (&["object"], Target::Object),
    (&["modelVersion"], Target::Gemini),
    (&["usageMetadata"], Target::Gemini),
    (&["usage", "prompt_tokens"], Target::Count(TOP, INPUT)),
    (&["usage", "input_tokens"], Target::Count(TOP, INPUT)),
    (&["usage", "completion_tokens"], Target::Count(TOP, OUTPUT)),
    (&["usage", "output_tokens"], Target::Count(TOP, OUTPUT)),
    (
        &["usage", "prompt_tokens_details", "cached_tokens"],
        Target::Count(TOP, CACHED),
    ),
    (
        &["usage", "input_tokens_details", "cached_tokens"],
        Target::Count(TOP, CACHED),
    ),
    (
        &["usage", "cache_read_input_tokens"],
        Target::Count(TOP, CACHED),
    ),
    (
        &["usage", "cache_creation_input_tokens"],
        Target::Count(TOP, CACHE_WRITE),
    ),
    (
        &["usage", "completion_tokens_details", "reasoning_tokens"],
        Target::Count(TOP, REASONING),
    ),
    (
        &["usage", "output_tokens_details", "reasoning_tokens"],
        Target::Count(TOP, REASONING),
    ),
    (
        &["message", "usage", "input_tokens"],
        Target::Count(MESSAGE, INPUT),
    ),
    (
        &["message", "usage", "output_tokens"],
        Target::Count(MESSAGE, OUTPUT),
    ),
    (
        &["message", "usage", "cache_read_input_tokens"],
        Target::Count(MESSAGE, CACHED),
    ),
    (
        &["message", "usage", "cache_creation_input_tokens"],
        Target::Count(MESSAGE, CACHE_WRITE),
    ),
    (
        &["response", "usage", "input_tokens"],
        Target::Count(RESPONSE, INPUT),
    ),
    (
        &["response", "usage", "output_tokens"],
        Target::Count(RESPONSE, OUTPUT),
    ),
    (
        &["response", "usage", "input_tokens_details", "cached_tokens"],
        Target::Count(RESPONSE, CACHED),
    ),
    (
        &[
            "response",
            "usage",
            "output_tokens_details",
            "reasoning_tokens",
        ],
        Target::Count(RESPONSE, REASONING),
    ),
    (
        &["usageMetadata", "promptTokenCount"],
        Target::Count(GEMINI, INPUT),
    ),
    (
        &["usageMetadata", "candidatesTokenCount"],
        Target::Count(GEMINI, OUTPUT),
    ),
    (
        &["usageMetadata", "cachedContentTokenCount"],
        Target::Count(GEMINI, CACHED),
    ),
    (
        &["usageMetadata", "thoughtsTokenCount"],
        Target::Count(GEMINI, REASONING),
    ),
];

const PATHS: [&[&str]; TABLE.len()] = {
    let mut out: [&[&str]; TABLE.len()] = [&[]; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        out[i] = TABLE[i].0;
        i += 1;
    }
    out
};

static SET: PathSet<'static> = PathSet::new(&PATHS);

/// What an event type (or a JSON `type`) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    MessageStart,
    MessageDelta,
    /// Another Anthropic streaming event.
    AnthropicOther,
    /// `message`: no type on an SSE event line; an Anthropic answer as a JSON `type`.
    Message,
    /// `response.completed`, `response.incomplete`, `response.failed`.
    ResponseFinal,
    /// Another `response.*` event.
    ResponseOther,
    Other,
}

impl Kind {
    fn of(name: &[u8], complete: bool) -> Kind {
        // Dispatched on the length first, so each comparison has a constant size and compiles
        // to a few word compares instead of a `memcmp` call.
        if !complete {
            return if name.starts_with(b"response.") {
                Kind::ResponseOther
            } else {
                Kind::Other
            };
        }
        match name.len() {
            7 if name == b"message" => Kind::Message,
            12 if name == b"message_stop" => Kind::AnthropicOther,
            13 if name == b"message_start" => Kind::MessageStart,
            13 if name == b"message_delta" => Kind::MessageDelta,
            18 if name == b"content_block_stop" => Kind::AnthropicOther,
            19 if name == b"content_block_delta" || name == b"content_block_start" => {
                Kind::AnthropicOther
            }
            15 if name == b"response.failed" => Kind::ResponseFinal,
            18 if name == b"response.completed" => Kind::ResponseFinal,
            19 if name == b"response.incomplete" => Kind::ResponseFinal,
            _ if name.starts_with(b"response.") => Kind::ResponseOther,
            _ => Kind::Other,
        }
    }
}

/// What a top-level `object` string says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    /// `chat.completion.chunk`, `chat.completion` or `response`.
    OpenAi,
    Other,
}

/// What one event (or JSON document) held at the watched paths.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Bit `group * FIELDS + field` is set when `counts[group][field]` was seen.
    present: u32,
    counts: [[u64; FIELDS]; GROUPS],
    /// The JSON `type` string (its first bytes), classified only if the event needs it;
    /// `kind_complete` is `None` when there was none.
    kind: [u8; EVENT_CAP],
    kind_len: usize,
    kind_complete: Option<bool>,
    object: Option<Object>,
    gemini: bool,
}

impl Seen {
    const NEW: Seen = Seen {
        present: 0,
        counts: [[0; FIELDS]; GROUPS],
        kind: [0; EVENT_CAP],
        kind_len: 0,
        kind_complete: None,
        object: None,
        gemini: false,
    };

    #[inline(always)]
    fn on_hit(&mut self, hit: Hit<'_>) {
        let Hit::Value { path, value } = hit else {
            return;
        };
        match (TABLE[path].1, value) {
            (Target::Count(group, field), Value::U64(n)) => {
                self.counts[group][field] = n;
                self.present |= 1 << (group * FIELDS + field);
            }
            (Target::Type, Value::Str { decoded, complete }) => {
                let n = decoded.len().min(EVENT_CAP);
                self.kind[..n].copy_from_slice(&decoded[..n]);
                self.kind_len = n;
                self.kind_complete = Some(complete && n == decoded.len());
            }
            (Target::Object, Value::Str { decoded, complete }) => {
                // Told apart by length first: a slice comparison is a `memcmp` call.
                let openai = complete
                    && match decoded.len() {
                        21 => decoded == b"chat.completion.chunk",
                        15 => decoded == b"chat.completion",
                        8 => decoded == b"response",
                        _ => false,
                    };
                self.object = Some(if openai {
                    Object::OpenAi
                } else {
                    Object::Other
                });
            }
            (Target::Gemini, Value::Object | Value::Str { .. }) => self.gemini = true,
            _ => {}
        }
    }

    /// The kind named by the JSON `type`, if there was one.
    fn kind(&self) -> Option<Kind> {
        let complete = self.kind_complete?;
        Some(Kind::of(&self.kind[..self.kind_len], complete))
    }

    fn clear(&mut self) {
        self.present = 0;
        self.kind_complete = None;
        self.object = None;
        self.gemini = false;
    }
}

/// What the response reported so far.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    provider: Provider,
    usage: Usage,
}

impl Totals {
    /// Records the counts of usage object `group` that `seen` holds; a missing count keeps
    /// the old value.
    fn apply(&mut self, seen: &Seen, group: usize) {
        let mut bits = (seen.present >> (group * FIELDS)) & ((1 << FIELDS) - 1);
        let u = &mut self.usage;
        while bits != 0 {
            let field = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let slot = match field {
                INPUT => &mut u.input_tokens,
                OUTPUT => &mut u.output_tokens,
                CACHED => &mut u.cached_input_tokens,
                CACHE_WRITE => &mut u.cache_creation_input_tokens,
                _ => &mut u.reasoning_tokens,
            };
            *slot = Some(seen.counts[group][field]);
        }
    }

    /// An event or document whose type is known.
    fn typed(&mut self, kind: Kind, seen: &Seen) {
        match kind {
            Kind::MessageStart => {
                self.provider = Provider::Anthropic;
                self.apply(seen, MESSAGE);
            }
            Kind::MessageDelta | Kind::Message => {
                self.provider = Provider::Anthropic;
                self.apply(seen, TOP);
            }
            Kind::AnthropicOther => self.provider = Provider::Anthropic,
            Kind::ResponseFinal => {
                self.provider = Provider::OpenAi;
                self.apply(seen, RESPONSE);
            }
            Kind::ResponseOther => self.provider = Provider::OpenAi,
            Kind::Other => {}
        }
    }

    /// An event or document without a type: a chat completion (chunk), a Responses answer,
    /// a Gemini answer, or something unknown whose top-level `usage` still counts.
    fn untyped(&mut self, seen: &Seen, done: bool) {
        if done || seen.object == Some(Object::OpenAi) {
            self.provider = Provider::OpenAi;
        }
        if seen.gemini {
            self.provider = Provider::Gemini;
            self.apply(seen, GEMINI);
        }
        self.apply(seen, TOP);
    }

    fn document(&mut self, seen: &Seen, event_kind: Option<Kind>, done: bool) {
        match event_kind.or_else(|| seen.kind()) {
            Some(kind) => self.typed(kind, seen),
            None => self.untyped(seen, done),
        }
    }
}

impl UsageTracker {
    /// A tracker that tells the body format from the first bytes (see [`UsageTracker`]).
    ///
    /// Its whole state is inline (under 1 KiB) and it owns no heap memory, so creating
    /// one allocates nothing.
    ///
    /// ```
    /// let tracker = jisr_buffer::UsageTracker::new();
    /// assert_eq!(tracker.usage(), None);
    /// assert_eq!(tracker.format(), None);
    /// assert!(std::mem::size_of_val(&tracker) < 1024);
    /// ```
    pub fn new() -> Self {
        UsageTracker {
            forced: None,
            mode: Mode::Detect,
            bom: 0,
            line_dirty: false,
            lines: Lines::NEW,
            sse: Framer::NEW,
            matcher: PathMatcher::new(&SET),
            seen: Seen::NEW,
            totals: Totals::default(),
        }
    }

    /// A tracker that reads the body as `format`, whatever its first bytes.
    ///
    /// ```
    /// use jisr_buffer::{BodyFormat, UsageTracker};
    ///
    /// let mut tracker = UsageTracker::with_format(BodyFormat::Json);
    /// tracker.feed(b"\xEF\xBB\xBF {\"object\":\"chat.completion\",\"usage\":{\"prompt_tokens\":3}}");
    /// assert_eq!(tracker.usage().unwrap().input_tokens, Some(3));
    /// ```
    pub fn with_format(format: BodyFormat) -> Self {
        UsageTracker {
            forced: Some(format),
            ..Self::new()
        }
    }

    /// The body format: forced, or detected once a significant byte was seen.
    ///
    /// ```
    /// use jisr_buffer::{BodyFormat, UsageTracker};
    ///
    /// let mut tracker = UsageTracker::new();
    /// tracker.feed(b"\r\n");
    /// assert_eq!(tracker.format(), None);
    /// tracker.feed(b": keep-alive\n\n");
    /// assert_eq!(tracker.format(), Some(BodyFormat::Sse));
    /// ```
    pub fn format(&self) -> Option<BodyFormat> {
        match self.mode {
            Mode::Detect => self.forced,
            Mode::Sse => Some(BodyFormat::Sse),
            Mode::Json | Mode::Stopped => Some(BodyFormat::Json),
        }
    }

    /// Feeds the next chunk of the response body, split anywhere.
    ///
    /// ```
    /// let mut tracker = jisr_buffer::UsageTracker::new();
    /// tracker.feed(b"data: {\"object\":\"chat.completion.chunk\",\"usage\":");
    /// tracker.feed(b"{\"prompt_tokens\":9,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n");
    /// assert_eq!(tracker.usage().unwrap().input_tokens, Some(9));
    /// ```
    pub fn feed(&mut self, chunk: &[u8]) {
        let chunk = match self.mode {
            Mode::Detect => self.detect(chunk),
            _ => chunk,
        };
        self.feed_decided(chunk);
    }

    fn feed_decided(&mut self, chunk: &[u8]) {
        match self.mode {
            Mode::Sse => self.feed_sse(chunk),
            Mode::Json => {
                let Self {
                    matcher,
                    seen,
                    totals,
                    ..
                } = self;
                matcher.feed(chunk, |hit| {
                    if hit == Hit::DocumentEnd {
                        totals.document(seen, None, false);
                        seen.clear();
                    } else {
                        seen.on_hit(hit);
                    }
                });
            }
            Mode::Detect | Mode::Stopped => {}
        }
    }

    /// The API the response came from, once its content has shown it.
    ///
    /// ```
    /// let mut tracker = jisr_buffer::UsageTracker::new();
    /// tracker.feed(b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n");
    /// assert_eq!(tracker.provider(), jisr_buffer::Provider::OpenAi);
    /// ```
    pub fn provider(&self) -> Provider {
        self.totals.provider
    }

    /// The usage reported so far, or `None` if the response has reported no count yet.
    ///
    /// ```
    /// let tracker = jisr_buffer::UsageTracker::new();
    /// assert!(tracker.usage().is_none());
    /// ```
    pub fn usage(&self) -> Option<Usage> {
        Some(self.totals.usage).filter(|u| *u != Usage::default())
    }

    /// Forgets the response, ready for a new one (a forced format stays).
    ///
    /// ```
    /// let mut tracker = jisr_buffer::UsageTracker::new();
    /// tracker.feed(b"data: {\"usage\":{\"prompt_tokens\":1}}\n\n");
    /// tracker.reset();
    /// assert!(tracker.usage().is_none());
    /// ```
    pub fn reset(&mut self) {
        self.mode = Mode::Detect;
        self.bom = 0;
        self.line_dirty = false;
        self.lines = Lines::NEW;
        self.sse = Framer::NEW;
        self.matcher.reset();
        self.seen.clear();
        self.totals = Totals::default();
    }

    /// Extracts usage from a capture: `head`, then `dropped` bytes never seen, then `tail`.
    ///
    /// `tail` must not repeat bytes of `head` (use [`HeadTail::tail_after_head`]). When bytes
    /// were dropped from an event stream, parsing resyncs at the first event boundary in the
    /// tail, so an event cut by the gap is skipped, never misread; a JSON body cannot be
    /// resynced, so only what the head completed counts. Resets the tracker first.
    ///
    /// ```
    /// let mut tracker = jisr_buffer::UsageTracker::new();
    /// let head = b"data: {\"choices\":[]}\n\ndata: {\"choi";
    /// let tail = b"ces\":[]}\n\ndata: {\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\n";
    /// let usage = tracker.scan_capture(head, 1000, (tail, b"")).unwrap();
    /// assert_eq!((usage.input_tokens, usage.output_tokens), (Some(4), Some(2)));
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
            self.lose_bytes();
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
    /// use jisr_buffer::{HeadTail, UsageTracker};
    ///
    /// let mut capture = HeadTail::new(128, 256);
    /// capture.write(b"event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":7}}}\n\n");
    /// for _ in 0..100 {
    ///     capture.write(b"event: content_block_delta\ndata: {\"delta\":{\"text\":\"hi\"}}\n\n");
    /// }
    /// capture.write(b"event: message_delta\ndata: {\"usage\":{\"output_tokens\":100}}\n\n");
    ///
    /// let usage = UsageTracker::new().scan_head_tail(&capture).unwrap();
    /// assert_eq!((usage.input_tokens, usage.output_tokens), (Some(7), Some(100)));
    /// ```
    pub fn scan_head_tail(&mut self, capture: &HeadTail) -> Option<Usage> {
        self.scan_capture(capture.head(), capture.dropped(), capture.tail_after_head())
    }

    /// Bytes were lost before the next chunk.
    fn lose_bytes(&mut self) {
        match self.mode {
            Mode::Detect if self.forced == Some(BodyFormat::Json) => self.mode = Mode::Stopped,
            Mode::Detect => {
                // Whatever the body is, an event stream resync reads nothing wrong from it.
                self.bom = BOM.len();
                self.decide(Mode::Sse);
                self.resync();
            }
            Mode::Sse => self.resync(),
            Mode::Json => self.mode = Mode::Stopped,
            Mode::Stopped => {}
        }
    }

    /// Drops the event being read and skips input up to and including the next blank line.
    fn resync(&mut self) {
        self.clear_event();
        self.lines.resync();
    }

    fn decide(&mut self, mode: Mode) {
        self.mode = mode;
        self.matcher.set_documents_in_root_array(mode == Mode::Json);
    }

    /// Consumes a byte order mark and, unless the format is forced, the whitespace before the
    /// first significant byte, which decides the format. Returns what is left to parse.
    fn detect<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        let mut i = 0;
        while self.bom < BOM.len() {
            let Some(&b) = chunk.get(i) else {
                return &[];
            };
            if b == BOM[self.bom] {
                self.bom += 1;
                i += 1;
                continue;
            }
            let held = self.bom;
            self.bom = BOM.len();
            if held > 0 {
                // Not a byte order mark after all: the bytes held back are content, and
                // neither whitespace nor JSON.
                self.decide(match self.forced {
                    Some(BodyFormat::Json) => Mode::Json,
                    _ => Mode::Sse,
                });
                self.feed_decided(&BOM[..held]);
                return &chunk[i..];
            }
        }
        if let Some(format) = self.forced {
            self.decide(match format {
                BodyFormat::Sse => Mode::Sse,
                BodyFormat::Json => Mode::Json,
            });
            return &chunk[i..];
        }
        while let Some(&b) = chunk.get(i) {
            match b {
                b'\r' | b'\n' => self.line_dirty = false,
                b' ' | b'\t' => self.line_dirty = true,
                b'{' | b'[' => {
                    self.decide(Mode::Json);
                    return &chunk[i..];
                }
                _ => {
                    self.decide(Mode::Sse);
                    // Blank lines before the first field change nothing; a line that starts
                    // with a space or tab names no known field and is ignored.
                    if self.line_dirty {
                        self.lines.ignore_line();
                    }
                    return &chunk[i..];
                }
            }
            i += 1;
        }
        &[]
    }

    fn feed_sse(&mut self, chunk: &[u8]) {
        let mut lines = self.lines;
        lines.feed(chunk, self);
        self.lines = lines;
    }

    fn start_field(&mut self, field: Field) {
        match field {
            Field::Data => {
                if self.sse.has_data {
                    self.push_data(b"\n");
                }
                self.sse.has_data = true;
            }
            Field::Event => {
                self.sse.event_len = 0;
                self.sse.event_over = false;
            }
            Field::Id | Field::Retry => {}
        }
    }

    /// Event data bytes go straight to the matcher; only the first 6 are kept.
    fn push_data(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let sse = &mut self.sse;
        let at = sse.data_len.min(sse.head.len());
        let n = bytes.len().min(sse.head.len() - at);
        sse.head[at..at + n].copy_from_slice(&bytes[..n]);
        sse.data_len = sse.data_len.saturating_add(bytes.len());
        let seen = &mut self.seen;
        self.matcher.feed(bytes, |hit| seen.on_hit(hit));
    }

    /// A blank line: the event ends (the first one after a resync only ends the resync).
    fn dispatch(&mut self, resynced: bool) {
        if !resynced && self.sse.has_data {
            let done = self.sse.data_len == 6 && self.sse.head == *b"[DONE]";
            self.totals.document(&self.seen, self.sse.kind(), done);
        }
        self.clear_event();
    }

    /// Forgets the event being read.
    fn clear_event(&mut self) {
        self.sse.has_data = false;
        self.sse.event_len = 0;
        self.sse.event_over = false;
        self.sse.data_len = 0;
        self.matcher.reset();
        self.seen.clear();
    }
}

/// The tracker reads the `data` and `event` fields of an event stream.
impl Fields for UsageTracker {
    #[inline(always)]
    fn start(&mut self, field: Field) {
        self.start_field(field);
    }

    #[inline(always)]
    fn value(&mut self, field: Field, bytes: &[u8]) {
        match field {
            Field::Data => self.push_data(bytes),
            Field::Event => self.sse.push_event(bytes),
            Field::Id | Field::Retry => {}
        }
    }

    #[inline(always)]
    fn finish(&mut self, _field: Field) {}

    fn blank_line(&mut self, resynced: bool) {
        self.dispatch(resynced);
    }
}

impl Default for UsageTracker {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chat Completions with `stream_options: {"include_usage": true}`.
    const OPENAI_CHAT: &str = concat!(
        r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"The \"usage\": {\"prompt_tokens\": 999}"},"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
        "\n\n",
        "data: [DONE]\n\n",
    );

    const RESPONSES: &str = concat!(
        "event: response.created\n",
        r#"data: {"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[],"usage":null}}"#,
        "\n\n",
        "event: response.output_text.delta\n",
        r#"data: {"type":"response.output_text.delta","delta":"Hi"}"#,
        "\n\n",
        "event: response.completed\n",
        r#"data: {"type":"response.completed","response":{"id":"resp_1","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"Hi","usage":{"input_tokens":1}}]}],"usage":{"input_tokens":37,"input_tokens_details":{"cached_tokens":5},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":3},"total_tokens":48}}}"#,
        "\n\n",
    );

    const ANTHROPIC: &str = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":472,"cache_creation_input_tokens":10,"cache_read_input_tokens":20,"output_tokens":2}}}"#,
        "\n\n",
        "event: ping\n",
        r#"data: {"type": "ping"}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"{\"usage\":{\"output_tokens\":5000}}"}}"#,
        "\n\n",
        "event: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
        "\n\n",
        "event: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    );

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            ..Usage::default()
        }
    }

    fn cases() -> [(&'static str, Provider, Usage); 3] {
        [
            (
                OPENAI_CHAT,
                Provider::OpenAi,
                Usage {
                    cached_input_tokens: Some(0),
                    reasoning_tokens: Some(0),
                    ..usage(19, 10)
                },
            ),
            (
                RESPONSES,
                Provider::OpenAi,
                Usage {
                    cached_input_tokens: Some(5),
                    reasoning_tokens: Some(3),
                    ..usage(37, 11)
                },
            ),
            (
                ANTHROPIC,
                Provider::Anthropic,
                Usage {
                    cached_input_tokens: Some(20),
                    cache_creation_input_tokens: Some(10),
                    ..usage(472, 15)
                },
            ),
        ]
    }

    fn track(input: &[u8], chunk: usize) -> UsageTracker {
        let mut t = UsageTracker::new();
        for c in input.chunks(chunk.max(1)) {
            t.feed(c);
        }
        t
    }

    #[test]
    fn providers_and_usage_whatever_the_chunking_and_line_ends() {
        for (stream, provider, expected) in cases() {
            for eol in ["\n", "\r\n", "\r"] {
                let stream = stream.replace('\n', eol);
                for chunk in [1, 2, 3, 7, 64, 1000, usize::MAX] {
                    let t = track(stream.as_bytes(), chunk);
                    assert_eq!(t.provider(), provider, "chunk {chunk}");
                    assert_eq!(t.usage(), Some(expected), "chunk {chunk}");
                    assert_eq!(t.format(), Some(BodyFormat::Sse));
                }
            }
        }
    }

    #[test]
    fn sse_framing_details() {
        let want = Some(usage(3, 4));
        for stream in [
            // Data split over several lines, joined by `\n` (JSON whitespace).
            "data: {\"usage\":\ndata:{\"prompt_tokens\":3,\ndata:  \"completion_tokens\":4}}\n\n",
            // Comments, ids, retries and unknown fields between the lines.
            ": hi\nid: 7\ndata: {\"usage\":\nretry: 10\nfoo: bar\ndata: {\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
            // A byte order mark, blank lines, and a field without a colon.
            "\u{feff}\n\n\r\ndata\ndata: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
            // The event type after the data.
            "data: {\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}}\nevent: message_start\n\n",
            // `event: message` is no type: the JSON `type` counts.
            "event: message\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}\n\n",
        ] {
            for chunk in [1, 2, 5, usize::MAX] {
                assert_eq!(track(stream.as_bytes(), chunk).usage(), want, "{stream:?}");
            }
        }
        // A number running to the end of the data is cut (as with `json::find`); the document
        // need not be complete for what it held before.
        let cut = "data: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4\n\n";
        for chunk in [1, usize::MAX] {
            let got = track(cut.as_bytes(), chunk).usage().unwrap();
            assert_eq!((got.input_tokens, got.output_tokens), (Some(3), None));
        }
        for stream in [
            // Never dispatched: no blank line at the end.
            "data: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n",
            // A line starting with a space is no field; `data` must be the whole name.
            " data: {\"usage\":{\"prompt_tokens\":3}}\n\n",
            "  \n data: {\"usage\":{\"prompt_tokens\":3}}\n\n",
            "datum: {\"usage\":{\"prompt_tokens\":3}}\n\n",
            "Data: {\"usage\":{\"prompt_tokens\":3}}\n\n",
            // The usage of a typed event that carries none is not taken from elsewhere.
            "event: ping\ndata: {\"usage\":{\"prompt_tokens\":3}}\n\n",
            "event: response.created\ndata: {\"usage\":{\"input_tokens\":3}}\n\n",
            "data: {\"type\":\"content_block_delta\",\"usage\":{\"input_tokens\":3}}\n\n",
            // A count that is not a plain integer.
            "data: {\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":4.0}}\n\n",
            "data: {\"usage\":{\"prompt_tokens\":\"3\",\"completion_tokens\":null}}\n\n",
            // Malformed JSON before the counts.
            "data: {\"x\" 1, \"usage\":{\"prompt_tokens\":3}}\n\n",
            // A BOM only counts at the very start.
            "\n\u{feff}data: {\"usage\":{\"prompt_tokens\":3}}\n\n",
        ] {
            for chunk in [1, 3, usize::MAX] {
                assert_eq!(track(stream.as_bytes(), chunk).usage(), None, "{stream:?}");
            }
        }
    }

    #[test]
    fn event_types_are_bounded() {
        // The event type is long but its start still says OpenAI.
        let long = format!("event: response.{}\ndata: {{}}\n\n", "x".repeat(100));
        let t = track(long.as_bytes(), 7);
        assert_eq!((t.provider(), t.usage()), (Provider::OpenAi, None));
        // `message_start` cut at the capacity is not `message_start`.
        let cut = format!(
            "event: message_start{}\ndata: {{\"message\":{{\"usage\":{{\"input_tokens\":3}}}}}}\n\n",
            " ".repeat(EVENT_CAP)
        );
        assert_eq!(track(cut.as_bytes(), 5).usage(), None);
    }

    #[test]
    fn done_and_object_tell_openai() {
        let t = track(b"data: [DONE]\n\n", 2);
        assert_eq!((t.provider(), t.usage()), (Provider::OpenAi, None));
        let t = track(b"data: [DONE]x\n\ndata: [DONE\n\n", 2);
        assert_eq!(t.provider(), Provider::Unknown);
        let t = track(b"data: {\"object\":\"chat.completion.chunk\"}\n\n", 2);
        assert_eq!(t.provider(), Provider::OpenAi);
        let t = track(b"data: hello\n\nevent: other\ndata: {}\n\n", 3);
        assert_eq!((t.provider(), t.usage()), (Provider::Unknown, None));
        // Unknown but shaped like a chat chunk: its usage still counts.
        let t = track(b"data: {\"usage\":{\"prompt_tokens\":1}}\n\n", 3);
        assert_eq!(
            (t.provider(), t.usage()),
            (
                Provider::Unknown,
                Some(Usage {
                    input_tokens: Some(1),
                    ..Usage::default()
                })
            )
        );
    }

    #[test]
    fn anthropic_later_deltas_win_and_may_carry_input() {
        let mut t = UsageTracker::new();
        t.feed(ANTHROPIC.as_bytes());
        t.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":500,\"output_tokens\":20,\"cache_read_input_tokens\":0}}\n\n");
        let mut want = Usage {
            cached_input_tokens: Some(0),
            cache_creation_input_tokens: Some(10),
            ..usage(500, 20)
        };
        assert_eq!(t.usage(), Some(want));
        t.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":21,\"input_tokens\":null}}\n\n");
        want.output_tokens = Some(21);
        assert_eq!(t.usage(), Some(want));
    }

    #[test]
    fn type_inside_json_when_event_lines_are_missing() {
        for (stream, provider, expected) in cases() {
            let stream: String = stream
                .lines()
                .filter(|l| !l.starts_with("event:"))
                .map(|l| format!("{l}\n"))
                .collect();
            let t = track(stream.as_bytes(), 11);
            assert_eq!((t.provider(), t.usage()), (provider, Some(expected)));
        }
    }

    #[test]
    fn detection_and_forced_formats() {
        let body =
            br#"{"object":"chat.completion","usage":{"prompt_tokens":2,"completion_tokens":1}}"#;
        let want = Some(usage(2, 1));
        for prefix in [&b""[..], b"\xEF\xBB\xBF", b" \r\n\t ", b"\xEF\xBB\xBF\n "] {
            let input = [prefix, &body[..]].concat();
            for chunk in [1, 2, usize::MAX] {
                let t = track(&input, chunk);
                assert_eq!(t.format(), Some(BodyFormat::Json));
                assert_eq!((t.provider(), t.usage()), (Provider::OpenAi, want));
                let mut forced = UsageTracker::with_format(BodyFormat::Json);
                for c in input.chunks(chunk) {
                    forced.feed(c);
                }
                assert_eq!(forced.usage(), want);
                // Read as an event stream, a JSON body says nothing.
                let mut sse = UsageTracker::with_format(BodyFormat::Sse);
                for c in input.chunks(chunk) {
                    sse.feed(c);
                }
                assert_eq!(sse.usage(), None);
            }
        }
        // Not quite a byte order mark: the line is content, so not JSON and not a field.
        for input in [
            &b"\xEF\xBB{\"usage\":{\"prompt_tokens\":2}}\n\n"[..],
            b"\xEF{}",
        ] {
            for chunk in [1, usize::MAX] {
                let t = track(input, chunk);
                assert_eq!((t.format(), t.usage()), (Some(BodyFormat::Sse), None));
            }
        }
        let mut t = UsageTracker::with_format(BodyFormat::Sse);
        assert_eq!(t.format(), Some(BodyFormat::Sse));
        t.feed(b"{");
        t.reset();
        assert_eq!(t.format(), Some(BodyFormat::Sse));
        // A cut JSON document counts for nothing; the next one counts.
        let mut t = UsageTracker::new();
        t.feed(&body[..body.len() - 1]);
        assert_eq!(t.usage(), None);
        t.feed(b"}\n");
        assert_eq!(t.usage(), want);
    }

    #[test]
    fn reset_forgets() {
        let mut t = track(ANTHROPIC.as_bytes(), 100);
        t.feed(b"data: {\"usage\":");
        t.reset();
        assert_eq!(
            (t.provider(), t.usage(), t.format()),
            (Provider::Unknown, None, None)
        );
        t.feed(OPENAI_CHAT.as_bytes());
        assert_eq!(t.usage(), Some(cases()[0].2));
    }

    #[test]
    fn state_is_small_and_inline() {
        assert!(
            size_of::<UsageTracker>() < 1024,
            "{}",
            size_of::<UsageTracker>()
        );
    }

    /// A long stream: the start event, many deltas, the final events.
    fn long_stream(stream: &str, filler: &str, copies: usize) -> Vec<u8> {
        let first_end = stream.find("\n\n").unwrap() + 2;
        let mut out = stream.as_bytes()[..first_end].to_vec();
        for _ in 0..copies {
            out.extend_from_slice(filler.as_bytes());
        }
        out.extend_from_slice(&stream.as_bytes()[first_end..]);
        out
    }

    #[test]
    fn head_tail_captures() {
        let fillers = [
            "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"}}],\"usage\":null}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"word \"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"word \"}}\n\n",
        ];
        let mut tracker = UsageTracker::new();
        for ((stream, provider, expected), filler) in cases().into_iter().zip(fillers) {
            let body = long_stream(stream, filler, 200);
            // Big enough for the first and the last events.
            let mut cap = HeadTail::new(1024, 2048);
            for c in body.chunks(97) {
                cap.write(c);
            }
            assert!(cap.dropped() > 0);
            assert_eq!(tracker.scan_head_tail(&cap), Some(expected));
            assert_eq!(tracker.provider(), provider);

            // Whatever the sizes, a capture never yields a wrong number: each count is the
            // true one or (when its event was dropped) absent.
            for h in (0..1200).step_by(37) {
                for t in (0..2400).step_by(53) {
                    let mut cap = HeadTail::new(h, t);
                    cap.write(&body);
                    if let Some(got) = tracker.scan_head_tail(&cap) {
                        let pairs = [
                            (got.input_tokens, expected.input_tokens),
                            (got.cached_input_tokens, expected.cached_input_tokens),
                            (got.reasoning_tokens, expected.reasoning_tokens),
                        ];
                        for (got, want) in pairs {
                            assert!(got.is_none() || got == want, "{h} {t}");
                        }
                        // Output counts are cumulative: an early one may be all that survived.
                        assert!(got.output_tokens <= expected.output_tokens);
                    }
                    if cap.is_complete() {
                        assert_eq!(tracker.usage(), Some(expected), "complete capture {h} {t}");
                    }
                }
            }
        }
    }

    #[test]
    fn json_capture_with_a_gap_keeps_only_the_head() {
        let body = br#"{"object":"chat.completion","usage":{"prompt_tokens":2}}"#;
        let mut t = UsageTracker::new();
        assert_eq!(
            t.scan_capture(body, 0, (b"", b"")),
            Some(Usage {
                input_tokens: Some(2),
                ..Usage::default()
            })
        );
        assert_eq!(t.scan_capture(&body[..10], 5, (&body[15..], b"")), None);
        assert_eq!(t.format(), Some(BodyFormat::Json));
        // Nothing seen before the gap: read as an event stream, which resyncs safely.
        assert_eq!(t.scan_capture(b"", 5, (&body[..], b"\n\n")), None);
        assert_eq!(t.format(), Some(BodyFormat::Sse));
        let mut t = UsageTracker::with_format(BodyFormat::Json);
        assert_eq!(t.scan_capture(b"", 5, (&body[..], b"")), None);
    }
}
