//! The HTTP kind's simulated Envoy: [`TestFilter`] loads a filter from the module's
//! `register`, [`TestStream`] drives one stream hook by hook and records every effect, and
//! [`bench`] is the allocation-free variant for benchmarks. Re-exported as `jisr::testing`.

pub mod bench;

use crate::api::config::ConfigHandle;
use crate::api::http::raw::{BodyStatus, HeadersStatus, TrailersStatus};
use crate::api::registry::Registry;
use crate::entry::http::{build_config, drop_config, on_stream};
use crate::filter::http::hooks::HookKind;
use crate::filter::http::hooks::{ConfigHooks, StreamHooks};
pub use crate::host::http::sim::context::SimSpan;
use crate::host::http::sim::{Pairs, SimConfigHost, SimHost, SimLogs, SimMetrics};
use crate::host::http::sim::{Reenter, SimEvent, with_current_logs};
use crate::host::{ChunkArray, HeaderArray};

/// Sets (or rotates) the simulated SDS generic secret `name` for filters tested on this
/// thread; `None` makes it not available yet. Subscribing to an unknown name fails, as it does
/// for an unknown static secret in Envoy.
pub fn set_secret(name: &str, value: Option<&[u8]>) {
    crate::host::http::sim::context::set_secret(name, value);
}
use crate::host::http::{BodyKind, Map};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

pub use crate::host::http::sim::{LocalReply, MetaValue, SimCallout, StreamedReply};

/// A filter config loaded from a `register` function, as Envoy would load it. Its streams
/// share what Envoy shares between the streams of one config: state, metrics, logs and
/// per-route configs.
///
/// ```
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
/// async fn tier(mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     let tier = req.route_config::<String>().cloned();
///     let _ = req.set_header("x-tier", tier.as_deref().unwrap_or("free"));
/// }
/// fn register(r: &mut Registry) {
///     r.route_config("tier", |bytes: &[u8]| Ok(String::from_utf8_lossy(bytes).into_owned()));
///     r.register("tier", tier);
/// }
///
/// let f = TestFilter::new(register, "tier", b"").unwrap();
/// let gold = f.add_route_config("tier", b"gold").unwrap(); // a route's per-filter config
/// let mut s = f.stream();
/// s.use_route_config(gold);
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.request_header("x-tier").as_deref(), Some("gold"));
/// ```
pub struct TestFilter {
    config: Option<Box<dyn ConfigHooks>>,
    registry: Option<Registry>,
    #[allow(clippy::vec_box)] // Boxed so handed-out pointers survive the vec growing.
    routes: RefCell<Vec<Box<crate::host::http::route::RouteConfigBox>>>,
    metrics: Rc<SimMetrics>,
    logs: SimLogs,
    log_level: u32,
    /// The simulated config host: the config's background tasks run with it.
    cfg_host: SimConfigHost,
}

/// One hook call and what it returned.
///
/// ```
/// use jisr::raw::{BodyStatus, HeadersStatus};
/// use jisr::testing::{Hook, TestFilter};
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn read_all(mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     let _ = req.read_to_end(&mut Vec::new()).await;
/// }
/// fn register(r: &mut Registry) { r.register("read_all", read_all); }
///
/// let f = TestFilter::new(register, "read_all", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":method", "POST"), (":path", "/")], false);
/// s.request_body(b"all ", false);
/// s.request_body(b"of it", true);
/// assert_eq!(s.hooks(), [
///     Hook::RequestHeaders(HeadersStatus::StopIteration), // the handler waits for the body
///     Hook::RequestBody(BodyStatus::StopIterationAndBuffer),
///     Hook::RequestBody(BodyStatus::Continue), // it read the end and returned
/// ]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `on_request_headers`.
    RequestHeaders(HeadersStatus),
    /// `on_request_body`.
    RequestBody(BodyStatus),
    /// `on_request_trailers`.
    RequestTrailers(TrailersStatus),
    /// `on_response_headers`.
    ResponseHeaders(HeadersStatus),
    /// `on_response_body`.
    ResponseBody(BodyStatus),
    /// `on_response_trailers`.
    ResponseTrailers(TrailersStatus),
    /// `on_scheduled` (an event was delivered).
    Scheduled,
}

impl TestFilter {
    /// Loads `filter_name` from `register` with `config` as its `filter_config` bytes. An error
    /// is the message Envoy's log would show (and the config would be refused).
    pub fn new(
        register: fn(&mut Registry),
        filter_name: &str,
        config: &[u8],
    ) -> Result<TestFilter, String> {
        TestFilter::owning(register, filter_name, config, false)
    }

    /// Builds from `register`, keeping the registry alive as long as the filter.
    fn owning(
        register: fn(&mut Registry),
        filter_name: &str,
        config: &[u8],
        envoy_1_38: bool,
    ) -> Result<TestFilter, String> {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut f = TestFilter::build(&registry, filter_name, config, envoy_1_38)?;
        f.registry = Some(registry);
        Ok(f)
    }

    /// Parses a per-route config named `name` (as Envoy would for a route's
    /// `typed_per_filter_config`); returns its index for [`TestStream::use_route_config`], or
    /// the error line Envoy's log would show.
    pub fn add_route_config(&self, name: &str, config: &[u8]) -> Result<usize, String> {
        let registry = self
            .registry
            .as_ref()
            .ok_or("built from_registry: no route configs")?;
        let b = registry.build_route(name, config)?;
        let mut routes = self.routes.borrow_mut();
        routes.push(Box::new(b));
        Ok(routes.len() - 1)
    }

    /// Like [`TestFilter::new`], on a simulated Envoy 1.38: no config-level metric updates,
    /// so jisr's own `jisr_*` stats are sent by the workers every 16 finished streams instead
    /// of by [`flush_envoy_stats`](Self::flush_envoy_stats), and background metric calls
    /// return `Unsupported`.
    ///
    /// ```
    /// # use jisr::testing::TestFilter;
    /// # use jisr::{Registry, Request, ResponseWriter};
    /// async fn hello(_req: Request<'_>, _w: ResponseWriter<'_>) {}
    /// fn register(r: &mut Registry) { r.register("hello", hello); }
    ///
    /// let f = TestFilter::new_on_envoy_1_38(register, "hello", b"").unwrap();
    /// f.stream().request_headers(&[(":path", "/")], true);
    /// // The first finished stream of a worker reports at once, the next ones every 16th.
    /// assert_eq!(f.metric("jisr_streams_total.hello"), Some(1));
    /// ```
    pub fn new_on_envoy_1_38(
        register: fn(&mut Registry),
        filter_name: &str,
        config: &[u8],
    ) -> Result<TestFilter, String> {
        TestFilter::owning(register, filter_name, config, true)
    }

    /// Like [`TestFilter::new`], from a filled registry.
    pub fn from_registry(
        registry: &Registry,
        filter_name: &str,
        config: &[u8],
    ) -> Result<TestFilter, String> {
        TestFilter::build(registry, filter_name, config, false)
    }

    fn build(
        registry: &Registry,
        filter_name: &str,
        config: &[u8],
        envoy_1_38: bool,
    ) -> Result<TestFilter, String> {
        #[cfg(feature = "tracing")]
        crate::entry::tracing::install(crate::entry::tracing::Sink {
            log: |level, line, _file, _at| crate::host::http::sim::current_log(level, line),
            enabled: crate::host::http::sim::current_log_enabled,
        });
        let host = SimConfigHost::default();
        host.log_level.set(0);
        host.before_1_39.set(envoy_1_38);
        let mut handle = ConfigHandle {
            envoy_stats: true,
            name: filter_name,
            bytes: config,
            host: &host,
            background: None,
        };
        let config = with_current_logs(&host.logs, 0, || build_config(registry, &mut handle))?;
        Ok(TestFilter {
            config: Some(config),
            registry: None,
            routes: RefCell::new(Vec::new()),
            metrics: host.metrics.clone(),
            logs: host.logs.clone(),
            log_level: 0,
            cfg_host: host,
        })
    }

    /// Sets the level of the simulated `dynamic_modules` logger, as Envoy's
    /// `--component-log-level dynamic_modules:<level>` does: lines below `level` are neither
    /// formatted nor kept in [`logs`](Self::logs). It applies to the config's own lines
    /// (background tasks) at once and to streams opened afterwards. The default is
    /// [`Level::Trace`](crate::Level::Trace): everything is kept.
    pub fn set_log_level(&mut self, level: crate::Level) {
        self.log_level = level as u32;
        self.cfg_host.log_level.set(level as u32);
    }

    /// Runs the config's background tasks the way Envoy's main thread does when the config's
    /// scheduler fires: polls every ready task. Returns how many scheduler events of
    /// background tasks were pending. A pending flush of jisr's own stats (committed by its
    /// deadline, see [`flush_envoy_stats`](Self::flush_envoy_stats)) runs too, uncounted.
    pub fn run_background(&self) -> usize {
        let events = self.cfg_host.queue.take();
        let flush = crate::filter::http::stats_flush::FLUSH_EVENT;
        if events.contains(&flush) {
            self.flush_envoy_stats();
        }
        with_current_logs(&self.cfg_host.logs, self.cfg_host.log_level.get(), || {
            crate::filter::http::background::run(self.config(), &self.cfg_host)
        });
        events.iter().filter(|e| **e != flush).count()
    }

    /// Runs the flush of jisr's own `jisr_*` stats now, as Envoy's main thread does when the
    /// flush deadline fires (at most one second after a stream started or ended): the
    /// config's figures, summed over the workers, reach [`metric`](Self::metric).
    ///
    /// ```
    /// # use jisr::testing::TestFilter;
    /// # use jisr::{Registry, Request, ResponseWriter};
    /// async fn hello(_req: Request<'_>, _w: ResponseWriter<'_>) {}
    /// fn register(r: &mut Registry) { r.register("hello", hello); }
    ///
    /// let f = TestFilter::new(register, "hello", b"").unwrap();
    /// assert_eq!(f.metric("jisr_streams_total.hello"), Some(0)); // listed from the start
    /// for _ in 0..3 {
    ///     f.stream().request_headers(&[(":path", "/")], true);
    /// }
    /// assert_eq!(f.metric("jisr_streams_total.hello"), Some(0)); // nothing on the streams
    /// f.flush_envoy_stats();
    /// assert_eq!(f.metric("jisr_streams_total.hello"), Some(3));
    /// assert_eq!(f.metric("jisr_streams_in_flight.hello"), Some(0));
    /// ```
    pub fn flush_envoy_stats(&self) {
        with_current_logs(&self.cfg_host.logs, self.cfg_host.log_level.get(), || {
            self.config().flush_envoy_stats(&self.cfg_host)
        });
    }

    /// Waits up to `timeout` for a background wake-up (e.g. from another thread).
    pub fn wait_background(&self, timeout: Duration) -> bool {
        self.cfg_host.queue.wait(timeout)
    }

    /// Callouts the config's background tasks started.
    pub fn background_callouts(&self) -> Vec<SimCallout> {
        self.cfg_host.work.callouts.borrow().clone()
    }

    /// Answers background callout `id` (as Envoy's main thread would), then polls the tasks.
    pub fn complete_background_callout(&self, id: u64, status: u16, body: &[u8]) {
        let status = status.to_string();
        let headers = [(b":status".as_slice(), status.as_bytes())];
        let chunks = [body];
        crate::filter::http::background::callout_done(
            self.config(),
            &self.cfg_host,
            id,
            0,
            HeaderArray::of(&headers),
            ChunkArray::of(&chunks),
        );
    }

    /// Delivers response events of background stream `id`: headers with `status`, then each
    /// data chunk (the last ends the response), then completion.
    pub fn answer_background_stream(&self, id: u64, status: u16, chunks: &[&[u8]]) {
        use crate::filter::http::background::{ConfigStreamEvent, config_stream_event};
        let status = status.to_string();
        let headers = [(b":status".as_slice(), status.as_bytes())];
        let (cfg, host) = (self.config(), &self.cfg_host);
        config_stream_event(
            cfg,
            host,
            id,
            ConfigStreamEvent::Headers(HeaderArray::of(&headers), chunks.is_empty()),
        );
        for (i, c) in chunks.iter().enumerate() {
            let data = [*c];
            let end = i + 1 == chunks.len();
            config_stream_event(
                cfg,
                host,
                id,
                ConfigStreamEvent::Data(ChunkArray::of(&data), end),
            );
        }
        config_stream_event(cfg, host, id, ConfigStreamEvent::Complete);
    }

    /// What background tasks sent on their streams: `(stream id, "start …" / "data …" /
    /// "trailers n" / "reset")`, in order.
    pub fn background_stream_log(&self) -> Vec<(u64, String)> {
        self.cfg_host.work.stream_log.borrow().clone()
    }

    /// Makes config-level metrics unavailable, as on Envoy 1.38, from now on. jisr's own
    /// stats keep the path chosen when the config loaded: see
    /// [`new_on_envoy_1_38`](Self::new_on_envoy_1_38) for a config loaded on 1.38.
    pub fn simulate_envoy_1_38(&self) {
        self.cfg_host.before_1_39.set(true);
    }

    fn config(&self) -> &dyn ConfigHooks {
        self.config
            .as_deref()
            .expect("config is present until drop")
    }

    /// Opens a new stream (`on_http_filter_new`). Panics if the filter refuses it (see
    /// [`TestFilter::try_stream`]).
    pub fn stream(&self) -> TestStream<'_> {
        match self.try_stream() {
            Ok(s) => s,
            Err(msg) => panic!("the filter refused the stream: {msg}"),
        }
    }

    /// Opens a new stream, or returns the error line Envoy's log would show when the filter
    /// refuses it (Envoy then fails the stream), e.g. when a raw filter's factory panics.
    pub fn try_stream(&self) -> Result<TestStream<'_>, String> {
        let host = Box::new(SimHost {
            metrics: self.metrics.clone(),
            logs: self.logs.clone(),
            ..SimHost::default()
        });
        host.log_level.set(self.log_level);
        let m = match crate::entry::http::new_stream(self.config(), &*host) {
            Ok(m) => m,
            Err(msg) => {
                self.logs.borrow_mut().push((4, msg.clone()));
                return Err(msg);
            }
        };
        let reenter: Reenter = Rc::new(move |host: &SimHost, event: SimEvent| {
            // SAFETY: the host (and so this closure) lives inside the `TestStream` that owns
            // `m`, and it delivers nothing once the stream was destroyed.
            unsafe { deliver_event(m, host, event) }
        });
        *host.reenter.borrow_mut() = Some(reenter);
        Ok(TestStream {
            _filter: self,
            host,
            m,
            hooks: Vec::new(),
            forwarded_body: Vec::new(),
            forwarded_response: Vec::new(),
            destroyed: false,
            completed: false,
        })
    }

    /// Bytes of per-stream buffers the config's idle slots hold (none: what a stream grows goes
    /// back to its worker's bounded shelves when it ends; see `CONSTRAINTS.md`, "Soundness").
    pub fn idle_retained_bytes(&self) -> usize {
        self.config().idle_retained_bytes()
    }

    /// Value of a counter or gauge, by the name Envoy shows for it, in any of its spellings:
    ///
    /// - as in `/stats`: `dynamicmodulescustom.<name>`, labelled ones
    ///   `dynamicmodulescustom.<name>.<label>.<value>` (each label in definition order);
    /// - as in `/stats/prometheus`: `envoy_dynamicmodulescustom_<name>`, labelled ones
    ///   `envoy_dynamicmodulescustom_<name>{<label>="<value>",...}` (labels in any order);
    /// - short: `<name>`, labelled ones `<name>.<value1>.<value2>`.
    ///
    /// `None` until the metric has a value (Envoy shows a defined counter at 0; here it appears
    /// with its first change). The simulated Envoy uses the default `metrics_namespace`,
    /// `dynamicmodulescustom`.
    ///
    /// ```
    /// use jisr::testing::TestFilter;
    /// use jisr::{ConfigError, ConfigHandle, Counter, Registry, Request, ResponseWriter};
    ///
    /// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Counter, ConfigError> {
    ///     cfg.counter("hello_requests_total", &["method"])
    /// }
    /// async fn hello(requests: &Counter, req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let method = req.method().unwrap_or("-").to_owned();
    ///     let _ = w.counter_inc(*requests, &[&method]);
    /// }
    /// fn register(r: &mut Registry) { r.filter("hello").state(load).handle(hello); }
    ///
    /// let f = TestFilter::new(register, "hello", b"").unwrap();
    /// f.stream().request_headers(&[(":method", "GET"), (":path", "/")], true);
    /// assert_eq!(f.metric("dynamicmodulescustom.hello_requests_total.method.GET"), Some(1));
    /// assert_eq!(f.metric(r#"envoy_dynamicmodulescustom_hello_requests_total{method="GET"}"#), Some(1));
    /// assert_eq!(f.metric("hello_requests_total.GET"), Some(1));
    /// assert_eq!(f.metric("dynamicmodulescustom.hello_requests_total.method.POST"), None);
    /// ```
    pub fn metric(&self, name: &str) -> Option<i64> {
        let key = self.metrics.resolve(name)?;
        self.metrics.values.borrow().get(&key).copied()
    }

    /// Values recorded into a histogram (named as in [`TestFilter::metric`]; in Prometheus
    /// text, the name without `_bucket`, `_sum` or `_count`).
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        let Some(key) = self.metrics.resolve(name) else {
            return Vec::new();
        };
        self.metrics
            .histograms
            .borrow()
            .get(&key)
            .cloned()
            .unwrap_or_default()
    }

    /// The filter's name.
    pub fn name(&self) -> &str {
        self.config().name()
    }

    /// The config's introspection figures (streams, in flight, polls, slots, panics).
    pub fn stats(&self) -> crate::stats::FilterStatsSnapshot {
        self.config().stats()
    }

    /// Idle stream slots the config keeps for reuse (see the pool policy in the crate docs).
    pub fn idle_slots(&self) -> usize {
        self.config().idle_slots()
    }

    /// Every log line so far (config and streams), with its level.
    pub fn logs(&self) -> Vec<(crate::Level, String)> {
        self.logs
            .borrow()
            .iter()
            .map(|(l, m)| (crate::Level::from_abi(*l), m.clone()))
            .collect()
    }
}

impl Drop for TestFilter {
    /// Destroys the config as Envoy would: a panicking `Drop` of user state is caught and
    /// logged, never unwound.
    fn drop(&mut self) {
        if let Some(c) = self.config.take() {
            if let Err(msg) = drop_config(c) {
                self.logs.borrow_mut().push((4, msg));
            }
        }
    }
}

/// Delivers a simulated Envoy event to the stream behind `m`.
///
/// # Safety
/// `m` is a live module pointer of a stream served by `host`.
unsafe fn deliver_event(m: *const core::ffi::c_void, host: &SimHost, event: SimEvent) {
    let fire = |f: &dyn Fn(&dyn StreamHooks)| {
        // SAFETY: guaranteed by the caller.
        unsafe { on_stream(m, host, HookKind::Other, (), |h| f(h)) }
    };
    match event {
        SimEvent::CalloutDone { id, status, body } => {
            let code = status.to_string();
            let pairs = [(b":status".as_slice(), code.as_bytes())];
            let chunks: Vec<&[u8]> = body.chunks(7).collect();
            fire(&|h| {
                h.callout_done(
                    host,
                    id,
                    0,
                    HeaderArray::of(&pairs),
                    ChunkArray::of(&chunks),
                )
            });
        }
        SimEvent::StreamHeaders { id, status, end } => {
            let code = status.to_string();
            let pairs = [(b":status".as_slice(), code.as_bytes())];
            fire(&|h| {
                h.http_stream(
                    host,
                    id,
                    crate::filter::http::hooks::RawStreamEvent::Headers(
                        HeaderArray::of(&pairs),
                        end,
                    ),
                )
            });
        }
        SimEvent::StreamData { id, data, end } => {
            let chunks = [data.as_slice()];
            fire(&|h| {
                h.http_stream(
                    host,
                    id,
                    crate::filter::http::hooks::RawStreamEvent::Data(ChunkArray::of(&chunks), end),
                )
            });
        }
        SimEvent::StreamComplete { id } => {
            fire(&|h| {
                h.http_stream(
                    host,
                    id,
                    crate::filter::http::hooks::RawStreamEvent::Complete,
                )
            });
        }
    }
}

/// A simulated stream. Dropping it destroys the stream (completing it first if needed).
///
/// Call its hooks in Envoy's order (request headers, body chunks, trailers, then the response),
/// and look at what the filter did after each one:
///
/// - driving it: [`request_headers`](Self::request_headers), [`request_body`](Self::request_body),
///   [`response_headers`](Self::response_headers), ..., [`run_scheduled`](Self::run_scheduled)
///   and [`wait_scheduled`](Self::wait_scheduled) for handlers that wait on other threads or timers;
/// - what the filter did: [`request_header`](Self::request_header),
///   [`response_header`](Self::response_header), [`local_reply`](Self::local_reply),
///   [`metadata`](Self::metadata), [`hooks`](Self::hooks); metrics and logs are on the
///   [`TestFilter`];
/// - callouts: [`callouts`](Self::callouts), then [`complete_callout`](Self::complete_callout) or
///   [`fail_callout`](Self::fail_callout);
/// - what Envoy would provide: route configs, cluster, addresses, timing, metadata, attributes;
/// - apart, fault injection (re-entrant calls, destroys inside a call, older Envoys), for tests
///   of robustness rather than of a filter's behaviour.
///
/// ```
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
/// async fn measure(mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     let n = req.read_to_end(&mut Vec::new()).await.unwrap_or(0);
///     let _ = req.set_header("x-body-bytes", n.to_string());
/// }
/// fn register(r: &mut Registry) { r.register("measure", measure); }
///
/// let f = TestFilter::new(register, "measure", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":method", "PUT"), (":path", "/doc")], false);
/// s.request_body(b"hello ", false);
/// s.request_body(b"world", true);
/// assert_eq!(s.request_header("x-body-bytes").as_deref(), Some("11"));
/// assert_eq!(s.forwarded_request_body(), b"hello world"); // upstream gets it unchanged
/// ```
pub struct TestStream<'f> {
    _filter: &'f TestFilter,
    host: Box<SimHost>,
    m: *const core::ffi::c_void,
    hooks: Vec<Hook>,
    forwarded_body: Vec<u8>,
    forwarded_response: Vec<u8>,
    destroyed: bool,
    completed: bool,
}

fn set_pairs(cell: &RefCell<Pairs>, pairs: &[(&str, &str)]) {
    *cell.borrow_mut() = pairs
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase().into_bytes().into_boxed_slice(),
                v.as_bytes().into(),
            )
        })
        .collect();
}

impl TestStream<'_> {
    fn hooks_obj(&self) -> &dyn StreamHooks {
        assert!(!self.destroyed, "stream already destroyed");
        // SAFETY: `m` came from `new_stream` and is live until `destroy`.
        unsafe { crate::entry::http::stream(self.m) }
    }

    /// Runs one hook the way Envoy's entry points do (panic guard, fail-closed status, a
    /// destroy requested meanwhile finished afterwards). Header values move to new memory
    /// before every hook, as Envoy allows.
    fn call<R>(
        &mut self,
        kind: HookKind,
        fail: R,
        f: impl FnOnce(&dyn StreamHooks, &SimHost) -> R,
    ) -> R {
        assert!(!self.destroyed, "stream already destroyed");
        self.host.rebox();
        let host: &SimHost = &self.host;
        // Process-wide lines (`tracing` events) written during the hook go to this stream's logs.
        let r = with_current_logs(&host.logs, host.log_level.get(), || {
            // SAFETY: `m` came from `new_stream` and was not destroyed (checked above).
            unsafe { on_stream(self.m, host, kind, fail, |h| f(h, host)) }
        });
        if self.host.destroy_requested.get() {
            // `on_stream` finished the destroy Envoy requested during the hook.
            self.destroyed = true;
        }
        if self.host.completed_inside.get() {
            self.completed = true;
        }
        r
    }

    fn settle(&mut self, before: (u32, u32)) {
        if self.host.continue_decoding.get() > before.0 {
            self.flush_request();
        }
        if self.host.continue_encoding.get() > before.1 {
            self.flush_response();
        }
    }

    fn counts(&self) -> (u32, u32) {
        (
            self.host.continue_decoding.get(),
            self.host.continue_encoding.get(),
        )
    }

    fn flush_response(&mut self) {
        let mut bodies = self.host.bodies[BodyKind::BufferedResponse as usize].borrow_mut();
        for c in bodies.drain(..) {
            self.forwarded_response.extend_from_slice(&c);
        }
    }

    fn flush_request(&mut self) {
        let mut bodies = self.host.bodies[BodyKind::BufferedRequest as usize].borrow_mut();
        for c in bodies.drain(..) {
            self.forwarded_body.extend_from_slice(&c);
        }
    }

    fn destroy_now(&mut self) {
        if !self.destroyed {
            let d = self.hooks_obj().destroyer();
            self.destroyed = true;
            // SAFETY: `m` came from `new_stream`; it is not used after this.
            unsafe { d(self.m) };
        }
    }

    fn stream_event(&mut self, id: u64, event: crate::filter::http::hooks::RawStreamEvent<'_>) {
        let before = self.counts();
        self.call(HookKind::Other, (), |h, host| {
            h.http_stream(host, id, event)
        });
        self.settle(before);
    }

    fn header(&self, map: Map, name: &str) -> Option<String> {
        self.host.maps[map as usize]
            .borrow()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Driving the stream: the hooks Envoy calls, in the order it calls them, and the scheduler.
impl TestStream<'_> {
    /// Delivers request headers (`:method`, `:path`, … included) and returns the status.
    pub fn request_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> HeadersStatus {
        set_pairs(&self.host.maps[Map::RequestHeaders as usize], headers);
        let before = self.counts();
        let s = HeadersStatus::from_abi(self.call(
            HookKind::Request,
            crate::abi::http::HeadersStatus::StopIteration,
            |h, host| h.request_headers(host, end_of_stream),
        ));
        self.hooks.push(Hook::RequestHeaders(s));
        self.settle(before);
        s
    }

    /// Delivers one request body chunk and returns the status; the simulated Envoy buffers,
    /// forwards or drops it accordingly.
    pub fn request_body(&mut self, chunk: &[u8], end_of_stream: bool) -> BodyStatus {
        *self.host.bodies[BodyKind::ReceivedRequest as usize].borrow_mut() = vec![chunk.into()];
        let before = self.counts();
        let s = BodyStatus::from_abi(self.call(
            HookKind::Request,
            crate::abi::http::BodyStatus::StopIterationNoBuffer,
            |h, host| h.request_body(host, end_of_stream),
        ));
        self.hooks.push(Hook::RequestBody(s));
        // The received data as the filter left it (it may have replaced it).
        let received: Vec<u8> = core::mem::take(
            &mut *self.host.bodies[BodyKind::ReceivedRequest as usize].borrow_mut(),
        )
        .concat();
        match s {
            BodyStatus::StopIterationAndBuffer | BodyStatus::StopIterationAndWatermark => {
                if !received.is_empty() {
                    self.host.bodies[BodyKind::BufferedRequest as usize]
                        .borrow_mut()
                        .push(received.into());
                }
            }
            BodyStatus::Continue => {
                self.flush_request();
                self.forwarded_body.extend_from_slice(&received);
            }
            BodyStatus::StopIterationNoBuffer => {}
        }
        self.settle(before);
        s
    }

    /// Delivers request trailers (end of the request) and returns the status.
    pub fn request_trailers(&mut self, trailers: &[(&str, &str)]) -> TrailersStatus {
        set_pairs(&self.host.maps[Map::RequestTrailers as usize], trailers);
        let before = self.counts();
        let s = TrailersStatus::from_abi(self.call(
            HookKind::Request,
            crate::abi::http::TrailersStatus::StopIteration,
            |h, host| h.request_trailers(host),
        ));
        self.hooks.push(Hook::RequestTrailers(s));
        if s == TrailersStatus::Continue {
            self.flush_request();
        }
        self.settle(before);
        s
    }

    /// Delivers response headers (`:status` included) and returns the status.
    pub fn response_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> HeadersStatus {
        set_pairs(&self.host.maps[Map::ResponseHeaders as usize], headers);
        let s = HeadersStatus::from_abi(self.call(
            HookKind::Response,
            crate::abi::http::HeadersStatus::StopIteration,
            |h, host| h.response_headers(host, end_of_stream),
        ));
        self.hooks.push(Hook::ResponseHeaders(s));
        s
    }

    /// Delivers one response body chunk and returns the status.
    pub fn response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> BodyStatus {
        *self.host.bodies[BodyKind::ReceivedResponse as usize].borrow_mut() = vec![chunk.into()];
        let before = self.counts();
        let s = BodyStatus::from_abi(self.call(
            HookKind::Response,
            crate::abi::http::BodyStatus::StopIterationNoBuffer,
            |h, host| h.response_body(host, end_of_stream),
        ));
        self.hooks.push(Hook::ResponseBody(s));
        // The filter may have rewritten the current chunk.
        let current: Vec<u8> = self.host.bodies[BodyKind::ReceivedResponse as usize]
            .borrow_mut()
            .drain(..)
            .flat_map(|c| c.into_vec())
            .collect();
        match s {
            BodyStatus::StopIterationAndBuffer | BodyStatus::StopIterationAndWatermark => {
                self.host.bodies[BodyKind::BufferedResponse as usize]
                    .borrow_mut()
                    .push(current.into());
            }
            BodyStatus::Continue => {
                self.flush_response();
                self.forwarded_response.extend_from_slice(&current);
            }
            BodyStatus::StopIterationNoBuffer => {}
        }
        self.settle(before);
        s
    }

    /// Delivers response trailers and returns the status.
    pub fn response_trailers(&mut self, trailers: &[(&str, &str)]) -> TrailersStatus {
        set_pairs(&self.host.maps[Map::ResponseTrailers as usize], trailers);
        let before = self.counts();
        let s = TrailersStatus::from_abi(self.call(
            HookKind::Response,
            crate::abi::http::TrailersStatus::StopIteration,
            |h, host| h.response_trailers(host),
        ));
        self.hooks.push(Hook::ResponseTrailers(s));
        if s == TrailersStatus::Continue {
            self.flush_response();
        }
        self.settle(before);
        s
    }

    /// Delivers every scheduler event committed so far (as Envoy's dispatcher would); returns
    /// how many.
    pub fn run_scheduled(&mut self) -> usize {
        let events = self.host.queue.take();
        for &e in &events {
            if self.destroyed || self.completed {
                break;
            }
            let before = self.counts();
            self.call(HookKind::Other, (), |h, host| h.scheduled(host, e));
            self.hooks.push(Hook::Scheduled);
            self.settle(before);
        }
        events.len()
    }

    /// Waits up to `timeout` for a scheduler event (e.g. a wake from another thread), then
    /// delivers what is pending. Returns whether any event arrived.
    pub fn wait_scheduled(&mut self, timeout: Duration) -> bool {
        let got = self.host.queue.wait(timeout);
        self.run_scheduled();
        got
    }

    /// Ends the stream normally (`on_stream_complete`).
    pub fn complete(&mut self) {
        if !self.completed && !self.destroyed {
            self.completed = true;
            self.call(HookKind::Other, (), |h, host| h.stream_complete(host));
        }
    }

    /// The client went away: Envoy completes and destroys the stream.
    pub fn disconnect(mut self) {
        self.complete();
        self.destroy_now();
    }

    /// Envoy destroys the stream without completing it first (`on_stream_complete` is never
    /// called), as it does for every stream of a filter in a cluster's upstream filter chain.
    ///
    /// ```
    /// # use jisr::testing::TestFilter;
    /// # use jisr::{Registry, Request, ResponseWriter};
    /// async fn stamp(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    ///     let _ = req.set_header("x-upstream-filter", "jisr");
    /// }
    /// fn register(r: &mut Registry) { r.register("stamp", stamp); }
    ///
    /// let f = TestFilter::new(register, "stamp", b"").unwrap();
    /// let mut s = f.stream();
    /// s.request_headers(&[(":path", "/")], true);
    /// s.destroy_without_completion();
    /// // The slot went back to the pool all the same.
    /// assert_eq!((f.stats().in_flight, f.idle_slots()), (0, 1));
    /// ```
    pub fn destroy_without_completion(mut self) {
        self.completed = true;
        self.destroy_now();
    }

    /// Envoy's downstream write buffer went above its high watermark.
    pub fn watermark_above(&mut self) {
        self.call(HookKind::Other, (), |h, host| h.watermark(host, true));
    }

    /// Envoy's downstream write buffer drained below its low watermark.
    pub fn watermark_below(&mut self) {
        let before = self.counts();
        self.call(HookKind::Other, (), |h, host| h.watermark(host, false));
        self.settle(before);
    }
}

/// What the filter did: header changes, replies, metadata, bodies passed on, hook statuses.
impl TestStream<'_> {
    /// Every hook called so far with its status, in order.
    pub fn hooks(&self) -> &[Hook] {
        &self.hooks
    }

    /// A request header as the upstream would see it now.
    pub fn request_header(&self, name: &str) -> Option<String> {
        self.header(Map::RequestHeaders, name)
    }

    /// All request headers now, in order.
    pub fn request_headers_now(&self) -> Vec<(String, String)> {
        self.host.maps[Map::RequestHeaders as usize]
            .borrow()
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    /// A response header as the client would see it now.
    pub fn response_header(&self, name: &str) -> Option<String> {
        self.header(Map::ResponseHeaders, name)
    }

    /// The local reply sent, if any.
    pub fn local_reply(&self) -> Option<LocalReply> {
        self.host.local_reply.borrow().clone()
    }

    /// The streamed (module-generated) reply, if any.
    pub fn streamed_reply(&self) -> Option<StreamedReply> {
        self.host.streamed.borrow().clone()
    }

    /// Details of a stream reset by the filter, if any.
    pub fn reset_details(&self) -> Option<String> {
        self.host.reset.borrow().clone()
    }

    /// Dynamic metadata `ns:key`.
    pub fn metadata(&self, ns: &str, key: &str) -> Option<MetaValue> {
        self.host
            .metadata
            .borrow()
            .get(&(ns.to_string(), key.to_string()))
            .cloned()
    }

    /// The request body bytes forwarded upstream so far.
    pub fn forwarded_request_body(&self) -> &[u8] {
        &self.forwarded_body
    }

    /// The response body bytes forwarded to the client so far.
    pub fn forwarded_response_body(&self) -> &[u8] {
        &self.forwarded_response
    }

    /// Custom response flags the filter added, in order.
    pub fn response_flags(&self) -> Vec<String> {
        self.host.custom_flags.borrow().clone()
    }
}

/// Callouts: what the filter sent, and Envoy's answers to deliver.
impl TestStream<'_> {
    /// Callouts the filter started so far (completed ones included).
    pub fn callouts(&self) -> Vec<SimCallout> {
        self.host.callouts.borrow().clone()
    }

    /// Completes callout `id` with a response (as Envoy's callout-done hook would).
    pub fn complete_callout(
        &mut self,
        id: u64,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let before = self.counts();
        crate::host::sim_shared::with_callout_response(status, headers, body, |hs, cs| {
            self.call(HookKind::Other, (), |h, host| {
                h.callout_done(host, id, crate::abi::callout_result::SUCCESS, hs, cs)
            })
        });
        self.settle(before);
    }

    /// Fails callout `id`: `reset` for a reset stream, otherwise "response too large".
    pub fn fail_callout(&mut self, id: u64, reset: bool) {
        let before = self.counts();
        self.call(HookKind::Other, (), |h, host| {
            h.callout_done(
                host,
                id,
                if reset {
                    crate::abi::callout_result::RESET
                } else {
                    crate::abi::callout_result::EXCEED_RESPONSE_BUFFER_LIMIT
                },
                HeaderArray::EMPTY,
                ChunkArray::EMPTY,
            )
        });
        self.settle(before);
    }

    /// Makes callouts to `cluster` fail with "cluster not found".
    pub fn set_unknown_cluster(&mut self, cluster: &str) {
        self.host
            .unknown_clusters
            .borrow_mut()
            .push(cluster.to_string());
    }

    /// What the filter sent on its streaming callouts: `(id, "start …" | "data …" | "trailers n" |
    /// "reset")`, in order.
    pub fn stream_callout_log(&self) -> Vec<(u64, String)> {
        self.host.stream_log.borrow().clone()
    }

    /// Delivers response headers of streaming callout `id`.
    pub fn stream_callout_headers(
        &mut self,
        id: u64,
        status: u16,
        headers: &[(&str, &str)],
        end_stream: bool,
    ) {
        let code = status.to_string();
        let mut pairs = vec![(b":status".as_slice(), code.as_bytes())];
        pairs.extend(headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
        self.stream_event(
            id,
            crate::filter::http::hooks::RawStreamEvent::Headers(
                HeaderArray::of(&pairs),
                end_stream,
            ),
        );
    }

    /// Delivers response data of streaming callout `id`.
    pub fn stream_callout_data(&mut self, id: u64, data: &[u8], end_stream: bool) {
        let chunks = [data];
        self.stream_event(
            id,
            crate::filter::http::hooks::RawStreamEvent::Data(ChunkArray::of(&chunks), end_stream),
        );
    }

    /// Delivers response trailers of streaming callout `id`.
    pub fn stream_callout_trailers(&mut self, id: u64, trailers: &[(&str, &str)]) {
        let pairs: Vec<(&[u8], &[u8])> = trailers
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        self.stream_event(
            id,
            crate::filter::http::hooks::RawStreamEvent::Trailers(HeaderArray::of(&pairs)),
        );
    }

    /// Completes streaming callout `id`.
    pub fn stream_callout_complete(&mut self, id: u64) {
        self.stream_event(id, crate::filter::http::hooks::RawStreamEvent::Complete);
    }

    /// Resets streaming callout `id` (ABI reason code).
    pub fn stream_callout_reset(&mut self, id: u64, reason: u32) {
        self.stream_event(
            id,
            crate::filter::http::hooks::RawStreamEvent::Reset(reason),
        );
    }
}

/// What Envoy would provide: route configs, cluster, addresses, timing, metadata, attributes.
impl TestStream<'_> {
    /// Makes the stream's route carry the per-route config `index` from
    /// [`TestFilter::add_route_config`].
    pub fn use_route_config(&mut self, index: usize) {
        let routes = self._filter.routes.borrow();
        let ptr: *const crate::host::http::route::RouteConfigBox = &*routes[index];
        self.host.route_config.set(crate::host::http::sim::RoutePtr(
            ptr as *const core::ffi::c_void,
        ));
    }

    /// Routes the stream to cluster `name`, whose hosts per priority are
    /// `[total, healthy, degraded]`.
    pub fn set_cluster(&mut self, name: &str, hosts_per_priority: &[[u64; 3]]) {
        *self.host.cluster.borrow_mut() =
            Some((name.as_bytes().into(), hosts_per_priority.to_vec()));
    }

    /// Sets the client's direct address and the upstream host's address (`ip:port`).
    pub fn set_addresses(&mut self, direct: Option<&str>, upstream: Option<&str>) {
        *self.host.context.addresses.borrow_mut() = [
            direct.map(|a| a.as_bytes().into()),
            upstream.map(|a| a.as_bytes().into()),
        ];
    }

    /// Sets the upstream hosts Envoy tried and the connection ids it used (the last is the
    /// current upstream connection).
    pub fn set_upstream_attempts(&mut self, hosts: &[&str], connection_ids: &[u64]) {
        *self.host.context.attempts.borrow_mut() = (
            hosts.iter().map(|h| h.as_bytes().into()).collect(),
            connection_ids.to_vec(),
        );
    }

    /// Sets Envoy's timing of the stream: the start (Unix ns) and points as offsets in ns.
    pub fn set_timing(&mut self, start_unix_ns: i64, points: &[(crate::info::TimingPoint, i64)]) {
        let mut t = crate::abi::ffi::TimingInfo::UNKNOWN;
        t.ns[0] = start_unix_ns;
        t.has[0] = true;
        for (p, ns) in points {
            t.ns[*p as usize] = *ns;
            t.has[*p as usize] = true;
        }
        self.host.context.timing.set(Some(t));
    }

    /// Gives the stream metadata `ns:key` from `source`, as Envoy's config (route, cluster,
    /// host) or an earlier filter (dynamic metadata) would.
    pub fn set_source_metadata(
        &mut self,
        source: crate::MetadataSource,
        ns: &str,
        key: &str,
        value: MetaValue,
    ) {
        let (ns, key) = (ns.to_string(), key.to_string());
        match source {
            crate::MetadataSource::Dynamic => {
                self.host.metadata.borrow_mut().insert((ns, key), value);
            }
            other => {
                self.host
                    .source_metadata
                    .borrow_mut()
                    .insert((other as u32, ns, key), value);
            }
        }
    }

    /// Typed metadata of a route, cluster or host, as Envoy's config would give it.
    pub fn set_source_typed_metadata(
        &mut self,
        source: crate::MetadataSource,
        ns: &str,
        type_url: &str,
        value: &[u8],
    ) {
        self.host.context.source_typed.borrow_mut().push((
            source as u32,
            ns.to_string(),
            type_url.to_string(),
            value.to_vec(),
        ));
    }

    /// Sets a string attribute the filter can read (e.g. [`Attr::SOURCE_ADDRESS`]).
    ///
    /// [`Attr::SOURCE_ADDRESS`]: crate::Attr::SOURCE_ADDRESS
    pub fn set_attr_str(&mut self, attr: crate::Attr, value: &str) {
        self.host
            .attrs_str
            .borrow_mut()
            .push((attr.0, value.as_bytes().into()));
    }

    /// Sets an integer attribute.
    pub fn set_attr_int(&mut self, attr: crate::Attr, value: u64) {
        self.host.attrs_int.borrow_mut().push((attr.0, value));
    }

    /// Sets a boolean attribute.
    pub fn set_attr_bool(&mut self, attr: crate::Attr, value: bool) {
        self.host.attrs_bool.borrow_mut().push((attr.0, value));
    }

    /// Turns tracing on for the stream: it gets an active span named `operation` (the first
    /// entry of [`spans`](Self::spans)).
    pub fn enable_tracing(&mut self, operation: &str) {
        self.host.context.enable_tracing(operation);
    }

    /// Gives Envoy an object factory for filter-state `key`, so typed sets of it succeed.
    pub fn add_filter_state_factory(&mut self, key: &str) {
        self.host
            .context
            .factories
            .borrow_mut()
            .push(key.as_bytes().to_vec());
    }
}

/// Less common effects and counters: spans, socket options, filter state, stream control, calls into Envoy.
impl TestStream<'_> {
    /// Every span of the stream: the active span first, then children in creation order.
    pub fn spans(&self) -> Vec<SimSpan> {
        self.host
            .context
            .spans
            .borrow()
            .iter()
            .map(|c| c.span.borrow().clone())
            .collect()
    }

    /// Socket options the filter set, in order: `(option, Ok(int) or Err(bytes))`.
    pub fn socket_options_set(&self) -> Vec<(crate::control::SocketOption, Result<i64, Vec<u8>>)> {
        use crate::control::{SocketOption, SocketSide, SocketState};
        self.host
            .context
            .socket_options
            .borrow()
            .iter()
            .map(|(o, v)| {
                let opt = SocketOption {
                    level: o.level,
                    name: o.name,
                    state: match o.state {
                        0 => SocketState::Prebind,
                        1 => SocketState::Bound,
                        _ => SocketState::Listening,
                    },
                    side: if o.direction == 0 {
                        SocketSide::Upstream
                    } else {
                        SocketSide::Downstream
                    },
                };
                (opt, v.clone().map_err(|b| b.to_vec()))
            })
            .collect()
    }

    /// The serialized `google.protobuf.Struct`s the filter set for namespace `ns`, in order.
    pub fn struct_metadata(&self, ns: &str) -> Vec<Vec<u8>> {
        let all = self.host.context.struct_metadata.borrow();
        all.iter()
            .filter(|(n, _)| n == ns)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// `(key, life span, sharing)` of each filter-state value set with options (ABI values).
    pub fn filter_state_options(&self) -> Vec<(String, u32, u32)> {
        let all = self.host.context.state_options.borrow();
        all.iter()
            .map(|(k, l, sh)| (String::from_utf8_lossy(k).into_owned(), *l, *sh))
            .collect()
    }

    /// The serialized typed filter state under `key`, as Envoy's filters would read it.
    pub fn typed_filter_state(&self, key: &str) -> Option<Vec<u8>> {
        let st = self.host.context.typed_state.borrow();
        st.iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v.to_vec())
    }

    /// GOAWAY-and-close calls Envoy received (`graceful` of each).
    pub fn goaways(&self) -> Vec<bool> {
        self.host.context.goaways.borrow().clone()
    }

    /// How often Envoy recreated the stream.
    pub fn recreated(&self) -> u32 {
        self.host.context.recreated.get()
    }

    /// The stream's buffer limit in bytes (Envoy's default, 1 MiB, unless the filter set one).
    pub fn buffer_limit(&self) -> u64 {
        self.host.buffer_limit.get().unwrap_or(1 << 20)
    }

    /// How often the filter cleared the route's cluster cache.
    pub fn route_cluster_cache_clears(&self) -> u32 {
        self.host.route_cluster_cache_cleared.get()
    }

    /// How often the filter cleared the route cache.
    pub fn route_cache_clears(&self) -> u32 {
        self.host.route_cache_cleared.get()
    }

    /// Bytes of request body Envoy holds buffered for this filter.
    pub fn buffered_request_body(&self) -> usize {
        self.host.bodies[BodyKind::BufferedRequest as usize]
            .borrow()
            .iter()
            .map(|c| c.len())
            .sum()
    }

    /// How often the filter called `continue_decoding`.
    pub fn continue_decoding_calls(&self) -> u32 {
        self.host.continue_decoding.get()
    }

    /// How often the filter called `continue_encoding`.
    pub fn continue_encoding_calls(&self) -> u32 {
        self.host.continue_encoding.get()
    }

    /// Scheduler events committed and not yet delivered.
    pub fn pending_events(&self) -> usize {
        self.host.queue.len()
    }

    /// How many schedulers the filter created on this stream (0 for handlers that never wait).
    pub fn schedulers_created(&self) -> u32 {
        self.host.schedulers_created.get()
    }

    /// How often the filter fetched all values of a header in one call (Envoy 1.39+'s
    /// `get_header_values`) instead of one call per value.
    pub fn header_batches(&self) -> u32 {
        self.host.header_batches.get()
    }

    /// How often the filter set several metadata strings in one call.
    pub fn metadata_batches(&self) -> u32 {
        self.host.metadata_batches.get()
    }
}

/// Fault injection: Envoy behaviours that are legal but rare (re-entrant calls, destroys inside a
/// call, answers inside a start call), older Envoys, and failures inside jisr itself. Tests of the
/// crate's own robustness use these; a filter's everyday tests rarely need them.
impl TestStream<'_> {
    /// Makes the next local reply destroy the stream synchronously from inside it, as some
    /// Envoy versions do; the stream must then be torn down only after its hook unwinds.
    pub fn destroy_during_local_reply(&mut self) {
        let d = self.hooks_obj().destroyer();
        self.host.destroy_during_reply.set(Some((d, self.m)));
    }

    /// Makes the next `continue_decoding` the filter calls complete the stream from inside it
    /// (and, with `destroy`, destroy it too), as Envoy does when the filters after this one
    /// answer at once (a direct response): the completion arrives while the hook that resumed
    /// the stream still runs.
    pub fn complete_during_continue(&mut self, destroy: bool) {
        /// Envoy's `on_http_filter_stream_complete` on the simulated host.
        ///
        /// # Safety
        /// `m` is a live module pointer of a stream `host` serves.
        unsafe fn complete(host: &dyn crate::host::http::Host, m: *const core::ffi::c_void) {
            // SAFETY: forwarded contract.
            unsafe { crate::entry::http::OnHost(host).stream_complete(m) }
        }
        let d = destroy.then(|| (self.hooks_obj().destroyer(), self.m));
        self.host
            .complete_during_continue
            .set(Some(((complete, self.m), d)));
    }

    /// Makes Envoy answer callouts and streaming callouts to `cluster` *inside* the call that
    /// starts them (as Envoy's router does with its own 503 when the cluster has no healthy
    /// host): a unary callout's completion arrives during the start call, which then reports
    /// "cannot create request"; a stream's headers, data and completion arrive during the open
    /// call, which still succeeds.
    pub fn answer_inline(&mut self, cluster: &str, status: u16, body: &[u8]) {
        self.host
            .inline_answers
            .borrow_mut()
            .push((cluster.to_string(), status, body.to_vec()));
    }

    /// Makes the next data the filter sends on a streaming callout trigger a response data event
    /// for stream `id` *inside* that send call (a hook re-entered during the handler's poll).
    pub fn stream_data_during_next_send(&mut self, id: u64, data: &[u8], end_stream: bool) {
        self.host
            .on_stream_send
            .borrow_mut()
            .push(SimEvent::StreamData {
                id,
                data: data.to_vec(),
                end: end_stream,
            });
    }

    /// Makes the host call `name` (a method of jisr's host interface, e.g. `"body_len"`) panic,
    /// to inject a failure inside jisr.
    pub fn panic_in_host_call(&mut self, name: &'static str) {
        self.host.panic_in.set(Some(name));
    }

    /// Host calls the filter made after Envoy destroyed the stream (each one a call on a dead
    /// Envoy filter pointer).
    pub fn calls_after_destroy(&self) -> Vec<&'static str> {
        self.host.calls_after_destroy.borrow().clone()
    }

    /// Whether the stream was destroyed (by the filter's own request during a hook, or at drop).
    pub fn is_destroyed(&self) -> bool {
        self.destroyed
    }

    /// Makes the simulated Envoy older than 1.40: the calls it lacks return `Unsupported`.
    pub fn simulate_envoy_before_1_40(&mut self) {
        self.host.context.before_1_40.set(true);
    }

    /// Makes Envoy refuse to recreate the stream, as it does for a request with a body.
    pub fn refuse_recreate(&mut self) {
        self.host.context.refuse_recreate.set(true);
    }
}

impl Drop for TestStream<'_> {
    fn drop(&mut self) {
        self.complete();
        self.destroy_now();
    }
}
