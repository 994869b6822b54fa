//! Log levels and line formatting shared by every host.

use std::cell::RefCell;
use std::fmt;

/// Log severity, matching Envoy's levels. Levels are ordered: `Trace` is the lowest.
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{Level, Registry, Request, ResponseWriter};
///
/// async fn old_api(req: Request<'_>, w: ResponseWriter<'_>) {
///     if req.header("x-api-version") == Some(b"1".as_slice()) {
///         w.log(Level::Warn, format_args!("api version 1 is deprecated"));
///     }
///     w.log(Level::Debug, format_args!("checked"));
/// }
/// fn register(r: &mut Registry) { r.register("old_api", old_api); }
///
/// let mut f = TestFilter::new(register, "old_api", b"").unwrap();
/// f.set_log_level(Level::Info); // as Envoy's `dynamic_modules` logger at info
/// f.stream().request_headers(&[(":path", "/"), ("x-api-version", "1")], true);
/// assert_eq!(f.logs(), [(Level::Warn, "api version 1 is deprecated".to_string())]);
/// assert!(Level::Debug < Level::Info);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Trace.
    Trace = 0,
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warning.
    Warn = 3,
    /// Error.
    Error = 4,
    /// Critical.
    Critical = 5,
}

impl Level {
    /// The level of an ABI log level number (above critical counts as critical).
    #[cfg(feature = "testing")]
    pub(crate) fn from_abi(level: u32) -> Level {
        match level {
            0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warn,
            4 => Level::Error,
            _ => Level::Critical,
        }
    }
}

thread_local! {
    // One reusable line buffer per worker: formatting never allocates after warm-up.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

/// Bytes the line buffer keeps between lines: one huge line (a logged body) must not stay
/// allocated on its worker for the life of the process.
const LINE_RETAINED: usize = 16 * 1024;

/// Formats a line into the thread's reusable buffer and hands it to `emit`.
///
/// Every log line of the module passes here, so this is where text from requests is made
/// harmless: control characters (line breaks, terminal escape sequences, NUL, DEL, C1 codes)
/// are written as escapes (`\n`, `\r`, `\t`, `\u001b`), so one call is one line in Envoy's
/// log and nothing reaches a terminal raw.
pub(crate) fn with_line(build: impl FnOnce(&mut String) -> fmt::Result, emit: impl FnOnce(&[u8])) {
    LINE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            let _ = build(&mut line);
            emit_escaped(&line, emit);
            if line.capacity() > LINE_RETAINED {
                *line = String::with_capacity(512);
            }
        }
        // A Display impl that logs while being formatted: use a temporary buffer.
        Err(_) => {
            let mut line = String::new();
            let _ = build(&mut line);
            emit_escaped(&line, emit);
        }
    })
}

/// Hands `line` to `emit`, escaping control characters first when it has any.
#[inline]
fn emit_escaped(line: &str, emit: impl FnOnce(&[u8])) {
    if !line.chars().any(char::is_control) {
        emit(line.as_bytes());
    } else {
        emit(escape(line).as_bytes());
    }
}

/// `line` with its control characters escaped, borrowed when it has none.
pub(crate) fn escape_line(line: &str) -> std::borrow::Cow<'_, str> {
    if line.chars().any(char::is_control) {
        std::borrow::Cow::Owned(escape(line))
    } else {
        std::borrow::Cow::Borrowed(line)
    }
}

/// `line` with its control characters escaped (the rare path: allocates).
#[cold]
#[inline(never)]
pub(crate) fn escape(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = fmt::Write::write_fmt(&mut out, format_args!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_line_does_not_stay_allocated() {
        let mut len = 0;
        with_line(|s| s.write_str(&"x".repeat(1 << 20)), |b| len = b.len());
        assert_eq!(len, 1 << 20);
        assert!(LINE.with(|l| l.borrow().capacity()) <= LINE_RETAINED);
        // An ordinary line still reuses the buffer.
        with_line(|s| s.write_str("ok"), |_| {});
        let cap = LINE.with(|l| l.borrow().capacity());
        with_line(|s| s.write_str("ok again"), |_| {});
        assert_eq!(LINE.with(|l| l.borrow().capacity()), cap);
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut got = Vec::new();
        with_line(
            |s| s.write_str("user=ada\n2026 level=error forged\r\x1b[31mred\u{0}\u{7f}\u{85}"),
            |b| got.extend_from_slice(b),
        );
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "user=ada\\n2026 level=error forged\\r\\u001b[31mred\\u0000\\u007f\\u0085"
        );
        let mut plain = Vec::new();
        with_line(
            |s| s.write_str("caf\u{e9} ok"),
            |b| plain.extend_from_slice(b),
        );
        assert_eq!(plain, "caf\u{e9} ok".as_bytes());
    }

    use std::fmt::Write;
}
