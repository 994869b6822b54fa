//! The request-phase state machine: what each hook returns, decided from the stream's state.

use crate::abi::ffi;
use crate::api::handler::Service;
use crate::api::log::Level;
use crate::executor::slot::{JisrConfig, Slot};
use crate::executor::{self, Driven};
use crate::filter::core::{FilterStats, Phase, StreamCore};
use crate::host::Host;

/// Details of the 500 sent when a handler panics.
pub const PANIC_DETAILS: &str = "jisr_handler_panic";

/// What Envoy can do to a stream, type-erased (one implementation per filter type).
pub(crate) trait StreamHooks {
    fn request_headers(&self, host: &dyn Host, end_of_stream: bool) -> u32;
    fn request_body(&self, host: &dyn Host, end_of_stream: bool) -> u32;
    fn request_trailers(&self, host: &dyn Host) -> u32;
    fn response_headers(&self, host: &dyn Host, end_of_stream: bool) -> u32;
    fn response_body(&self, host: &dyn Host, end_of_stream: bool) -> u32;
    fn response_trailers(&self, host: &dyn Host) -> u32;
    fn stream_complete(&self, host: &dyn Host);
    fn scheduled(&self, host: &dyn Host, event: u64);
    fn watermark(&self, host: &dyn Host, above: bool);
    fn local_reply(&self, host: &dyn Host, status: u32, reset_imminent: bool) -> u32;
    fn destroyer(&self) -> unsafe fn(*const core::ffi::c_void);
}

/// What Envoy can do to a filter config, type-erased.
pub(crate) trait ConfigHooks: Send + Sync {
    /// Creates a stream; returns the module filter pointer.
    fn new_stream(&self, host: &dyn Host) -> *const core::ffi::c_void;
    /// The configured filter name.
    fn name(&self) -> &str;
    /// Idle stream slots kept for reuse.
    fn idle_slots(&self) -> usize;
}

impl<S: Send + Sync + 'static, Svc: Service<S>> ConfigHooks for JisrConfig<S, Svc> {
    fn new_stream(&self, _host: &dyn Host) -> *const core::ffi::c_void {
        JisrConfig::new_stream(self)
    }
    fn name(&self) -> &str {
        &self.meta.name
    }
    fn idle_slots(&self) -> usize {
        self.pool.idle()
    }
}

/// Logs through the stream's host at `level`.
pub(crate) fn log_line(core: &StreamCore, level: Level, args: core::fmt::Arguments<'_>) {
    core.with_host(|h| {
        if h.log_enabled(level as u32) {
            crate::api::log::with_line(
                |s| core::fmt::write(s, args),
                |line| h.log(level as u32, line),
            );
        }
    });
}

impl<S: Send + Sync + 'static, Svc: Service<S>> Slot<S, Svc> {
    /// Polls the request pipeline until it completes or waits.
    fn drive_request(&self, host: &dyn Host) -> Driven {
        let core = &self.core;
        FilterStats::bump(&core.meta.stats.polls);
        let d = executor::drive(&core.wake, host, &mut |cx| self.poll_request(cx));
        match &d {
            Driven::Ready => core.req_phase.set(Phase::Done),
            Driven::Pending => {}
            Driven::Panicked(msg) => self.fail(msg),
        }
        d
    }

    /// A handler panicked: fail closed.
    fn fail(&self, msg: &str) {
        let core = &self.core;
        FilterStats::bump(&core.meta.stats.panics);
        core.req_phase.set(Phase::Done);
        core.resp_phase.set(Phase::Done);
        log_line(
            core,
            Level::Error,
            format_args!("jisr: handler of filter '{}' panicked: {msg}", core.name()),
        );
        if let Err(m) = executor::catch(|| self.clear_request()) {
            log_line(
                core,
                Level::Error,
                format_args!(
                    "jisr: filter '{}': drop after panic panicked too: {m}",
                    core.name()
                ),
            );
        }
        if core.resp_headers_sent.get() || (core.replied.get()) {
            if core.resp_headers_sent.get() {
                core.with_host(|h| h.reset_stream(PANIC_DETAILS.as_bytes()));
            }
            return;
        }
        core.replied.set(true);
        core.with_host(|h| {
            h.send_response(
                500,
                &[(b"content-type".as_slice(), b"text/plain".as_slice())],
                b"internal error\n",
                PANIC_DETAILS.as_bytes(),
            )
        });
    }

    /// After a hook, finish a stream completion that arrived while we were polling.
    fn after_hook(&self) {
        if self.core.complete_pending.get() && !self.core.ended.get() {
            self.finish();
        }
    }

    fn enter<R>(&self, host: &dyn Host, f: impl FnOnce() -> R) -> R {
        let r = self.core.host.enter(host, f);
        self.after_hook();
        r
    }

    /// Status for a request headers hook after driving.
    fn headers_status(&self, d: Driven) -> u32 {
        let core = &self.core;
        match d {
            Driven::Ready if !core.replied.get() => ffi::HEADERS_CONTINUE,
            Driven::Pending => {
                core.req_stopped.set(true);
                ffi::HEADERS_STOP_ITERATION
            }
            _ => ffi::HEADERS_STOP_ITERATION,
        }
    }
}

impl<S: Send + Sync + 'static, Svc: Service<S>> StreamHooks for Slot<S, Svc> {
    fn request_headers(&self, host: &dyn Host, end_of_stream: bool) -> u32 {
        self.enter(host, || {
            let core = &self.core;
            core.req_body.eos.set(end_of_stream);
            core.req_phase.set(Phase::Running);
            if let Err(msg) = executor::catch(|| self.start_request()) {
                self.fail(&msg);
                return ffi::HEADERS_STOP_ITERATION;
            }
            let d = self.drive_request(host);
            self.headers_status(d)
        })
    }

    fn request_body(&self, host: &dyn Host, end_of_stream: bool) -> u32 {
        self.enter(host, || {
            let core = &self.core;
            if end_of_stream {
                core.req_body.eos.set(true);
            }
            match core.req_phase.get() {
                Phase::Running => {
                    core.req_body.in_hook.set(true);
                    let d = self.drive_request(host);
                    core.req_body.in_hook.set(false);
                    match d {
                        Driven::Ready if !core.replied.get() => ffi::BODY_CONTINUE,
                        Driven::Pending if core.req_body.done_reading() => {
                            ffi::BODY_STOP_AND_WATERMARK
                        }
                        Driven::Pending => ffi::BODY_STOP_AND_BUFFER,
                        _ => ffi::BODY_STOP_NO_BUFFER,
                    }
                }
                _ if core.replied.get() => ffi::BODY_STOP_NO_BUFFER,
                _ => ffi::BODY_CONTINUE,
            }
        })
    }

    fn request_trailers(&self, host: &dyn Host) -> u32 {
        self.enter(host, || {
            let core = &self.core;
            core.req_body.eos.set(true);
            match core.req_phase.get() {
                Phase::Running => match self.drive_request(host) {
                    Driven::Ready if !core.replied.get() => ffi::TRAILERS_CONTINUE,
                    _ => ffi::TRAILERS_STOP_ITERATION,
                },
                _ if core.replied.get() => ffi::TRAILERS_STOP_ITERATION,
                _ => ffi::TRAILERS_CONTINUE,
            }
        })
    }

    fn response_headers(&self, host: &dyn Host, _end_of_stream: bool) -> u32 {
        self.enter(host, || {
            self.core.resp_headers_sent.set(true);
            ffi::HEADERS_CONTINUE
        })
    }

    fn response_body(&self, _host: &dyn Host, _end_of_stream: bool) -> u32 {
        ffi::BODY_CONTINUE
    }

    fn response_trailers(&self, _host: &dyn Host) -> u32 {
        ffi::TRAILERS_CONTINUE
    }

    fn stream_complete(&self, host: &dyn Host) {
        let _ = host;
        if self.core.host.is_set() {
            // Completed from inside one of our own polls (e.g. a local reply finished the
            // stream synchronously): finish when that hook unwinds.
            self.core.complete_pending.set(true);
            return;
        }
        self.finish();
    }

    fn scheduled(&self, host: &dyn Host, _event: u64) {
        self.core.wake.delivered();
        self.enter(host, || {
            let core = &self.core;
            if core.req_phase.get() != Phase::Running {
                return;
            }
            if let Driven::Ready = self.drive_request(host) {
                if core.req_stopped.get() && !core.replied.get() {
                    host.continue_decoding();
                }
            }
        })
    }

    fn watermark(&self, _host: &dyn Host, above: bool) {
        self.core.above_high_watermark.set(above);
    }

    fn local_reply(&self, _host: &dyn Host, _status: u32, _reset_imminent: bool) -> u32 {
        ffi::LOCAL_REPLY_CONTINUE
    }

    fn destroyer(&self) -> unsafe fn(*const core::ffi::c_void) {
        Slot::destroyer(self)
    }
}
