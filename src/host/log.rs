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

/// Formats a line into the thread's reusable buffer and hands it to `emit`.
pub(crate) fn with_line(build: impl FnOnce(&mut String) -> fmt::Result, emit: impl FnOnce(&[u8])) {
    LINE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            let _ = build(&mut line);
            emit(line.as_bytes());
        }
        // A Display impl that logs while being formatted: use a temporary buffer.
        Err(_) => {
            let mut line = String::new();
            let _ = build(&mut line);
            emit(line.as_bytes());
        }
    })
}
