//! [`UsageChunkStripper`]: an OpenAI chat event stream without its usage-only chunk, every other
//! byte unchanged.

use super::json;
use memchr::memchr2;

/// Removes OpenAI's usage-only chunks from a Chat Completions event stream, passing every other
/// byte through unchanged, in the order it came.
///
/// A chat stream asked for usage (`stream_options.include_usage: true`) ends with one more
/// event whose data has `"choices": []` and a `usage` object. A gateway that asked for usage on
/// the client's behalf bills that chunk and must not show it to a client that never asked for
/// it (some clients index `choices[0]`). This type finds such events and drops them whole
/// (their lines and the blank line that ends them); all other bytes, comments and blank lines
/// included, come out as they went in.
///
/// An event is recognised when its `data` (lines joined by `\n`, per the event-stream rules)
/// is a JSON object with top-level `choices` an empty array and top-level `usage` an object.
/// To decide, the bytes of an event are held until its blank line; an event that grows past
/// the capacity given to [`UsageChunkStripper::new`] (its bytes up to the blank line's CR or
/// LF) is let through from then on (a usage
/// chunk is a few hundred bytes), so what is held never exceeds it. Line ends may be CRLF, LF
/// or CR, split anywhere across chunks. An event still open at the end of the input is
/// returned by [`UsageChunkStripper::finish`], unchanged.
///
/// Memory: two buffers of the given capacity, allocated by `new`; nothing after that.
///
/// ```
/// use jisr_buffer::UsageChunkStripper;
///
/// let stream = concat!(
///     "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
///     "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\n",
///     "data: [DONE]\n\n",
/// );
/// let mut strip = UsageChunkStripper::new(4096);
/// let mut out = Vec::new();
/// for piece in stream.as_bytes().chunks(5) {
///     strip.feed(piece, |bytes| out.extend_from_slice(bytes));
/// }
/// strip.finish(|bytes| out.extend_from_slice(bytes));
/// assert_eq!(
///     out,
///     b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\ndata: [DONE]\n\n"
/// );
/// assert_eq!(strip.removed(), 1);
/// ```
#[derive(Debug)]
pub struct UsageChunkStripper {
    /// The bytes of the event being read, while it is held.
    held: Vec<u8>,
    /// Scratch for the event's data.
    data: Vec<u8>,
    cap: usize,
    /// The event outgrew `cap`: its bytes pass until its end.
    passing: bool,
    /// The current line has bytes.
    line_dirty: bool,
    /// The previous byte was a CR (a following LF ends nothing).
    after_cr: bool,
    /// The last event ended with a CR at the end of a chunk: an LF starting the next chunk
    /// belongs to it, and is dropped (`Some(true)`, the event was removed) or passed.
    lf_follows: Option<bool>,
    removed: u64,
}

impl UsageChunkStripper {
    /// A stripper holding events of at most `cap` bytes (at least 64) while it decides.
    ///
    /// ```
    /// let strip = jisr_buffer::UsageChunkStripper::new(16 * 1024);
    /// assert_eq!(strip.removed(), 0);
    /// ```
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(64);
        UsageChunkStripper {
            held: Vec::with_capacity(cap),
            data: Vec::with_capacity(cap),
            cap,
            passing: false,
            line_dirty: false,
            after_cr: false,
            lf_follows: None,
            removed: 0,
        }
    }

    /// How many usage-only events were removed.
    pub fn removed(&self) -> u64 {
        self.removed
    }

    /// Reads the next bytes of the stream; `emit` gets the bytes to pass on, in order (possibly
    /// none now, possibly bytes held from earlier chunks).
    pub fn feed(&mut self, mut chunk: &[u8], mut emit: impl FnMut(&[u8])) {
        if let Some(removed) = self.lf_follows.filter(|_| !chunk.is_empty()) {
            self.lf_follows = None;
            if chunk[0] == b'\n' {
                if !removed {
                    emit(&chunk[..1]);
                }
                chunk = &chunk[1..];
            }
        }
        // `start`: the first byte of `chunk` not yet held or emitted.
        let mut start = 0;
        let mut i = 0;
        while i < chunk.len() {
            if self.after_cr {
                self.after_cr = false;
                if chunk[i] == b'\n' {
                    i += 1;
                    continue;
                }
            }
            let Some(at) = memchr2(b'\n', b'\r', &chunk[i..]) else {
                self.line_dirty = true;
                break;
            };
            let end = i + at;
            if at > 0 {
                self.line_dirty = true;
            }
            i = end + 1;
            if chunk[end] == b'\r' {
                self.after_cr = true;
            }
            if self.line_dirty {
                self.line_dirty = false;
                continue;
            }
            // A blank line: the event ends with its line end (a CRLF's LF, when it follows in
            // this chunk, is taken along).
            let mut event_end = i;
            if self.after_cr && chunk.get(i) == Some(&b'\n') {
                self.after_cr = false;
                event_end += 1;
            }
            let usage_only = self.take(&chunk[start..event_end], &mut emit);
            start = event_end;
            i = event_end;
            if self.after_cr {
                // A CR not followed by an LF in this chunk: if it ended the chunk, an LF
                // starting the next one belongs to this event.
                self.after_cr = false;
                if i == chunk.len() {
                    self.lf_follows = Some(usage_only);
                }
            }
            if usage_only {
                self.removed += 1;
                self.held.clear();
            } else if !self.held.is_empty() {
                emit(&self.held);
                self.held.clear();
            }
            self.passing = false;
        }
        if start < chunk.len() {
            let rest = &chunk[start..];
            if !self.passing && self.held.len() + rest.len() > self.cap {
                self.passing = true;
                if !self.held.is_empty() {
                    emit(&self.held);
                    self.held.clear();
                }
            }
            if self.passing {
                emit(rest);
            } else {
                self.held.extend_from_slice(rest);
            }
        }
    }

    /// The end of an event: `tail` is its last bytes. Returns whether the whole event is a
    /// usage-only chunk; otherwise the event's bytes are emitted (held ones first, which the
    /// caller emits, or `tail` directly when the event was passing).
    fn take(&mut self, tail: &[u8], emit: &mut impl FnMut(&[u8])) -> bool {
        if self.passing {
            emit(tail);
            return false;
        }
        // The LF of a closing CRLF is not counted: whether it arrives with the event or in the
        // next chunk must not change the answer.
        let size = self.held.len() + tail.len() - usize::from(tail.ends_with(b"\r\n"));
        if size > self.cap {
            if !self.held.is_empty() {
                emit(&self.held);
                self.held.clear();
            }
            emit(tail);
            return false;
        }
        self.held.extend_from_slice(tail);
        self.is_usage_only()
    }

    /// Whether the held event's data is a usage-only chat chunk.
    fn is_usage_only(&mut self) -> bool {
        self.data.clear();
        let mut any = false;
        for line in self.held.split(|b| *b == b'\n' || *b == b'\r') {
            let value = if line == b"data" {
                &[][..]
            } else if let Some(v) = line.strip_prefix(b"data:") {
                v.strip_prefix(b" ").unwrap_or(v)
            } else {
                continue;
            };
            if any {
                self.data.push(b'\n');
            }
            any = true;
            self.data.extend_from_slice(value);
        }
        if !any {
            return false;
        }
        let data = &self.data[..];
        let empty_choices = json::find(data, &["choices"]).is_some_and(|v| {
            v.first() == Some(&b'[')
                && v[1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b']')
        });
        empty_choices && json::find(data, &["usage"]).is_some_and(|v| v.first() == Some(&b'{'))
    }

    /// The input ended: `emit` gets an event still held (not ended by a blank line), unchanged.
    /// The stripper is then ready for a new stream.
    ///
    /// ```
    /// let mut strip = jisr_buffer::UsageChunkStripper::new(1024);
    /// let mut out = Vec::new();
    /// strip.feed(b"data: {\"choices\":[],\"usage\":{}}\n", |b| out.extend_from_slice(b));
    /// assert!(out.is_empty()); // held: the event has not ended
    /// strip.finish(|b| out.extend_from_slice(b));
    /// assert_eq!(out, b"data: {\"choices\":[],\"usage\":{}}\n");
    /// ```
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.held.is_empty() {
            emit(&self.held);
        }
        self.held.clear();
        self.passing = false;
        self.line_dirty = false;
        self.after_cr = false;
        self.lf_follows = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"{\\\"choices\\\":[],\\\"usage\\\":{}}\"}}],\"usage\":null}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10}}\n\n",
        "data: [DONE]\n\n",
    );

    fn run(input: &[u8], chunk: usize, cap: usize) -> (Vec<u8>, u64) {
        let mut s = UsageChunkStripper::new(cap);
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            s.feed(c, |b| out.extend_from_slice(b));
        }
        s.finish(|b| out.extend_from_slice(b));
        (out, s.removed())
    }

    fn without_usage(stream: &str) -> String {
        stream
            .split_inclusive("\n\n")
            .filter(|e| !e.contains("\"choices\":[],"))
            .collect()
    }

    #[test]
    fn removes_only_the_usage_chunk_whatever_the_chunking_and_line_ends() {
        for eol in ["\n", "\r\n", "\r"] {
            let input = CHAT.replace('\n', eol);
            let want = without_usage(CHAT).replace('\n', eol);
            for chunk in [1, 2, 3, 7, 64, usize::MAX] {
                let (out, removed) = run(input.as_bytes(), chunk, 4096);
                assert_eq!(String::from_utf8(out).unwrap(), want, "{eol:?} {chunk}");
                assert_eq!(removed, 1);
            }
        }
    }

    #[test]
    fn other_streams_pass_unchanged() {
        for input in [
            // Not usage-only: choices not empty, usage null or absent, usage not an object.
            "data: {\"choices\":[{}],\"usage\":{\"prompt_tokens\":1}}\n\n",
            "data: {\"choices\":[],\"usage\":null}\n\n",
            "data: {\"choices\":[]}\n\n",
            "data: {\"usage\":{\"prompt_tokens\":1}}\n\n",
            // The keys inside another object, or the data not JSON.
            "data: {\"x\":{\"choices\":[],\"usage\":{}}}\n\n",
            "data: hello\n\nevent: x\n\n\n\n",
            // No data field: a comment holding the shape.
            ": {\"choices\":[],\"usage\":{}}\n\n",
            // An event never ended.
            "data: {\"choices\":[],\"usage\":{}}\n",
            "",
        ] {
            for chunk in [1, 4, usize::MAX] {
                let (out, removed) = run(input.as_bytes(), chunk, 4096);
                assert_eq!(out, input.as_bytes(), "{input:?}");
                assert_eq!(removed, 0);
            }
        }
    }

    #[test]
    fn multi_line_data_and_spacing() {
        let input = "event: x\ndata: {\"choices\": [ \n\ndata\ndata:{\"choices\":\ndata: [\t],\ndata: \"usage\" : {\"total_tokens\":1}}\nid: 3\n\ndata: [DONE]\n\n";
        let want = "event: x\ndata: {\"choices\": [ \n\ndata: [DONE]\n\n";
        for chunk in [1, 3, usize::MAX] {
            let (out, removed) = run(input.as_bytes(), chunk, 4096);
            assert_eq!(String::from_utf8(out).unwrap(), want);
            assert_eq!(removed, 1);
        }
    }

    #[test]
    fn events_over_the_capacity_pass_and_memory_stays_bounded() {
        let big = format!(
            "data: {{\"choices\":[],\"pad\":\"{}\",\"usage\":{{}}}}\n\n",
            "x".repeat(500)
        );
        let input = format!("{big}{CHAT}");
        for chunk in [1, 7, 100, usize::MAX] {
            let mut s = UsageChunkStripper::new(256);
            let mut out = Vec::new();
            for c in input.as_bytes().chunks(chunk) {
                s.feed(c, |b| out.extend_from_slice(b));
                assert!(s.held.len() <= 256);
            }
            s.finish(|b| out.extend_from_slice(b));
            // The big one is let through (too big to hold); the real one is removed.
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{big}{}", without_usage(CHAT))
            );
            assert_eq!(s.removed(), 1);
            assert!(s.held.capacity() <= 256 && s.data.capacity() <= 256);
        }
    }

    #[test]
    fn a_cr_blank_line_inside_a_chunk_owns_no_later_lf() {
        // Found by the fuzzer: the CR ending an event is followed, in the same chunk, by the
        // next line; the LF that ends that line, in the next chunk, stays in its place.
        let input = b"data: x\r\r: [DONE]\n\n";
        for split in 0..input.len() {
            for cut in [9, split] {
                let mut s = UsageChunkStripper::new(1024);
                let mut out = Vec::new();
                let (a, b) = input.split_at(cut.min(input.len()));
                s.feed(a, |x| out.extend_from_slice(x));
                s.feed(b, |x| out.extend_from_slice(x));
                s.finish(|x| out.extend_from_slice(x));
                assert_eq!(out, input, "{cut}");
            }
        }
    }

    #[test]
    fn a_crlf_split_after_a_removed_event_is_removed_whole() {
        let input = "data: {\"choices\":[],\"usage\":{}}\r\n\r\ndata: [DONE]\r\n\r\n";
        for split in 0..input.len() {
            let mut s = UsageChunkStripper::new(1024);
            let mut out = Vec::new();
            s.feed(&input.as_bytes()[..split], |b| out.extend_from_slice(b));
            s.feed(&input.as_bytes()[split..], |b| out.extend_from_slice(b));
            s.finish(|b| out.extend_from_slice(b));
            assert_eq!(out, b"data: [DONE]\r\n\r\n", "{split}");
        }
    }
}
