//! The `log` crate's macros, routed to Envoy's `dynamic_modules` logger (feature `log`).

use crate::host::envoy::{global_log_at, global_log_enabled};

struct EnvoyLogger;

static LOGGER: EnvoyLogger = EnvoyLogger;

fn level(l: log::Level) -> u32 {
    match l {
        log::Level::Error => 4,
        log::Level::Warn => 3,
        log::Level::Info => 2,
        log::Level::Debug => 1,
        log::Level::Trace => 0,
    }
}

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        global_log_enabled(level(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        let lvl = level(record.level());
        // Envoy decides what is emitted; a disabled level formats nothing.
        if !global_log_enabled(lvl) {
            return;
        }
        super::log::with_line(
            |s| core::fmt::write(s, *record.args()),
            |line| {
                global_log_at(
                    lvl,
                    line,
                    record.file().unwrap_or(""),
                    record.line().unwrap_or(0),
                )
            },
        );
    }

    fn flush(&self) {}
}

/// Installs the logger (once per process; a logger the module installed first wins).
pub(crate) fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}
