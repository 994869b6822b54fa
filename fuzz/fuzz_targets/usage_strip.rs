//! UsageChunkStripper: no panics on any input; the output is the same whatever the chunking;
//! and when every event's data is valid JSON (or names no `choices`), the output is the input
//! without exactly the events a plain computation finds usage-only (data parsed whole by
//! `serde_json`: `choices` an empty array and `usage` an object), events over the capacity
//! kept.
#![no_main]

use jisr_fuzz::buffer::UsageChunkStripper;
use jisr_fuzz::{Input, chunk_lengths};
use libfuzzer_sys::fuzz_target;

fn strip<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, cap: usize) -> (Vec<u8>, u64) {
    let mut s = UsageChunkStripper::new(cap);
    let mut out = Vec::new();
    for c in chunks {
        s.feed(c, |b| out.extend_from_slice(b));
    }
    s.finish(|b| out.extend_from_slice(b));
    (out, s.removed())
}

/// Raw events: each one's bytes, up to and including its blank line's line end, and whether a
/// blank line ended it (the last one may be cut).
fn raw_events(input: &[u8]) -> Vec<(&[u8], bool)> {
    let mut events = Vec::new();
    let (mut start, mut line_start, mut i) = (0, 0, 0);
    while i < input.len() {
        let b = input[i];
        if b != b'\n' && b != b'\r' {
            i += 1;
            continue;
        }
        let empty = i == line_start;
        i += 1;
        if b == b'\r' && input.get(i) == Some(&b'\n') {
            i += 1;
        }
        line_start = i;
        if empty {
            events.push((&input[start..i], true));
            start = i;
        }
    }
    if start < input.len() {
        events.push((&input[start..], false));
    }
    events
}

/// The event's data, lines joined by `\n`; `None` without a data line.
fn data(event: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for line in event.split(|b| *b == b'\n' || *b == b'\r') {
        let value = if line == b"data" {
            &[][..]
        } else if let Some(v) = line.strip_prefix(b"data:") {
            v.strip_prefix(b" ").unwrap_or(v)
        } else {
            continue;
        };
        match out.as_mut() {
            Some(d) => {
                d.push(b'\n');
                d.extend_from_slice(value);
            }
            None => out = Some(value.to_vec()),
        }
    }
    out
}

fuzz_target!(|raw: &[u8]| {
    let mut input = Input::new(raw);
    let cap = 64 + usize::from(input.byte()) * 4;
    let seed = input.byte();
    let stream = input.rest;
    let (whole, removed) = strip([stream], cap);
    let (chunked, removed_chunked) = strip(chunk_lengths(stream, seed, 9), cap);
    assert_eq!(whole, chunked);
    assert_eq!(removed, removed_chunked);

    let mut want = Vec::new();
    let mut want_removed = 0;
    for (event, ended) in raw_events(stream) {
        let size = event.len() - usize::from(event.ends_with(b"\r\n"));
        let usage_only = match data(event) {
            // The stripper reads the first `choices` and `usage`, serde_json the last.
            Some(d)
                if [&b"choices"[..], b"usage"]
                    .iter()
                    .any(|k| d.windows(k.len()).filter(|w| w == k).count() > 1) =>
            {
                return;
            }
            Some(d) if ended && size <= cap => {
                match serde_json::from_slice::<serde_json::Value>(&d) {
                    Ok(v) => {
                        v.get("choices")
                            .and_then(|c| c.as_array())
                            .is_some_and(|c| c.is_empty())
                            && v.get("usage").is_some_and(|u| u.is_object())
                    }
                    // Not one valid document: the stripper's lenient scan may differ.
                    Err(_) if d.windows(7).any(|w| w == b"choices") => return,
                    Err(_) => false,
                }
            }
            _ => false,
        };
        if usage_only {
            want_removed += 1;
        } else {
            want.extend_from_slice(event);
        }
    }
    assert_eq!(whole, want);
    assert_eq!(removed, want_removed);
});
