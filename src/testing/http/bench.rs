//! An allocation-free simulated stream for benchmarks and allocation tests.
//!
//! [`BenchFilter`] loads a filter like [`TestFilter`](super::TestFilter), but its sessions drive
//! streams against a host that never allocates: headers and bodies are `'static` data, changes
//! live in fixed-capacity storage, effects are counted ([`BenchEffects`]). One session reuses
//! one host for any number of requests, so every allocation measured around a request comes
//! from jisr (or the handler).
//!
//! ```
//! use jisr::testing::bench::BenchFilter;
//! use jisr::{Registry, Request, ResponseWriter, raw::HeadersStatus};
//!
//! async fn hello(mut req: Request<'_>, _w: ResponseWriter<'_>) {
//!     let _ = req.set_header("x-hello", "1");
//! }
//! fn register(r: &mut Registry) {
//!     r.register("hello", hello);
//! }
//! let f = BenchFilter::new(register, "hello", b"").unwrap();
//! let mut s = f.session();
//! for _ in 0..3 {
//!     s.begin(&[(":method", "GET"), (":path", "/")]);
//!     assert_eq!(s.request_headers(true), HeadersStatus::Continue);
//!     s.end();
//! }
//! assert_eq!(s.effects().header_changes, 1);
//! ```

use crate::api::config::ConfigHandle;
use crate::api::http::raw::{BodyStatus, HeadersStatus, TrailersStatus};
use crate::api::registry::Registry;
use crate::entry::http::{OnHost, build_config, new_stream};
use crate::filter::http::hooks::ConfigHooks;
use crate::host::http::bench::BenchHost;
use crate::host::http::sim::SimConfigHost;
use crate::host::{ChunkArray, HeaderArray};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use crate::host::http::bench::BenchEffects;

type Static = &'static [(&'static str, &'static str)];

/// A filter config loaded for benchmarking.
///
/// ```
/// use jisr::testing::bench::BenchFilter;
/// use jisr::{Registry, Request, ResponseWriter};
///
/// async fn hello(mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     let _ = req.set_header("x-hello", "world");
/// }
/// fn register(r: &mut Registry) { r.register("hello", hello); }
///
/// let f = BenchFilter::new(register, "hello", b"").unwrap();
/// let mut s = f.session();
/// for _ in 0..100 {
///     s.begin(&[(":method", "GET"), (":path", "/")]);
///     s.request_headers(true);
/// }
/// s.end();
/// assert_eq!(f.stats().streams, 100);
/// assert_eq!(f.stats().slots_allocated, 1); // every request reused the same slot
/// ```
pub struct BenchFilter {
    config: Box<dyn ConfigHooks>,
}

impl BenchFilter {
    /// Loads `filter_name` from `register` with `config` as its `filter_config`.
    pub fn new(
        register: fn(&mut Registry),
        filter_name: &str,
        config: &[u8],
    ) -> Result<BenchFilter, String> {
        let mut registry = Registry::default();
        register(&mut registry);
        let host = SimConfigHost::default();
        host.log_level.set(2);
        let mut handle = ConfigHandle {
            envoy_stats: true,
            name: filter_name,
            bytes: config,
            host: &host,
            background: None,
        };
        Ok(BenchFilter {
            config: build_config(&registry, &mut handle)?,
        })
    }

    /// A session: one reusable host for a series of streams.
    pub fn session(&self) -> BenchSession<'_> {
        // One counter per session, leaked so schedulers can point at it from any thread.
        let events: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        BenchSession {
            filter: self,
            host: Box::new(BenchHost::new(events)),
            m: core::ptr::null(),
            last_effects: BenchEffects::default(),
        }
    }

    /// The config's introspection figures.
    pub fn stats(&self) -> crate::stats::FilterStatsSnapshot {
        self.config.stats()
    }

    /// Idle stream slots kept by the config's pool.
    pub fn idle_slots(&self) -> usize {
        self.config.idle_slots()
    }
}

/// A series of streams on one allocation-free host. Headers and body chunks are `'static`
/// data, so the host never copies them. Each hook goes through the entry functions Envoy's
/// calls go through (panic guard, fail-closed status, a destroy requested during the hook
/// finished after it), so what a benchmark measures includes what a real hook pays.
///
/// ```
/// use jisr::raw::{BodyStatus, HeadersStatus};
/// use jisr::testing::bench::BenchFilter;
/// use jisr::{Registry, Request, ResponseWriter};
///
/// async fn measure(mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     let n = req.read_to_end(&mut Vec::new()).await.unwrap_or(0);
///     let _ = req.set_header("x-body-bytes", n.to_string());
/// }
/// fn register(r: &mut Registry) { r.register("measure", measure); }
///
/// let f = BenchFilter::new(register, "measure", b"").unwrap();
/// let mut s = f.session();
/// s.begin(&[(":method", "PUT"), (":path", "/doc")]);
/// assert_eq!(s.request_headers(false), HeadersStatus::StopIteration);
/// assert_eq!(s.request_body(b"hello", true), BodyStatus::Continue);
/// s.end();
/// assert_eq!(s.effects().header_changes, 1);
/// ```
pub struct BenchSession<'f> {
    filter: &'f BenchFilter,
    host: Box<BenchHost>,
    m: *const core::ffi::c_void,
    last_effects: BenchEffects,
}

impl BenchSession<'_> {
    /// Runs one hook of the current stream through its entry function, on the bench host.
    fn hook<R>(&self, f: impl FnOnce(OnHost<'_>, *const core::ffi::c_void) -> R) -> R {
        assert!(!self.m.is_null(), "no stream: call begin() first");
        f(OnHost(&*self.host), self.m)
    }

    /// Ends the current stream (if any) and opens a new one with these request headers.
    pub fn begin(&mut self, request_headers: Static) {
        self.end();
        self.host.reset();
        self.host.req.set(request_headers);
        self.m = match new_stream(&*self.filter.config, &*self.host) {
            Ok(m) => m,
            Err(msg) => panic!("the filter refused the stream: {msg}"),
        };
    }

    fn settle_request(&self, before: u32) {
        if self.host.effects.get().continue_decoding > before {
            self.host.req_buffered.borrow_mut().clear();
        }
    }

    /// Request headers hook.
    pub fn request_headers(&mut self, end_of_stream: bool) -> HeadersStatus {
        let before = self.host.effects.get().continue_decoding;
        // SAFETY: `m` came from `new_stream`, is live until `end`, and its stream is served by
        // this session's host (the same holds for every hook of this session below).
        let s = self.hook(|on, m| unsafe { on.request_headers(m, end_of_stream) });
        let s = HeadersStatus::from_abi(s);
        self.settle_request(before);
        s
    }

    /// Request body hook with one chunk (buffered or forwarded as Envoy would).
    pub fn request_body(&mut self, chunk: &'static [u8], end_of_stream: bool) -> BodyStatus {
        self.host.req_received.set(chunk);
        let before = self.host.effects.get().continue_decoding;
        // SAFETY: as in `request_headers`.
        let s =
            BodyStatus::from_abi(self.hook(|on, m| unsafe { on.request_body(m, end_of_stream) }));
        self.host.req_received.set(&[]);
        match s {
            BodyStatus::StopIterationAndBuffer | BodyStatus::StopIterationAndWatermark => {
                let mut b = self.host.req_buffered.borrow_mut();
                if !b.is_full() {
                    b.push(chunk);
                }
            }
            BodyStatus::Continue => self.host.req_buffered.borrow_mut().clear(),
            BodyStatus::StopIterationNoBuffer => {}
        }
        self.settle_request(before);
        s
    }

    /// Request trailers hook.
    pub fn request_trailers(&mut self) -> TrailersStatus {
        // SAFETY: as in `request_headers`.
        TrailersStatus::from_abi(self.hook(|on, m| unsafe { on.request_trailers(m) }))
    }

    /// Response headers hook.
    pub fn response_headers(&mut self, headers: Static, end_of_stream: bool) -> HeadersStatus {
        self.host.resp.set(headers);
        // SAFETY: as in `request_headers`.
        HeadersStatus::from_abi(self.hook(|on, m| unsafe { on.response_headers(m, end_of_stream) }))
    }

    /// Response body hook with one chunk.
    pub fn response_body(&mut self, chunk: &'static [u8], end_of_stream: bool) -> BodyStatus {
        self.host.resp_received.set(chunk);
        // SAFETY: as in `request_headers`.
        let s =
            BodyStatus::from_abi(self.hook(|on, m| unsafe { on.response_body(m, end_of_stream) }));
        self.host.resp_received.set(&[]);
        match s {
            BodyStatus::StopIterationAndBuffer | BodyStatus::StopIterationAndWatermark => {
                let mut b = self.host.resp_buffered.borrow_mut();
                if !b.is_full() {
                    b.push(chunk);
                }
            }
            BodyStatus::Continue => self.host.resp_buffered.borrow_mut().clear(),
            BodyStatus::StopIterationNoBuffer => {}
        }
        s
    }

    /// Delivers pending scheduler events; returns how many.
    pub fn run_scheduled(&mut self) -> u64 {
        let n = self.host.events.swap(0, Ordering::AcqRel);
        for _ in 0..n {
            if self.m.is_null() {
                break;
            }
            let before = self.host.effects.get().continue_decoding;
            // SAFETY: as in `request_headers`.
            self.hook(|on, m| unsafe { on.scheduled(m, 1) });
            self.settle_request(before);
        }
        n
    }

    /// Waits (spinning, without allocating) up to `timeout` for a scheduler event, then
    /// delivers what is pending.
    pub fn wait_scheduled(&mut self, timeout: Duration) -> u64 {
        let start = Instant::now();
        while self.host.events.load(Ordering::Acquire) == 0 && start.elapsed() < timeout {
            std::hint::spin_loop();
        }
        self.run_scheduled()
    }

    /// Completes the most recent callout with `status` and `body`.
    pub fn complete_callout(&mut self, status: &'static str, body: &'static [u8]) {
        let id = self.host.next_callout.get();
        let headers = [(b":status".as_slice(), status.as_bytes())];
        let chunks = [body];
        let before = self.host.effects.get().continue_decoding;
        // SAFETY: as in `request_headers`.
        self.hook(|on, m| unsafe {
            on.callout_done(m, id, 0, HeaderArray::of(&headers), ChunkArray::of(&chunks))
        });
        self.settle_request(before);
    }

    /// Completes and destroys the current stream (the slot goes back to the pool).
    pub fn end(&mut self) {
        if self.m.is_null() {
            return;
        }
        // SAFETY: as in `request_headers`.
        self.hook(|on, m| unsafe { on.stream_complete(m) });
        self.last_effects = self.host.effects.get();
        let m = core::mem::replace(&mut self.m, core::ptr::null());
        // SAFETY: `m` came from `new_stream`, Envoy's destroy hook is called once for it, and
        // it is not used after this.
        unsafe { OnHost(&*self.host).destroy(m) };
    }

    /// Effects of the current stream (or of the last ended one).
    pub fn effects(&self) -> BenchEffects {
        if self.m.is_null() {
            self.last_effects
        } else {
            self.host.effects.get()
        }
    }
}

impl Drop for BenchSession<'_> {
    fn drop(&mut self) {
        self.end();
    }
}
