//! The escape hatch: filters written directly against Envoy's hooks.

use crate::abi::http as abi;
use crate::api::http::writer::{INVALID_REPLY_DETAILS, check_reply};
use crate::api::log::{self, Level};
use crate::api::metrics::{Counter, MetricError};
use crate::api::wire::{self, Place, WireError};
use crate::filter::http::core::FilterMeta;
use crate::host::http::{BodyKind, Host, Map, MetadataValue};
use crate::host::{Committer, MetricOp};
use std::fmt;
use std::sync::Arc;

/// What a request/response headers hook returns.
///
/// A jisr filter returns it for you: `Continue` when the handler finished inside the hook,
/// `StopIteration` while it still waits (here, for the body):
///
/// ```
/// use jisr::raw::HeadersStatus;
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn inspect(mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     if req.method() == Some("POST") {
///         let _ = req.read_to_end(&mut Vec::new()).await;
///     }
/// }
/// fn register(r: &mut Registry) { r.register("inspect", inspect); }
///
/// let f = TestFilter::new(register, "inspect", b"").unwrap();
/// let get = f.stream().request_headers(&[(":method", "GET"), (":path", "/")], true);
/// assert_eq!(get, HeadersStatus::Continue);
/// let post = f.stream().request_headers(&[(":method", "POST"), (":path", "/")], false);
/// assert_eq!(post, HeadersStatus::StopIteration);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadersStatus {
    /// Pass the headers on.
    Continue,
    /// Hold the headers (resume with `continue_decoding`/`continue_encoding`).
    StopIteration,
    /// Pass the headers on without ending the stream.
    ContinueAndDontEndStream,
    /// Hold headers and buffer the whole body.
    StopAllIterationAndBuffer,
    /// Hold headers and buffer the body with flow control.
    StopAllIterationAndWatermark,
}

/// What a body hook returns.
///
/// ```
/// use jisr::raw::{BodyStatus, RawFactory, RawFilter, RawStream};
/// # use jisr::testing::TestFilter;
/// # use jisr::Registry;
///
/// struct WholeBody;
/// impl RawFilter for WholeBody {
///     fn on_request_body(&mut self, _s: &mut RawStream<'_>, end_of_stream: bool) -> BodyStatus {
///         if end_of_stream {
///             BodyStatus::Continue // the whole body goes on
///         } else {
///             BodyStatus::StopIterationAndBuffer // Envoy keeps it; nothing goes upstream yet
///         }
///     }
/// }
/// # impl RawFactory for WholeBody { type Filter = WholeBody; fn new_filter(&self) -> WholeBody { WholeBody } }
/// # fn register(r: &mut Registry) { r.register_raw("whole_body", |_cfg| Ok(WholeBody)); }
///
/// let f = TestFilter::new(register, "whole_body", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":method", "POST"), (":path", "/")], false);
/// assert_eq!(s.request_body(b"01234", false), BodyStatus::StopIterationAndBuffer);
/// assert_eq!(s.request_body(b"56789", true), BodyStatus::Continue);
/// # assert_eq!(s.forwarded_request_body(), b"0123456789");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyStatus {
    /// Pass the data on.
    Continue,
    /// Hold and buffer the data.
    StopIterationAndBuffer,
    /// Hold and buffer the data with flow control.
    StopIterationAndWatermark,
    /// Hold without buffering.
    StopIterationNoBuffer,
}

/// What a trailers hook returns.
///
/// ```
/// use jisr::raw::TrailersStatus;
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn check_length(mut req: Request<'_>, w: ResponseWriter<'_>) {
///     let mut body = Vec::new();
///     let _ = req.read_to_end(&mut body).await; // ends when the trailers arrive
///     if req.trailer("x-length") != Some(body.len().to_string().as_bytes()) {
///         w.send(400, b"length mismatch\n");
///     }
/// }
/// fn register(r: &mut Registry) { r.register("check_length", check_length); }
///
/// let f = TestFilter::new(register, "check_length", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":method", "POST"), (":path", "/")], false);
/// s.request_body(b"abc", false);
/// assert_eq!(s.request_trailers(&[("x-length", "3")]), TrailersStatus::Continue);
/// assert!(s.local_reply().is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrailersStatus {
    /// Pass the trailers on.
    Continue,
    /// Hold them.
    StopIteration,
}

impl HeadersStatus {
    pub(crate) fn abi(self) -> abi::HeadersStatus {
        match self {
            HeadersStatus::Continue => abi::HeadersStatus::Continue,
            HeadersStatus::StopIteration => abi::HeadersStatus::StopIteration,
            HeadersStatus::ContinueAndDontEndStream => abi::HeadersStatus::ContinueAndDontEndStream,
            HeadersStatus::StopAllIterationAndBuffer => {
                abi::HeadersStatus::StopAllIterationAndBuffer
            }
            HeadersStatus::StopAllIterationAndWatermark => {
                abi::HeadersStatus::StopAllIterationAndWatermark
            }
        }
    }

    #[cfg(feature = "testing")]
    pub(crate) fn from_abi(v: abi::HeadersStatus) -> HeadersStatus {
        match v {
            abi::HeadersStatus::Continue => HeadersStatus::Continue,
            abi::HeadersStatus::StopIteration => HeadersStatus::StopIteration,
            abi::HeadersStatus::ContinueAndDontEndStream => HeadersStatus::ContinueAndDontEndStream,
            abi::HeadersStatus::StopAllIterationAndBuffer => {
                HeadersStatus::StopAllIterationAndBuffer
            }
            abi::HeadersStatus::StopAllIterationAndWatermark => {
                HeadersStatus::StopAllIterationAndWatermark
            }
        }
    }
}

impl BodyStatus {
    pub(crate) fn abi(self) -> abi::BodyStatus {
        match self {
            BodyStatus::Continue => abi::BodyStatus::Continue,
            BodyStatus::StopIterationAndBuffer => abi::BodyStatus::StopIterationAndBuffer,
            BodyStatus::StopIterationAndWatermark => abi::BodyStatus::StopIterationAndWatermark,
            BodyStatus::StopIterationNoBuffer => abi::BodyStatus::StopIterationNoBuffer,
        }
    }

    #[cfg(feature = "testing")]
    pub(crate) fn from_abi(v: abi::BodyStatus) -> BodyStatus {
        match v {
            abi::BodyStatus::Continue => BodyStatus::Continue,
            abi::BodyStatus::StopIterationAndBuffer => BodyStatus::StopIterationAndBuffer,
            abi::BodyStatus::StopIterationAndWatermark => BodyStatus::StopIterationAndWatermark,
            abi::BodyStatus::StopIterationNoBuffer => BodyStatus::StopIterationNoBuffer,
        }
    }
}

impl TrailersStatus {
    pub(crate) fn abi(self) -> abi::TrailersStatus {
        match self {
            TrailersStatus::Continue => abi::TrailersStatus::Continue,
            TrailersStatus::StopIteration => abi::TrailersStatus::StopIteration,
        }
    }

    #[cfg(feature = "testing")]
    pub(crate) fn from_abi(v: abi::TrailersStatus) -> TrailersStatus {
        match v {
            abi::TrailersStatus::Continue => TrailersStatus::Continue,
            abi::TrailersStatus::StopIteration => TrailersStatus::StopIteration,
        }
    }
}

/// A filter implemented directly against Envoy's per-stream hooks. Every method has a default
/// that lets the stream through. Registered with [`Registry::register_raw`] beside jisr
/// filters in the same module.
///
/// ```
/// use jisr::{raw::{HeadersStatus, RawFactory, RawFilter, RawStream}};
///
/// struct DenyAll;
/// impl RawFilter for DenyAll {
///     fn on_request_headers(&mut self, s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
///         s.send_response(403, &[], b"denied", "raw_deny");
///         HeadersStatus::StopIteration
///     }
/// }
/// struct Factory;
/// impl RawFactory for Factory {
///     type Filter = DenyAll;
///     fn new_filter(&self) -> DenyAll { DenyAll }
/// }
/// # let mut r = jisr::Registry::default();
/// # r.register_raw("deny", |_cfg| Ok(Factory));
/// ```
///
/// [`Registry::register_raw`]: crate::Registry::register_raw
pub trait RawFilter: 'static {
    /// Request headers arrived.
    fn on_request_headers(&mut self, s: &mut RawStream<'_>, end_of_stream: bool) -> HeadersStatus {
        let _ = (s, end_of_stream);
        HeadersStatus::Continue
    }
    /// A request body chunk arrived.
    fn on_request_body(&mut self, s: &mut RawStream<'_>, end_of_stream: bool) -> BodyStatus {
        let _ = (s, end_of_stream);
        BodyStatus::Continue
    }
    /// Request trailers arrived.
    fn on_request_trailers(&mut self, s: &mut RawStream<'_>) -> TrailersStatus {
        let _ = s;
        TrailersStatus::Continue
    }
    /// Response headers arrived.
    fn on_response_headers(&mut self, s: &mut RawStream<'_>, end_of_stream: bool) -> HeadersStatus {
        let _ = (s, end_of_stream);
        HeadersStatus::Continue
    }
    /// A response body chunk arrived.
    fn on_response_body(&mut self, s: &mut RawStream<'_>, end_of_stream: bool) -> BodyStatus {
        let _ = (s, end_of_stream);
        BodyStatus::Continue
    }
    /// Response trailers arrived.
    fn on_response_trailers(&mut self, s: &mut RawStream<'_>) -> TrailersStatus {
        let _ = s;
        TrailersStatus::Continue
    }
    /// A scheduler event committed through [`RawStream::scheduler`] is delivered.
    fn on_scheduled(&mut self, s: &mut RawStream<'_>, event: u64) {
        let _ = (s, event);
    }
    /// The stream is complete (last hook with a usable stream).
    fn on_stream_complete(&mut self, s: &mut RawStream<'_>) {
        let _ = s;
    }
}

/// Creates one [`RawFilter`] per stream; one factory per Envoy filter config.
///
/// ```
/// use jisr::raw::RawFactory;
/// # use jisr::raw::{HeadersStatus, RawFilter, RawStream};
/// # use jisr::testing::TestFilter;
/// # use jisr::{ConfigError, ConfigHandle, Registry};
///
/// /// Denies every request, with the status its `filter_config` gives.
/// struct Deny(u16);
/// # impl RawFilter for Deny {
/// #     fn on_request_headers(&mut self, s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
/// #         s.send_response(self.0, &[], b"", "deny");
/// #         HeadersStatus::StopIteration
/// #     }
/// # }
/// impl RawFactory for Deny {
///     type Filter = Deny; // here the factory and its per-stream filter are one type
///     fn new_filter(&self) -> Deny { Deny(self.0) }
/// }
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Deny, ConfigError> {
///     cfg.config_str()?.parse().map(Deny).map_err(|_| ConfigError::new("not a status"))
/// }
/// fn register(r: &mut Registry) { r.register_raw("deny", load); } // `load` runs once per config
///
/// let f = TestFilter::new(register, "deny", b"418").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.local_reply().unwrap().status, 418);
/// ```
pub trait RawFactory: Send + Sync + 'static {
    /// The per-stream filter.
    type Filter: RawFilter;
    /// Creates the filter of a new stream (on the worker thread).
    fn new_filter(&self) -> Self::Filter;
}

/// The stream as a raw filter sees it during one hook.
///
/// Views it returns (headers) point into Envoy's memory and borrow the `RawStream`; everything
/// that may change or free that memory (a reply, a continue, a header change) takes
/// `&mut self`, so the borrow checker rules out a view held across it:
///
/// ```compile_fail,E0502
/// # use jisr::{raw::{HeadersStatus, RawStream}};
/// fn hook(s: &mut RawStream<'_>) -> HeadersStatus {
///     let ct = s.response_header("content-type");
///     s.send_response(502, &[], b"bad gateway", "replaced"); // frees the response headers
///     let _ = ct; // error: `*s` is still borrowed by `ct`
///     HeadersStatus::StopIteration
/// }
/// ```
///
/// ```compile_fail,E0502
/// # use jisr::{raw::{HeadersStatus, RawStream}};
/// fn hook(s: &mut RawStream<'_>) -> HeadersStatus {
///     let v = s.request_header("x-user");
///     s.set_header(false, "x-user", Some(b"someone-else")); // may free the old value
///     let _ = v; // error
///     HeadersStatus::Continue
/// }
/// ```
///
/// ```compile_fail,E0502
/// # use jisr::{raw::{BodyStatus, RawStream}};
/// fn hook(s: &mut RawStream<'_>) -> BodyStatus {
///     let ct = s.response_header("content-type");
///     s.continue_encoding(); // the headers go on to other filters and the codec
///     let _ = ct; // error
///     BodyStatus::Continue
/// }
/// ```
///
/// Once Envoy has destroyed the stream from inside one of the filter's own calls (some Envoy
/// versions do during a local reply), every method is a no-op for the rest of the hook.
///
/// Copy what must outlive such a call:
///
/// ```
/// use jisr::raw::{HeadersStatus, RawFactory, RawFilter, RawStream};
/// # use jisr::testing::TestFilter;
/// use jisr::Registry;
///
/// struct Tenant;
/// impl RawFilter for Tenant {
///     fn on_request_headers(&mut self, s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
///         let Some(tenant) = s.request_header("x-tenant").map(<[u8]>::to_vec) else {
///             s.send_response(400, &[], b"no tenant\n", "no_tenant");
///             return HeadersStatus::StopIteration;
///         };
///         s.set_header(false, "x-upstream-tenant", Some(&tenant));
///         HeadersStatus::Continue
///     }
/// }
/// # impl RawFactory for Tenant { type Filter = Tenant; fn new_filter(&self) -> Tenant { Tenant } }
/// # fn register(r: &mut Registry) { r.register_raw("tenant", |_cfg| Ok(Tenant)); }
///
/// let f = TestFilter::new(register, "tenant", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/"), ("x-tenant", "t1")], true);
/// assert_eq!(s.request_header("x-upstream-tenant").as_deref(), Some("t1"));
/// ```
pub struct RawStream<'h> {
    pub(crate) host: &'h dyn Host,
    pub(crate) meta: &'h Arc<FilterMeta>,
    pub(crate) detached: &'h std::cell::Cell<bool>,
}

/// Commits events to a stream's scheduler from any thread; see [`RawStream::scheduler`].
///
/// ```
/// use std::time::Duration;
/// use jisr::raw::{HeadersStatus, RawFactory, RawFilter, RawStream};
/// # use jisr::testing::TestFilter;
/// # use jisr::Registry;
///
/// struct Lookup;
/// impl RawFilter for Lookup {
///     fn on_request_headers(&mut self, s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
///         let scheduler = s.scheduler();
///         std::thread::spawn(move || scheduler.commit(1)); // e.g. after a slow lookup
///         HeadersStatus::StopIteration
///     }
///     fn on_scheduled(&mut self, s: &mut RawStream<'_>, _event: u64) { s.continue_decoding() }
/// }
/// # impl RawFactory for Lookup { type Filter = Lookup; fn new_filter(&self) -> Lookup { Lookup } }
/// # fn register(r: &mut Registry) { r.register_raw("lookup", |_cfg| Ok(Lookup)); }
///
/// let f = TestFilter::new(register, "lookup", b"").unwrap();
/// let mut s = f.stream();
/// assert_eq!(s.request_headers(&[(":path", "/")], true), HeadersStatus::StopIteration);
/// s.wait_scheduled(Duration::from_secs(5));
/// assert_eq!(s.continue_decoding_calls(), 1);
/// ```
pub struct RawScheduler(Committer);

impl RawScheduler {
    /// Asks Envoy to call `on_scheduled(event)` on the stream's worker. A no-op once the stream
    /// is gone.
    pub fn commit(&self, event: u64) {
        self.0.commit(event)
    }
}

fn place(response: bool) -> Place {
    if response {
        Place::Response
    } else {
        Place::Request
    }
}

fn map(response: bool) -> Map {
    if response {
        Map::ResponseHeaders
    } else {
        Map::RequestHeaders
    }
}

impl<'h> RawStream<'h> {
    /// The host, unless Envoy destroyed the stream meanwhile.
    fn host(&self) -> Option<&'h dyn Host> {
        (!self.detached.get()).then_some(self.host)
    }

    /// First value of a request header.
    pub fn request_header(&self, name: &str) -> Option<&[u8]> {
        slot::header_view(self, self.host()?, Map::RequestHeaders, name)
    }

    /// First value of a response header.
    pub fn response_header(&self, name: &str) -> Option<&[u8]> {
        slot::header_view(self, self.host()?, Map::ResponseHeaders, name)
    }

    /// Sets (or with `None` removes) a request or response header. `false` when refused:
    /// by Envoy, or by jisr's checks ([`jisr::wire`](crate::wire), the same as
    /// [`Request::set_header`](crate::Request::set_header) and
    /// [`Response::set_header`](crate::Response::set_header); logged at debug).
    pub fn set_header(&mut self, response: bool, name: &str, value: Option<&[u8]>) -> bool {
        let checked = match value {
            Some(v) => wire::header(place(response), name.as_bytes(), v),
            None => wire::removal(name.as_bytes()),
        };
        if let Err(e) = checked {
            self.refused("header change", e);
            return false;
        }
        let Some(h) = self.host() else { return false };
        crate::api::http::request::with_key(name, |key| h.set_header(map(response), key, value))
    }

    /// Adds a request or response header value (checked as [`RawStream::set_header`]; a
    /// pseudo-header cannot be added to).
    pub fn add_header(&mut self, response: bool, name: &str, value: &[u8]) -> bool {
        let checked = if name.starts_with(':') {
            Err(WireError::Reserved)
        } else {
            wire::header(place(response), name.as_bytes(), value)
        };
        if let Err(e) = checked {
            self.refused("header change", e);
            return false;
        }
        let Some(h) = self.host() else { return false };
        crate::api::http::request::with_key(name, |key| h.add_header(map(response), key, value))
    }

    /// Sends a local reply. Return a stop status from the hook afterwards.
    ///
    /// Checked as [`ResponseWriter::send_with`](crate::ResponseWriter::send_with), and fails
    /// closed the same way: an invalid status, header or details sends a plain `500` with
    /// details `jisr_invalid_reply` instead (logged at error); a 204 or 304 goes without body.
    pub fn send_response(
        &mut self,
        status: u16,
        headers: &[(&str, &[u8])],
        body: &[u8],
        details: &str,
    ) {
        if let Err(e) = check_reply(status, headers, details) {
            self.log(
                Level::Error,
                format_args!(
                    "jisr: filter '{}': reply refused ({e}); answering 500",
                    self.filter_name()
                ),
            );
            if let Some(h) = self.host() {
                h.send_response(500, &[], b"", INVALID_REPLY_DETAILS.as_bytes());
            }
            return;
        }
        let Some(h) = self.host() else { return };
        let mut pairs: arrayvec::ArrayVec<(&[u8], &[u8]), 32> = arrayvec::ArrayVec::new();
        for (k, v) in headers {
            pairs.push((k.as_bytes(), *v));
        }
        let body = if wire::bodiless(status) {
            &[][..]
        } else {
            body
        };
        h.send_response(u32::from(status), &pairs, body, details.as_bytes());
    }

    #[cold]
    fn refused(&self, what: &str, e: WireError) {
        self.log(
            Level::Debug,
            format_args!("jisr: filter '{}': {what} refused: {e}", self.filter_name()),
        );
    }

    /// Resumes a stopped request.
    pub fn continue_decoding(&mut self) {
        if let Some(h) = self.host() {
            h.continue_decoding()
        }
    }

    /// Resumes a stopped response.
    pub fn continue_encoding(&mut self) {
        if let Some(h) = self.host() {
            h.continue_encoding()
        }
    }

    /// Size of the buffered request (or response) body.
    pub fn buffered_body_len(&self, response: bool) -> usize {
        let kind = if response {
            BodyKind::BufferedResponse
        } else {
            BodyKind::BufferedRequest
        };
        self.host().map_or(0, |h| h.body_len(kind))
    }

    /// Size of the body chunk of the current body hook.
    pub fn received_body_len(&self, response: bool) -> usize {
        let kind = if response {
            BodyKind::ReceivedResponse
        } else {
            BodyKind::ReceivedRequest
        };
        self.host().map_or(0, |h| h.body_len(kind))
    }

    /// Copies body bytes from `offset` of the buffered body (`buffered`) or of the current
    /// hook's chunk into `dst`; returns how many were copied. The first copy of a hook fetches
    /// Envoy's views of that body, and the next copies of the same body in the same hook reuse
    /// them (until the hook makes any other call into Envoy), so copying a chunk in pieces asks
    /// Envoy for it once.
    pub fn copy_body(
        &self,
        response: bool,
        buffered: bool,
        offset: usize,
        dst: &mut [u8],
    ) -> usize {
        let kind = match (response, buffered) {
            (false, true) => BodyKind::BufferedRequest,
            (false, false) => BodyKind::ReceivedRequest,
            (true, true) => BodyKind::BufferedResponse,
            (true, false) => BodyKind::ReceivedResponse,
        };
        self.host().map_or(0, |h| h.copy_body(kind, offset, dst))
    }

    /// Sets numeric dynamic metadata.
    pub fn set_metadata_num(&self, ns: &str, key: &str, value: f64) {
        if let Some(h) = self.host() {
            h.set_metadata(ns.as_bytes(), key.as_bytes(), MetadataValue::Num(value))
        }
    }

    /// Sets string dynamic metadata.
    pub fn set_metadata_str(&self, ns: &str, key: &str, value: &str) {
        if let Some(h) = self.host() {
            h.set_metadata(
                ns.as_bytes(),
                key.as_bytes(),
                MetadataValue::Str(value.as_bytes()),
            )
        }
    }

    /// Adds to a counter defined on the config.
    pub fn counter_add(&self, c: Counter, labels: &[&str], n: u64) -> Result<(), MetricError> {
        if labels.len() != c.labels {
            return Err(MetricError::LabelCount {
                expected: c.labels,
                got: labels.len(),
            });
        }
        let h = self.host().ok_or(MetricError::Detached)?;
        let mut vals: arrayvec::ArrayVec<&[u8], 16> = arrayvec::ArrayVec::new();
        for l in labels.iter().take(16) {
            vals.push(l.as_bytes());
        }
        match h.metric(MetricOp::CounterAdd, c.id, &vals, n) {
            0 => Ok(()),
            1 => Err(MetricError::NotFound),
            2 => Err(MetricError::LabelCount {
                expected: c.labels,
                got: labels.len(),
            }),
            rc => Err(MetricError::Rejected(rc)),
        }
    }

    /// Logs a line (nothing is formatted when the level is disabled), with the caller's file
    /// and line on Envoy 1.40.
    #[track_caller]
    pub fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        let site = core::panic::Location::caller();
        let Some(h) = self.host() else { return };
        if h.log_enabled(level as u32) {
            log::with_line(
                |s| fmt::write(s, args),
                |line| h.log_at(level as u32, line, site.file(), site.line()),
            );
        }
    }

    /// Creates a scheduler for this stream (call once, keep it); its commits arrive as
    /// [`RawFilter::on_scheduled`]. Once Envoy destroyed the stream, its commits do nothing.
    pub fn scheduler(&self) -> RawScheduler {
        RawScheduler(match self.host() {
            Some(h) => h.new_scheduler(),
            None => Committer::inert(),
        })
    }

    /// The `filter_name` this filter was configured with.
    pub fn filter_name(&self) -> &str {
        &self.meta.name
    }
}

mod slot;

pub(crate) use slot::RawConfig;
