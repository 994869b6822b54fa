use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    kind: String,
    data: String,
    id: String,
    retry: Option<u64>,
    truncated: bool,
}

fn owned(e: &Event<'_>) -> Owned {
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Owned {
        kind: s(e.event_type),
        data: s(e.data),
        id: s(e.last_event_id),
        retry: e.retry,
        truncated: e.truncated,
    }
}

fn parse_chunks(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<Owned> {
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |e| out.push(owned(e)));
    }
    out
}

fn parse_with(field_cap: usize, data_cap: usize, input: &[u8]) -> Vec<Owned> {
    parse_chunks(&mut SseParser::with_capacity(field_cap, data_cap), &[input])
}

fn parse(input: &str) -> Vec<Owned> {
    parse_with(64, 1024, input.as_bytes())
}

fn datas(input: &str) -> Vec<String> {
    parse(input).into_iter().map(|e| e.data).collect()
}

/// Every split into two and three pieces, and byte by byte, gives the whole-input answer.
fn assert_split_invariant(field_cap: usize, data_cap: usize, input: &[u8]) {
    let whole = parse_with(field_cap, data_cap, input);
    let fresh = || SseParser::with_capacity(field_cap, data_cap);
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(parse_chunks(&mut fresh(), &[a, b]), whole, "split at {i}");
        for j in i..=input.len() {
            let parts = [&input[..i], &input[i..j], &input[j..]];
            assert_eq!(parse_chunks(&mut fresh(), &parts), whole, "split {i} {j}");
        }
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(parse_chunks(&mut fresh(), &bytes), whole, "byte by byte");
}

#[test]
fn spec_examples() {
    assert_eq!(
        datas("data: YHOO\ndata: +2\ndata: 10\n\n"),
        ["YHOO\n+2\n10"]
    );
    let events = parse(
        ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
    );
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.data.as_str(), e.id.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("first event", "1"),
            ("second event", ""),
            (" third event", "")
        ]
    );
    assert_eq!(datas("data\n\ndata\ndata\n\ndata:"), ["", "\n"]);
    assert_eq!(datas("data:test\n\ndata: test\n\n"), ["test", "test"]);
}

#[test]
fn line_endings() {
    assert_eq!(datas("data: a\r\ndata: b\rdata: c\n\r\n"), ["a\nb\nc"]);
    assert_eq!(datas("data: a\r\rdata: b\n\n"), ["a", "b"]);
    assert_eq!(datas("data: a\n\r"), ["a"]);
    // CR then LF in the next chunk is one line end, not a blank line.
    let mut p = SseParser::new();
    let got = parse_chunks(&mut p, &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, "a\nb");
}

#[test]
fn bom_is_ignored_once() {
    assert_eq!(datas("\u{feff}data: x\n\n"), ["x"]);
    // A second BOM is part of the first field name, which is then unknown.
    assert_eq!(datas("\u{feff}\u{feff}data: x\n\ndata: y\n\n"), ["y"]);
    // A BOM fed byte by byte.
    let mut p = SseParser::new();
    let got = parse_chunks(&mut p, &[b"\xEF", b"\xBB", b"\xBF", b"data: z\n\n"]);
    assert_eq!(got[0].data, "z");
    // A partial BOM is ordinary bytes.
    let mut p = SseParser::new();
    let got = parse_chunks(&mut p, &[b"\xEF\xBB", b"\n", b"data: w\n\n"]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, "w");
    assert_eq!(parse_with(8, 8, b"\xEF\xBBdata: v\n\n"), []);
    // Not at the start: ordinary data.
    assert_eq!(datas("data: \u{feff}x\n\n"), ["\u{feff}x"]);
}

#[test]
fn fields_and_values() {
    let e = &parse("event: add\nid: 9\nretry: 250\ndata:x\n\n")[0];
    assert_eq!(
        (e.kind.as_str(), e.id.as_str(), e.retry),
        ("add", "9", Some(250))
    );
    assert_eq!(e.data, "x");
    // Only one space is dropped; tabs are kept; a field without colon has an empty value.
    assert_eq!(
        datas("data:  two\n\ndata:\tt\n\ndata\n\n"),
        [" two", "\tt", ""]
    );
    // Names are case sensitive; unknown fields and comments are ignored.
    assert_eq!(
        datas("Data: no\nfoo: bar\n:data: c\ndatas: x\ndata: yes\n\n"),
        ["yes"]
    );
    // A colon inside the value is kept.
    assert_eq!(datas("data: a:b: c\n\n"), ["a:b: c"]);
}

#[test]
fn event_type_resets_after_dispatch_and_without_data() {
    let got = parse(
        "event: a\ndata: 1\n\ndata: 2\n\nevent: b\n\ndata: 3\n\nevent: x\nevent\ndata: 4\n\n",
    );
    let kinds: Vec<_> = got.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["a", "message", "message", "message"]);
}

#[test]
fn no_data_no_dispatch_and_no_dispatch_at_eof() {
    assert_eq!(
        datas("event: x\nid: 1\nretry: 5\n\n: c\n\n"),
        Vec::<String>::new()
    );
    assert_eq!(datas("data: never dispatched"), Vec::<String>::new());
    assert_eq!(datas("data: never dispatched\n"), Vec::<String>::new());
}

#[test]
fn ids_persist_and_reject_nul() {
    let got = parse("id: 1\ndata: a\n\ndata: b\n\nid: 2\u{0}\ndata: c\n\nid\ndata: d\n\n");
    let ids: Vec<_> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1", "1", "1", ""]);
    // An id counts once its event ends (a blank line), even without data; before that it is
    // only pending.
    let mut p = SseParser::new();
    p.feed(b"id: 5\n", |_| {});
    assert_eq!(p.last_event_id(), b"");
    p.feed(b"\n", |_| {});
    assert_eq!(p.last_event_id(), b"5");
}

#[test]
fn retry_needs_only_digits() {
    let got = parse(
        "retry: 10\ndata: a\n\nretry: 1x\ndata: b\n\nretry:\ndata: c\n\nretry:  7\ndata: d\n\n",
    );
    let retries: Vec<_> = got.iter().map(|e| e.retry).collect();
    assert_eq!(retries, [Some(10), None, None, None]);
    let mut p = SseParser::new();
    p.feed(b"retry: 99999999999999999999999\n", |_| {});
    assert_eq!(p.reconnection_time(), Some(u64::MAX));
    p.feed(b"retry: 3\n", |_| {});
    assert_eq!(p.reconnection_time(), Some(3));
    p.feed(b"retry: -3\n", |_| {});
    assert_eq!(p.reconnection_time(), Some(3));
}

#[test]
fn overflow_is_flagged_and_recovers() {
    let got = parse_with(4, 5, b"data: 123\ndata: 456\n\ndata: ok\n\n");
    assert_eq!(got[0].data, "123\n4");
    assert!(got[0].truncated);
    assert_eq!(got[1].data, "ok");
    assert!(!got[1].truncated);

    let got = parse_with(
        4,
        16,
        b"event: toolong\ndata: a\n\nid: 12345\ndata: b\n\nid: 1234\ndata: c\n\n",
    );
    assert_eq!((got[0].kind.as_str(), got[0].truncated), ("tool", true));
    assert_eq!((got[1].id.as_str(), got[1].truncated), ("", true));
    assert_eq!((got[2].id.as_str(), got[2].truncated), ("1234", false));

    // Zero capacity still parses and reports.
    let got = parse_with(0, 0, b"data\n\ndata: x\n\nevent: e\ndata\n\n");
    let flags: Vec<_> = got
        .iter()
        .map(|e| (e.data.as_str(), e.kind.as_str(), e.truncated))
        .collect();
    assert_eq!(
        flags,
        [
            ("", "message", false),
            ("", "message", true),
            ("", "message", true)
        ]
    );
}

#[test]
fn long_lines_never_grow() {
    let mut p = SseParser::with_capacity(8, 8);
    let big = vec![b'x'; 100_000];
    let mut n = 0;
    p.feed(b"data: ", |_| {});
    p.feed(&big, |_| {});
    p.feed(b"\n", |_| {});
    p.feed(&big, |_| {}); // an enormous unknown field name
    p.feed(b": ", |_| {});
    p.feed(&big, |_| {});
    p.feed(b"\n\ndata: fine\n\n", |e| {
        n += 1;
        if n == 1 {
            assert!(e.truncated && e.data == b"xxxxxxxx");
        } else {
            assert!(!e.truncated && e.data == b"fine");
        }
    });
    assert_eq!(n, 2);
}

#[test]
fn splits_anywhere_give_the_same_events() {
    let inputs: [&[u8]; 6] = [
        b"\xEF\xBB\xBFevent: a\r\ndata: 1\r\ndata:2\r\n\r\n: c\rid: 7\rdata\r\r",
        b"retry: 10\nid: x\x00y\ndata: \xC3\xA9\xE2\x82\xAC\n\nevent\ndata: z\n\n",
        b"\xEF\xBBdata: q\n\ndata: toolong-here\n\nevent: longname\ndata: 1\n\n",
        b"data: a\r\r\n\n\r\r\ndata: b\r\n\n",
        b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata:\n\n",
        b"id\ndata: 1\n\nid: 12345678901\ndata: 2\n\nretry:12\n\ndata:3\n\n",
    ];
    for input in inputs {
        assert_split_invariant(6, 8, input);
        assert_split_invariant(64, 64, input);
    }
}

#[test]
fn split_utf8_is_passed_through() {
    let mut p = SseParser::new();
    let got = parse_chunks(
        &mut p,
        &[b"data: \xE2\x82", b"\xAC \xF0\x9F", b"\x98\x80\n\n"],
    );
    assert_eq!(got[0].data, "€ 😀");
}

#[test]
fn resync_skips_to_the_next_blank_line() {
    let mut p = SseParser::new();
    let mut got = parse_chunks(&mut p, &[b"data: one\n\nevent: two\ndata: par"]);
    p.resync();
    // The cut may fall anywhere; the partial line and event are dropped.
    got.extend(parse_chunks(
        &mut p,
        &[b"tial\n", b"data: still two\n\nevent: three\ndata: 3\n\n"],
    ));
    let kinds: Vec<_> = got
        .iter()
        .map(|e| (e.kind.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(kinds, [("message", "one"), ("three", "3")]);

    // A cut between CR and LF: the LF only ends the partial line.
    let mut p = SseParser::new();
    p.feed(b"data: a\r", |_| panic!("no event yet"));
    p.resync();
    let got = parse_chunks(&mut p, &[b"\ndata: b\n\ndata: c\n\n"]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, "c");
}

#[test]
fn reset_starts_a_new_stream() {
    let mut p = SseParser::new();
    p.feed(b"id: 1\nretry: 5\nevent: e\ndata: half", |_| {});
    p.reset();
    let got = parse_chunks(&mut p, &[b"\xEF\xBB\xBFdata: new\n\n"]);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].kind.as_str(), got[0].id.as_str()), ("message", ""));
    assert_eq!(p.reconnection_time(), None);
}
