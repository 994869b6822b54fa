//! `tracing` events, with their fields, as lines in Envoy's `dynamic_modules` log (feature
//! `tracing`).
//!
//! An event becomes one logfmt line, the same shape as `w.log_attrs`: its message, then each
//! field as `key=value` (quoted when needed), e.g. `login ok user=ana attempts=3`. Levels map
//! one to one (`TRACE` to `trace`, ..., `ERROR` to `error`), and Envoy's level decides what is
//! written: a disabled event is not formatted. Spans are not tracked: only the event's own
//! fields are written.
//!
//! The subscriber is installed as the process's global default when Envoy loads the module
//! (a subscriber the module set first wins). Lines go where the installer says: Envoy's
//! logger in a module, the simulated filter's logs under `jisr::testing`.

use crate::buffer::logfmt;
use core::fmt::{self, Write as _};
use std::cell::RefCell;
use std::sync::{Once, OnceLock};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Interest, Level, Metadata, Subscriber};

/// Where lines go: the ABI level and line, and whether a level is enabled.
#[derive(Clone, Copy)]
pub(crate) struct Sink {
    /// Level, line, and the event's source file and line.
    pub(crate) log: fn(u32, &[u8], &str, u32),
    pub(crate) enabled: fn(u32) -> bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Installs the subscriber with `sink` (once per process; the first installer's sink stays,
/// and a global subscriber set by someone else first is left in place).
pub(crate) fn install(sink: Sink) {
    // One `Once` covers both steps: a second installer (another filter loading on another
    // thread) waits until the subscriber is the global default, so its first events are not
    // dropped in the gap between the two.
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if SINK.set(sink).is_ok() {
            let _ = tracing_core::dispatcher::set_global_default(tracing_core::Dispatch::new(
                EnvoySubscriber,
            ));
        }
    });
}

fn level(l: &Level) -> u32 {
    match *l {
        Level::ERROR => 4,
        Level::WARN => 3,
        Level::INFO => 2,
        Level::DEBUG => 1,
        _ => 0,
    }
}

struct EnvoySubscriber;

impl Subscriber for EnvoySubscriber {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // Envoy's level can change at run time: ask `enabled` every time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event()
            && SINK
                .get()
                .is_some_and(|s| (s.enabled)(level(metadata.level())))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(sink) = SINK.get() else {
            return;
        };
        let lvl = level(event.metadata().level());
        if !(sink.enabled)(lvl) {
            return;
        }
        let meta = event.metadata();
        let (file, at) = (meta.file().unwrap_or(""), meta.line().unwrap_or(0));
        crate::host::log::with_line(
            |line| write_event(line, event),
            |l| (sink.log)(lvl, l, file, at),
        );
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

thread_local! {
    /// The message of the event being written (reused: no allocation once warm).
    static MESSAGE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The event as a logfmt line: the message (quoted if it holds `=`, `"` or a control
/// character), then the other fields in order.
fn write_event(line: &mut String, event: &Event<'_>) -> fmt::Result {
    MESSAGE.with(|m| match m.try_borrow_mut() {
        Ok(mut msg) => {
            msg.clear();
            event.record(&mut MessageOf(&mut msg));
            logfmt::write_msg(line, &msg)
        }
        // An event logged while a field of another is formatted: a fresh buffer.
        Err(_) => {
            let mut msg = String::new();
            event.record(&mut MessageOf(&mut msg));
            logfmt::write_msg(line, &msg)
        }
    })?;
    let mut fields = FieldsOf {
        out: line,
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result?;
    if line.starts_with(' ') {
        line.remove(0);
    }
    Ok(())
}

/// Collects the `message` field.
struct MessageOf<'a>(&'a mut String);

impl Visit for MessageOf<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// Writes every field but `message` as ` key=value`.
struct FieldsOf<'a> {
    out: &'a mut String,
    result: fmt::Result,
}

impl FieldsOf<'_> {
    fn pair(&mut self, field: &Field, value: impl fmt::Display) {
        if field.name() != "message" && self.result.is_ok() {
            self.result = logfmt::write_pair_display(self.out, field.name(), value);
        }
    }
}

impl Visit for FieldsOf<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() != "message" && self.result.is_ok() {
            self.result = logfmt::write_pair(self.out, field.name(), value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.pair(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.pair(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, format_args!("{value:?}"));
    }
}
