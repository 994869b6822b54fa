//! Logging through Envoy's `dynamic_modules` logger.

pub use crate::host::log::Level;
pub(crate) use crate::host::log::with_line;

use crate::buffer::logfmt;
use std::fmt;

/// A value in a structured log line (see [`ResponseWriter::log_attrs`]); most values convert
/// with `.into()`.
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{Level, LogValue, Registry, Request, ResponseWriter};
///
/// async fn audit(req: Request<'_>, w: ResponseWriter<'_>) {
///     let bytes: u64 = req.header_str("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
///     let path = LogValue::Str(req.path().unwrap_or("-"));
///     w.log_attrs(Level::Info, "upload", &[("path", path), ("bytes", bytes.into()), ("tls", false.into())]);
/// }
/// fn register(r: &mut Registry) { r.register("audit", audit); }
///
/// let f = TestFilter::new(register, "audit", b"").unwrap();
/// f.stream().request_headers(&[(":path", "/my files"), ("content-length", "512")], true);
/// let (_, line) = f.logs().pop().unwrap();
/// assert_eq!(line, r#"upload filter=audit path="/my files" bytes=512 tls=false"#);
/// ```
///
/// [`ResponseWriter::log_attrs`]: crate::ResponseWriter::log_attrs
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LogValue<'v> {
    /// Text (quoted when needed).
    Str(&'v str),
    /// Bytes, shown as UTF-8 with invalid sequences replaced.
    Bytes(&'v [u8]),
    /// A signed integer, in decimal.
    I64(i64),
    /// An unsigned integer, in decimal.
    U64(u64),
    /// A float, written as Rust's `Display` writes it (`0.1`, `3`, never an exponent).
    F64(f64),
    /// `true` or `false`.
    Bool(bool),
}

impl<'v> From<&'v str> for LogValue<'v> {
    fn from(v: &'v str) -> Self {
        LogValue::Str(v)
    }
}
impl<'v> From<&'v String> for LogValue<'v> {
    fn from(v: &'v String) -> Self {
        LogValue::Str(v)
    }
}
impl<'v> From<&'v [u8]> for LogValue<'v> {
    fn from(v: &'v [u8]) -> Self {
        LogValue::Bytes(v)
    }
}
impl From<i64> for LogValue<'_> {
    fn from(v: i64) -> Self {
        LogValue::I64(v)
    }
}
impl From<u64> for LogValue<'_> {
    fn from(v: u64) -> Self {
        LogValue::U64(v)
    }
}
impl From<usize> for LogValue<'_> {
    fn from(v: usize) -> Self {
        LogValue::U64(v as u64)
    }
}
impl From<u32> for LogValue<'_> {
    fn from(v: u32) -> Self {
        LogValue::U64(v.into())
    }
}
impl From<i32> for LogValue<'_> {
    fn from(v: i32) -> Self {
        LogValue::I64(v.into())
    }
}
impl From<f64> for LogValue<'_> {
    fn from(v: f64) -> Self {
        LogValue::F64(v)
    }
}
impl From<bool> for LogValue<'_> {
    fn from(v: bool) -> Self {
        LogValue::Bool(v)
    }
}

/// Writes `msg filter=<name> key=value ...` as deterministic logfmt.
pub(crate) fn write_attrs(
    out: &mut String,
    filter: &str,
    msg: &str,
    attrs: &[(&str, LogValue<'_>)],
) -> fmt::Result {
    logfmt::write_msg(out, msg)?;
    logfmt::write_pair(out, "filter", filter)?;
    for (k, v) in attrs {
        match *v {
            LogValue::Str(s) => logfmt::write_pair(out, k, s)?,
            LogValue::Bytes(b) => match core::str::from_utf8(b) {
                Ok(s) => logfmt::write_pair(out, k, s)?,
                Err(_) => logfmt::write_pair_display(out, k, Lossy(b))?,
            },
            LogValue::I64(n) => logfmt::write_pair_display(out, k, n)?,
            LogValue::U64(n) => logfmt::write_pair_display(out, k, n)?,
            LogValue::F64(n) => logfmt::write_pair_display(out, k, n)?,
            LogValue::Bool(b) => logfmt::write_pair_display(out, k, b)?,
        }
    }
    Ok(())
}

/// Shows bytes as UTF-8, replacing invalid sequences, without allocating.
pub(crate) struct Lossy<'b>(pub(crate) &'b [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}
