//! [`SseParser`]: an incremental, allocation-free server-sent events parser.

use super::sse_lines::{Field, Fields, Lines};
use memchr::memchr;

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// One dispatched event. It borrows the parser's storage and lives for one callback.
///
/// ```
/// use jisr_buffer::SseParser;
///
/// let mut parser = SseParser::new();
/// let mut seen = Vec::new();
/// parser.feed(b"id: 7\nevent: delta\ndata: a\ndata: b\n\n", |e| {
///     seen.push((e.event_type.to_vec(), e.data.to_vec(), e.last_event_id.to_vec()));
/// });
/// assert_eq!(seen, [(b"delta".to_vec(), b"a\nb".to_vec(), b"7".to_vec())]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event<'a> {
    /// The `event` field, or `message` when the event had none.
    pub event_type: &'a [u8],
    /// The `data` lines joined by `\n` (no trailing newline).
    pub data: &'a [u8],
    /// The stream's last event ID as this event is dispatched: the value of the latest valid
    /// `id` field up to and including this event (empty if none). It equals
    /// [`SseParser::last_event_id`] during the callback.
    pub last_event_id: &'a [u8],
    /// The `retry` value given inside this event, if a valid one was.
    pub retry: Option<u64>,
    /// Some value of this event did not fit: `data` or `event_type` was cut at capacity, or a
    /// too long `id` was ignored.
    pub truncated: bool,
}

impl<'a> Event<'a> {
    /// The data as UTF-8, or `None` if it is not valid UTF-8.
    ///
    /// ```
    /// # let mut p = jisr_buffer::SseParser::with_capacity(8, 8);
    /// p.feed(b"data: hi\n\n", |e| assert_eq!(e.data_str(), Some("hi")));
    /// ```
    pub fn data_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.data).ok()
    }

    /// True when the event type equals `name`.
    ///
    /// ```
    /// # let mut p = jisr_buffer::SseParser::with_capacity(8, 8);
    /// p.feed(b"data: hi\n\n", |e| assert!(e.is_type("message")));
    /// ```
    pub fn is_type(&self, name: &str) -> bool {
        self.event_type == name.as_bytes()
    }
}

/// An incremental server-sent events parser with storage fixed at construction.
///
/// Feed it chunks split anywhere; it calls back once per dispatched [`Event`], exactly as if
/// the whole stream had been fed at once.
///
/// It follows the WHATWG HTML "event stream" interpretation rules:
///
/// * lines end in CRLF, LF or CR, and a CRLF split across two chunks is still one line end;
/// * one leading byte order mark (EF BB BF) is ignored, even when split across chunks;
/// * a line starting with `:` is a comment;
/// * `field:value` drops one optional space after the colon; a line without a colon is a field
///   with an empty value;
/// * `event` sets the type of the event being built; `data` appends a line to its data (lines
///   joined by `\n`); `id` sets the *last event ID buffer* unless the value contains NUL (the
///   buffer is not cleared between events, so an id stays on every later event until changed);
///   `retry` sets the reconnection time when the value is one or more ASCII digits; other
///   fields are ignored;
/// * a blank line first commits the last event ID buffer as the stream's last event ID (see
///   [`SseParser::last_event_id`]), then dispatches the event unless no `data` line was seen,
///   and then resets the data and the event type (an empty type reads as `message`);
/// * an event still open when the input ends is never dispatched, and an `id` inside it is
///   never committed.
///
/// # Deliberate differences from the specification
///
/// * Bytes, not text: the spec decodes the stream as UTF-8 (invalid sequences become U+FFFD);
///   this parser passes bytes through as they are, so a chunk may end in the middle of a
///   character, values compare byte for byte, and invalid UTF-8 is kept rather than replaced.
///   [`Event::data_str`] checks UTF-8 on demand. Line ends, colons and the BOM are ASCII or
///   whole sequences, so the event boundaries and fields are the same as after decoding.
/// * `retry` values too large for a `u64` are capped at `u64::MAX` milliseconds rather than
///   being arbitrary-precision integers.
/// * Storage is fixed at construction by [`SseParser::with_capacity`], with these limits:
///   `data` is cut after `data_cap` bytes (the newlines joining lines included) and `event`
///   after `field_cap` bytes, and the event is reported with [`Event::truncated`] set; an `id`
///   longer than `field_cap` bytes is ignored entirely (the buffer keeps its previous value)
///   and the event being built is flagged truncated. The next event starts clean.
/// * [`Event::retry`] is an addition: the spec only sets the reconnection time (which this
///   parser does too, see [`SseParser::reconnection_time`]).
/// * [`SseParser::resync`] has no counterpart in the spec; see its documentation.
///
/// ```
/// use jisr_buffer::SseParser;
///
/// let mut parser = SseParser::with_capacity(64, 1024);
/// let mut seen = Vec::new();
/// for chunk in ["event: greet\r", "\ndata: hel", "lo\ndata:world\n", "\n"] {
///     parser.feed(chunk.as_bytes(), |event| {
///         seen.push((event.event_type.to_vec(), event.data.to_vec()));
///     });
/// }
/// assert_eq!(seen, [(b"greet".to_vec(), b"hello\nworld".to_vec())]);
/// ```
///
/// ```
/// use jisr_buffer::SseParser;
///
/// let mut parser = SseParser::with_capacity(32, 8);
/// let mut events = 0;
/// parser.feed(b": comment\nid: 7\ndata: far too long for eight\n\ndata: ok\n\n", |e| {
///     events += 1;
///     assert_eq!(e.last_event_id, b"7");
///     if events == 1 {
///         assert!(e.truncated);
///         assert_eq!(e.data, b"far too ");
///     } else {
///         assert!(!e.truncated);
///         assert_eq!(e.data, b"ok");
///     }
/// });
/// assert_eq!(events, 2);
/// ```
#[derive(Clone)]
pub struct SseParser {
    data: Box<[u8]>,
    data_len: usize,
    has_data: bool,
    event: Box<[u8]>,
    event_len: usize,
    /// The last event ID string: the id buffer as of the last blank line.
    last_id: Box<[u8]>,
    last_id_len: usize,
    /// The last event ID buffer: set by every valid `id` field, committed at a blank line.
    id: Box<[u8]>,
    id_len: usize,
    /// The buffer differs from the committed id (an `id` field was taken since the last commit).
    id_pending: bool,
    /// The value of the `id` line being read, moved into the buffer when the line ends.
    id_stage: Box<[u8]>,
    id_stage_len: usize,
    id_rejected: bool,
    id_too_long: bool,
    retry_acc: u64,
    retry_digits: usize,
    retry_valid: bool,
    event_retry: Option<u64>,
    reconnection_time: Option<u64>,
    truncated: bool,
    lines: Lines,
    /// BOM bytes matched so far at the start of the stream; `None` once decided.
    bom: Option<usize>,
}

impl SseParser {
    /// A parser for typical LLM streams: 256-byte event types and ids, 64 KiB of data.
    ///
    /// ```
    /// let parser = jisr_buffer::SseParser::new();
    /// assert_eq!(parser.data_capacity(), 64 * 1024);
    /// ```
    pub fn new() -> Self {
        Self::with_capacity(256, 64 * 1024)
    }

    /// A parser keeping at most `field_cap` bytes of event type and of id, and `data_cap` bytes
    /// of data per event. All its storage is allocated here, once: `data_cap + 4 * field_cap`
    /// bytes.
    ///
    /// ```
    /// let parser = jisr_buffer::SseParser::with_capacity(64, 4096);
    /// assert_eq!(parser.field_capacity(), 64);
    /// ```
    pub fn with_capacity(field_cap: usize, data_cap: usize) -> Self {
        SseParser {
            data: vec![0; data_cap].into_boxed_slice(),
            data_len: 0,
            has_data: false,
            event: vec![0; field_cap].into_boxed_slice(),
            event_len: 0,
            last_id: vec![0; field_cap].into_boxed_slice(),
            last_id_len: 0,
            id: vec![0; field_cap].into_boxed_slice(),
            id_len: 0,
            id_pending: false,
            id_stage: vec![0; field_cap].into_boxed_slice(),
            id_stage_len: 0,
            id_rejected: false,
            id_too_long: false,
            retry_acc: 0,
            retry_digits: 0,
            retry_valid: false,
            event_retry: None,
            reconnection_time: None,
            truncated: false,
            lines: Lines::NEW,
            bom: Some(0),
        }
    }

    /// Most bytes of data kept per event.
    ///
    /// ```
    /// assert_eq!(jisr_buffer::SseParser::with_capacity(1, 2).data_capacity(), 2);
    /// ```
    pub fn data_capacity(&self) -> usize {
        self.data.len()
    }

    /// Most bytes kept of an event type or an id.
    ///
    /// ```
    /// assert_eq!(jisr_buffer::SseParser::with_capacity(1, 2).field_capacity(), 1);
    /// ```
    pub fn field_capacity(&self) -> usize {
        self.event.len()
    }

    /// The stream's last event ID: the value a client resuming after the input seen so far
    /// should send as `Last-Event-ID` (empty if none).
    ///
    /// The rule, from the spec: an `id` field only sets the last event ID *buffer*; the last
    /// event ID itself is set from that buffer when a blank line ends an event, before the
    /// check for data, so an event made only of an `id` (no `data`) still commits it though
    /// nothing is dispatched. The buffer is not cleared by a blank line, so the id carries
    /// over to later events. An `id` in an event not yet ended by a blank line (still being
    /// received, or cut off when the input ends) is not reported: that event was never
    /// dispatched, and a client resuming from its id would skip it.
    /// [`pending_event_id`](Self::pending_event_id) shows the buffer.
    ///
    /// ```
    /// let mut p = jisr_buffer::SseParser::new();
    /// p.feed(b"id: 41\ndata: a\n\nid: 42\ndata: b\n", |_| {});
    /// assert_eq!(p.last_event_id(), b"41"); // event 42 is not complete
    /// p.feed(b"\n", |e| assert_eq!(e.last_event_id, b"42"));
    /// assert_eq!(p.last_event_id(), b"42");
    /// p.feed(b"id: 43\n\n", |_| unreachable!("no data, no event"));
    /// assert_eq!(p.last_event_id(), b"43");
    /// ```
    pub fn last_event_id(&self) -> &[u8] {
        &self.last_id[..self.last_id_len]
    }

    /// The last event ID buffer: the value of the latest valid `id` field, which the next blank
    /// line commits as [`last_event_id`](Self::last_event_id). It differs from that only
    /// while an event with an `id` has not been ended yet.
    ///
    /// ```
    /// let mut p = jisr_buffer::SseParser::new();
    /// p.feed(b"id: 7\ndata: x", |_| {});
    /// assert_eq!((p.pending_event_id(), p.last_event_id()), (&b"7"[..], &b""[..]));
    /// ```
    pub fn pending_event_id(&self) -> &[u8] {
        &self.id[..self.id_len]
    }

    /// The last valid `retry` value seen, dispatched or not.
    ///
    /// ```
    /// let mut p = jisr_buffer::SseParser::new();
    /// p.feed(b"retry: 1500\n\n", |_| {});
    /// assert_eq!(p.reconnection_time(), Some(1500));
    /// ```
    pub fn reconnection_time(&self) -> Option<u64> {
        self.reconnection_time
    }

    /// Returns to the state of a new parser (start of a stream); the storage is kept.
    ///
    /// The last event ID and its buffer are cleared too, as the spec starts each stream with
    /// an empty buffer: read [`last_event_id`](Self::last_event_id) before resetting if a
    /// client is to resume with it.
    ///
    /// ```
    /// let mut p = jisr_buffer::SseParser::new();
    /// p.feed(b"id: 1\ndata: x\n\nid: 2\ndata: y", |_| {});
    /// assert_eq!(p.last_event_id(), b"1");
    /// p.reset();
    /// assert!(p.last_event_id().is_empty() && p.pending_event_id().is_empty());
    /// ```
    pub fn reset(&mut self) {
        self.clear_event();
        self.last_id_len = 0;
        self.id_len = 0;
        self.id_pending = false;
        self.reconnection_time = None;
        self.lines = Lines::NEW;
        self.bom = Some(0);
    }

    /// Declares that bytes were lost before the next chunk: drops the partial event and skips
    /// input up to and including the next blank line, so parsing resumes at an event start.
    ///
    /// The first blank line seen after the call is taken as the boundary; a partial line at
    /// the cut is ignored, so the event right after the cut may be skipped, never misparsed.
    ///
    /// An `id` taken since the last blank line belonged to the dropped event, so the last event
    /// ID buffer goes back to [`last_event_id`](Self::last_event_id), which is kept: an id in
    /// the lost bytes is unknown, and resuming from the older id repeats events rather than
    /// skipping them.
    ///
    /// ```
    /// let mut p = jisr_buffer::SseParser::new();
    /// let mut got = Vec::new();
    /// p.feed(b"data: first\n\ndata: sec", |e| got.push(e.data.to_vec()));
    /// p.resync();
    /// p.feed(b"nd\n\ndata: third\n\n", |e| got.push(e.data.to_vec()));
    /// assert_eq!(got, [b"first".to_vec(), b"third".to_vec()]);
    /// ```
    pub fn resync(&mut self) {
        self.clear_event();
        if self.id_pending {
            let n = self.last_id_len;
            self.id[..n].copy_from_slice(&self.last_id[..n]);
            self.id_len = n;
            self.id_pending = false;
        }
        self.lines.resync();
        self.bom = None;
    }

    /// Parses `chunk`, calling `on_event` for every event it completes.
    ///
    /// ```
    /// let mut p = jisr_buffer::SseParser::new();
    /// let mut n = 0;
    /// p.feed(b"data: a\n\ndata: b\n", |_| n += 1);
    /// p.feed(b"\n", |_| n += 1);
    /// assert_eq!(n, 2);
    /// ```
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&Event<'_>)) {
        let rest = self.skip_bom(chunk, &mut on_event);
        self.process(rest, &mut on_event);
    }

    /// Consumes a leading BOM, possibly over several chunks; returns what is left to parse.
    fn skip_bom<'c>(&mut self, chunk: &'c [u8], on_event: &mut impl FnMut(&Event<'_>)) -> &'c [u8] {
        let Some(mut matched) = self.bom else {
            return chunk;
        };
        let mut used = 0;
        while matched < BOM.len() {
            match chunk.get(used) {
                None => {
                    self.bom = Some(matched);
                    return &[];
                }
                Some(&b) if b == BOM[matched] => {
                    matched += 1;
                    used += 1;
                }
                Some(_) => {
                    // Not a BOM after all: the bytes held back are ordinary input.
                    self.bom = None;
                    self.process(&BOM[..matched], on_event);
                    return &chunk[used..];
                }
            }
        }
        self.bom = None;
        &chunk[used..]
    }

    fn process(&mut self, chunk: &[u8], on_event: &mut impl FnMut(&Event<'_>)) {
        let mut lines = self.lines;
        lines.feed(
            chunk,
            &mut Reader {
                parser: self,
                on_event,
            },
        );
        self.lines = lines;
    }

    #[inline(always)]
    fn start_value(&mut self, field: Field) {
        match field {
            Field::Data => {
                if self.has_data {
                    self.truncated |= !push(&mut self.data, &mut self.data_len, b"\n");
                }
                self.has_data = true;
            }
            Field::Event => self.event_len = 0,
            Field::Id => {
                self.id_stage_len = 0;
                self.id_rejected = false;
                self.id_too_long = false;
            }
            Field::Retry => {
                self.retry_acc = 0;
                self.retry_digits = 0;
                self.retry_valid = true;
            }
        }
    }

    #[inline(always)]
    fn push_value(&mut self, field: Field, bytes: &[u8]) {
        match field {
            Field::Data => self.truncated |= !push(&mut self.data, &mut self.data_len, bytes),
            Field::Event => self.truncated |= !push(&mut self.event, &mut self.event_len, bytes),
            Field::Id => {
                self.id_rejected |= memchr(0, bytes).is_some();
                self.id_too_long |= !push(&mut self.id_stage, &mut self.id_stage_len, bytes);
            }
            Field::Retry => {
                for &b in bytes {
                    if b.is_ascii_digit() {
                        let digit = u64::from(b - b'0');
                        self.retry_acc = self.retry_acc.saturating_mul(10).saturating_add(digit);
                        self.retry_digits += 1;
                    } else {
                        self.retry_valid = false;
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn finish_value(&mut self, field: Field) {
        match field {
            Field::Id if self.id_rejected => {}
            Field::Id if self.id_too_long => self.truncated = true,
            Field::Id => {
                core::mem::swap(&mut self.id, &mut self.id_stage);
                self.id_len = self.id_stage_len;
                self.id_pending = true;
            }
            Field::Retry if self.retry_valid && self.retry_digits > 0 => {
                self.reconnection_time = Some(self.retry_acc);
                self.event_retry = Some(self.retry_acc);
            }
            _ => {}
        }
    }

    /// A blank line: commits the id buffer, then dispatches the event if it has data. The
    /// first one after [`SseParser::resync`] only ends the resync: every line since was
    /// ignored and the buffer was restored, so there is nothing to commit.
    fn dispatch(&mut self, resynced: bool, on_event: &mut impl FnMut(&Event<'_>)) {
        if !resynced {
            if self.id_pending {
                let n = self.id_len;
                self.last_id[..n].copy_from_slice(&self.id[..n]);
                self.last_id_len = n;
                self.id_pending = false;
            }
            if self.has_data {
                let event_type = match self.event_len {
                    0 => &b"message"[..],
                    n => &self.event[..n],
                };
                on_event(&Event {
                    event_type,
                    data: &self.data[..self.data_len],
                    last_event_id: &self.last_id[..self.last_id_len],
                    retry: self.event_retry,
                    truncated: self.truncated,
                });
            }
        }
        self.clear_event();
    }

    /// Forgets the event being built (not the last event id or reconnection time).
    fn clear_event(&mut self) {
        self.data_len = 0;
        self.has_data = false;
        self.event_len = 0;
        self.event_retry = None;
        self.truncated = false;
    }
}

/// The parser as the [`Fields`] of one [`Lines::feed`] call, with the callback for events.
struct Reader<'p, F> {
    parser: &'p mut SseParser,
    on_event: &'p mut F,
}

impl<F: FnMut(&Event<'_>)> Fields for Reader<'_, F> {
    #[inline(always)]
    fn start(&mut self, field: Field) {
        self.parser.start_value(field);
    }

    #[inline(always)]
    fn value(&mut self, field: Field, bytes: &[u8]) {
        self.parser.push_value(field, bytes);
    }

    #[inline(always)]
    fn finish(&mut self, field: Field) {
        self.parser.finish_value(field);
    }

    #[inline(always)]
    fn blank_line(&mut self, resynced: bool) {
        self.parser.dispatch(resynced, self.on_event);
    }
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for SseParser {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SseParser")
            .field("field_capacity", &self.field_capacity())
            .field("data_capacity", &self.data_capacity())
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

/// Appends as much of `bytes` as fits; returns false if some did not.
#[inline(always)]
fn push(buf: &mut [u8], len: &mut usize, bytes: &[u8]) -> bool {
    let n = bytes.len().min(buf.len() - *len);
    buf[*len..*len + n].copy_from_slice(&bytes[..n]);
    *len += n;
    n == bytes.len()
}

#[cfg(test)]
mod tests;
