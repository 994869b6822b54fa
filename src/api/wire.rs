//! What a safe call may put on the wire: header names and values, statuses and request-line
//! fields, checked by the grammar of RFC 9110 and RFC 9112.
//!
//! Envoy's HTTP/1 encoder writes what a filter sets on a response as it is, so a value with a
//! line break would split the response in two. Every jisr call that sets a header, trailer,
//! status, request-line field or callout field runs these checks first and refuses the input
//! with a [`WireError`] (nothing is written, nothing is half-applied). The checks are a table
//! lookup per byte and allocate nothing.
//!
//! | field | accepted |
//! |---|---|
//! | header name | a non-empty token: `A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ \` \| ~` (looked up lower-cased) |
//! | header value | visible ASCII, bytes `0x80`–`0xFF` (UTF-8), and spaces or tabs between them; no control byte (CR, LF, NUL, the rest of `0x00`–`0x1F` but tab, DEL), no space or tab at either end; may be empty |
//! | `:method`, a callout's method | a non-empty token |
//! | `:path`, a callout's path | `*`, or `/` followed by visible ASCII (`0x21`–`0x7E`): percent-encode the rest |
//! | `:authority`, `host`, a callout's host | non-empty visible ASCII |
//! | `:scheme` | a letter, then letters, digits, `+`, `-`, `.` |
//! | reply status, `:status` | 200–599 (a 1xx would announce a second response; 204 and 304 replies carry no body) |
//! | reply details | non-empty visible ASCII (Envoy's access log shows them as one word) |
//!
//! ```
//! use jisr::wire::{self, Field, WireError};
//!
//! assert_eq!(wire::header_value(b"req-42"), Ok(()));
//! assert_eq!(
//!     wire::header_value(b"a\r\ncontent-length: 0"),
//!     Err(WireError::Byte { field: Field::Value, byte: b'\r', at: 1 })
//! );
//! assert_eq!(wire::header_name(b""), Err(WireError::Empty(Field::Name)));
//! assert_eq!(wire::status(101), Err(WireError::Status(101)));
//! assert_eq!(wire::path(b"/a b"), Err(WireError::Byte { field: Field::Path, byte: b' ', at: 2 }));
//! ```

use std::fmt;

/// Which part of a request or response a [`WireError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// A header or trailer name.
    Name,
    /// A header or trailer value.
    Value,
    /// The method (`:method`, a callout's method).
    Method,
    /// The path (`:path`, a callout's path).
    Path,
    /// The authority (`:authority`, `host`, a callout's host).
    Authority,
    /// The scheme (`:scheme`).
    Scheme,
    /// A local reply's details (`%RESPONSE_CODE_DETAILS%`).
    Details,
    /// A connection's close details (`%CONNECTION_TERMINATION_DETAILS%`), from a network or
    /// listener filter.
    CloseDetails,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Name => "header name",
            Field::Value => "header value",
            Field::Method => "method",
            Field::Path => "path",
            Field::Authority => "authority",
            Field::Scheme => "scheme",
            Field::Details => "reply details",
            Field::CloseDetails => "close details",
        }
    }
}

/// Why jisr refused to put something on the wire. Nothing of the refused call was applied.
///
/// ```
/// use jisr::wire::{Field, WireError};
///
/// let e = WireError::Byte { field: Field::Value, byte: b'\n', at: 3 };
/// assert_eq!(e.to_string(), "header value: byte 0x0a at 3 is not allowed");
/// assert_eq!(WireError::Reserved.to_string(), "header is set by jisr or Envoy here");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The field is empty where the grammar needs at least one byte.
    Empty(Field),
    /// `byte`, at index `at` of the field, is not allowed there.
    Byte {
        /// The field the byte is in.
        field: Field,
        /// The refused byte.
        byte: u8,
        /// Its index in the field.
        at: usize,
    },
    /// A header value begins or ends with a space or a tab (the receiver would strip it).
    EdgeWhitespace,
    /// A header jisr or Envoy sets itself in this place: the framing headers
    /// `content-length` and `transfer-encoding`, a pseudo-header outside its map or removed,
    /// a callout's `host` given twice.
    Reserved,
    /// A reply status outside 200–599.
    Status(u16),
    /// A streamed reply with a status that carries no body (204, 304): use a plain reply.
    Bodiless(u16),
    /// A callout path with its query parameters longer than 4 KiB.
    TooLong,
    /// More headers (or callout query parameters) than the call carries (a reply or
    /// trailers: 32; a callout: 8 headers and 8 query parameters besides
    /// method, path and host).
    TooManyHeaders,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WireError::Empty(field) => write!(f, "{}: empty", field.name()),
            WireError::Byte { field, byte, at } => {
                write!(
                    f,
                    "{}: byte {byte:#04x} at {at} is not allowed",
                    field.name()
                )
            }
            WireError::EdgeWhitespace => f.write_str("header value: space or tab at an end"),
            WireError::Reserved => f.write_str("header is set by jisr or Envoy here"),
            WireError::Status(s) => write!(f, "status {s} is not a final status (200-599)"),
            WireError::Bodiless(s) => write!(f, "status {s} carries no body to stream"),
            WireError::TooManyHeaders => f.write_str("too many headers for this call"),
            WireError::TooLong => f.write_str("path with query longer than 4 KiB"),
        }
    }
}

impl std::error::Error for WireError {}

// One byte of class bits per byte value.
const TOKEN: u8 = 1; // tchar (RFC 9110 §5.6.2)
const VCHAR: u8 = 2; // visible ASCII, 0x21..=0x7E
const FIELD: u8 = 4; // field-vchar, SP or HTAB (RFC 9110 §5.5)
const SCHEME: u8 = 8; // ALPHA / DIGIT / "+" / "-" / "."

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let mut bits = 0;
        let tchar = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        if tchar {
            bits |= TOKEN;
        }
        if c >= 0x21 && c <= 0x7e {
            bits |= VCHAR;
        }
        if (c >= 0x21 && c != 0x7f) || c == b' ' || c == b'\t' {
            bits |= FIELD;
        }
        if c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.') {
            bits |= SCHEME;
        }
        t[b] = bits;
        b += 1;
    }
    t
}

static CLASS: [u8; 256] = classes();

/// Whether every byte of `s` is in `class`: one table lookup per byte, no branch per byte (the
/// loop unrolls), so the common case of a valid field costs a few instructions per byte.
#[inline]
fn all_in(s: &[u8], class: u8, field: Field) -> Result<(), WireError> {
    let mut acc = class;
    for &b in s {
        acc &= CLASS[b as usize];
    }
    if acc != 0 {
        Ok(())
    } else {
        Err(first_outside(s, class, field))
    }
}

/// The error for the first byte of `s` outside `class` (there is one).
#[cold]
#[inline(never)]
fn first_outside(s: &[u8], class: u8, field: Field) -> WireError {
    let at = s
        .iter()
        .position(|&b| CLASS[b as usize] & class == 0)
        .unwrap_or(0);
    WireError::Byte {
        field,
        byte: s.get(at).copied().unwrap_or(0),
        at,
    }
}

/// A header or trailer name: a non-empty token. Upper-case letters are accepted (jisr
/// lower-cases names before Envoy sees them).
#[inline]
pub fn header_name(name: &[u8]) -> Result<(), WireError> {
    if name.is_empty() {
        return Err(WireError::Empty(Field::Name));
    }
    all_in(name, TOKEN, Field::Name)
}

/// A header or trailer value: no control byte, no space or tab at either end.
#[inline]
pub fn header_value(value: &[u8]) -> Result<(), WireError> {
    all_in(value, FIELD, Field::Value)?;
    match (value.first(), value.last()) {
        (Some(b' ' | b'\t'), _) | (_, Some(b' ' | b'\t')) => Err(WireError::EdgeWhitespace),
        _ => Ok(()),
    }
}

/// A method: a non-empty token.
#[inline]
pub fn method(m: &[u8]) -> Result<(), WireError> {
    if m.is_empty() {
        return Err(WireError::Empty(Field::Method));
    }
    all_in(m, TOKEN, Field::Method)
}

/// A path: `*`, or `/` then visible ASCII.
#[inline]
pub fn path(p: &[u8]) -> Result<(), WireError> {
    match p.first() {
        None => Err(WireError::Empty(Field::Path)),
        Some(b'/') => all_in(p, VCHAR, Field::Path),
        Some(b'*') if p.len() == 1 => Ok(()),
        // Anything else first: a path starts with `/`.
        Some(&byte) => Err(WireError::Byte {
            field: Field::Path,
            byte,
            at: 0,
        }),
    }
}

/// An authority (`:authority`, `host`): non-empty visible ASCII.
#[inline]
pub fn authority(a: &[u8]) -> Result<(), WireError> {
    if a.is_empty() {
        return Err(WireError::Empty(Field::Authority));
    }
    all_in(a, VCHAR, Field::Authority)
}

/// A scheme: a letter, then letters, digits, `+`, `-` or `.`.
#[inline]
pub fn scheme(s: &[u8]) -> Result<(), WireError> {
    match s.first() {
        None => Err(WireError::Empty(Field::Scheme)),
        Some(&byte) if !byte.is_ascii_alphabetic() => Err(WireError::Byte {
            field: Field::Scheme,
            byte,
            at: 0,
        }),
        Some(_) => all_in(s, SCHEME, Field::Scheme),
    }
}

/// A final status a filter may answer with: 200–599.
#[inline]
pub fn status(s: u16) -> Result<(), WireError> {
    if (200..=599).contains(&s) {
        Ok(())
    } else {
        Err(WireError::Status(s))
    }
}

/// Whether a reply with this status carries no body (RFC 9110 §15.3.5, §15.4.5).
#[inline]
pub(crate) fn bodiless(status: u16) -> bool {
    status == 204 || status == 304
}

/// Reply details: empty (Envoy's default) or visible ASCII.
#[inline]
pub(crate) fn details(d: &[u8]) -> Result<(), WireError> {
    all_in(d, VCHAR, Field::Details)
}

/// The details a network or listener filter's connection is closed with when the handler's
/// own are refused by [`close_details`]: the connection still closes (fail closed), and the
/// reason is logged at error.
pub const INVALID_CLOSE_DETAILS: &str = "jisr_invalid_close_details";

/// Whether `details` may become a connection's termination details
/// (`%CONNECTION_TERMINATION_DETAILS%` in access logs): empty or one word of visible ASCII,
/// the same rule as a reply's details. A CR, LF or NUL could otherwise start a forged
/// access-log line, and a space a forged field.
///
/// ```
/// use jisr::wire::{close_details, Field, WireError};
///
/// assert!(close_details("redis_acl_frame_too_large").is_ok());
/// assert_eq!(
///     close_details("bad\r\nforged=1"),
///     Err(WireError::Byte { field: Field::CloseDetails, byte: b'\r', at: 3 })
/// );
/// ```
pub fn close_details(details: &str) -> Result<(), WireError> {
    all_in(details.as_bytes(), VCHAR, Field::CloseDetails)
}

/// `details` if they pass [`close_details`], else [`INVALID_CLOSE_DETAILS`] after telling
/// `refused` why (the caller logs it).
pub(crate) fn close_details_or_default(details: &str, refused: impl FnOnce(WireError)) -> &[u8] {
    match close_details(details) {
        Ok(()) => details.as_bytes(),
        Err(e) => {
            refused(e);
            INVALID_CLOSE_DETAILS.as_bytes()
        }
    }
}

/// Where a header is being set: decides which names are reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// The request headers on their way upstream.
    Request,
    /// The response headers on their way downstream.
    Response,
    /// A local or streamed reply's headers, a callout's extra headers, any trailers.
    Plain,
}

/// Whether `name` (lower-case) is a framing header.
#[inline]
fn framing(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding")
}

/// Checks a header set or added at `place`: the name, reserved names, and the value by the
/// rule of its field (a pseudo-header's value follows its request-line field).
#[inline]
pub(crate) fn header(place: Place, name: &[u8], value: &[u8]) -> Result<(), WireError> {
    if let Some(pseudo) = name.strip_prefix(b":") {
        return match (place, pseudo) {
            (Place::Request, b"method") => method(value),
            (Place::Request, b"path") => path(value),
            (Place::Request, b"authority") => authority(value),
            (Place::Request, b"scheme") => scheme(value),
            (Place::Response, b"status") => status_value(value),
            _ => Err(WireError::Reserved),
        };
    }
    header_name(name)?;
    if framing(name) {
        return Err(WireError::Reserved);
    }
    if place == Place::Request && name.eq_ignore_ascii_case(b"host") {
        return authority(value);
    }
    header_value(value)
}

/// Checks a header removed at `place`: pseudo-headers stay.
#[inline]
pub(crate) fn removal(name: &[u8]) -> Result<(), WireError> {
    if name.first() == Some(&b':') {
        return Err(WireError::Reserved);
    }
    header_name(name)
}

/// Checks every pair of a reply's headers or of trailers, and their count.
pub(crate) fn plain_headers(headers: &[(&str, &[u8])], max: usize) -> Result<(), WireError> {
    if headers.len() > max {
        return Err(WireError::TooManyHeaders);
    }
    for (k, v) in headers {
        header(Place::Plain, k.as_bytes(), v)?;
    }
    Ok(())
}

/// Checks a streamed reply's headers: as [`plain_headers`], except that one
/// `content-length` of plain decimal digits is allowed (jisr then holds the stream to it).
/// Returns the declared length.
pub(crate) fn streamed_headers(
    headers: &[(&str, &[u8])],
    max: usize,
) -> Result<Option<u64>, WireError> {
    if headers.len() > max {
        return Err(WireError::TooManyHeaders);
    }
    let mut declared = None;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") {
            let n = decimal(v).ok_or(WireError::Byte {
                field: Field::Value,
                byte: v.iter().copied().find(|b| !b.is_ascii_digit()).unwrap_or(0),
                at: v.iter().position(|b| !b.is_ascii_digit()).unwrap_or(0),
            })?;
            if declared.replace(n).is_some() {
                return Err(WireError::Reserved);
            }
            continue;
        }
        header(Place::Plain, k.as_bytes(), v)?;
    }
    Ok(declared)
}

/// A non-empty run of at most 19 decimal digits.
fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// A `:status` value: three digits, 200–599.
fn status_value(v: &[u8]) -> Result<(), WireError> {
    match v {
        [a @ b'0'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            let n = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            status(n)
        }
        _ => Err(WireError::Status(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        for ok in [
            &b""[..],
            b"a",
            b"a b",
            b"a\tb",
            "caf\u{e9}".as_bytes(),
            b"\x80\xff",
        ] {
            assert_eq!(header_value(ok), Ok(()), "{ok:?}");
        }
        for bad in 0u8..=0x1f {
            if bad == b'\t' {
                continue;
            }
            let v = [b'a', bad, b'b'];
            assert_eq!(
                header_value(&v),
                Err(WireError::Byte {
                    field: Field::Value,
                    byte: bad,
                    at: 1
                })
            );
        }
        assert!(header_value(b"a\x7f").is_err());
        assert_eq!(header_value(b" a"), Err(WireError::EdgeWhitespace));
        assert_eq!(header_value(b"a\t"), Err(WireError::EdgeWhitespace));
        assert_eq!(header_value(b" "), Err(WireError::EdgeWhitespace));
    }

    #[test]
    fn names_and_places() {
        assert_eq!(header_name(b"X-Request-Id"), Ok(()));
        for bad in [&b"a b"[..], b"a:b", b"a\r\nb", b"a\"", b"\xc3\xa9", b"(x)"] {
            assert!(header_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            header(Place::Response, b"content-length", b"1"),
            Err(WireError::Reserved)
        );
        assert_eq!(
            header(Place::Plain, b"Transfer-Encoding", b"chunked"),
            Err(WireError::Reserved)
        );
        assert_eq!(header(Place::Response, b":status", b"404"), Ok(()));
        assert_eq!(
            header(Place::Response, b":status", b"101"),
            Err(WireError::Status(101))
        );
        assert_eq!(
            header(Place::Response, b":status", b"20"),
            Err(WireError::Status(0))
        );
        assert_eq!(
            header(Place::Request, b":status", b"200"),
            Err(WireError::Reserved)
        );
        assert_eq!(
            header(Place::Plain, b":path", b"/"),
            Err(WireError::Reserved)
        );
        assert_eq!(header(Place::Request, b":path", b"/a?b=c"), Ok(()));
        assert!(header(Place::Request, b":path", b"/a HTTP/1.0\tb").is_err());
        assert!(header(Place::Request, b":method", b"GET /x").is_err());
        assert!(header(Place::Request, b":method", b"").is_err());
        assert!(header(Place::Request, b"host", b"").is_err());
        assert!(header(Place::Request, b"host", b"a b").is_err());
        assert_eq!(header(Place::Request, b":scheme", b"https"), Ok(()));
        assert!(header(Place::Request, b":scheme", b"1http").is_err());
        assert_eq!(removal(b":path"), Err(WireError::Reserved));
        assert_eq!(removal(b"content-length"), Ok(()));
    }

    #[test]
    fn request_line_fields() {
        assert_eq!(path(b"*"), Ok(()));
        assert!(path(b"**").is_err());
        assert!(path(b"a/b").is_err());
        assert!(path(b"/caf\xc3\xa9").is_err());
        assert!(method(b"GE T").is_err());
        assert_eq!(method(b"PATCH"), Ok(()));
        assert!(authority(b"a\x00").is_err());
        assert_eq!(authority(b"api.example.com:8443"), Ok(()));
        for s in [0u16, 99, 100, 101, 199, 600, 1000, 65535] {
            assert_eq!(status(s), Err(WireError::Status(s)));
        }
        assert_eq!(status(200), Ok(()));
        assert_eq!(status(599), Ok(()));
        assert!(bodiless(204) && bodiless(304) && !bodiless(200));
        assert_eq!(details(b""), Ok(()));
        assert!(details(b"a b").is_err());
    }
}
