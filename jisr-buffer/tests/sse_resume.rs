//! `SseParser::last_event_id` is the id a resuming client should send: the WHATWG rule sets it
//! from the last event ID buffer only when a blank line ends an event, never for an event cut
//! off before its blank line.

use jisr_buffer::SseParser;

/// Feeds `chunks`; returns the dispatched events as (data, last event id).
fn feed_all(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |e| {
            out.push((e.data.to_vec(), e.last_event_id.to_vec()));
        });
    }
    out
}

fn last_id_after(input: &[u8]) -> Vec<u8> {
    let mut p = SseParser::new();
    p.feed(input, |_| {});
    p.last_event_id().to_vec()
}

#[test]
fn id_of_an_event_cut_off_is_not_reported() {
    let mut p = SseParser::new();
    let got = feed_all(&mut p, &[b"id: 1\ndata: a\n\nid: 2\ndata: b"]);
    assert_eq!(got, [(b"a".to_vec(), b"1".to_vec())]);
    assert_eq!(p.last_event_id(), b"1");
    assert_eq!(p.pending_event_id(), b"2");
    // Complete lines are not enough: the event ends only at a blank line.
    p.feed(b"\ndata: more\r\n", |_| panic!("not dispatched yet"));
    assert_eq!(p.last_event_id(), b"1");

    assert_eq!(last_id_after(b"id: 7\n"), b"");
    assert_eq!(last_id_after(b"id: 7"), b"");
    assert_eq!(last_id_after(b"data: x\nid: 7\n"), b"");
    assert_eq!(last_id_after(b"id: 7\r"), b"");
}

#[test]
fn id_of_a_dispatched_event_is_reported() {
    let mut p = SseParser::new();
    let got = feed_all(
        &mut p,
        &[b"id: 1\ndata: a\n\ndata: b\nid: 2\n\ndata: c\n\n"],
    );
    assert_eq!(
        got,
        [
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
            (b"c".to_vec(), b"2".to_vec()),
        ]
    );
    assert_eq!(p.last_event_id(), b"2");
    assert_eq!(p.pending_event_id(), b"2");
    // The blank line may come in a later chunk, and may be CR, LF or CRLF.
    for end in [&b"\n"[..], b"\r", b"\r\n"] {
        let mut p = SseParser::new();
        p.feed(b"id: 9\ndata: z\n", |_| {});
        assert_eq!(p.last_event_id(), b"");
        let got = feed_all(&mut p, &[end]);
        assert_eq!(got, [(b"z".to_vec(), b"9".to_vec())]);
        assert_eq!(p.last_event_id(), b"9");
    }
}

#[test]
fn id_only_event_commits_the_id_without_dispatching() {
    // The spec sets the last event ID string before checking for an empty data buffer.
    let mut p = SseParser::new();
    assert_eq!(feed_all(&mut p, &[b"id: 5\n\n"]), []);
    assert_eq!(p.last_event_id(), b"5");
    let got = feed_all(&mut p, &[b"data: x\n\n"]);
    assert_eq!(got, [(b"x".to_vec(), b"5".to_vec())]);

    // With a type or retry but no data: still no event, still committed.
    assert_eq!(last_id_after(b"event: e\nretry: 3\nid: 6\n\n"), b"6");
    // An empty `id` (with or without colon) commits the empty id.
    assert_eq!(last_id_after(b"id: 5\n\nid\n\n"), b"");
    assert_eq!(last_id_after(b"id: 5\ndata: a\n\nid:\n\n"), b"");
    // An id with NUL, or too long for the storage, is ignored: the buffer keeps its value.
    assert_eq!(last_id_after(b"id: 5\n\nid: 6\0\n\n"), b"5");
    let mut p = SseParser::with_capacity(4, 16);
    p.feed(b"id: 1234\n\nid: 12345\n\n", |_| {});
    assert_eq!(p.last_event_id(), b"1234");
}

/// The last event id after `input`, by the spec's rules applied to whole lines only (no
/// BOM in the inputs used, ids at most `cap` bytes).
fn reference_last_id(input: &[u8], cap: usize) -> Vec<u8> {
    let mut committed = Vec::new();
    let mut buffer = Vec::new();
    let mut line_start = 0;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b != b'\r' && b != b'\n' {
            i += 1;
            continue;
        }
        let line = &input[line_start..i];
        i += 1;
        if b == b'\r' && input.get(i) == Some(&b'\n') {
            i += 1;
        }
        line_start = i;
        if line.is_empty() {
            committed.clone_from(&buffer);
            continue;
        }
        let (name, value) = match line.iter().position(|&c| c == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if name == b"id" && !value.contains(&0) && value.len() <= cap {
            buffer = value.to_vec();
        }
    }
    committed
}

#[test]
fn ids_across_chunk_splits_at_every_position() {
    let stream: &[u8] =
        b"id: 1\ndata: a\n\nid: 22\r\n\r\nid:333\rdata: b\r\rid\n\nid: 4\ndata: c\n\nid: 55\ndata";
    let cap = 8;
    assert_eq!(reference_last_id(stream, cap), b"4");
    let whole = {
        let mut p = SseParser::with_capacity(cap, 64);
        feed_all(&mut p, &[stream])
    };
    let ids: Vec<&[u8]> = whole.iter().map(|(_, id)| id.as_slice()).collect();
    assert_eq!(ids, [&b"1"[..], b"333", b"4"]);

    for i in 0..=stream.len() {
        for j in i..=stream.len() {
            let mut p = SseParser::with_capacity(cap, 64);
            let mut events = Vec::new();
            for (end, chunk) in [
                (i, &stream[..i]),
                (j, &stream[i..j]),
                (stream.len(), &stream[j..]),
            ] {
                events.extend(feed_all(&mut p, &[chunk]));
                assert_eq!(
                    p.last_event_id(),
                    reference_last_id(&stream[..end], cap),
                    "split {i} {j}, after {end} bytes"
                );
            }
            assert_eq!(events, whole, "split {i} {j}");
        }
    }
    // Byte by byte, checked after every byte.
    let mut p = SseParser::with_capacity(cap, 64);
    for end in 1..=stream.len() {
        p.feed(&stream[end - 1..end], |_| {});
        assert_eq!(
            p.last_event_id(),
            reference_last_id(&stream[..end], cap),
            "byte {end}"
        );
    }
}

#[test]
fn reset_clears_the_committed_and_the_pending_id() {
    let mut p = SseParser::new();
    p.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b", |_| {});
    assert_eq!(
        (p.last_event_id(), p.pending_event_id()),
        (&b"1"[..], &b"2"[..])
    );
    p.reset();
    assert_eq!(
        (p.last_event_id(), p.pending_event_id()),
        (&b""[..], &b""[..])
    );
    // Neither id leaks into the new stream, not even at its first blank line.
    let got = feed_all(&mut p, &[b"\n", b"data: c\n\n"]);
    assert_eq!(got, [(b"c".to_vec(), b"".to_vec())]);
    assert_eq!(p.last_event_id(), b"");
    // The new stream's ids follow the same rule.
    p.feed(b"id: 3\ndata: d\n\nid: 4\n", |_| {});
    assert_eq!(p.last_event_id(), b"3");
    p.reset();
    p.feed(b"id: 5\n\n", |_| {});
    assert_eq!(p.last_event_id(), b"5");
}

#[test]
fn resync_drops_the_pending_id_and_keeps_the_committed_one() {
    let mut p = SseParser::new();
    p.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b", |_| {});
    p.resync();
    assert_eq!(
        (p.last_event_id(), p.pending_event_id()),
        (&b"1"[..], &b"1"[..])
    );
    // The lines up to the next blank line are skipped, ids included.
    let got = feed_all(&mut p, &[b"tail\nid: 3\n\ndata: c\n\n"]);
    assert_eq!(got, [(b"c".to_vec(), b"1".to_vec())]);
    assert_eq!(p.last_event_id(), b"1");
    let got = feed_all(&mut p, &[b"id: 4\ndata: d\n\n"]);
    assert_eq!(got, [(b"d".to_vec(), b"4".to_vec())]);
}
