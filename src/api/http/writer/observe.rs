//! `ResponseWriter`: What the stream reports: logs, response flags, its tracing span, and secrets it reads.

use super::*;
use crate::api::http::trace::Span;
use crate::api::secret::Secret;

/// What the stream reports: logs, response flags, its tracing span, and secrets it reads.
impl<'a> ResponseWriter<'a> {
    /// Adds a custom response flag to the stream: the access log's `%CUSTOM_FLAGS%` shows it
    /// (Envoy's `%RESPONSE_FLAGS%` does not).
    ///
    /// ```
    /// use jisr::{Request, ResponseWriter};
    ///
    /// async fn mark(req: Request<'_>, w: ResponseWriter<'_>) {
    ///     if req.header("x-legacy-client").is_some() {
    ///         w.add_response_flag("LEGACY");
    ///     }
    /// }
    /// # let _ = mark;
    /// ```
    pub fn add_response_flag(&self, flag: &str) {
        self.core.with_host(|h| h.add_custom_flag(flag.as_bytes()));
    }

    crate::api::metrics::metric_methods!(
        "A label count that differs from the definition (never silent: also logged at debug), \
         an update outside a handler poll (`Detached`), or Envoy's refusal."
    );

    /// Whether a log line at `level` would be emitted (Envoy's `dynamic_modules` logger level).
    pub fn log_enabled(&self, level: Level) -> bool {
        self.core
            .with_host(|h| h.log_enabled(level as u32))
            .unwrap_or(false)
    }

    /// Logs a formatted line. Nothing is formatted when the level is disabled. Envoy 1.40 shows
    /// the caller's file and line with it.
    #[track_caller]
    pub fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        let site = core::panic::Location::caller();
        self.core.with_host(|h| {
            if h.log_enabled(level as u32) {
                log::with_line(
                    |s| fmt::write(s, args),
                    |line| h.log_at(level as u32, line, site.file(), site.line()),
                );
            }
        });
    }

    /// Logs a structured line as logfmt: `msg filter=<name> key=value ...`. Values with spaces,
    /// `"` or `=` are quoted and escaped; an empty value is `""`. Nothing is formatted when the
    /// level is disabled.
    #[track_caller]
    pub fn log_attrs(&self, level: Level, msg: &str, attrs: &[(&str, LogValue<'_>)]) {
        let site = core::panic::Location::caller();
        let name = self.core.name();
        self.core.with_host(|h| {
            if h.log_enabled(level as u32) {
                log::with_line(
                    |s| log::write_attrs(s, name, msg, attrs),
                    |line| h.log_at(level as u32, line, site.file(), site.line()),
                );
            }
        });
    }
}

/// What the stream reports: logs, response flags, its tracing span, and secrets it reads.
impl<'w> ResponseWriter<'w> {
    /// The stream's active span; `None` when the request is not traced (no tracing in the
    /// connection manager, or the stream is over).
    pub fn span(&self) -> Option<Span<'w>> {
        let core = self.core;
        let ptr = core.with_host(|h| h.active_span()).flatten()?;
        Some(Span {
            core,
            ptr,
            child: false,
        })
    }

    /// The current value of `secret`, copied into the stream's arena; `None` while Envoy has
    /// none (an SDS secret not delivered yet).
    pub fn secret(&self, secret: Secret) -> Option<&[u8]> {
        let core = self.core;
        core.with_host(|h| {
            h.secret(secret.handle)
                .flatten()
                .map(|raw| raw.keep_in(&core.arena))
        })
        .flatten()
    }
}
