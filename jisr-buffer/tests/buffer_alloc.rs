//! Proves that the buffer types allocate only at construction.
//!
//! A counting global allocator counts allocations per thread, so tests running in parallel
//! do not disturb each other's counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;

use jisr_buffer::{HeadTail, Ring, SseParser, UsageTracker, logfmt};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with` fails only while the thread is being torn down; nothing is measured then.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is the system allocator's; counting touches only a thread-local cell.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocations this thread made meanwhile.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const ROUNDS: usize = 1_000;

/// A realistic LLM stream: OpenAI chat deltas, a usage chunk and `[DONE]` (203 events).
fn stream() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..200 {
        write!(
            s,
            "data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}}}}],\"usage\":null}}\r\n\r\n"
        )
        .unwrap();
    }
    s.push_str("data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":200}}\n\n");
    s.push_str(": keep-alive\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

/// Chunk sizes that vary by round, so splits land everywhere.
fn chunks(input: &[u8], round: usize) -> impl Iterator<Item = &[u8]> {
    let size = 1 + (round * 7919) % 301;
    input.chunks(size)
}

#[test]
fn counter_sees_allocations() {
    // A test that cannot fail is a defect: check the counter itself.
    let n = allocations(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(n, 1);
}

#[test]
fn ring_and_head_tail() {
    let input = stream();
    let mut ring = Ring::new(4096);
    let mut empty = Ring::new(0);
    let mut capture = HeadTail::new(1024, 4096);
    let mut out = [0u8; 4096];
    let n = allocations(|| {
        for round in 0..ROUNDS {
            for chunk in chunks(&input, round) {
                ring.write(chunk);
                empty.write(chunk);
                capture.write(chunk);
            }
            let (a, b) = ring.as_slices();
            std::hint::black_box((a, b, capture.tail_after_head(), capture.dropped()));
            ring.copy_to(&mut out);
            if round % 100 == 0 {
                ring.clear();
                capture.clear();
            }
        }
    });
    assert_eq!(n, 0);
    assert!(ring.total_written() > 0);
}

#[test]
fn sse_parser() {
    let input = stream();
    let mut parser = SseParser::with_capacity(64, 1024);
    let mut events = 0u64;
    let mut truncated = 0u64;
    let n = allocations(|| {
        for round in 0..ROUNDS {
            for chunk in chunks(&input, round) {
                parser.feed(chunk, |e| {
                    events += 1;
                    std::hint::black_box(e.data);
                });
            }
            // Oversized events are truncated in place, never grown.
            parser.feed(b"data: ", |_| {});
            parser.feed(&[b'y'; 3000], |_| {});
            parser.feed(b"\n\n", |e| truncated += u64::from(e.truncated));
        }
    });
    assert_eq!(n, 0);
    assert_eq!(events, ROUNDS as u64 * 202);
    assert_eq!(truncated, ROUNDS as u64);
}

#[test]
fn usage_tracking_and_capture_scan() {
    let input = stream();
    let mut tracker = UsageTracker::new();
    let mut capture = HeadTail::new(512, 1024);
    let n = allocations(|| {
        for round in 0..ROUNDS {
            tracker.reset();
            capture.clear();
            for chunk in chunks(&input, round) {
                tracker.feed(chunk);
                capture.write(chunk);
            }
            assert_eq!(tracker.usage().and_then(|u| u.output_tokens), Some(200));
            let from_capture = tracker.scan_head_tail(&capture);
            assert_eq!(from_capture.and_then(|u| u.input_tokens), Some(12));
        }
    });
    assert_eq!(n, 0);
}

/// An OpenAI Responses stream whose `response.completed` event (2 MiB) repeats the output
/// before its usage, in Envoy-sized chunks; then the same as a JSON answer.
fn huge_responses() -> (Vec<u8>, Vec<u8>) {
    let mut text = String::new();
    while text.len() < 2 << 20 {
        text.push_str(r#"some output \"usage\":{\"input_tokens\":1} \u00e9 "#);
    }
    let response = format!(
        "{{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"{text}\"}}]}}],\"usage\":{{\"input_tokens\":37,\"input_tokens_details\":{{\"cached_tokens\":5}},\"output_tokens\":11,\"output_tokens_details\":{{\"reasoning_tokens\":3}}}}}}"
    );
    let sse = format!(
        "event: response.created\ndata: {{\"type\":\"response.created\",\"response\":{{\"usage\":null}}}}\n\nevent: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{response}}}\n\n"
    );
    (sse.into_bytes(), response.into_bytes())
}

#[test]
fn usage_tracker_allocates_nothing_even_for_huge_events() {
    let (sse, json) = huge_responses();
    assert!(sse.len() > 2 << 20);
    let mut trackers = None;
    let n = allocations(|| {
        trackers = Some((UsageTracker::new(), UsageTracker::default()));
    });
    assert_eq!(n, 0, "construction");
    let (mut tracker, mut other) = trackers.unwrap();
    let n = allocations(|| {
        for round in 0..4 {
            tracker.reset();
            other.reset();
            for chunk in sse.chunks(16 * 1024 + round) {
                tracker.feed(chunk);
            }
            for chunk in json.chunks(4096 - round) {
                other.feed(chunk);
            }
            for t in [&tracker, &other] {
                let u = t.usage().unwrap();
                assert_eq!((u.input_tokens, u.output_tokens), (Some(37), Some(11)));
                assert_eq!(
                    (u.cached_input_tokens, u.reasoning_tokens),
                    (Some(5), Some(3))
                );
            }
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn logfmt_into_fixed_storage() {
    let mut line = arrayvec::ArrayString::<256>::new();
    let n = allocations(|| {
        for round in 0..ROUNDS {
            line.clear();
            logfmt::write_msg(&mut line, "request done\n").unwrap();
            logfmt::write_pair(&mut line, "path", "/v1/chat completions").unwrap();
            logfmt::write_pair(&mut line, "quote", "a \"b\" \\ c").unwrap();
            logfmt::write_pair_display(&mut line, "round", round).unwrap();
            let mut value = arrayvec::ArrayString::<64>::new();
            let at = line.find("quote=").unwrap() + 6;
            logfmt::parse_value(&line[at..], &mut value).unwrap();
            assert_eq!(&value[..], "a \"b\" \\ c");
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn budget_reservations_allocate_nothing() {
    let budgets = std::sync::Arc::new(jisr_buffer::Budgets::new(
        16,
        1_000_000,
        std::time::Duration::from_secs(3600),
    ));
    let n = allocations(|| {
        for i in 0..ROUNDS as u64 {
            let r = budgets.reserve(b"team-a", 100).unwrap();
            match i % 3 {
                0 => assert!(r.settle(40)),
                1 => r.release(),
                _ => drop(r),
            }
            assert!(budgets.check(b"team-a").is_ok());
        }
    });
    assert_eq!(n, 0, "reserve, settle, release and drop allocate nothing");
}
