//! The panic strategy the module was built with.
//!
//! jisr answers a panicking handler with a 500 by catching the unwind on the worker. With
//! `panic = "abort"` there is no unwind to catch: the first handler panic aborts the whole
//! Envoy process. That build still works until then, so it is reported loudly instead: a
//! compiler warning while building, and a warning in Envoy's log when the module loads.

use crate::host::envoy::global_log;

/// Envoy's log level for warnings.
const WARN: u32 = 3;

/// The line logged at load by a module built with `panic = "abort"`.
const ABORT_WARNING: &str = "jisr: this module was built with panic = \"abort\": a panicking \
handler aborts Envoy instead of answering 500; build with panic = \"unwind\"";

// The build-time warning for every way of choosing `abort`. A build script cannot give it for
// a Cargo profile's `panic = "abort"`: Cargo sets its `CARGO_CFG_PANIC` from RUSTFLAGS only.
// The library itself is compiled with the final strategy, and a deprecated item is the stable
// way to make the compiler print a warning.
#[cfg(panic = "abort")]
const _: () = {
    #[deprecated(
        note = "jisr is built with panic = \"abort\": a panicking handler will abort Envoy \
                instead of answering 500; build with panic = \"unwind\""
    )]
    const PANIC_ABORT: () = ();
    PANIC_ABORT
};

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
