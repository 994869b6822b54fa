//! The line and field layer of the event-stream format, shared by [`SseParser`] and
//! [`UsageTracker`]: line ends (CRLF, LF or CR, a CRLF split across chunks being one end),
//! comments, `name:value` with one optional space dropped, unknown fields ignored, and blank
//! lines. What a field's value means, and what a blank line does, is the caller's ([`Fields`]).
//!
//! [`SseParser`]: super::SseParser
//! [`UsageTracker`]: super::UsageTracker

use memchr::{memchr2, memchr3};

/// The fields the event-stream format knows; any other name is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Event,
    Data,
    Id,
    Retry,
}

/// What a reader does with the fields and blank lines [`Lines`] finds.
pub(super) trait Fields {
    /// A `field` line starts; its value follows in [`Fields::value`] calls.
    fn start(&mut self, field: Field);
    /// The next bytes of the value of `field` (a value may come in several pieces).
    fn value(&mut self, field: Field, bytes: &[u8]);
    /// The line of `field` ended.
    fn finish(&mut self, field: Field);
    /// A blank line. `resynced` is true for the first one after [`Lines::resync`]: it only
    /// marks where whole events start again, and every line since the resync was ignored.
    fn blank_line(&mut self, resynced: bool);
}

#[derive(Debug, Clone, Copy)]
enum Line {
    /// At the first byte of a line.
    Start,
    /// Reading a field name; `len` counts its bytes (only 5 are kept, no known name is longer).
    Name { buf: [u8; 5], len: usize },
    /// Reading the value of a known field; `first` is true right after the colon.
    Value { field: Field, first: bool },
    /// Skipping the rest of a comment, unknown field or resync line.
    Ignore,
}

/// Where the reader is in the line structure of a stream.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lines {
    line: Line,
    after_cr: bool,
    resyncing: bool,
}

impl Lines {
    /// At the start of a stream.
    pub(super) const NEW: Lines = Lines {
        line: Line::Start,
        after_cr: false,
        resyncing: false,
    };

    /// Ignores the rest of the current line.
    pub(super) fn ignore_line(&mut self) {
        self.line = Line::Ignore;
    }

    /// Bytes were lost: ignores everything up to and including the next blank line.
    pub(super) fn resync(&mut self) {
        self.line = Line::Ignore;
        self.after_cr = false;
        self.resyncing = true;
    }

    /// Reads `chunk`, telling `fields` what it holds.
    pub(super) fn feed(&mut self, chunk: &[u8], fields: &mut impl Fields) {
        let mut i = 0;
        while i < chunk.len() {
            if self.after_cr {
                self.after_cr = false;
                if chunk[i] == b'\n' {
                    i += 1;
                    continue;
                }
            }
            match self.line {
                Line::Start => match chunk[i] {
                    b @ (b'\r' | b'\n') => {
                        i += 1;
                        self.after_cr = b == b'\r';
                        let resynced = core::mem::take(&mut self.resyncing);
                        fields.blank_line(resynced);
                    }
                    b':' => {
                        i += 1;
                        self.line = Line::Ignore;
                    }
                    _ if self.resyncing => self.line = Line::Ignore,
                    _ => {
                        // Fast path: a whole known `name:` in this chunk skips the name state,
                        // and a whole line skips the value state too.
                        let Some((field, used)) = known_prefix(&chunk[i..]) else {
                            self.line = Line::Name {
                                buf: [0; 5],
                                len: 0,
                            };
                            continue;
                        };
                        i += used;
                        fields.start(field);
                        if chunk.get(i) == Some(&b' ') {
                            i += 1;
                        } else if i == chunk.len() {
                            self.line = Line::Value { field, first: true };
                            return;
                        }
                        let rest = &chunk[i..];
                        let Some(end) = memchr2(b'\r', b'\n', rest) else {
                            fields.value(field, rest);
                            self.line = Line::Value {
                                field,
                                first: false,
                            };
                            return;
                        };
                        fields.value(field, &rest[..end]);
                        fields.finish(field);
                        i += end + 1;
                        self.after_cr = rest[end] == b'\r';
                    }
                },
                Line::Name { mut buf, mut len } => {
                    let rest = &chunk[i..];
                    let end = memchr3(b':', b'\r', b'\n', rest);
                    let name = &rest[..end.unwrap_or(rest.len())];
                    let start = len.min(buf.len());
                    let keep = name.len().min(buf.len() - start);
                    buf[start..start + keep].copy_from_slice(&name[..keep]);
                    len = len.saturating_add(name.len());
                    let Some(end) = end else {
                        self.line = Line::Name { buf, len };
                        return;
                    };
                    i += end + 1;
                    let field = field_named(&buf, len);
                    if let Some(field) = field {
                        fields.start(field);
                    }
                    if rest[end] == b':' {
                        self.line =
                            field.map_or(Line::Ignore, |field| Line::Value { field, first: true });
                    } else {
                        if let Some(field) = field {
                            fields.finish(field);
                        }
                        self.after_cr = rest[end] == b'\r';
                        self.line = Line::Start;
                    }
                }
                Line::Value { field, first } => {
                    if first {
                        self.line = Line::Value {
                            field,
                            first: false,
                        };
                        if chunk[i] == b' ' {
                            i += 1;
                        }
                    }
                    let rest = &chunk[i..];
                    let end = memchr2(b'\r', b'\n', rest);
                    fields.value(field, &rest[..end.unwrap_or(rest.len())]);
                    let Some(end) = end else {
                        return;
                    };
                    i += end + 1;
                    fields.finish(field);
                    self.after_cr = rest[end] == b'\r';
                    self.line = Line::Start;
                }
                Line::Ignore => {
                    let rest = &chunk[i..];
                    let Some(end) = memchr2(b'\r', b'\n', rest) else {
                        return;
                    };
                    i += end + 1;
                    self.after_cr = rest[end] == b'\r';
                    self.line = Line::Start;
                }
            }
        }
    }
}

/// Recognises a complete `data:`, `event:`, `id:` or `retry:` at the start of `line`.
#[inline(always)]
fn known_prefix(line: &[u8]) -> Option<(Field, usize)> {
    let field = match line.first()? {
        b'd' if line.starts_with(b"data:") => Field::Data,
        b'e' if line.starts_with(b"event:") => Field::Event,
        b'i' if line.starts_with(b"id:") => Field::Id,
        b'r' if line.starts_with(b"retry:") => Field::Retry,
        _ => return None,
    };
    let used = match field {
        Field::Data => 5,
        Field::Id => 3,
        Field::Event | Field::Retry => 6,
    };
    Some((field, used))
}

fn field_named(buf: &[u8; 5], len: usize) -> Option<Field> {
    match buf.get(..len)? {
        b"event" => Some(Field::Event),
        b"data" => Some(Field::Data),
        b"id" => Some(Field::Id),
        b"retry" => Some(Field::Retry),
        _ => None,
    }
}
