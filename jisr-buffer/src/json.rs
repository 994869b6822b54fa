//! A tiny allocation-free JSON field scanner: find one value by its key path.
//!
//! [`find`] walks object keys from the top level, skipping every other value whole (strings
//! with any escapes, nested objects and arrays, numbers, literals), so a key only matches at
//! the exact path asked for: `["usage", "prompt_tokens"]` never matches a `prompt_tokens`
//! inside another object, inside an array, or inside a string. Keys are compared after
//! decoding their escapes (`\"`, `\\`, `\uXXXX`, surrogate pairs), fields may come in any
//! order, and whitespace is allowed wherever JSON allows it.
//!
//! The scanner is lenient: it does not validate the whole document, only what it walks
//! through. On malformed or cut input it returns `None` rather than panicking; anything found
//! in a complete prefix of a document is what the whole document would give (for the first
//! occurrence of a key): a number or literal that runs to the very end of the input counts as
//! cut. Nesting depth costs no stack.
//!
//! ```
//! use jisr_buffer::json;
//!
//! let doc = br#"{"note":"\"usage\":{\"prompt_tokens\":1}","usage":{"prompt_tokens":12}}"#;
//! assert_eq!(json::find_u64(doc, &["usage", "prompt_tokens"]), Some(12));
//! assert_eq!(json::find(doc, &["usage"]), Some(&br#"{"prompt_tokens":12}"#[..]));
//! ```

use memchr::{memchr, memchr2, memchr3};

/// Returns the raw text of the value at `path`, or `None` if absent or malformed.
///
/// An empty path returns the top-level value.
///
/// ```
/// let doc = br#"{"a": {"b": [1, 2]}, "c": true}"#;
/// assert_eq!(jisr_buffer::json::find(doc, &["a", "b"]), Some(&b"[1, 2]"[..]));
/// assert_eq!(jisr_buffer::json::find(doc, &["b"]), None);
/// ```
pub fn find<'a>(json: &'a [u8], path: &[&str]) -> Option<&'a [u8]> {
    let mut i = skip_ws(json, 0);
    for key in path {
        i = find_key(json, i, key.as_bytes())?;
    }
    let end = skip_value(json, i)?;
    Some(&json[i..end])
}

/// Returns the value at `path` if it is a non-negative integer that fits in a `u64`.
///
/// ```
/// let doc = br#"{"usage": {"output_tokens": 42, "x": null}}"#;
/// assert_eq!(jisr_buffer::json::find_u64(doc, &["usage", "output_tokens"]), Some(42));
/// assert_eq!(jisr_buffer::json::find_u64(doc, &["usage", "x"]), None);
/// ```
pub fn find_u64(json: &[u8], path: &[&str]) -> Option<u64> {
    let raw = find(json, path)?;
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    raw.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// True when `raw` (a value as returned by [`find`]) is a JSON string equal to `expected`
/// once its escapes are decoded.
///
/// ```
/// use jisr_buffer::json::string_eq;
///
/// assert!(string_eq(br#""message_start""#, "message_start"));
/// assert!(string_eq(br#""a\"b\u00e9""#, "a\"bé"));
/// assert!(!string_eq(b"17", "17"));
/// ```
pub fn string_eq(raw: &[u8], expected: &str) -> bool {
    match raw {
        [b'"', inner @ .., b'"'] => decoded_eq(inner, expected.as_bytes()),
        _ => false,
    }
}

/// The bytes between the quotes of a string value, escapes left as they are.
///
/// ```
/// assert_eq!(jisr_buffer::json::string_body(br#""a\nb""#), Some(&br"a\nb"[..]));
/// assert_eq!(jisr_buffer::json::string_body(b"null"), None);
/// ```
pub fn string_body(raw: &[u8]) -> Option<&[u8]> {
    match raw {
        [b'"', inner @ .., b'"'] => Some(inner),
        _ => None,
    }
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = s.get(i) {
        i += 1;
    }
    i
}

/// With `i` at an object, returns the index of the value of `key`, or `None`.
fn find_key(s: &[u8], mut i: usize, key: &[u8]) -> Option<usize> {
    if s.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(s, i + 1);
    loop {
        if s.get(i) != Some(&b'"') {
            return None; // `}` (key absent) or malformed
        }
        let key_end = string_end(s, i)?;
        let found = decoded_eq(&s[i + 1..key_end - 1], key);
        i = skip_ws(s, key_end);
        if s.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(s, i + 1);
        if found {
            return Some(i);
        }
        i = skip_ws(s, skip_value(s, i)?);
        if s.get(i) != Some(&b',') {
            return None;
        }
        i = skip_ws(s, i + 1);
    }
}

/// With `i` at a string's opening quote, returns the index just past its closing quote.
fn string_end(s: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    // Most strings are short: a plain loop beats a memchr call for the first bytes.
    for (k, &b) in s.get(i..)?.iter().take(16).enumerate() {
        match b {
            b'"' => return Some(i + k + 1),
            b'\\' => break,
            _ => {}
        }
    }
    loop {
        let at = i + memchr2(b'"', b'\\', s.get(i..)?)?;
        if s[at] == b'"' {
            return Some(at + 1);
        }
        i = at + 2;
    }
}

/// With `i` at a value, returns the index just past it.
fn skip_value(s: &[u8], i: usize) -> Option<usize> {
    match *s.get(i)? {
        b'"' => string_end(s, i),
        b'{' => skip_container(s, i, b'{', b'}'),
        b'[' => skip_container(s, i, b'[', b']'),
        b'}' | b']' | b',' | b':' => None,
        _ => {
            let len = s[i..].iter().position(|&b| {
                matches!(b, b',' | b':' | b'}' | b']' | b'"' | b'{' | b'[')
                    || b.is_ascii_whitespace()
            });
            // A number running to the end of the input may have been cut: not trusted.
            match len {
                Some(0) | None => None,
                Some(len) => Some(i + len),
            }
        }
    }
}

/// With `i` at `open`, returns the index just past the matching `close`. In valid JSON each
/// bracket kind balances on its own once strings are skipped, so only `open`, `close` and `"`
/// need looking at: a `memchr3` jump each, and nesting depth costs no stack.
fn skip_container(s: &[u8], mut i: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        let at = i + memchr3(b'"', open, close, s.get(i..)?)?;
        match s[at] {
            b'"' => i = string_end(s, at)?,
            b if b == open => {
                depth += 1;
                i = at + 1;
            }
            _ => {
                depth -= 1;
                i = at + 1;
                if depth == 0 {
                    return Some(i);
                }
            }
        }
    }
}

/// Compares a string body (escapes undecoded) with `expected` bytes.
fn decoded_eq(mut raw: &[u8], mut expected: &[u8]) -> bool {
    // Every escape is longer than what it decodes to, so equal lengths mean no escapes.
    match raw.len().cmp(&expected.len()) {
        core::cmp::Ordering::Less => return false,
        core::cmp::Ordering::Equal => return raw == expected,
        core::cmp::Ordering::Greater => {}
    }
    while !raw.is_empty() {
        let run = memchr(b'\\', raw).unwrap_or(raw.len());
        let Some(rest) = expected.strip_prefix(&raw[..run]) else {
            return false;
        };
        expected = rest;
        raw = &raw[run..];
        if raw.is_empty() {
            break;
        }
        let Some((c, used)) = unescape(&raw[1..]) else {
            return false;
        };
        let mut utf8 = [0; 4];
        let Some(rest) = expected.strip_prefix(c.encode_utf8(&mut utf8).as_bytes()) else {
            return false;
        };
        expected = rest;
        raw = &raw[1 + used..];
    }
    expected.is_empty()
}

/// Decodes the escape after a backslash: the character and how many bytes it used.
fn unescape(s: &[u8]) -> Option<(char, usize)> {
    let c = match *s.first()? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(s.get(1..5)?)?;
            let lo = s
                .get(5..11)
                .filter(|t| (0xD800..0xDC00).contains(&hi) && t.starts_with(b"\\u"))
                .and_then(|t| hex4(&t[2..]))
                .filter(|lo| (0xDC00..0xE000).contains(lo));
            if let Some(lo) = lo {
                let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return Some((char::from_u32(code)?, 11));
            }
            return Some((char::from_u32(hi).unwrap_or('\u{FFFD}'), 5));
        }
        _ => return None,
    };
    Some((c, 1))
}

fn hex4(s: &[u8]) -> Option<u32> {
    s.iter()
        .try_fold(0u32, |n, &b| Some(n * 16 + (b as char).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &[u8] = br#"{
        "id": "chatcmpl-1", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "usage \"prompt_tokens\": 99 {[\\"},
                     "usage": {"prompt_tokens": 77}}],
        "nested": {"usage": {"prompt_tokens": 88}},
        "text": "{\"usage\":{\"prompt_tokens\":66}}",
        "usage" : { "completion_tokens" : 5 , "prompt_tokens":	10 }
    }"#;

    #[test]
    fn matches_only_the_exact_path() {
        assert_eq!(find_u64(CHUNK, &["usage", "prompt_tokens"]), Some(10));
        assert_eq!(find_u64(CHUNK, &["usage", "completion_tokens"]), Some(5));
        assert_eq!(
            find_u64(CHUNK, &["nested", "usage", "prompt_tokens"]),
            Some(88)
        );
        assert_eq!(find_u64(CHUNK, &["prompt_tokens"]), None);
        assert!(string_eq(
            find(CHUNK, &["object"]).unwrap(),
            "chat.completion.chunk"
        ));
    }

    #[test]
    fn escaped_keys_and_strings() {
        let doc = br#"{"a\"b": 1, "\u0075sage": {"x\\": 2}, "\ud83d\ude00": 3, "\/": 4}"#;
        assert_eq!(find_u64(doc, &["a\"b"]), Some(1));
        assert_eq!(find_u64(doc, &["usage", "x\\"]), Some(2));
        assert_eq!(find_u64(doc, &["😀"]), Some(3));
        assert_eq!(find_u64(doc, &["/"]), Some(4));
        assert!(!string_eq(br#""\ud800""#, "\u{0}"));
        assert!(string_eq(br#""\ud800x""#, "\u{FFFD}x"));
        assert!(!string_eq(br#""\q""#, "q"));
    }

    #[test]
    fn numbers_and_literals() {
        let doc = br#"{"n": null, "neg": -1, "f": 1.5, "big": 18446744073709551616, "ok": 0}"#;
        for key in ["n", "neg", "f", "big"] {
            assert_eq!(find_u64(doc, &[key]), None, "{key}");
        }
        assert_eq!(find_u64(doc, &["ok"]), Some(0));
        assert_eq!(find(doc, &["n", "x"]), None);
    }

    #[test]
    fn malformed_and_cut_input_never_panics() {
        for end in 0..=CHUNK.len() {
            let prefix = &CHUNK[..end];
            let got = find_u64(prefix, &["usage", "prompt_tokens"]);
            assert!(got.is_none() || got == Some(10));
            let _ = find(prefix, &["choices"]);
        }
        for doc in [
            &b"{\"a\":}"[..],
            b"{\"a\"",
            b"{\"a\" 1}",
            b"{1:2}",
            b"}",
            b"]",
            b"\"\\",
        ] {
            assert_eq!(find(doc, &["a"]), None);
        }
        assert_eq!(find(b"{\"a\":1]", &["a"]), Some(&b"1"[..]));
    }

    #[test]
    fn deep_nesting_costs_no_stack() {
        let mut doc = b"{\"a\":".to_vec();
        doc.extend(std::iter::repeat_n(b'[', 1_000_000));
        doc.extend(std::iter::repeat_n(b']', 1_000_000));
        doc.extend(b",\"b\":7}");
        assert_eq!(find_u64(&doc, &["b"]), Some(7));
    }
}
