//! Dynamic metadata as protobuf: a `google.protobuf.Struct` written from a handler's values,
//! and typed metadata (`google.protobuf.Any`) read and written as bytes.
//!
//! Envoy 1.40 takes a whole namespace of metadata as a serialized `Struct`; jisr encodes it
//! from borrowed values into a reused per-thread buffer (no allocation once grown).

use std::cell::Cell;

/// A value of structured metadata (a `google.protobuf.Value`), borrowing its parts.
///
/// ```
/// use jisr::handler::StructValue::{self, Bool, List, Num, Str, Struct};
///
/// let roles = [Str("admin"), Str("ops")];
/// let limits = [("rpm", Num(600.0)), ("burst", Num(20.0))];
/// let fields: [(&str, StructValue<'_>); 4] = [
///     ("user", Str("alice")),
///     ("admin", Bool(true)),
///     ("roles", List(&roles)),
///     ("limits", Struct(&limits)),
/// ];
/// # let _ = fields;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StructValue<'a> {
    /// `null` (`google.protobuf.NullValue`).
    Null,
    /// A `bool_value`.
    Bool(bool),
    /// A `number_value` (protobuf's `Value` holds every number as a double).
    Num(f64),
    /// A `string_value`.
    Str(&'a str),
    /// A `list_value` of values.
    List(&'a [StructValue<'a>]),
    /// A nested struct.
    Struct(&'a [(&'a str, StructValue<'a>)]),
}

/// Typed metadata read from Envoy: a `google.protobuf.Any`'s type URL and serialized value.
///
/// ```
/// use jisr::handler::TypedMetadata;
/// # use jisr::testing::TestFilter;
/// use jisr::{MetadataSource, Registry, Request, ResponseWriter};
///
/// const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
///
/// async fn route_tier(mut req: Request<'_>, w: ResponseWriter<'_>) {
///     // The route's `typed_filter_metadata` under `acme.route`.
///     if let Ok(Some(TypedMetadata { type_url: STRING_VALUE, value })) =
///         w.typed_metadata(MetadataSource::Route, "acme.route")
///     {
///         req.set_header("x-tier", value.get(2..).unwrap_or_default()); // field 1, length, text
///     }
/// }
/// fn register(r: &mut Registry) { r.register("tier", route_tier); }
///
/// let f = TestFilter::new(register, "tier", b"").unwrap();
/// let mut s = f.stream();
/// s.set_source_typed_metadata(MetadataSource::Route, "acme.route", STRING_VALUE, b"\x0a\x04gold");
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.request_header("x-tier").as_deref(), Some("gold"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypedMetadata<'a> {
    /// E.g. `type.googleapis.com/google.protobuf.StringValue`.
    pub type_url: &'a str,
    /// The message, serialized.
    pub value: &'a [u8],
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Length of a length-delimited field with `len` payload bytes (tag included).
fn delimited_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn put_delimited(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    put_varint(out, len as u64);
}

fn value_len(v: &StructValue<'_>) -> usize {
    match v {
        StructValue::Null => 2,
        StructValue::Bool(_) => 2,
        StructValue::Num(_) => 9,
        StructValue::Str(s) => delimited_len(s.len()),
        StructValue::List(items) => delimited_len(list_len(items)),
        StructValue::Struct(fields) => delimited_len(struct_len(fields)),
    }
}

fn list_len(items: &[StructValue<'_>]) -> usize {
    items.iter().map(|v| delimited_len(value_len(v))).sum()
}

fn entry_len(key: &str, v: &StructValue<'_>) -> usize {
    delimited_len(key.len()) + delimited_len(value_len(v))
}

fn struct_len(fields: &[(&str, StructValue<'_>)]) -> usize {
    fields
        .iter()
        .map(|(k, v)| delimited_len(entry_len(k, v)))
        .sum()
}

fn put_value(out: &mut Vec<u8>, v: &StructValue<'_>) {
    match v {
        StructValue::Null => out.extend_from_slice(&[0x08, 0]),
        StructValue::Num(n) => {
            out.push(0x11);
            out.extend_from_slice(&n.to_le_bytes());
        }
        StructValue::Str(s) => {
            put_delimited(out, 0x1a, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        StructValue::Bool(b) => out.extend_from_slice(&[0x20, u8::from(*b)]),
        StructValue::Struct(fields) => {
            put_delimited(out, 0x2a, struct_len(fields));
            put_struct(out, fields);
        }
        StructValue::List(items) => {
            put_delimited(out, 0x32, list_len(items));
            for item in *items {
                put_delimited(out, 0x0a, value_len(item));
                put_value(out, item);
            }
        }
    }
}

/// Appends the serialized `google.protobuf.Struct` of `fields` to `out`.
pub(crate) fn put_struct(out: &mut Vec<u8>, fields: &[(&str, StructValue<'_>)]) {
    for (k, v) in fields {
        put_delimited(out, 0x0a, entry_len(k, v));
        put_delimited(out, 0x0a, k.len());
        out.extend_from_slice(k.as_bytes());
        put_delimited(out, 0x12, value_len(v));
        put_value(out, v);
    }
}

/// Appends a serialized `google.protobuf.Any` to `out`.
pub(crate) fn put_any(out: &mut Vec<u8>, type_url: &str, value: &[u8]) {
    put_delimited(out, 0x0a, type_url.len());
    out.extend_from_slice(type_url.as_bytes());
    put_delimited(out, 0x12, value.len());
    out.extend_from_slice(value);
}

thread_local! {
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Bytes the per-thread encoding buffer keeps between calls.
const RETAINED: usize = 64 * 1024;

/// Runs `f` with the thread's encoding buffer (taken out for the call, so a nested use gets
/// a fresh one).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.take();
    buf.clear();
    let r = f(&mut buf);
    if buf.capacity() <= RETAINED {
        SCRATCH.set(buf);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_encoding_matches_protobuf() {
        // {"a": "x"}: entry(key "a", value string "x").
        let mut out = Vec::new();
        put_struct(&mut out, &[("a", StructValue::Str("x"))]);
        assert_eq!(out, [0x0a, 8, 0x0a, 1, b'a', 0x12, 3, 0x1a, 1, b'x']);
        // Nested list, bool, null and number sizes add up.
        let inner = [
            StructValue::Bool(true),
            StructValue::Null,
            StructValue::Num(1.5),
        ];
        let nested = [("l", StructValue::List(&inner))];
        let mut out = Vec::new();
        put_struct(&mut out, &[("s", StructValue::Struct(&nested))]);
        assert_eq!(
            out.len(),
            struct_len(&[("s", StructValue::Struct(&nested))])
        );
        let mut any = Vec::new();
        put_any(&mut any, "t/x", b"\x08\x01");
        assert_eq!(any, [0x0a, 3, b't', b'/', b'x', 0x12, 2, 8, 1]);
    }
}
