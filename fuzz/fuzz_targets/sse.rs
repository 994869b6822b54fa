//! `SseParser`: random chunking gives the same events as one whole feed, and both match a
//! plain reference parser; capacities are small so truncation is exercised too.
#![no_main]

use jisr_fuzz::buffer::{Event, SseParser};
use jisr_fuzz::{Input, RefEvent, chunk_lengths, reference_parse};
use libfuzzer_sys::fuzz_target;

fn owned(e: &Event<'_>) -> RefEvent {
    RefEvent {
        kind: e.event_type.to_vec(),
        data: e.data.to_vec(),
        id: e.last_event_id.to_vec(),
        retry: e.retry,
        truncated: e.truncated,
    }
}

fn cap(b: u8, small: u8, large: usize) -> usize {
    if b & 0x80 != 0 {
        large
    } else {
        usize::from(b % small)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let field_cap = cap(input.byte(), 8, 64);
    let data_cap = cap(input.byte(), 32, 4096);
    let seed = input.byte();
    let stream = input.rest;

    let mut whole = Vec::new();
    let mut whole_parser = SseParser::with_capacity(field_cap, data_cap);
    whole_parser.feed(stream, |e| whole.push(owned(e)));

    let mut chunked = Vec::new();
    let mut parser = SseParser::with_capacity(field_cap, data_cap);
    for chunk in chunk_lengths(stream, seed, 1 + usize::from(seed % 23)) {
        parser.feed(chunk, |e| chunked.push(owned(e)));
    }
    assert_eq!(whole, chunked, "chunked feed differs");
    assert_eq!(parser.last_event_id(), whole_parser.last_event_id());
    assert_eq!(parser.pending_event_id(), whole_parser.pending_event_id());

    // Only a blank line commits the id buffer: ending the stream with one commits it, and an
    // event that blank line dispatches carries the committed id.
    let mut last = None;
    whole_parser.feed(b"\n\n", |e| last = Some(e.last_event_id.to_vec()));
    assert_eq!(
        whole_parser.last_event_id(),
        whole_parser.pending_event_id()
    );
    if let Some(id) = last {
        assert_eq!(id, whole_parser.last_event_id());
    }
    assert_eq!(
        whole,
        reference_parse(stream, field_cap, data_cap),
        "differs from reference"
    );

    // Resync never panics and never reports more events than the stream holds.
    let mut parser = SseParser::with_capacity(field_cap, data_cap);
    let (a, b) = stream.split_at(usize::from(seed) % (stream.len() + 1));
    let mut n = 0;
    parser.feed(a, |_| n += 1);
    parser.resync();
    parser.feed(b, |_| n += 1);
    assert!(n <= whole.len() + 1);
});
