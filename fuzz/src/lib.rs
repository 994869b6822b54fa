//! Shared pieces of the fuzz targets: the code under test, an input reader and a plain
//! reference SSE parser.

/// The code under test: the `jisr-buffer` crate (`jisr::buffer`), which needs nothing else
/// from jisr, so fuzzing keeps working while the Envoy-facing parts of jisr change.
pub use jisr_buffer as buffer;

/// Reads small numbers off the front of the fuzz input.
pub struct Input<'a> {
    /// What is left of the input.
    pub rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps the raw fuzz input.
    pub fn new(data: &'a [u8]) -> Self {
        Input { rest: data }
    }

    /// The next byte, or 0 once the input is used up.
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, rest)) => {
                self.rest = rest;
                b
            }
            None => 0,
        }
    }

    /// Up to `n` next bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = b;
        a
    }
}

/// Splits `data` into chunks of pseudo-random lengths 0..=max (empty chunks included).
pub fn chunk_lengths(data: &[u8], seed: u8, max: usize) -> Vec<&[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % (max + 1)).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// An event as the reference parser reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefEvent {
    /// Event type (`message` when none).
    pub kind: Vec<u8>,
    /// Data lines joined by `\n`, cut at the data capacity.
    pub data: Vec<u8>,
    /// Last event id.
    pub id: Vec<u8>,
    /// `retry` given in this event.
    pub retry: Option<u64>,
    /// Something did not fit.
    pub truncated: bool,
}

/// The WHATWG event-stream rules written as plainly as possible: split the whole input into
/// lines, then interpret each line. Capacities mirror `SseParser::with_capacity`.
pub fn reference_parse(input: &[u8], field_cap: usize, data_cap: usize) -> Vec<RefEvent> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\n' => {
                lines.push(&input[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&input[start..i]);
                i += 1;
                if input.get(i) == Some(&b'\n') {
                    i += 1;
                }
                start = i;
            }
            _ => i += 1,
        }
    }
    // A last line without a line end is never interpreted.

    let mut events = Vec::new();
    let mut data_lines: Vec<&[u8]> = Vec::new();
    let mut kind = Vec::new();
    let mut last_id = Vec::new();
    let mut retry = None;
    let mut truncated = false;
    for line in lines {
        if line.is_empty() {
            if !data_lines.is_empty() {
                let mut d = data_lines.join(&b'\n');
                data_lines.clear();
                if d.len() > data_cap {
                    truncated = true;
                    d.truncate(data_cap);
                }
                events.push(RefEvent {
                    kind: if kind.is_empty() {
                        b"message".to_vec()
                    } else {
                        kind.clone()
                    },
                    data: d,
                    id: last_id.clone(),
                    retry,
                    truncated,
                });
            }
            kind.clear();
            retry = None;
            truncated = false;
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"event" => {
                truncated |= value.len() > field_cap;
                kind = value[..value.len().min(field_cap)].to_vec();
            }
            b"data" => data_lines.push(value),
            b"id" => {
                if value.contains(&0) {
                    // ignored, as the spec says
                } else if value.len() > field_cap {
                    truncated = true;
                } else {
                    last_id = value.to_vec();
                }
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let n = value.iter().fold(0u64, |n, &d| {
                    n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                retry = Some(n);
            }
            _ => {}
        }
    }
    events
}

/// What [`json_reference`] found at a watched path, in the matcher's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum RefValue {
    /// A non-negative integer written without fraction or exponent that fits in a `u64`.
    U64(u64),
    /// Any other number.
    Number,
    /// The first `capture` bytes of the decoded string, and whether that is all of it.
    Str(Vec<u8>, bool),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An object starts.
    Object,
    /// An array starts.
    Array,
}

/// The values at `paths` of the JSON document `doc`, in document order, duplicate keys
/// included, from a full parse by `serde_json`; `None` if `doc` is not exactly one valid
/// document (whitespace around it allowed). Only objects are walked into: a path never
/// continues through an array, as for the streaming matcher.
pub fn json_reference(
    doc: &[u8],
    paths: &[&[&str]],
    capture: usize,
) -> Option<Vec<(usize, RefValue)>> {
    use serde::de::DeserializeSeed;
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(doc);
    let walk = Walk {
        paths,
        at: Vec::new(),
        capture,
        out: &mut out,
    };
    walk.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(out)
}

struct Walk<'a, 'p> {
    paths: &'a [&'p [&'p str]],
    at: Vec<String>,
    capture: usize,
    out: &'a mut Vec<(usize, RefValue)>,
}

impl Walk<'_, '_> {
    /// Records `value` for every path equal to where the walk is.
    fn report(&mut self, value: RefValue) {
        for (i, p) in self.paths.iter().enumerate() {
            if p.len() == self.at.len() && p.iter().zip(&self.at).all(|(a, b)| a == b) {
                self.out.push((i, value.clone()));
            }
        }
    }

    /// Whether some path goes deeper than where the walk is, through it.
    fn followed(&self) -> bool {
        self.paths
            .iter()
            .any(|p| p.len() > self.at.len() && p.iter().zip(&self.at).all(|(a, b)| a == b))
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(mut self, v: bool) -> Result<(), E> {
        self.report(RefValue::Bool(v));
        Ok(())
    }

    fn visit_u64<E>(mut self, v: u64) -> Result<(), E> {
        self.report(RefValue::U64(v));
        Ok(())
    }

    fn visit_i64<E>(mut self, _: i64) -> Result<(), E> {
        self.report(RefValue::Number);
        Ok(())
    }

    fn visit_f64<E>(mut self, _: f64) -> Result<(), E> {
        self.report(RefValue::Number);
        Ok(())
    }

    fn visit_str<E>(mut self, v: &str) -> Result<(), E> {
        let n = v.len().min(self.capture);
        self.report(RefValue::Str(v.as_bytes()[..n].to_vec(), n == v.len()));
        Ok(())
    }

    fn visit_unit<E>(mut self) -> Result<(), E> {
        self.report(RefValue::Null);
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.report(RefValue::Array);
        // Elements are never on a watched path: read them, report nothing.
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.report(RefValue::Object);
        let follow = self.followed();
        while let Some(key) = map.next_key::<String>()? {
            if follow {
                self.at.push(key);
                let inner = Walk {
                    paths: self.paths,
                    at: self.at.clone(),
                    capture: self.capture,
                    out: self.out,
                };
                map.next_value_seed(inner)?;
                self.at.pop();
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// The token counts [`usage_reference`] finds, in `buffer::Usage`'s field order: input,
/// output, cached input, cache creation, reasoning.
pub type RefCounts = [Option<u64>; 5];

/// Where each usage count sits, per usage object: (path, field index in [`RefCounts`]).
const REF_COUNTS: [(&[&str], usize); 22] = [
    (&["usage", "prompt_tokens"], 0),
    (&["usage", "input_tokens"], 0),
    (&["usage", "completion_tokens"], 1),
    (&["usage", "output_tokens"], 1),
    (&["usage", "prompt_tokens_details", "cached_tokens"], 2),
    (&["usage", "input_tokens_details", "cached_tokens"], 2),
    (&["usage", "cache_read_input_tokens"], 2),
    (&["usage", "cache_creation_input_tokens"], 3),
    (
        &["usage", "completion_tokens_details", "reasoning_tokens"],
        4,
    ),
    (&["usage", "output_tokens_details", "reasoning_tokens"], 4),
    (&["message", "usage", "input_tokens"], 0),
    (&["message", "usage", "output_tokens"], 1),
    (&["message", "usage", "cache_read_input_tokens"], 2),
    (&["message", "usage", "cache_creation_input_tokens"], 3),
    (&["response", "usage", "input_tokens"], 0),
    (&["response", "usage", "output_tokens"], 1),
    (
        &["response", "usage", "input_tokens_details", "cached_tokens"],
        2,
    ),
    (
        &[
            "response",
            "usage",
            "output_tokens_details",
            "reasoning_tokens",
        ],
        4,
    ),
    (&["usageMetadata", "promptTokenCount"], 0),
    (&["usageMetadata", "candidatesTokenCount"], 1),
    (&["usageMetadata", "cachedContentTokenCount"], 2),
    (&["usageMetadata", "thoughtsTokenCount"], 4),
];

/// The usage and provider (`"unknown"`, `"openai"`, `"anthropic"`, `"gemini"`) of an event
/// stream, computed the plain way: the whole stream split into events by
/// [`reference_parse`], each event's data parsed whole by `serde_json` ([`json_reference`]),
/// and the rules of `UsageTracker`'s documentation applied event by event. `None` when an
/// event's data is neither `[DONE]` nor one valid JSON document (the tracker's answer for
/// broken events is only required to be the same whatever the chunking).
pub fn usage_reference(stream: &[u8]) -> Option<(RefCounts, &'static str)> {
    let mut paths: Vec<&[&str]> = REF_COUNTS.iter().map(|(p, _)| *p).collect();
    let first_extra = paths.len();
    paths.extend([
        &["type"][..],
        &["object"],
        &["modelVersion"],
        &["usageMetadata"],
    ]);
    let (type_at, object_at) = (first_extra, first_extra + 1);
    let mut total: RefCounts = [None; 5];
    let mut provider = "unknown";
    for event in reference_parse(stream, 1 << 30, 1 << 30) {
        let done = event.data == b"[DONE]";
        let hits = if done {
            Vec::new()
        } else {
            json_reference(&event.data, &paths, 64)?
        };
        // The last value at each path wins, as when the document is read front to back.
        let mut counts: Vec<RefCounts> = vec![[None; 5]; 4];
        let (mut kind, mut object, mut gemini) = (None, None, false);
        for (path, value) in hits {
            match (path, value) {
                (p, RefValue::U64(n)) if p < first_extra => {
                    let group = match REF_COUNTS[p].0[0] {
                        "usage" => 0,
                        "message" => 1,
                        "response" => 2,
                        _ => 3,
                    };
                    counts[group][REF_COUNTS[p].1] = Some(n);
                }
                (p, RefValue::Str(s, complete)) if p == type_at => kind = Some((s, complete)),
                (p, RefValue::Str(s, complete)) if p == object_at => object = Some((s, complete)),
                (p, RefValue::Object | RefValue::Str(..)) if p > object_at => gemini = true,
                _ => {}
            }
        }
        // The event type names the event; without one (or `message`), the JSON `type` does.
        let name = if event.kind != b"message" {
            Some((event.kind.clone(), true))
        } else {
            kind
        };
        let mut apply = |group: usize| {
            for (slot, count) in total.iter_mut().zip(counts[group]) {
                if count.is_some() {
                    *slot = count;
                }
            }
        };
        match name {
            Some((name, complete)) => {
                // Only complete names up to 32 bytes are compared; a longer or cut one can
                // still start with `response.`.
                let whole = complete && name.len() <= 32;
                match &name[..] {
                    b"message_start" if whole => {
                        provider = "anthropic";
                        apply(1);
                    }
                    b"message_delta" | b"message" if whole => {
                        provider = "anthropic";
                        apply(0);
                    }
                    b"message_stop"
                    | b"content_block_start"
                    | b"content_block_delta"
                    | b"content_block_stop"
                        if whole =>
                    {
                        provider = "anthropic"
                    }
                    b"response.completed" | b"response.incomplete" | b"response.failed"
                        if whole =>
                    {
                        provider = "openai";
                        apply(2);
                    }
                    n if n.starts_with(b"response.") => provider = "openai",
                    _ => {}
                }
            }
            None => {
                let openai_object = matches!(
                    &object,
                    Some((o, true)) if matches!(&o[..], b"chat.completion.chunk" | b"chat.completion" | b"response")
                );
                if done || openai_object {
                    provider = "openai";
                }
                if gemini {
                    provider = "gemini";
                    apply(3);
                }
                apply(0);
            }
        }
    }
    Some((total, provider))
}
