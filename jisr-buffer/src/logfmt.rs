//! Deterministic [logfmt] encoding into any [`core::fmt::Write`], without allocating.
//!
//! A log line is a free-text message followed by `key=value` pairs:
//!
//! ```text
//! request rejected status=403 path=/admin reason="missing token"
//! ```
//!
//! Rules, applied the same way every time so lines can be compared byte for byte:
//!
//! * A value is written bare unless it is empty or contains whitespace, `"`, `=` or a control
//!   character; then it is wrapped in double quotes with `"`, `\`, newline, carriage return and
//!   tab escaped as `\"`, `\\`, `\n`, `\r`, `\t`, and every other control character as `\u00XX`.
//!   The empty string is written as `""`.
//! * A key is written bare. Characters that would break the pair (whitespace, `"`, `=`, control
//!   characters) are replaced by `_`, and an empty key becomes `_`, so output always parses.
//! * The message is written bare when it is plain words. A message holding `=`, `"` or a
//!   control character is quoted and escaped like a value, so text from a request can neither
//!   forge a pair (`msg level=error`) nor start a new record.
//!
//! [`parse_value`] decodes one value back; tests and fuzzing use it to check the round trip.
//!
//! [logfmt]: https://brandur.org/logfmt
//!
//! ```
//! use jisr_buffer::logfmt;
//!
//! let mut line = String::new();
//! logfmt::write_msg(&mut line, "request rejected").unwrap();
//! logfmt::write_pair(&mut line, "status", "403").unwrap();
//! logfmt::write_pair(&mut line, "reason", "missing token").unwrap();
//! assert_eq!(line, r#"request rejected status=403 reason="missing token""#);
//! ```

use core::fmt::{self, Write};

/// Returns true when `value` must be quoted to survive a round trip.
///
/// ```
/// use jisr_buffer::logfmt::needs_quotes;
///
/// assert!(!needs_quotes("/admin"));
/// assert!(needs_quotes(""));
/// assert!(needs_quotes("a b"));
/// assert!(needs_quotes("k=v"));
/// ```
pub fn needs_quotes(value: &str) -> bool {
    value.is_empty() || value.chars().any(is_special)
}

fn is_special(c: char) -> bool {
    c.is_whitespace() || c.is_control() || c == '"' || c == '='
}

/// Writes `value` bare or quoted, following the module rules.
///
/// ```
/// use jisr_buffer::logfmt::write_value;
///
/// let mut out = String::new();
/// write_value(&mut out, "say \"hi\"\n").unwrap();
/// assert_eq!(out, r#""say \"hi\"\n""#);
/// ```
pub fn write_value(out: &mut impl Write, value: &str) -> fmt::Result {
    if !needs_quotes(value) {
        return out.write_str(value);
    }
    out.write_char('"')?;
    write_escaped(out, value, true)?;
    out.write_char('"')
}

/// Writes ` key=value`: a separating space, the key, `=` and the value.
///
/// The leading space makes a sequence of calls after [`write_msg`] produce
/// `msg key=value key2=value2`.
///
/// ```
/// use jisr_buffer::logfmt::write_pair;
///
/// let mut out = String::new();
/// write_pair(&mut out, "path", "/a b").unwrap();
/// write_pair(&mut out, "bad key", "").unwrap();
/// assert_eq!(out, r#" path="/a b" bad_key="""#);
/// ```
pub fn write_pair(out: &mut impl Write, key: &str, value: &str) -> fmt::Result {
    out.write_char(' ')?;
    write_key(out, key)?;
    out.write_char('=')?;
    write_value(out, value)
}

/// Like [`write_pair`], for any [`fmt::Display`] value (numbers, status codes, ...).
///
/// The value is formatted twice: once to decide whether it needs quotes, once to write it. It
/// must therefore format the same way both times, as every ordinary `Display` does.
///
/// ```
/// use jisr_buffer::logfmt::write_pair_display;
///
/// let mut out = String::new();
/// write_pair_display(&mut out, "status", 503).unwrap();
/// write_pair_display(&mut out, "took", format_args!("{} ms", 12)).unwrap();
/// assert_eq!(out, r#" status=503 took="12 ms""#);
/// ```
pub fn write_pair_display(
    out: &mut impl Write,
    key: &str,
    value: impl fmt::Display,
) -> fmt::Result {
    let mut probe = Probe::default();
    // Probe never fails, so an error here can only come from the value itself.
    write!(probe, "{value}")?;
    out.write_char(' ')?;
    write_key(out, key)?;
    out.write_char('=')?;
    if !probe.any || probe.special {
        out.write_char('"')?;
        write!(Escaper { out }, "{value}")?;
        out.write_char('"')
    } else {
        write!(out, "{value}")
    }
}

/// Like [`write_pair`], for bytes that may not be UTF-8 (header values, paths): each invalid
/// sequence is written as U+FFFD, as `String::from_utf8_lossy` would, without allocating.
///
/// ```
/// use jisr_buffer::logfmt::write_pair_bytes;
///
/// let mut out = String::new();
/// write_pair_bytes(&mut out, "ua", b"curl/8.5 \xff").unwrap();
/// assert_eq!(out, " ua=\"curl/8.5 \u{FFFD}\"");
/// ```
pub fn write_pair_bytes(out: &mut impl Write, key: &str, value: &[u8]) -> fmt::Result {
    write_pair_display(out, key, Lossy(value))
}

/// Displays bytes as UTF-8 with U+FFFD for each invalid sequence.
struct Lossy<'a>(&'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_char(char::REPLACEMENT_CHARACTER)?;
            }
        }
        Ok(())
    }
}

/// Writes a key, replacing characters that would break the pair by `_`; empty becomes `_`.
///
/// ```
/// use jisr_buffer::logfmt::write_key;
///
/// let mut out = String::new();
/// write_key(&mut out, "a=b c").unwrap();
/// assert_eq!(out, "a_b_c");
/// ```
pub fn write_key(out: &mut impl Write, key: &str) -> fmt::Result {
    if key.is_empty() {
        return out.write_char('_');
    }
    let mut rest = key;
    while let Some(pos) = rest.find(is_special) {
        out.write_str(&rest[..pos])?;
        out.write_char('_')?;
        let width = rest[pos..].chars().next().map_or(1, char::len_utf8);
        rest = &rest[pos + width..];
    }
    out.write_str(rest)
}

/// Writes the free-text message: bare when it is plain words, quoted and escaped when it
/// holds `=`, `"` or a control character (so it can neither forge a pair nor break the line).
///
/// ```
/// use jisr_buffer::logfmt::write_msg;
///
/// let mut out = String::new();
/// write_msg(&mut out, "request done").unwrap();
/// assert_eq!(out, "request done");
/// out.clear();
/// write_msg(&mut out, "two\nlines level=error").unwrap();
/// assert_eq!(out, r#""two\nlines level=error""#);
/// ```
pub fn write_msg(out: &mut impl Write, msg: &str) -> fmt::Result {
    if msg.contains(|c: char| c == '=' || c == '"' || c.is_control()) {
        out.write_char('"')?;
        write_escaped(out, msg, true)?;
        out.write_char('"')
    } else {
        out.write_str(msg)
    }
}

/// Escapes control characters, and `"` and `\` too when `quoted`.
fn write_escaped(out: &mut impl Write, s: &str, quoted: bool) -> fmt::Result {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape: Option<&str> = match c {
            '"' if quoted => Some("\\\""),
            '\\' if quoted => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if c.is_control() => None,
            _ => continue,
        };
        out.write_str(&s[start..i])?;
        match escape {
            Some(e) => out.write_str(e)?,
            None => write!(out, "\\u{:04x}", c as u32)?,
        }
        start = i + c.len_utf8();
    }
    out.write_str(&s[start..])
}

/// Records whether formatted text is empty or holds a character that needs quoting.
#[derive(Default)]
struct Probe {
    any: bool,
    special: bool,
}

impl Write for Probe {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.any |= !s.is_empty();
        self.special = self.special || s.chars().any(is_special);
        Ok(())
    }
}

/// Forwards formatted text with quoted-value escaping.
struct Escaper<'a, W: Write> {
    out: &'a mut W,
}

impl<W: Write> Write for Escaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.out, s, true)
    }
}

/// Why [`parse_value`] rejected its input.
///
/// ```
/// use jisr_buffer::logfmt::{ParseError, parse_value};
///
/// let mut value = String::new();
/// assert_eq!(parse_value(r#""no closing quote"#, &mut value), Err(ParseError::Unterminated));
/// assert_eq!(parse_value(" leading space", &mut value), Err(ParseError::Missing));
/// assert_eq!(parse_value(r#""\q""#, &mut value), Err(ParseError::BadEscape));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The input is empty or starts with whitespace: there is no value.
    Missing,
    /// A quoted value has no closing quote.
    Unterminated,
    /// A backslash escape is not one this module writes.
    BadEscape,
    /// Writing the decoded text to the output failed.
    Write,
}

/// Decodes the value at the start of `input` into `out` and returns the rest of the input.
///
/// A bare value runs to the first whitespace; a quoted value to its closing quote, with the
/// escapes [`write_value`] produces undone. This is the inverse of [`write_value`].
///
/// ```
/// use jisr_buffer::logfmt::parse_value;
///
/// let mut value = String::new();
/// let rest = parse_value(r#""a \"b\"" next=1"#, &mut value).unwrap();
/// assert_eq!(value, r#"a "b""#);
/// assert_eq!(rest, " next=1");
/// ```
pub fn parse_value<'a>(input: &'a str, out: &mut impl Write) -> Result<&'a str, ParseError> {
    let Some(quoted) = input.strip_prefix('"') else {
        let end = input.find(char::is_whitespace).unwrap_or(input.len());
        if end == 0 {
            return Err(ParseError::Missing);
        }
        out.write_str(&input[..end])
            .map_err(|_| ParseError::Write)?;
        return Ok(&input[end..]);
    };
    let mut rest = quoted;
    loop {
        let Some(pos) = rest.find(['"', '\\']) else {
            return Err(ParseError::Unterminated);
        };
        out.write_str(&rest[..pos]).map_err(|_| ParseError::Write)?;
        if rest.as_bytes()[pos] == b'"' {
            return Ok(&rest[pos + 1..]);
        }
        let (c, used) = unescape(&rest[pos + 1..])?;
        out.write_char(c).map_err(|_| ParseError::Write)?;
        rest = &rest[pos + 1 + used..];
    }
}

/// Decodes the escape whose backslash precedes `s`: the character and the bytes it used.
fn unescape(s: &str) -> Result<(char, usize), ParseError> {
    let c = match s.as_bytes().first() {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let hex = s.get(1..5).ok_or(ParseError::BadEscape)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseError::BadEscape);
            }
            let code = u32::from_str_radix(hex, 16).map_err(|_| ParseError::BadEscape)?;
            let c = char::from_u32(code).ok_or(ParseError::BadEscape)?;
            return Ok((c, 5));
        }
        Some(_) => return Err(ParseError::BadEscape),
        None => return Err(ParseError::Unterminated),
    };
    Ok((c, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: &str) -> String {
        let mut s = String::new();
        write_value(&mut s, v).unwrap();
        s
    }

    fn round_trip(v: &str) {
        let encoded = value(v);
        let mut decoded = String::new();
        let rest = parse_value(&encoded, &mut decoded).unwrap();
        assert_eq!(decoded, v, "encoded as {encoded:?}");
        assert_eq!(rest, "");
    }

    #[test]
    fn bare_values_stay_bare() {
        assert_eq!(value("abc"), "abc");
        assert_eq!(value("/a/b?c"), "/a/b?c");
        assert_eq!(value("é😀"), "é😀");
        assert_eq!(value(r"back\slash"), r"back\slash");
    }

    #[test]
    fn quoting_rules() {
        assert_eq!(value(""), r#""""#);
        assert_eq!(value("a b"), r#""a b""#);
        assert_eq!(value("a=b"), r#""a=b""#);
        assert_eq!(value("say \"x\""), r#""say \"x\"""#);
        assert_eq!(value("a\\b c"), r#""a\\b c""#);
        assert_eq!(value("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
        assert_eq!(value("\u{0}\u{7f}\u{85}"), r#""\u0000\u007f\u0085""#);
        assert_eq!(value("nbsp\u{a0}"), "\"nbsp\u{a0}\"");
    }

    #[test]
    fn round_trips() {
        for v in [
            "",
            "plain",
            "a b",
            "=",
            "\"",
            "\\",
            "\\\"",
            "\"\\\"",
            "x\ny\rz\t",
            "\u{0}\u{1b}[31m",
            "\u{2028}",
            "trailing\\",
            "é 😀",
        ] {
            round_trip(v);
        }
    }

    #[test]
    fn keys_are_sanitised() {
        let mut s = String::new();
        write_pair(&mut s, "", "v").unwrap();
        write_pair(&mut s, "a b=c\"d\n", "v").unwrap();
        write_pair(&mut s, "ключ", "v").unwrap();
        assert_eq!(s, " _=v a_b_c_d_=v ключ=v");
    }

    #[test]
    fn message_and_pairs() {
        let mut s = String::new();
        write_msg(&mut s, "upstream \"x\" failed\n").unwrap();
        write_pair(&mut s, "k", "v").unwrap();
        write_pair_display(&mut s, "n", 42).unwrap();
        write_pair_display(&mut s, "e", "").unwrap();
        write_pair_display(&mut s, "q", "a\"b c").unwrap();
        assert_eq!(s, r#""upstream \"x\" failed\n" k=v n=42 e="" q="a\"b c""#);
    }

    #[test]
    fn display_matches_str_encoding() {
        for v in ["", "a", "a b", "x\u{1}", "\"", "\\ \\"] {
            let mut a = String::new();
            let mut b = String::new();
            write_pair(&mut a, "k", v).unwrap();
            write_pair_display(&mut b, "k", v).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn bytes_are_written_lossily() {
        let mut s = String::new();
        write_pair_bytes(&mut s, "a", b"ok").unwrap();
        write_pair_bytes(&mut s, "b", b"").unwrap();
        write_pair_bytes(&mut s, "c", b"\xc3(\"x\"").unwrap();
        write_pair_bytes(&mut s, "d", "é\n".as_bytes()).unwrap();
        assert_eq!(s, " a=ok b=\"\" c=\"\u{FFFD}(\\\"x\\\"\" d=\"é\\n\"");
    }

    #[test]
    fn parse_errors() {
        let mut s = String::new();
        assert_eq!(parse_value("", &mut s), Err(ParseError::Missing));
        assert_eq!(parse_value(" x", &mut s), Err(ParseError::Missing));
        assert_eq!(parse_value("\"abc", &mut s), Err(ParseError::Unterminated));
        assert_eq!(parse_value("\"a\\", &mut s), Err(ParseError::Unterminated));
        assert_eq!(parse_value("\"\\q\"", &mut s), Err(ParseError::BadEscape));
        assert_eq!(parse_value("\"\\u12\"", &mut s), Err(ParseError::BadEscape));
        assert_eq!(
            parse_value("\"\\ud800\"", &mut s),
            Err(ParseError::BadEscape)
        );
    }

    #[test]
    fn parses_a_whole_line() {
        let mut line = String::new();
        write_msg(&mut line, "m").unwrap();
        let pairs = [("a", "1"), ("b", "two words"), ("c", ""), ("d", "q\"=")];
        for (k, v) in pairs {
            write_pair(&mut line, k, v).unwrap();
        }
        let mut rest = line.strip_prefix('m').unwrap();
        for (k, v) in pairs {
            rest = rest.strip_prefix(' ').unwrap();
            rest = rest.strip_prefix(k).unwrap().strip_prefix('=').unwrap();
            let mut got = String::new();
            rest = parse_value(rest, &mut got).unwrap();
            assert_eq!(got, v);
        }
        assert_eq!(rest, "");
    }

    #[test]
    fn write_errors_propagate() {
        /// Accepts four bytes, then fails.
        struct Small(usize);
        impl Write for Small {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 += s.len();
                if self.0 > 4 { Err(fmt::Error) } else { Ok(()) }
            }
        }
        assert!(write_value(&mut Small(0), "a b c d").is_err());
        assert!(write_pair_display(&mut Small(0), "key", 12345).is_err());
    }
}
