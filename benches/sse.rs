//! SSE parser throughput against a bare `memchr` newline scan of the same bytes.
//!
//! `cargo bench --bench sse` first prints the parser / memchr throughput ratio (the goal is at
//! least 50%), then runs the criterion benchmarks. `scripts/sse_instructions.sh` counts the
//! instructions per byte of the same functions under callgrind (the `count` mode below).

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use jisr::buffer::{SseParser, UsageTracker};

/// Envoy hands body data over in slices of about this size.
const CHUNK: usize = 16 * 1024;

/// About 1 MiB of an OpenAI chat completion stream, ending with usage and `[DONE]`.
fn openai_chat() -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < 1 << 20 {
        write!(
            s,
            "data: {{\"id\":\"chatcmpl-Bx1\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_5a1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" token{i}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        )
        .unwrap();
        i += 1;
    }
    s.push_str("data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10}}\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

/// About 1 MiB of an Anthropic messages stream (`event:` + `data:` lines).
fn anthropic() -> Vec<u8> {
    let mut s = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":472,\"output_tokens\":2}}}\n\n",
    );
    while s.len() < 1 << 20 {
        s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" some words\"}}\n\n");
    }
    s.into_bytes()
}

/// An OpenAI Responses stream whose `response.completed` event (about 1 MiB) repeats the
/// whole output before its usage: the tracker reads it without storing it.
fn openai_responses() -> Vec<u8> {
    let mut text = String::new();
    while text.len() < 1 << 20 {
        text.push_str(r#"Some words of output, \"quoted\" and escaped \u00e9. "#);
    }
    format!(
        "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"{text}\"}}]}}],\"usage\":{{\"input_tokens\":37,\"output_tokens\":11}}}}}}\n\n"
    )
    .into_bytes()
}

fn inputs() -> [(&'static str, Vec<u8>); 3] {
    [
        ("openai-chat", openai_chat()),
        ("anthropic", anthropic()),
        ("openai-responses", openai_responses()),
    ]
}

/// The floor for any line-based parser: find every line end, one `memchr` call per line.
/// (`memchr_iter(..).count()` would be a vectorised count that never visits a line.)
fn memchr_lines(input: &[u8]) -> usize {
    let mut line_bytes = 0;
    for chunk in input.chunks(CHUNK) {
        let mut rest = chunk;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            line_bytes += black_box(end);
            rest = &rest[end + 1..];
        }
    }
    line_bytes
}

fn parse(parser: &mut SseParser, input: &[u8]) -> usize {
    let mut bytes = 0;
    for chunk in input.chunks(CHUNK) {
        parser.feed(chunk, |e| bytes += e.data.len());
    }
    bytes
}

fn track(tracker: &mut UsageTracker, input: &[u8]) -> Option<u64> {
    tracker.reset();
    for chunk in input.chunks(CHUNK) {
        tracker.feed(chunk);
    }
    tracker.usage().and_then(|u| u.output_tokens)
}

/// Bytes per second of `f` over `input`, best of a few timed batches.
fn throughput(input: &[u8], mut f: impl FnMut(&[u8])) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..15 {
        let start = Instant::now();
        for _ in 0..10 {
            f(black_box(input));
        }
        best = best.min(start.elapsed() / 10);
    }
    input.len() as f64 / best.as_secs_f64()
}

fn print_ratios() {
    for (name, input) in inputs() {
        let mut parser = SseParser::new();
        let mut tracker = UsageTracker::new();
        let base = throughput(&input, |i| {
            black_box(memchr_lines(i));
        });
        let sse = throughput(&input, |i| {
            black_box(parse(&mut parser, i));
        });
        let usage = throughput(&input, |i| {
            black_box(track(&mut tracker, i));
        });
        let mib = |bps: f64| bps / (1024.0 * 1024.0);
        println!(
            "{name}: memchr scan {:.0} MiB/s, SSE parser {:.0} MiB/s ({:.0}% of memchr), usage tracker {:.0} MiB/s ({:.0}%)",
            mib(base),
            mib(sse),
            100.0 * sse / base,
            mib(usage),
            100.0 * usage / base,
        );
    }
}

fn benches(c: &mut Criterion) {
    for (name, input) in inputs() {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function("memchr-newlines", |b| {
            b.iter(|| memchr_lines(black_box(&input)))
        });
        let mut parser = SseParser::new();
        group.bench_function("sse-parser", |b| {
            b.iter(|| parse(&mut parser, black_box(&input)))
        });
        let mut tracker = UsageTracker::new();
        group.bench_function("usage-tracker", |b| {
            b.iter(|| track(&mut tracker, black_box(&input)))
        });
        group.finish();
    }
}

/// `count INPUT WHAT REPS`: runs one measured function REPS times over one input and exits,
/// for `scripts/sse_instructions.sh`, which counts the instructions under callgrind.
fn count(args: &[String]) {
    let [input, what, reps] = args else {
        panic!(
            "usage: sse count <openai-chat|anthropic|openai-responses> <memchr|sse|usage> <reps>"
        );
    };
    let reps: usize = reps.parse().expect("reps is a whole number");
    let (_, bytes) = inputs()
        .into_iter()
        .find(|(name, _)| name == input)
        .expect("unknown input");
    let mut parser = SseParser::new();
    let mut tracker = UsageTracker::new();
    for _ in 0..reps {
        match what.as_str() {
            "memchr" => drop(black_box(memchr_lines(&bytes))),
            "sse" => drop(black_box(parse(&mut parser, &bytes))),
            "usage" => drop(black_box(track(&mut tracker, &bytes))),
            _ => panic!("unknown function {what}"),
        }
    }
    println!("bytes {}", bytes.len());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "count") {
        count(&args[1..]);
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not, and runs each once.
    if std::env::args().any(|a| a == "--bench") {
        print_ratios();
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
