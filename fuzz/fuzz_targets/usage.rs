//! UsageTracker and the JSON scanners: no panics on any input; the streaming results (usage,
//! provider, format, matcher hits) are the same whatever the chunking as for the input fed in
//! one chunk; a complete head+tail capture gives the same answer as the whole stream; and on a
//! valid JSON document the streaming matcher finds exactly what a full parse (`serde_json`)
//! finds at the watched paths, in the same order.
#![no_main]

use jisr_fuzz::buffer::Provider;
use jisr_fuzz::buffer::json_stream::STRING_CAPTURE;
use jisr_fuzz::buffer::json_stream::{Hit, PathMatcher, PathSet, Value};
use jisr_fuzz::buffer::{BodyFormat, HeadTail, UsageTracker, json};
use jisr_fuzz::{Input, RefValue, chunk_lengths, json_reference, usage_reference};
use libfuzzer_sys::fuzz_target;

static PATHS: PathSet = PathSet::new(&[
    &["usage", "prompt_tokens"],
    &["usage"],
    &["type"],
    &[],
    &["a", "b", "c"],
    &["a", "b"],
    &["\u{e9}\""],
]);

fn tracker(format: u8) -> UsageTracker {
    match format % 3 {
        0 => UsageTracker::new(),
        1 => UsageTracker::with_format(BodyFormat::Sse),
        _ => UsageTracker::with_format(BodyFormat::Json),
    }
}

/// Every hit, owned, for the input fed in the given chunks.
fn hits<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, docs: bool) -> (Vec<String>, bool) {
    let mut m = PathMatcher::new(&PATHS);
    m.set_documents_in_root_array(docs);
    let mut out = Vec::new();
    for chunk in chunks {
        m.feed(chunk, |h| {
            out.push(match h {
                Hit::Value {
                    path,
                    value: Value::Str { decoded, complete },
                } => format!("{path}:{decoded:?}:{complete}"),
                other => format!("{other:?}"),
            })
        });
    }
    (out, m.is_failed())
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let seed = input.byte();
    let format = input.byte();
    let h = usize::from(input.byte());
    let t = usize::from(input.byte()) * 4;
    let stream = input.rest;
    let chunks = chunk_lengths(stream, seed, 40);

    let mut whole = tracker(format);
    whole.feed(stream);
    let mut chunked = tracker(format);
    for chunk in &chunks {
        chunked.feed(chunk);
    }
    assert_eq!(whole.usage(), chunked.usage());
    assert_eq!(whole.provider(), chunked.provider());
    assert_eq!(whole.format(), chunked.format());

    // Byte by byte, for short inputs.
    if stream.len() <= 512 {
        let mut bytes = tracker(format);
        for b in stream {
            bytes.feed(std::slice::from_ref(b));
        }
        assert_eq!(whole.usage(), bytes.usage());
        assert_eq!(whole.provider(), bytes.provider());
    }

    let mut capture = HeadTail::new(h, t);
    capture.write(stream);
    let mut scan = tracker(format);
    let got = scan.scan_head_tail(&capture);
    if capture.is_complete() {
        assert_eq!(got, whole.usage());
    }

    // The streaming matcher: same hits in the same order whatever the chunking.
    for docs in [false, true] {
        let one = hits([stream], docs);
        assert_eq!(one, hits(chunks.iter().copied(), docs));
    }

    // Differential: on one valid document, the values at the watched paths are those of a full
    // parse. A trailing newline ends a bare top-level value, which the matcher otherwise
    // keeps open (more digits could follow).
    let paths: Vec<&[&str]> = (0..PATHS.len()).map(|i| PATHS.path(i)).collect();
    if let Some(expected) = json_reference(stream, &paths, STRING_CAPTURE) {
        let mut m = PathMatcher::new(&PATHS);
        let mut got = Vec::new();
        for chunk in chunks.iter().copied().chain([&b"\n"[..]]) {
            m.feed(chunk, |h| {
                if let Hit::Value { path, value } = h {
                    got.push((
                        path,
                        match value {
                            Value::U64(n) => RefValue::U64(n),
                            Value::Number => RefValue::Number,
                            Value::Str { decoded, complete } => {
                                RefValue::Str(decoded.to_vec(), complete)
                            }
                            Value::Bool(b) => RefValue::Bool(b),
                            Value::Null => RefValue::Null,
                            Value::Object => RefValue::Object,
                            Value::Array => RefValue::Array,
                            other => panic!("{other:?} in a valid document"),
                        },
                    ));
                }
            });
        }
        assert!(!m.is_failed(), "the matcher failed on a valid document");
        assert_eq!(got, expected);
    }

    // Differential on the whole tracker: an event stream whose every event is `[DONE]` or one
    // valid JSON document gives the usage and provider of the plain computation (split into
    // events, parse each whole, apply the documented rules).
    if let Some((counts, provider)) = usage_reference(stream) {
        let mut sse = jisr_fuzz::buffer::UsageTracker::with_format(BodyFormat::Sse);
        for chunk in &chunks {
            sse.feed(chunk);
        }
        let got = sse.usage().map(|u| {
            [
                u.input_tokens,
                u.output_tokens,
                u.cached_input_tokens,
                u.cache_creation_input_tokens,
                u.reasoning_tokens,
            ]
        });
        let want = Some(counts).filter(|c| c.iter().any(Option::is_some));
        assert_eq!(got, want, "usage");
        let got = match sse.provider() {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            _ => "unknown",
        };
        assert_eq!(got, provider, "provider");
    }

    // The whole-document scanner never panics either.
    for path in [
        &["usage", "prompt_tokens"][..],
        &["type"],
        &[],
        &["a", "b", "c"],
    ] {
        if let Some(v) = json::find(stream, path) {
            assert!(json::find(v, &[]).is_none() || json::find(v, &[]) == Some(v));
        }
        let _ = json::find_u64(stream, path);
    }
});
