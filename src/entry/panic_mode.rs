//! The panic strategy the module was built with.
//!
//! jisr answers a panicking handler with a 500 by catching the unwind on the worker. With
//! `panic = "abort"` there is no unwind to catch: the first handler panic aborts the whole
//! Envoy process. That build still works until then, so it is reported loudly instead: a
//! compiler warning in the filter's crate (from `jisr::export!`), and a warning in Envoy's log
//! when the module loads.

use crate::host::envoy::{global_log, global_log_at};
use crate::host::log::escape_line;
use std::sync::atomic::{AtomicBool, Ordering};

/// Envoy's log level for warnings.
const WARN: u32 = 3;

/// The line logged at load by a module built with `panic = "abort"`.
const ABORT_WARNING: &str = "jisr: this module was built with panic = \"abort\": a panicking \
handler aborts Envoy instead of answering 500; build with panic = \"unwind\"";

// The build-time warning is in `jisr::export!`: it expands in the filter's own crate, where
// the compiler shows it whether jisr is a path, git or crates.io dependency (Cargo silences
// warnings inside non-path dependencies, so a warning here would reach nobody).

/// The warning for this build's panic strategy: `Some` only when built with `panic = "abort"`.
pub(crate) fn abort_warning() -> Option<&'static str> {
    cfg!(panic = "abort").then_some(ABORT_WARNING)
}

/// Called once when Envoy loads the module: logs [`abort_warning`] at warn level, if any.
pub(crate) fn check_at_load() {
    if let Some(msg) = abort_warning() {
        global_log(WARN, msg.as_bytes());
    }
}

/// The environment variable that asks for a backtrace of each panic inside the module.
pub(crate) const BACKTRACE_ENV: &str = "JISR_BACKTRACE";

const ERROR: u32 = 4;

/// Set when the hook [`install_hook`] set is dropped: something (a filter's `register`)
/// replaced it with its own.
static REPLACED: AtomicBool = AtomicBool::new(false);

/// Lives inside jisr's hook; its drop means the hook was replaced.
struct Marker;

impl Drop for Marker {
    fn drop(&mut self) {
        REPLACED.store(true, Ordering::Relaxed);
    }
}

/// Replaces the standard panic hook of the module (each `cdylib` has its own copy of `std`,
/// so Envoy and other modules are not affected) with one that writes a single line with the
/// panic's location and message into Envoy's log (`[error][dynamic_modules]`), and a
/// backtrace to standard error only when `JISR_BACKTRACE` is set to something other than `0`.
///
/// Envoy's process inherits `RUST_BACKTRACE` from whoever starts it; with it set, the
/// standard hook captured and symbolised a backtrace on the worker for every handler panic
/// (tens of MB of debug info loaded on the first one) and wrote it to raw standard error.
/// Called before the filters register; [`chain_user_hook`] keeps a hook they set.
pub(crate) fn install_hook() {
    // The standard hook is not kept: it is the one that prints backtraces.
    drop(std::panic::take_hook());
    let marker = Marker;
    std::panic::set_hook(Box::new(move |info| {
        let _ = &marker;
        report(info);
    }));
}

/// After the filters registered: when `register` set its own panic hook, jisr's line is
/// written first and then the filter's hook runs, so both see every panic.
pub(crate) fn chain_user_hook() {
    if REPLACED.load(Ordering::Relaxed) {
        let user = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            user(info);
        }));
    }
}

/// Writes the panic's one line to Envoy's log (and a backtrace when asked for).
fn report(info: &std::panic::PanicHookInfo<'_>) {
    let msg = info
        .payload()
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload");
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("<unnamed>");
    let line = match info.location() {
        Some(l) => format!(
            "jisr: panic in thread '{thread}' at {}:{}:{}: {msg}",
            l.file(),
            l.line(),
            l.column()
        ),
        None => format!("jisr: panic in thread '{thread}': {msg}"),
    };
    let backtrace = std::env::var_os(BACKTRACE_ENV).is_some_and(|v| v != "0" && !v.is_empty());
    let line = escape_line(&line);
    let (file, at) = info.location().map_or(("", 0), |l| (l.file(), l.line()));
    if backtrace {
        global_log_at(ERROR, line.as_bytes(), file, at);
        eprintln!("{line}\n{}", std::backtrace::Backtrace::force_capture());
    } else {
        let line = format!("{line} ({BACKTRACE_ENV}=1 for a backtrace)");
        global_log_at(ERROR, line.as_bytes(), file, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tests need unwinding (the test harness forces it), so only the unwind side runs here;
    // the e2e test `panic_abort` loads an abort build in Envoy.
    #[test]
    fn an_unwind_build_has_no_warning() {
        assert_eq!(abort_warning(), None);
    }

    #[test]
    fn the_warning_names_the_consequence_and_the_fix() {
        assert!(ABORT_WARNING.starts_with("jisr: "));
        assert!(ABORT_WARNING.contains("panic = \"abort\""));
        assert!(ABORT_WARNING.contains("aborts Envoy instead of answering 500"));
        assert!(ABORT_WARNING.ends_with("build with panic = \"unwind\""));
        assert!(!ABORT_WARNING.contains('\n'));
    }
}
