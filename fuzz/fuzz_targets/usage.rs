//! UsageTracker and the JSON scanner: no panics on any input, the same answer whatever the
//! chunking, and a complete head+tail capture gives the same answer as the whole stream.
#![no_main]

use jisr_fuzz::buffer::{HeadTail, UsageTracker, json};
use jisr_fuzz::{Input, chunk_lengths};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let seed = input.byte();
    let h = usize::from(input.byte());
    let t = usize::from(input.byte()) * 4;
    let stream = input.rest;

    let mut whole = UsageTracker::with_capacity(32, 1024);
    whole.feed(stream);
    let mut chunked = UsageTracker::with_capacity(32, 1024);
    for chunk in chunk_lengths(stream, seed, 40) {
        chunked.feed(chunk);
    }
    assert_eq!(whole.usage(), chunked.usage());
    assert_eq!(whole.provider(), chunked.provider());

    let mut capture = HeadTail::new(h, t);
    capture.write(stream);
    let mut scan = UsageTracker::with_capacity(32, 1024);
    let got = scan.scan_head_tail(&capture);
    if capture.is_complete() {
        assert_eq!(got, whole.usage());
    }

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
