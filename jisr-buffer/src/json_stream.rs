//! [`PathMatcher`]: find values by key path in JSON that arrives in pieces, in constant memory.
//!
//! [`json`](super::json) needs the whole document in one slice. A [`PathMatcher`] is fed the
//! document chunk by chunk, split anywhere (inside a key, a string, an escape, a number), and
//! reports each value found at one of its watched paths as soon as the value ends. Its whole
//! state is inline and fixed in size (a few hundred bytes, plus the [`PathSet`] index it
//! borrows): it never allocates, whatever the size of the document or the depth of its
//! nesting.
//!
//! Paths are exact, as with [`json`](super::json): a path is a list of object keys from the
//! top-level value, so `["usage", "prompt_tokens"]` never matches a `prompt_tokens` inside
//! another object, inside an array, or inside a string. Keys are compared after decoding
//! their escapes (`\"`, `\\`, `\uXXXX`, surrogate pairs).
//!
//! How the state stays bounded:
//!
//! * the matcher only follows objects whose path is a prefix of a watched path: one frame
//!   per level, at most [`MAX_DEPTH`] levels. Every other value (any array, any object off
//!   the watched paths, any string not at a watched path) is skipped whole, jumping from one
//!   quote or bracket to the next (a word at a time over the first bytes, then `memchr`),
//!   keeping one nesting counter and no stack;
//! * a key is decoded into [`MAX_KEY_LEN`] bytes: a longer key cannot equal a watched key
//!   (no watched key may be longer), so it simply matches nothing;
//! * a string at a watched path is reported decoded, cut to its first [`STRING_CAPTURE`]
//!   bytes if longer (and then flagged incomplete); numbers are reported as [`Value::U64`]
//!   when they are a plain non-negative integer that fits.
//!
//! The matcher does not validate the document. Malformed input stops it (everything after is
//! ignored until [`PathMatcher::reset`]); what it reported before stands. A number or literal
//! is reported only once a byte after it ends it, so a number cut at the end of the input is
//! never reported in part. Whatever the chunking, the same input gives the same reports in
//! the same order.
//!
//! ```
//! use jisr_buffer::json_stream::{Hit, PathMatcher, PathSet, Value};
//!
//! static PATHS: PathSet = PathSet::new(&[&["usage", "prompt_tokens"], &["object"]]);
//! let mut matcher = PathMatcher::new(&PATHS);
//! let doc = br#"{"note":"\"usage\":{\"prompt_tokens\":1}","object":"chat","usage":{"prompt_tokens":12}}"#;
//! let mut found = Vec::new();
//! for piece in doc.chunks(5) {
//!     matcher.feed(piece, |hit| match hit {
//!         Hit::Value { path, value: Value::U64(n) } => found.push((path, n)),
//!         Hit::Value { path, value: Value::Str { decoded, .. } } => {
//!             found.push((path, decoded.len() as u64))
//!         }
//!         _ => {}
//!     });
//! }
//! assert_eq!(found, [(1, 4), (0, 12)]);
//! ```

use super::scan::{find2, find3};
use memchr::memchr2;

/// Most paths a [`PathMatcher`] can watch.
pub const MAX_PATHS: usize = 64;
/// Most keys in one watched path.
pub const MAX_DEPTH: usize = 8;
/// Longest key, in bytes (decoded, UTF-8), that a watched path may hold.
pub const MAX_KEY_LEN: usize = 64;
/// How many decoded bytes of a string value at a watched path are reported.
pub const STRING_CAPTURE: usize = 64;

/// A value found at a watched path.
///
/// ```
/// use jisr_buffer::json_stream::{Hit, PathMatcher, PathSet, Value};
///
/// static PATHS: PathSet = PathSet::new(&[&["n"], &["s"], &["o"]]);
/// let mut found = Vec::new();
/// PathMatcher::new(&PATHS).feed(br#"{"n": 42, "s": "a\u00e9", "o": {}}"#, |hit| {
///     if let Hit::Value { path, value } = hit {
///         found.push(match value {
///             Value::U64(n) => format!("{path}: {n}"),
///             Value::Str { decoded, complete } => {
///                 format!("{path}: {} {complete}", String::from_utf8_lossy(decoded))
///             }
///             other => format!("{path}: {other:?}"),
///         });
///     }
/// });
/// assert_eq!(found, ["0: 42", "1: aé true", "2: Object"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value<'a> {
    /// A number made only of ASCII digits that fits in a `u64`.
    U64(u64),
    /// Any other number: negative, with a fraction or exponent, or too large.
    Number,
    /// A string: its first [`STRING_CAPTURE`] bytes, escapes decoded (a lone surrogate
    /// escape decodes to U+FFFD); `complete` is false when the string was longer.
    Str {
        /// The decoded bytes (UTF-8 unless the raw string was not).
        decoded: &'a [u8],
        /// False when `decoded` is only the start of the string.
        complete: bool,
    },
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An object starts here (reported at its `{`; deeper watched paths report its fields).
    Object,
    /// An array starts here (reported at its `[`).
    Array,
    /// A string with an invalid escape, or a bare word that is no JSON value.
    Invalid,
}

/// What [`PathMatcher::feed`] reports.
///
/// ```
/// use jisr_buffer::json_stream::{Hit, PathMatcher, PathSet};
///
/// static PATHS: PathSet = PathSet::new(&[&["id"]]);
/// let mut matcher = PathMatcher::new(&PATHS);
/// matcher.set_documents_in_root_array(true);
/// let (mut ids, mut docs) = (0, 0);
/// matcher.feed(br#"[{"id": 1}, {"id": 2}]"#, |hit| match hit {
///     Hit::Value { .. } => ids += 1,
///     Hit::DocumentEnd => docs += 1,
///     _ => {}
/// });
/// assert_eq!((ids, docs), (2, 2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hit<'a> {
    /// A value at `paths[path]` (the index in the slice given to [`PathMatcher::new`]).
    Value {
        /// Index of the watched path.
        path: usize,
        /// The value.
        value: Value<'a>,
    },
    /// A document ended: a top-level value, or, with
    /// [`PathMatcher::set_documents_in_root_array`], an element of a top-level array.
    DocumentEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Expecting a value; the paths it sits at are in `value_mask`.
    Value,
    /// Right after the `[` of a top-level array of documents: an element or `]`.
    ElemOrEnd,
    /// Right after the `{` of a followed object: a key or `}`.
    KeyOrEnd,
    /// After a `,` in a followed object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value in a followed object or top-level array: `,` or the closing bracket.
    After,
    /// Decoding a key (`key`) or a string value at a watched path into `text`.
    Text { key: bool },
    /// Skipping a string; `nested` when it lies inside a skipped container.
    SkipStr { nested: bool },
    /// Inside a bare value (number or literal); `capture` when at a watched path.
    Token { capture: bool },
    /// Skipping a container: `skip_open` / `skip_close` nesting counted in `skip_depth`.
    Skip,
    /// Malformed input: nothing more is read until a reset.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// Just after a backslash.
    Backslash,
    /// Inside `\uXXXX`: `n` hex digits read so far, their value.
    Hex {
        n: u8,
        acc: u16,
    },
}

/// Classifies a bare value as its bytes go by.
#[derive(Debug, Clone, Copy)]
struct Tok {
    len: usize,
    first: u8,
    digits_only: bool,
    overflow: bool,
    acc: u64,
    lit: [u8; 5],
}

impl Tok {
    const NEW: Tok = Tok {
        len: 0,
        first: 0,
        digits_only: true,
        overflow: false,
        acc: 0,
        lit: [0; 5],
    };

    fn push(&mut self, b: u8) {
        if self.len == 0 {
            self.first = b;
        }
        if let Some(slot) = self.lit.get_mut(self.len) {
            *slot = b;
        }
        self.len = self.len.saturating_add(1);
        if b.is_ascii_digit() {
            match self
                .acc
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
            {
                Some(n) => self.acc = n,
                None => self.overflow = true,
            }
        } else {
            self.digits_only = false;
        }
    }

    /// The value of a whole bare token.
    fn of(token: &[u8]) -> Value<'static> {
        let mut tok = Tok::NEW;
        for &b in token {
            tok.push(b);
        }
        tok.value()
    }

    fn value(&self) -> Value<'static> {
        if self.digits_only {
            return if self.overflow {
                Value::Number
            } else {
                Value::U64(self.acc)
            };
        }
        if self.first == b'-' || self.first.is_ascii_digit() {
            return Value::Number;
        }
        match self.lit.get(..self.len) {
            Some(b"true") => Value::Bool(true),
            Some(b"false") => Value::Bool(false),
            Some(b"null") => Value::Null,
            _ => Value::Invalid,
        }
    }
}

/// The watched paths, indexed for matching: built once (at compile time when it is a
/// `static`), shared by any number of [`PathMatcher`]s. The index takes about 8 KiB, so keep
/// it in a `static` (or build it once and share it) rather than on the stack of a hot path.
///
/// Up to [`MAX_PATHS`] paths of 0 to [`MAX_DEPTH`] keys of at most [`MAX_KEY_LEN`] bytes
/// each; the empty path watches the top-level value itself. A value found at `paths[i]` is
/// reported with `path: i`.
///
/// ```
/// use jisr_buffer::json_stream::PathSet;
///
/// static PATHS: PathSet = PathSet::new(&[&["usage", "input_tokens"], &["type"]]);
/// assert_eq!(PATHS.len(), 2);
/// ```
///
/// Limits are checked when the set is built, so a `static` set that breaks them does not
/// compile:
///
/// ```compile_fail
/// use jisr_buffer::json_stream::PathSet;
///
/// static DEEP: PathSet = PathSet::new(&[&["a", "b", "c", "d", "e", "f", "g", "h", "i"]]);
/// ```
#[derive(Debug, Clone)]
pub struct PathSet<'p> {
    paths: &'p [&'p [&'p str]],
    all: u64,
    /// `ends[d]`: the paths of exactly `d` keys.
    ends: [u64; MAX_DEPTH + 1],
    /// `longer[d]`: the paths of more than `d` keys.
    longer: [u64; MAX_DEPTH + 1],
    /// `reps[d][s]`: for each distinct prefix of `d + 1` keys whose last key has the
    /// signature `s` ([`key_sig`]), the first path with it.
    reps: [[u64; 64]; MAX_DEPTH],
    /// `groups[d][i]`: the paths whose first `d + 1` keys are those of path `i`.
    groups: [[u64; MAX_PATHS]; MAX_DEPTH],
}

const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// True when both paths have more than `d` keys and the same first `d + 1`.
const fn same_prefix(a: &[&str], b: &[&str], d: usize) -> bool {
    if a.len() <= d || b.len() <= d {
        return false;
    }
    let mut k = 0;
    while k <= d {
        if !bytes_eq(a[k].as_bytes(), b[k].as_bytes()) {
            return false;
        }
        k += 1;
    }
    true
}

impl<'p> PathSet<'p> {
    /// Indexes `paths`.
    ///
    /// # Panics
    ///
    /// If there are more than [`MAX_PATHS`] paths, a path has more than [`MAX_DEPTH`] keys,
    /// or a key is longer than [`MAX_KEY_LEN`] bytes (a compile error for a `static`).
    ///
    /// ```
    /// let paths: Vec<&[&str]> = vec![&["a"], &["a", "b"]];
    /// let set = jisr_buffer::json_stream::PathSet::new(&paths);
    /// assert_eq!(set.path(1), ["a", "b"]);
    /// ```
    pub const fn new(paths: &'p [&'p [&'p str]]) -> Self {
        assert!(paths.len() <= MAX_PATHS, "too many watched paths");
        let mut set = PathSet {
            paths,
            all: 0,
            ends: [0; MAX_DEPTH + 1],
            longer: [0; MAX_DEPTH + 1],
            reps: [[0; 64]; MAX_DEPTH],
            groups: [[0; MAX_PATHS]; MAX_DEPTH],
        };
        let mut i = 0;
        while i < paths.len() {
            let path = paths[i];
            assert!(path.len() <= MAX_DEPTH, "watched path too deep");
            let bit = 1u64 << i;
            set.all |= bit;
            set.ends[path.len()] |= bit;
            let mut d = 0;
            while d < path.len() {
                let key = path[d].as_bytes();
                assert!(key.len() <= MAX_KEY_LEN, "watched key too long");
                set.longer[d] |= bit;
                let mut first = true;
                let mut j = 0;
                while j < paths.len() {
                    if same_prefix(paths[j], path, d) {
                        set.groups[d][i] |= 1 << j;
                        first &= j >= i;
                    }
                    j += 1;
                }
                if first {
                    set.reps[d][key_sig(key)] |= bit;
                }
                d += 1;
            }
            i += 1;
        }
        set
    }

    /// How many paths the set holds.
    ///
    /// ```
    /// assert!(jisr_buffer::json_stream::PathSet::new(&[]).is_empty());
    /// ```
    pub const fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when the set holds no path.
    ///
    /// ```
    /// assert!(!jisr_buffer::json_stream::PathSet::new(&[&[]]).is_empty());
    /// ```
    pub const fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The path reported as `path: i`.
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    ///
    /// ```
    /// use jisr_buffer::json_stream::PathSet;
    ///
    /// static PATHS: PathSet = PathSet::new(&[&["type"]]);
    /// assert_eq!(PATHS.path(0), ["type"]);
    /// ```
    pub const fn path(&self, i: usize) -> &'p [&'p str] {
        self.paths[i]
    }
}

/// A streaming JSON key-path matcher with fixed, inline state (see the
/// [module documentation](self)); its paths are a [`PathSet`] it borrows.
///
/// By default the input is a sequence of top-level values (one document, or several one
/// after another, as in JSON lines); each ends with [`Hit::DocumentEnd`].
///
/// ```
/// use jisr_buffer::json_stream::{Hit, PathMatcher, PathSet};
///
/// static PATHS: PathSet = PathSet::new(&[&["a", "b"]]);
/// let mut m = PathMatcher::new(&PATHS);
/// let mut hits = Vec::new();
/// m.feed(br#"{"x":[{"a":{"b":1}}],"a":{"b":"#, |h| hits.push(format!("{h:?}")));
/// m.feed(br#"2 }}"#, |h| hits.push(format!("{h:?}")));
/// assert_eq!(hits, ["Value { path: 0, value: U64(2) }", "DocumentEnd"]);
/// ```
#[derive(Debug, Clone)]
pub struct PathMatcher<'p> {
    set: &'p PathSet<'p>,
    docs_in_array: bool,
    /// `frames[d]`: the paths the followed object at depth `d` can still lead to.
    frames: [u64; MAX_DEPTH],
    /// Followed objects open.
    depth: usize,
    /// Inside a top-level array whose elements are documents.
    in_array: bool,
    st: St,
    /// The paths of the value about to start.
    value_mask: u64,
    /// The paths the scalar being read is reported at.
    report: u64,
    skip_open: u8,
    skip_close: u8,
    skip_depth: usize,
    /// A skipped string's last byte was a backslash.
    skip_escape: bool,
    esc: Esc,
    /// A high surrogate waiting for its low half.
    hi: Option<u16>,
    /// The text being decoded had an invalid escape.
    bad: bool,
    text: [u8; STRING_CAPTURE],
    text_len: usize,
    /// The text being decoded did not fit in `text`.
    over: bool,
    tok: Tok,
}

const _: () = assert!(MAX_KEY_LEN <= STRING_CAPTURE && MAX_PATHS <= 64);

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The index of the first byte from `i` on that is not JSON whitespace.
#[inline(always)]
fn skip_ws(chunk: &[u8], mut i: usize) -> usize {
    // Compact JSON has no whitespace: one comparison tells most calls apart.
    if chunk.get(i).is_none_or(|&b| b > b' ') {
        return i;
    }
    while i < chunk.len() && is_ws(chunk[i]) {
        i += 1;
    }
    i
}

/// Bytes that end a bare value.
static ENDS_TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let ends = b",:}]\"{[ \t\n\r";
    let mut i = 0;
    while i < ends.len() {
        t[ends[i] as usize] = true;
        i += 1;
    }
    t
};

/// A 6-bit signature of a key (from its length, first and last byte): most keys that no
/// watched path holds are rejected on it without a comparison.
const fn key_sig(key: &[u8]) -> usize {
    let (first, last) = match (key.first(), key.last()) {
        (Some(f), Some(l)) => (*f as usize, *l as usize),
        _ => (0, 0),
    };
    (key.len() * 31 + first * 7 + last) % 64
}

/// `a == b` without a `memcmp` call: keys are short, and a call costs more than the loop.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Calls `f` with each set bit of `mask`, lowest first.
fn each_bit(mut mask: u64, mut f: impl FnMut(usize)) {
    while mask != 0 {
        f(mask.trailing_zeros() as usize);
        mask &= mask - 1;
    }
}

impl<'p> PathMatcher<'p> {
    /// A matcher for the paths of `set`, at the start of a document.
    ///
    /// ```
    /// use jisr_buffer::json_stream::{PathMatcher, PathSet};
    ///
    /// static PATHS: PathSet = PathSet::new(&[&["usage", "input_tokens"], &["type"]]);
    /// let matcher = PathMatcher::new(&PATHS);
    /// # let _ = matcher;
    /// ```
    pub fn new(set: &'p PathSet<'p>) -> Self {
        PathMatcher {
            set,
            docs_in_array: false,
            frames: [0; MAX_DEPTH],
            depth: 0,
            in_array: false,
            st: St::Value,
            value_mask: set.all,
            report: 0,
            skip_open: 0,
            skip_close: 0,
            skip_depth: 0,
            skip_escape: false,
            esc: Esc::None,
            hi: None,
            bad: false,
            text: [0; STRING_CAPTURE],
            text_len: 0,
            over: false,
            tok: Tok::NEW,
        }
    }

    /// When `on`, a top-level array is a list of documents: each element is matched as a
    /// top-level value and ends with [`Hit::DocumentEnd`] (a streamed JSON array of
    /// responses, as Gemini's `streamGenerateContent` sends without `alt=sse`). Off by
    /// default: a top-level array is then skipped like any array.
    ///
    /// ```
    /// use jisr_buffer::json_stream::{Hit, PathMatcher, PathSet};
    ///
    /// static PATHS: PathSet = PathSet::new(&[&["n"]]);
    /// let mut m = PathMatcher::new(&PATHS);
    /// m.set_documents_in_root_array(true);
    /// let mut hits = 0;
    /// m.feed(br#"[{"n":1},{"n":2}]"#, |h| hits += matches!(h, Hit::Value { .. }) as u32);
    /// assert_eq!(hits, 2);
    /// ```
    pub fn set_documents_in_root_array(&mut self, on: bool) {
        self.docs_in_array = on;
    }

    /// Back to the start of a document (the path table and the array setting are kept).
    ///
    /// ```
    /// use jisr_buffer::json_stream::{PathMatcher, PathSet};
    ///
    /// static PATHS: PathSet = PathSet::new(&[&["n"]]);
    /// let mut m = PathMatcher::new(&PATHS);
    /// m.feed(b"{\"n\":\"cut", |_| {});
    /// m.reset();
    /// let mut n = 0;
    /// m.feed(b"{\"n\":7}", |_| n += 1);
    /// assert_eq!(n, 2); // the value, then the end of the document
    /// ```
    pub fn reset(&mut self) {
        self.depth = 0;
        self.in_array = false;
        self.st = St::Value;
        self.value_mask = self.set.all;
    }

    /// True once malformed input stopped the matcher (until [`PathMatcher::reset`]).
    ///
    /// ```
    /// use jisr_buffer::json_stream::{PathMatcher, PathSet};
    ///
    /// static PATHS: PathSet = PathSet::new(&[&["n"]]);
    /// let mut m = PathMatcher::new(&PATHS);
    /// m.feed(b"{\"n\" 1}", |_| {});
    /// assert!(m.is_failed());
    /// ```
    pub fn is_failed(&self) -> bool {
        self.st == St::Failed
    }

    /// Reads the next piece of the input, calling `on_hit` for each value found at a watched
    /// path and at the end of each document.
    ///
    /// ```
    /// use jisr_buffer::json_stream::{Hit, PathMatcher, PathSet, Value};
    ///
    /// static PATHS: PathSet = PathSet::new(&[&["t"]]);
    /// let mut m = PathMatcher::new(&PATHS);
    /// let mut t = Vec::new();
    /// for piece in [&b"{\"t\":\"a\\u00"[..], b"e9b\"}"] {
    ///     m.feed(piece, |h| {
    ///         if let Hit::Value { value: Value::Str { decoded, .. }, .. } = h {
    ///             t = decoded.to_vec();
    ///         }
    ///     });
    /// }
    /// assert_eq!(t, "aéb".as_bytes());
    /// ```
    pub fn feed(&mut self, chunk: &[u8], mut on_hit: impl FnMut(Hit<'_>)) {
        let on_hit = &mut on_hit;
        let n = chunk.len();
        let mut i = 0;
        while i < n {
            match self.st {
                St::Failed => return,
                St::Value | St::ElemOrEnd => {
                    i = skip_ws(chunk, i);
                    let Some(&b) = chunk.get(i) else {
                        return;
                    };
                    if self.st == St::ElemOrEnd && b == b']' {
                        i += 1;
                        self.in_array = false;
                        self.st = St::Value;
                        self.value_mask = self.set.all;
                        continue;
                    }
                    i += self.start_value(b, on_hit);
                }
                St::KeyOrEnd | St::Key => {
                    i = skip_ws(chunk, i);
                    let Some(&b) = chunk.get(i) else {
                        return;
                    };
                    i += 1;
                    match b {
                        b'"' => i = self.members(chunk, i, on_hit),
                        b'}' if self.st == St::KeyOrEnd => {
                            self.depth -= 1;
                            self.value_done(on_hit);
                        }
                        _ => self.st = St::Failed,
                    }
                }
                St::Colon => {
                    i = skip_ws(chunk, i);
                    let Some(&b) = chunk.get(i) else {
                        return;
                    };
                    i += 1;
                    self.st = if b == b':' { St::Value } else { St::Failed };
                }
                St::After => {
                    i = skip_ws(chunk, i);
                    let Some(&b) = chunk.get(i) else {
                        return;
                    };
                    i += 1;
                    if self.depth > 0 {
                        match b {
                            b',' => self.st = St::Key,
                            b'}' => {
                                self.depth -= 1;
                                self.value_done(on_hit);
                            }
                            _ => self.st = St::Failed,
                        }
                    } else {
                        // In a top-level array of documents.
                        match b {
                            b',' => {
                                self.st = St::Value;
                                self.value_mask = self.set.all;
                            }
                            b']' => {
                                self.in_array = false;
                                self.st = St::Value;
                                self.value_mask = self.set.all;
                            }
                            _ => self.st = St::Failed,
                        }
                    }
                }
                St::Text { key } => i += self.text(&chunk[i..], key, on_hit),
                St::SkipStr { nested } => {
                    let rest = &chunk[i..];
                    let Some(used) = self.skip_string(rest) else {
                        return;
                    };
                    i += used;
                    if nested {
                        self.st = St::Skip;
                    } else {
                        self.value_done(on_hit);
                    }
                }
                St::Token { capture } => {
                    let rest = &chunk[i..];
                    let end = rest.iter().position(|&b| ENDS_TOKEN[usize::from(b)]);
                    let body = &rest[..end.unwrap_or(rest.len())];
                    if capture {
                        for &b in body {
                            self.tok.push(b);
                        }
                    }
                    let Some(end) = end else {
                        return;
                    };
                    i += end;
                    if capture {
                        let value = self.tok.value();
                        self.report_value(value, on_hit);
                    }
                    self.value_done(on_hit);
                }
                St::Skip => match self.skip_container(chunk, i) {
                    Some(end) => {
                        i = end;
                        self.value_done(on_hit);
                    }
                    None => return,
                },
            }
        }
    }

    /// The fast path through the members of a followed object, while they are simple: keys
    /// without escapes, compared where they lie, and values off the watched paths, skipped
    /// here. Starts just after the opening quote of a key; returns where it stopped, with the
    /// state set for the general loop to go on from there (it stops at anything else, and at
    /// the end of the chunk).
    fn members(&mut self, chunk: &[u8], mut i: usize, on_hit: &mut impl FnMut(Hit<'_>)) -> usize {
        loop {
            let rest = &chunk[i..];
            let at = match find2(rest, b'"', b'\\') {
                Some(at) if rest[at] == b'"' => at,
                _ => {
                    self.start_text(true);
                    return i;
                }
            };
            let mask = self.key_mask(&rest[..at]);
            self.value_mask = mask;
            i = skip_ws(chunk, i + at + 1);
            if chunk.get(i) != Some(&b':') {
                self.st = St::Colon;
                return i;
            }
            i = skip_ws(chunk, i + 1);
            self.st = St::Value;
            let Some(&b) = chunk.get(i) else {
                return i;
            };
            if mask != 0 {
                // A watched scalar whole in this chunk is reported from where it lies.
                let report = mask & self.set.ends[self.depth];
                let rest = &chunk[i..];
                let used = match b {
                    b'"' => match find2(&rest[1..], b'"', b'\\') {
                        Some(at) if rest[1 + at] == b'"' => {
                            let body = &rest[1..1 + at];
                            let n = body.len().min(STRING_CAPTURE);
                            let value = Value::Str {
                                decoded: &body[..n],
                                complete: n == body.len(),
                            };
                            each_bit(report, |path| on_hit(Hit::Value { path, value }));
                            at + 2
                        }
                        _ => return i,
                    },
                    b'{' | b'[' | b'}' | b']' | b',' | b':' => return i,
                    _ => match rest.iter().position(|&b| ENDS_TOKEN[usize::from(b)]) {
                        Some(end) => {
                            if report != 0 {
                                let value = Tok::of(&rest[..end]);
                                each_bit(report, |path| on_hit(Hit::Value { path, value }));
                            }
                            end
                        }
                        None => return i,
                    },
                };
                i += used;
            } else if let open @ (b'{' | b'[') = b {
                // An unwatched container: skipped here, without going through the general
                // loop's states for its start, its end and the comma after it.
                self.start_skip(open, if open == b'{' { b'}' } else { b']' });
                match self.skip_container(chunk, i + 1) {
                    Some(end) => i = end,
                    None => return chunk.len(),
                }
            } else {
                i = match self.skip_scalar(chunk, i) {
                    Ok(i) => i,
                    Err(stop) => return stop,
                };
            }
            i = skip_ws(chunk, i);
            if chunk.get(i) != Some(&b',') {
                self.st = St::After;
                return i;
            }
            i = skip_ws(chunk, i + 1);
            if chunk.get(i) != Some(&b'"') {
                self.st = St::Key;
                return i;
            }
            i += 1;
        }
    }

    /// Goes on skipping a container (`skip_open` … `skip_close`, `skip_depth` deep) from
    /// `chunk[i]`; returns the index after its closing bracket, or `None` at the end of the
    /// chunk with the state set to go on in the next one.
    #[inline(always)]
    fn skip_container(&mut self, chunk: &[u8], mut i: usize) -> Option<usize> {
        let (open, close) = (self.skip_open, self.skip_close);
        loop {
            let rest = &chunk[i..];
            let Some(at) = find3(rest, b'"', open, close) else {
                self.st = St::Skip;
                return None;
            };
            i += at + 1;
            let b = rest[at];
            if b == b'"' {
                self.skip_escape = false;
                match self.skip_string(&chunk[i..]) {
                    Some(used) => i += used,
                    None => {
                        self.st = St::SkipStr { nested: true };
                        return None;
                    }
                }
            } else if b == open {
                self.skip_depth += 1;
            } else {
                self.skip_depth -= 1;
                if self.skip_depth == 0 {
                    return Some(i);
                }
            }
        }
    }

    /// Skips the unwatched scalar starting at `chunk[i]` and returns the index after it;
    /// `Err` gives where to stop with the state set for the general loop to go on: the end of
    /// the chunk, or `i` for a container or a misplaced byte.
    #[inline(always)]
    fn skip_scalar(&mut self, chunk: &[u8], i: usize) -> Result<usize, usize> {
        match chunk[i] {
            b'"' => {
                self.skip_escape = false;
                match self.skip_string(&chunk[i + 1..]) {
                    Some(used) => Ok(i + 1 + used),
                    None => {
                        self.st = St::SkipStr { nested: false };
                        Err(chunk.len())
                    }
                }
            }
            b'{' | b'[' | b'}' | b']' | b',' | b':' => Err(i),
            _ => match chunk[i..].iter().position(|&b| ENDS_TOKEN[usize::from(b)]) {
                Some(end) => Ok(i + end),
                None => {
                    self.report = 0;
                    self.st = St::Token { capture: false };
                    Err(chunk.len())
                }
            },
        }
    }

    /// Starts the value whose first byte is `b`; returns how many bytes it used (0 for a bare
    /// value, whose first byte the token state reads).
    fn start_value(&mut self, b: u8, on_hit: &mut impl FnMut(Hit<'_>)) -> usize {
        let level = self.depth;
        let report = self.value_mask & self.set.ends[level];
        let child = self.value_mask & self.set.longer[level];
        match b {
            b'{' => {
                self.report = report;
                self.report_value(Value::Object, on_hit);
                if child != 0 {
                    self.frames[level] = child;
                    self.depth += 1;
                    self.st = St::KeyOrEnd;
                } else {
                    self.start_skip(b'{', b'}');
                }
                1
            }
            b'[' => {
                self.report = report;
                self.report_value(Value::Array, on_hit);
                if self.docs_in_array && level == 0 && !self.in_array {
                    self.in_array = true;
                    self.st = St::ElemOrEnd;
                    self.value_mask = self.set.all;
                } else {
                    self.start_skip(b'[', b']');
                }
                1
            }
            b'"' => {
                self.report = report;
                if report != 0 {
                    self.start_text(false);
                } else {
                    self.skip_escape = false;
                    self.st = St::SkipStr { nested: false };
                }
                1
            }
            b'}' | b']' | b',' | b':' => {
                self.st = St::Failed;
                1
            }
            _ => {
                self.report = report;
                self.tok = Tok::NEW;
                self.st = St::Token {
                    capture: report != 0,
                };
                0
            }
        }
    }

    fn start_skip(&mut self, open: u8, close: u8) {
        self.skip_open = open;
        self.skip_close = close;
        self.skip_depth = 1;
        self.st = St::Skip;
    }

    fn start_text(&mut self, key: bool) {
        self.text_len = 0;
        self.over = false;
        self.bad = false;
        self.esc = Esc::None;
        self.hi = None;
        self.st = St::Text { key };
    }

    /// Reports `value` at the paths in `self.report`.
    fn report_value(&self, value: Value<'_>, on_hit: &mut impl FnMut(Hit<'_>)) {
        each_bit(self.report, |path| on_hit(Hit::Value { path, value }));
    }

    /// A value ended: go on in the enclosing context.
    fn value_done(&mut self, on_hit: &mut impl FnMut(Hit<'_>)) {
        if self.depth > 0 {
            self.st = St::After;
        } else {
            on_hit(Hit::DocumentEnd);
            if self.in_array {
                self.st = St::After;
            } else {
                self.st = St::Value;
                self.value_mask = self.set.all;
            }
        }
    }

    /// With `rest` inside a skipped string, returns how many bytes up to and including its
    /// closing quote, or `None` (all of `rest` used) if it does not close in `rest`.
    ///
    /// The common case, a string without escapes that closes here, is inlined; escapes go to
    /// [`PathMatcher::skip_escaped_string`], which long generated texts keep busy.
    #[inline(always)]
    fn skip_string(&mut self, rest: &[u8]) -> Option<usize> {
        if self.skip_escape {
            return self.skip_escaped_string(rest, 0);
        }
        let at = find2(rest, b'"', b'\\')?;
        if rest[at] == b'"' {
            return Some(at + 1);
        }
        self.skip_escaped_string(rest, at)
    }

    /// [`PathMatcher::skip_string`] from `i`: either a backslash in `rest`, or 0 right after
    /// a backslash that ended the previous chunk.
    #[inline(never)]
    fn skip_escaped_string(&mut self, rest: &[u8], mut i: usize) -> Option<usize> {
        if self.skip_escape {
            if rest.is_empty() {
                return None;
            }
            self.skip_escape = false;
            i = 1;
        } else {
            // `rest[i]` is a backslash: skip it and the byte it escapes.
            if i + 1 >= rest.len() {
                self.skip_escape = true;
                return None;
            }
            i += 2;
        }
        loop {
            let at = i + find2(&rest[i..], b'"', b'\\')?;
            if rest[at] == b'"' {
                return Some(at + 1);
            }
            if at + 1 >= rest.len() {
                self.skip_escape = true;
                return None;
            }
            i = at + 2;
        }
    }

    /// Decodes key or string bytes from `rest`; returns how many bytes it used.
    fn text(&mut self, rest: &[u8], key: bool, on_hit: &mut impl FnMut(Hit<'_>)) -> usize {
        let mut i = 0;
        while i < rest.len() {
            match self.esc {
                Esc::Backslash => {
                    let b = rest[i];
                    i += 1;
                    self.esc = Esc::None;
                    let c = match b {
                        b'u' => {
                            self.esc = Esc::Hex { n: 0, acc: 0 };
                            continue;
                        }
                        b'"' | b'\\' | b'/' => b,
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        _ => {
                            self.bad = true;
                            continue;
                        }
                    };
                    self.flush_high();
                    self.push_text(&[c]);
                }
                Esc::Hex { n, acc } => {
                    let Some(d) = (rest[i] as char).to_digit(16) else {
                        // Not an escape after all; the byte is read again as string content.
                        self.bad = true;
                        self.esc = Esc::None;
                        continue;
                    };
                    i += 1;
                    let acc = acc << 4 | d as u16;
                    if n < 3 {
                        self.esc = Esc::Hex { n: n + 1, acc };
                    } else {
                        self.esc = Esc::None;
                        self.code_unit(acc);
                    }
                }
                Esc::None => {
                    let run = &rest[i..];
                    let at = memchr2(b'"', b'\\', run);
                    let plain = &run[..at.unwrap_or(run.len())];
                    if !plain.is_empty() {
                        self.flush_high();
                        self.push_text(plain);
                    }
                    let Some(at) = at else {
                        return rest.len();
                    };
                    i += at + 1;
                    if run[at] == b'\\' {
                        self.esc = Esc::Backslash;
                        continue;
                    }
                    self.flush_high();
                    if key {
                        self.key_done();
                    } else {
                        let value = if self.bad {
                            Value::Invalid
                        } else {
                            Value::Str {
                                decoded: &self.text[..self.text_len],
                                complete: !self.over,
                            }
                        };
                        each_bit(self.report, |path| on_hit(Hit::Value { path, value }));
                        self.value_done(on_hit);
                    }
                    return i;
                }
            }
        }
        i
    }

    /// A whole key was read: find the watched paths it continues.
    fn key_done(&mut self) {
        self.st = St::Colon;
        self.value_mask = 0;
        if !self.bad && !self.over {
            self.value_mask = self.key_mask(&self.text[..self.text_len]);
        }
    }

    /// The paths of the innermost followed object that continue with `key`.
    #[inline(always)]
    fn key_mask(&self, key: &[u8]) -> u64 {
        let set = self.set;
        let level = self.depth - 1;
        let frame = self.frames[level];
        let mut reps = frame & set.reps[level][key_sig(key)];
        while reps != 0 {
            let i = reps.trailing_zeros() as usize;
            reps &= reps - 1;
            if same_bytes(set.paths[i][level].as_bytes(), key) {
                return frame & set.groups[level][i];
            }
        }
        0
    }

    /// A `\uXXXX` code unit was decoded.
    fn code_unit(&mut self, unit: u16) {
        if let Some(hi) = self.hi.take() {
            if (0xDC00..0xE000).contains(&unit) {
                let code = 0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                self.push_char(char::from_u32(code).unwrap_or('\u{FFFD}'));
                return;
            }
            self.push_char('\u{FFFD}');
        }
        if (0xD800..0xDC00).contains(&unit) {
            self.hi = Some(unit);
        } else {
            self.push_char(char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}'));
        }
    }

    /// A high surrogate not followed by a low one decodes to U+FFFD.
    fn flush_high(&mut self) {
        if self.hi.take().is_some() {
            self.push_char('\u{FFFD}');
        }
    }

    fn push_char(&mut self, c: char) {
        let mut utf8 = [0; 4];
        self.push_text(c.encode_utf8(&mut utf8).as_bytes());
    }

    fn push_text(&mut self, bytes: &[u8]) {
        let room = STRING_CAPTURE - self.text_len;
        let n = bytes.len().min(room);
        self.text[self.text_len..self.text_len + n].copy_from_slice(&bytes[..n]);
        self.text_len += n;
        self.over |= n < bytes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    /// All hits, as owned text, for `doc` fed in pieces of `size` bytes.
    fn hits(paths: &[&[&str]], doc: &[u8], size: usize, docs: bool) -> Vec<String> {
        let set = PathSet::new(paths);
        let mut m = PathMatcher::new(&set);
        m.set_documents_in_root_array(docs);
        let mut out = Vec::new();
        for piece in doc.chunks(size.max(1)) {
            m.feed(piece, |h| out.push(show(h)));
        }
        out
    }

    fn show(h: Hit<'_>) -> String {
        match h {
            Hit::Value {
                path,
                value: Value::Str { decoded, complete },
            } => format!("{path}:s{}:{complete}", String::from_utf8_lossy(decoded)),
            Hit::Value { path, value } => format!("{path}:{value:?}"),
            Hit::DocumentEnd => "end".into(),
        }
    }

    /// The same hits whatever the chunking: in one piece, byte by byte, split in two at every
    /// position and in three around every position.
    fn same_everywhere(paths: &[&[&str]], doc: &[u8], docs: bool) -> Vec<String> {
        let whole = hits(paths, doc, usize::MAX, docs);
        assert_eq!(hits(paths, doc, 1, docs), whole);
        for at in 0..=doc.len() {
            for width in [0, 1, 3] {
                let end = (at + width).min(doc.len());
                let set = PathSet::new(paths);
                let mut m = PathMatcher::new(&set);
                m.set_documents_in_root_array(docs);
                let mut got = Vec::new();
                for piece in [&doc[..at], &doc[at..end], &doc[end..]] {
                    m.feed(piece, |h| got.push(show(h)));
                }
                assert_eq!(got, whole, "split at {at}+{width}");
            }
        }
        whole
    }

    const CHUNK: &[u8] = br#"{
        "id": "chatcmpl-1", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "usage \"prompt_tokens\": 99 {[\\"},
                     "usage": {"prompt_tokens": 77}}],
        "nested": {"usage": {"prompt_tokens": 88}, "x": [1, {"usage": 3}]},
        "text": "{\"usage\":{\"prompt_tokens\":66}}",
        "usage" : { "completion_tokens" : 5 , "prompt_tokens":	10, "deep": {"a": {"b": [{}]}} }
    }"#;

    static CHUNK_PATHS: [&[&str]; 6] = [
        &["usage", "prompt_tokens"],
        &["usage", "completion_tokens"],
        &["nested", "usage", "prompt_tokens"],
        &["prompt_tokens"],
        &["object"],
        &["usage"],
    ];

    #[test]
    fn exact_paths_whatever_the_split() {
        let got = same_everywhere(&CHUNK_PATHS, CHUNK, false);
        assert_eq!(
            got,
            [
                "4:schat.completion.chunk:true",
                "2:U64(88)",
                "5:Object",
                "1:U64(5)",
                "0:U64(10)",
                "end"
            ]
        );
        // The same answers as the whole-document scanner.
        for (i, path) in CHUNK_PATHS.iter().enumerate().take(4) {
            let want = json::find_u64(CHUNK, path).map(|n| format!("{i}:U64({n})"));
            let found = got
                .iter()
                .find(|h| h.starts_with(&format!("{i}:")))
                .cloned();
            assert_eq!(found, want, "{path:?}");
        }
    }

    #[test]
    fn escaped_keys_and_values() {
        static PATHS: [&[&str]; 6] = [
            &["a\"b"],
            &["usage", "x\\"],
            &["😀"],
            &["/"],
            &["t"],
            &["é"],
        ];
        let doc = br#"{"a\"b": 1, "\u0075sage": {"x\\": 2}, "\ud83d\ude00": 3, "\/": 4,
            "t": "\ud800x\n\u00e9\"\\\/\b\f\r\t", "\u00E9": "\ud83d", "\uZZ": 5, "q\q": 6}"#;
        let got = same_everywhere(&PATHS, doc, false);
        assert_eq!(
            got,
            [
                "0:U64(1)",
                "1:U64(2)",
                "2:U64(3)",
                "3:U64(4)",
                "4:s\u{FFFD}x\né\"\\/\u{8}\u{c}\r\t:true",
                "5:s\u{FFFD}:true",
                "end"
            ]
        );
        // An invalid escape in a watched string value.
        static T: [&[&str]; 1] = [&["t"]];
        assert_eq!(
            same_everywhere(&T, br#"{"t":"a\q","t":"\u12","t":"\ud83d\u0041"}"#, false),
            ["0:Invalid", "0:Invalid", "0:s\u{FFFD}A:true", "end"]
        );
    }

    #[test]
    fn scalars_are_classified() {
        static N: [&[&str]; 1] = [&["n"]];
        let doc = br#"{"n":0,"n":18446744073709551615,"n":18446744073709551616,"n":-1,"n":1.5,
            "n":1e3,"n":true,"n":false,"n":null,"n":nul,"n":nulls,"n":[1],"n":{"n":1},"n":"x"}"#;
        assert_eq!(
            same_everywhere(&N, doc, false),
            [
                "0:U64(0)",
                "0:U64(18446744073709551615)",
                "0:Number",
                "0:Number",
                "0:Number",
                "0:Number",
                "0:Bool(true)",
                "0:Bool(false)",
                "0:Null",
                "0:Invalid",
                "0:Invalid",
                "0:Array",
                "0:Object",
                "0:sx:true",
                "end"
            ]
        );
    }

    #[test]
    fn long_strings_and_keys() {
        static P: [&[&str]; 2] = [&["s"], &["k"]];
        let long = "y".repeat(STRING_CAPTURE + 10);
        let doc = format!(r#"{{"{long}":1,"s":"{long}","k{long}":2,"k":3}}"#);
        let got = same_everywhere(&P, doc.as_bytes(), false);
        let cut = "y".repeat(STRING_CAPTURE);
        assert_eq!(
            got,
            [format!("0:s{cut}:false"), "1:U64(3)".into(), "end".into()]
        );
    }

    #[test]
    fn documents_one_after_another_and_in_a_root_array() {
        static P: [&[&str]; 2] = [&["n"], &[]];
        let doc = br#" {"n":1} {"n":2}
            [{"n":3}, [], {"x":{"n":9}}, {"n":4}] 7 "#;
        assert_eq!(
            same_everywhere(&P, doc, false),
            [
                "1:Object", "0:U64(1)", "end", "1:Object", "0:U64(2)", "end", "1:Array", "end",
                "1:U64(7)", "end"
            ]
        );
        assert_eq!(
            same_everywhere(&P, doc, true),
            [
                "1:Object", "0:U64(1)", "end", "1:Object", "0:U64(2)", "end", "1:Array",
                "1:Object", "0:U64(3)", "end", "1:Array", "end", "1:Object", "end", "1:Object",
                "0:U64(4)", "end", "1:U64(7)", "end"
            ]
        );
        assert_eq!(same_everywhere(&P, b"[ ] []", true), ["1:Array", "1:Array"]);
    }

    #[test]
    fn malformed_input_stops_and_reset_restarts() {
        static P: PathSet = PathSet::new(&[&["n"]]);
        for doc in [
            &b"{\"n\":1,}"[..],
            b"{\"n\" 2}",
            b"{1:2}",
            b"}",
            b"{\"n\":1]",
            b"{\"n\":1 \"m\":2}",
            b"[{\"n\":1} {\"n\":2}]",
        ] {
            let mut m = PathMatcher::new(&P);
            m.set_documents_in_root_array(true);
            let mut got = Vec::new();
            m.feed(doc, |h| got.push(show(h)));
            assert!(m.is_failed(), "{}", String::from_utf8_lossy(doc));
            assert!(got.len() <= 2, "{got:?}");
            m.feed(b"{\"n\":5}", |h| got.push(show(h)));
            m.reset();
            assert!(!m.is_failed());
            got.clear();
            m.feed(b"{\"n\":5}", |h| got.push(show(h)));
            assert_eq!(got, ["0:U64(5)", "end"]);
        }
    }

    #[test]
    fn cut_values_are_never_reported_in_part() {
        static P: [&[&str]; 2] = [&["n"], &["s"]];
        let doc = br#"{"s":"abc","n":12345}"#;
        for end in 0..doc.len() {
            let got = hits(&P, &doc[..end], 3, false);
            assert!(!got.iter().any(|h| h.starts_with("0:")), "{end}: {got:?}");
            if got.iter().any(|h| h.starts_with("1:")) {
                assert_eq!(got, ["1:sabc:true"]);
            }
        }
    }

    #[test]
    fn deep_and_long_input_in_constant_state() {
        static P: [&[&str]; 1] = [&["a", "b"]];
        let mut doc = b"{\"x\":".to_vec();
        doc.extend(std::iter::repeat_n(b'[', 100_000));
        doc.extend(std::iter::repeat_n(b']', 100_000));
        doc.extend(b",\"a\":{\"y\":");
        doc.extend(std::iter::repeat_n(b'{', 50_000));
        doc.extend(std::iter::repeat_n(b'}', 50_000));
        doc.extend(b",\"b\":7}}");
        for size in [1, 7, 4096, usize::MAX] {
            assert_eq!(hits(&P, &doc, size, false), ["0:U64(7)", "end"]);
        }
        assert!(size_of::<PathMatcher<'_>>() < 512);
    }

    #[test]
    #[should_panic(expected = "too deep")]
    fn too_deep_path_panics() {
        static P: [&[&str]; 1] = [&["a"; MAX_DEPTH + 1]];
        let _ = PathSet::new(&P);
    }

    /// A tiny xorshift generator for the randomised tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const KEYS: [&str; 5] = ["usage", "n", "a\"b", "ü", "prompt_tokens"];

    fn random_value(rng: &mut Rng, depth: usize) -> serde_json::Value {
        use serde_json::Value as J;
        match rng.below(if depth > 5 { 4 } else { 10 }) {
            0 => J::from(rng.next() >> rng.below(64)),
            1 => J::from(KEYS[rng.below(KEYS.len())]),
            2 => J::from(-1.5),
            3 => J::Null,
            4..=8 => {
                let mut map = serde_json::Map::new();
                for _ in 0..rng.below(5) {
                    map.insert(
                        KEYS[rng.below(KEYS.len())].into(),
                        random_value(rng, depth + 1),
                    );
                }
                J::Object(map)
            }
            _ => J::Array(
                (0..rng.below(3))
                    .map(|_| random_value(rng, depth + 1))
                    .collect(),
            ),
        }
    }

    /// Expected hits: walk the document along object keys only.
    fn expected(v: &serde_json::Value, paths: &[&[&str]]) -> Vec<String> {
        use serde_json::Value as J;
        let mut out = Vec::new();
        // Values are reported in document order: walk the document, not the paths.
        fn walk(v: &J, at: &mut Vec<String>, paths: &[&[&str]], out: &mut Vec<String>) {
            for (i, p) in paths.iter().enumerate() {
                if p.len() == at.len() && p.iter().zip(at.iter()).all(|(a, b)| a == b) {
                    out.push(match v {
                        J::Null => format!("{i}:Null"),
                        J::Bool(b) => format!("{i}:Bool({b})"),
                        J::Number(n) => match n.as_u64() {
                            Some(n) => format!("{i}:U64({n})"),
                            None => format!("{i}:Number"),
                        },
                        J::String(s) => format!("{i}:s{s}:true"),
                        J::Array(_) => format!("{i}:Array"),
                        J::Object(_) => format!("{i}:Object"),
                    });
                }
            }
            if let J::Object(map) = v {
                for (k, child) in map {
                    at.push(k.clone());
                    walk(child, at, paths, out);
                    at.pop();
                }
            }
        }
        walk(v, &mut Vec::new(), paths, &mut out);
        out.push("end".into());
        out
    }

    #[test]
    fn random_documents_match_a_json_library() {
        static P: [&[&str]; 7] = [
            &["usage"],
            &["usage", "prompt_tokens"],
            &["n", "n"],
            &["a\"b", "ü", "n"],
            &["n"],
            &[],
            &["usage", "a\"b", "a\"b"],
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut found = [0; P.len()];
        for round in 0..1000 {
            let mut doc = random_value(&mut rng, 0);
            if !doc.is_object() {
                doc = serde_json::json!({ "n": doc });
            }
            let text = if round % 2 == 0 {
                serde_json::to_vec(&doc).unwrap()
            } else {
                serde_json::to_vec_pretty(&doc).unwrap()
            };
            let want = expected(&doc, &P);
            for hit in &want {
                if let Some((i, _)) = hit.split_once(':') {
                    found[i.parse::<usize>().unwrap()] += 1;
                }
            }
            for size in [1, 2, 5, 13, usize::MAX] {
                assert_eq!(
                    hits(&P, &text, size, false),
                    want,
                    "{}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
        // Every path was found often enough for the test to mean something.
        assert!(found.iter().all(|&n| n >= 5), "{found:?}");
    }
}
