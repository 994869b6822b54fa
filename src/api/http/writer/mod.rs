//! Effects a handler has on the stream: replies, metadata, metrics, logs.

mod callouts;
mod connection;
mod filter_state;
mod metadata;
mod observe;
mod routing;

use crate::abi::metadata_source;
use crate::api::callout::Callout;
use crate::api::callout::{CalloutError, CalloutRequest};
use crate::api::http::callout_stream::CalloutStream;
use crate::api::http::reply_stream::StreamWriter;
use crate::api::log::{self, Level, LogValue};
use crate::api::metrics::MetricError;
use crate::api::metrics::metric_result;
use crate::api::wire::{self, WireError};
use crate::filter::http::core::StreamCore;
use crate::filter::http::reply::MAX_HEADERS;
use crate::filter::http::state::StreamState;
use crate::host::MetricOp;
use crate::host::http::{MetaKind, MetaRead, MetadataValue};
use std::fmt;

/// Details of the `500` a refused reply becomes (see [`ResponseWriter::send_with`]).
pub const INVALID_REPLY_DETAILS: &str = "jisr_invalid_reply";

/// Checks a reply's status, headers and details.
pub(crate) fn check_reply(
    status: u16,
    headers: &[(&str, &[u8])],
    details: &str,
) -> Result<(), WireError> {
    wire::status(status)?;
    wire::plain_headers(headers, MAX_HEADERS)?;
    wire::details(details.as_bytes())
}

/// Why a reply was not sent as asked.
///
/// ```
/// use jisr::handler::ReplyError;
/// use jisr::wire::WireError;
///
/// let e = ReplyError::Invalid(WireError::Status(99));
/// assert_eq!(e.to_string(), "reply refused: status 99 is not a final status (200-599)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// The status, a header or the details are not valid HTTP (nothing of it was written).
    Invalid(WireError),
    /// A reply was already made, the response already started, or the stream is over.
    Ignored,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Invalid(e) => write!(f, "reply refused: {e}"),
            ReplyError::Ignored => f.write_str("a reply was already made or the stream ended"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Host counts of the cluster a stream is routed to, at one priority (see
/// [`ResponseWriter::cluster_hosts`]).
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{ClusterHosts, Registry, Request, ResponseWriter};
///
/// async fn shed(_req: Request<'_>, w: ResponseWriter<'_>) {
///     // Answer at once when fewer than half of the hosts are healthy.
///     if let Some(ClusterHosts { total, healthy, .. }) = w.cluster_hosts(0) {
///         if healthy * 2 < total {
///             w.send(503, b"backend degraded\n");
///         }
///     }
/// }
/// fn register(r: &mut Registry) { r.register("shed", shed); }
///
/// let f = TestFilter::new(register, "shed", b"").unwrap();
/// let mut s = f.stream();
/// s.set_cluster("backend", &[[4, 1, 0]]); // total, healthy, degraded
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.local_reply().unwrap().status, 503);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterHosts {
    /// Every host of the priority.
    pub total: u64,
    /// Hosts Envoy considers healthy.
    pub healthy: u64,
    /// Hosts Envoy considers degraded.
    pub degraded: u64,
}

/// Namespaces or keys of metadata (see [`ResponseWriter::metadata_keys`]), each copied into the
/// stream's arena. Up to 32 names are held inline, more spill to the heap. The order is Envoy's
/// (not sorted).
///
/// ```
/// use jisr::testing::{MetaValue, TestFilter};
/// use jisr::{MetadataSource, Registry, Request, ResponseWriter};
///
/// async fn claims(mut req: Request<'_>, w: ResponseWriter<'_>) {
///     // Every claim an earlier filter (e.g. `jwt_authn`) wrote, as one header.
///     let mut keys: Vec<&str> = w.metadata_keys(MetadataSource::Dynamic, "jwt").collect();
///     keys.sort();
///     let _ = req.set_header("x-claims", keys.join(","));
/// }
/// fn register(r: &mut Registry) { r.register("claims", claims); }
///
/// let f = TestFilter::new(register, "claims", b"").unwrap();
/// let mut s = f.stream();
/// for claim in ["sub", "iss"] {
///     s.set_source_metadata(MetadataSource::Dynamic, "jwt", claim, MetaValue::Str("x".into()));
/// }
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.request_header("x-claims").as_deref(), Some("iss,sub"));
/// ```
#[derive(Debug, Default)]
pub struct MetadataNames<'a> {
    inline: arrayvec::ArrayVec<&'a str, 32>,
    spill: Vec<&'a str>,
    next: usize,
}

impl<'a> MetadataNames<'a> {
    pub(crate) fn push(&mut self, name: &'a str) {
        if let Err(e) = self.inline.try_push(name) {
            self.spill.push(e.element());
        }
    }
}

impl<'a> Iterator for MetadataNames<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let i = self.next;
        let name = match self.inline.get(i) {
            Some(n) => *n,
            None => *self.spill.get(i - self.inline.len())?,
        };
        self.next += 1;
        Some(name)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.inline.len() + self.spill.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for MetadataNames<'_> {}

/// Where metadata is read from (see [`ResponseWriter::metadata_str`]).
///
/// ```
/// use jisr::testing::{MetaValue, TestFilter};
/// use jisr::{MetadataSource, Registry, Request, ResponseWriter};
///
/// async fn gold_only(_req: Request<'_>, w: ResponseWriter<'_>) {
///     // `metadata: { filter_metadata: { acme: { tier: gold } } }` on the route.
///     if w.metadata_str(MetadataSource::Route, "acme", "tier") != Some("gold") {
///         w.send(403, b"gold only\n");
///     }
/// }
/// fn register(r: &mut Registry) { r.register("gold_only", gold_only); }
///
/// let f = TestFilter::new(register, "gold_only", b"").unwrap();
/// let mut s = f.stream();
/// s.set_source_metadata(MetadataSource::Route, "acme", "tier", MetaValue::Str("silver".into()));
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.local_reply().unwrap().status, 403);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataSource {
    /// This stream's dynamic metadata: set by this filter or by earlier ones (e.g. Envoy's
    /// `set_metadata` or `jwt_authn` filters).
    Dynamic = metadata_source::DYNAMIC as isize,
    /// The `metadata` of the matched route.
    Route = metadata_source::ROUTE as isize,
    /// The `metadata` of the upstream cluster.
    Cluster = metadata_source::CLUSTER as isize,
    /// The `metadata` of the selected upstream host.
    Host = metadata_source::HOST as isize,
    /// The locality metadata of the selected upstream host.
    HostLocality = metadata_source::HOST_LOCALITY as isize,
}

/// What a handler uses to answer or annotate the request.
///
/// Every call takes effect at once: the handler runs on Envoy's worker thread inside one of
/// Envoy's hooks, so there is no queue to flush and nothing done before or after a
/// [`send`](Self::send) is lost.
///
/// ```
/// use jisr::{Level, Request, ResponseWriter};
///
/// async fn deny(_req: Request<'_>, w: ResponseWriter<'_>) {
///     w.set_metadata_str("jisr", "decision", "deny");
///     w.log(Level::Info, format_args!("denied"));
///     w.send_with(403, &[("content-type", b"text/plain".as_slice())], b"no", "policy_deny");
/// }
/// # let _ = deny;
/// ```
///
/// Its methods, grouped by what they touch (each group is one `impl` block below, in this
/// order, and one file of `src/api/http/writer/`):
///
/// | group | methods |
/// |---|---|
/// | replies | [`send`](Self::send), [`send_with`](Self::send_with), [`try_send_with`](Self::try_send_with), [`stream`](Self::stream), [`replied`](Self::replied) |
/// | callouts | [`callout`](Self::callout), [`stream_callout`](Self::stream_callout) |
/// | dynamic metadata | `set_metadata_*`, `append_metadata_*`, `metadata_*`, [`set_metadata_struct`](Self::set_metadata_struct), [`typed_metadata`](Self::typed_metadata) |
/// | filter state | [`set_filter_state`](Self::set_filter_state), [`filter_state`](Self::filter_state), `*_filter_state_typed*`, `*_filter_state_object` |
/// | routing and the upstream | [`clear_route_cache`](Self::clear_route_cache), [`set_upstream_override_host`](Self::set_upstream_override_host), [`cluster_hosts`](Self::cluster_hosts), [`set_buffer_limit`](Self::set_buffer_limit) |
/// | connections | socket options, addresses, upstream attempts, [`timing`](Self::timing), [`goaway_and_close`](Self::goaway_and_close), [`recreate_stream`](Self::recreate_stream) |
/// | reporting | [`log`](Self::log), [`log_attrs`](Self::log_attrs), metrics (`counter_inc`, ...), [`add_response_flag`](Self::add_response_flag), [`span`](Self::span), [`secret`](Self::secret) |
pub struct ResponseWriter<'a> {
    pub(crate) core: &'a StreamCore,
}

impl<'a> ResponseWriter<'a> {
    pub(crate) fn new(core: &'a StreamCore) -> ResponseWriter<'a> {
        ResponseWriter { core }
    }

    /// Sends a local reply with `status` and `body`; the request is not forwarded upstream.
    ///
    /// `status` must be 200–599 (see [`send_with`](Self::send_with) for what happens
    /// otherwise); a 204 or 304 reply is sent without the body.
    pub fn send(&self, status: u16, body: &[u8]) {
        self.send_with(status, &[], body, "");
    }

    /// Sends a local reply with headers (up to 32) and a details string (shown by the access
    /// log's `%RESPONSE_CODE_DETAILS%`; empty means Envoy's default, `dynamic_module`).
    ///
    /// The reply reaches Envoy when the handler's current poll ends (at its next `.await` that
    /// waits, or when it returns), after every other effect the handler made until then:
    /// Envoy may complete the stream (and write the access log) inside the reply, so metadata,
    /// metrics and logs made right after `send` are not lost.
    ///
    /// Only the first reply of a stream is sent; later calls are ignored (and logged at debug).
    ///
    /// **Fails closed.** A status outside 200–599, a header that is not valid HTTP (see
    /// [`jisr::wire`](crate::wire)) or one jisr owns (`content-length`, `transfer-encoding`,
    /// pseudo-headers), more than 32 headers, or details that are not one visible-ASCII word
    /// are never written: the client gets a plain `500` with details `jisr_invalid_reply`
    /// instead, and the reason is logged at error. Use [`try_send_with`](Self::try_send_with)
    /// to see the reason and answer something else.
    ///
    /// ```
    /// # use jisr::testing::TestFilter;
    /// # use jisr::{Registry, Request, ResponseWriter};
    /// async fn echo_id(req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let id = req.header("x-request-id").unwrap_or_default();
    ///     w.send_with(403, &[("x-request-id", id)], b"denied\n", "denied");
    /// }
    /// fn register(r: &mut Registry) { r.register("echo_id", echo_id); }
    ///
    /// let f = TestFilter::new(register, "echo_id", b"").unwrap();
    /// let mut s = f.stream();
    /// s.request_headers(&[(":path", "/"), ("x-request-id", "a\r\nset-cookie: x")], true);
    /// let reply = s.local_reply().unwrap();
    /// assert_eq!((reply.status, reply.details.as_str()), (500, "jisr_invalid_reply"));
    /// assert!(reply.headers.is_empty());
    /// ```
    pub fn send_with(&self, status: u16, headers: &[(&str, &[u8])], body: &[u8], details: &str) {
        if let Err(ReplyError::Invalid(e)) = self.try_send_with(status, headers, body, details) {
            self.fail_closed("reply", e);
        }
    }

    /// [`send_with`](Self::send_with) that refuses invalid input instead of answering 500:
    /// nothing is sent, and the handler may answer something else.
    ///
    /// ```
    /// # use jisr::testing::TestFilter;
    /// # use jisr::{Registry, Request, ResponseWriter};
    /// use jisr::handler::ReplyError;
    ///
    /// async fn redirect(req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let to = req.header("x-next").unwrap_or(b"/");
    ///     if let Err(ReplyError::Invalid(e)) = w.try_send_with(302, &[("location", to)], b"", "") {
    ///         w.send(400, e.to_string().as_bytes());
    ///     }
    /// }
    /// fn register(r: &mut Registry) { r.register("redirect", redirect); }
    ///
    /// let f = TestFilter::new(register, "redirect", b"").unwrap();
    /// let mut s = f.stream();
    /// s.request_headers(&[(":path", "/"), ("x-next", "/home\n")], true);
    /// let reply = s.local_reply().unwrap();
    /// assert_eq!(reply.status, 400);
    /// assert_eq!(reply.body, b"header value: byte 0x0a at 5 is not allowed");
    /// ```
    pub fn try_send_with(
        &self,
        status: u16,
        headers: &[(&str, &[u8])],
        body: &[u8],
        details: &str,
    ) -> Result<(), ReplyError> {
        let core = self.core;
        if core.st().replied() || core.st().response_sent() || core.with_host(|_| ()).is_none() {
            self.debug_ignored("send");
            return Err(ReplyError::Ignored);
        }
        check_reply(status, headers, details).map_err(ReplyError::Invalid)?;
        let Ok(mut reply) = core.reply.try_borrow_mut() else {
            self.debug_ignored("send");
            return Err(ReplyError::Ignored);
        };
        let body = if wire::bodiless(status) {
            &[][..]
        } else {
            body
        };
        reply.stage(u32::from(status), headers, body, details);
        core.update(StreamState::reply);
        Ok(())
    }

    /// Answers `500` with details `jisr_invalid_reply` after a refused reply, and logs why.
    #[cold]
    #[inline(never)]
    fn fail_closed(&self, what: &str, e: WireError) {
        self.log(
            Level::Error,
            format_args!(
                "jisr: filter '{}': {what} refused ({e}); answering 500",
                self.core.name()
            ),
        );
        let core = self.core;
        if let Ok(mut reply) = core.reply.try_borrow_mut() {
            reply.stage(500, &[], b"", INVALID_REPLY_DETAILS);
            core.update(StreamState::reply);
        }
    }

    fn debug_ignored(&self, what: &str) {
        self.log(
            Level::Debug,
            format_args!("jisr: {what} ignored: a reply was already sent or the stream ended"),
        );
    }

    /// Starts a reply the filter streams itself (from a request handler; the request is then
    /// not forwarded upstream).
    ///
    /// [`ReplyError::Ignored`] if a reply was already started or the stream is over.
    /// Like [`send_with`](Self::send_with) it fails closed: a status outside 200–599, a
    /// bodiless status (204, 304: use `send`), or headers that are not valid HTTP answer a
    /// plain `500` instead, logged at error, and return [`ReplyError::Invalid`].
    ///
    /// One `content-length` is allowed here (a download whose size is known): jisr then holds
    /// the reply to it. A chunk that would go past it is refused
    /// ([`StreamError::Length`](crate::response::StreamError::Length)), and a reply that
    /// finishes short of it is reset, so the client never misreads where the reply ends.
    ///
    /// ```
    /// use jisr::{Request, ResponseWriter};
    ///
    /// async fn events(_req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let Ok(mut out) = w.stream(200, &[("content-type", b"text/event-stream")]) else {
    ///         return;
    ///     };
    ///     for i in 0..3u8 {
    ///         if out.send(&[b'd', b'a', b't', b'a', b':', b'0' + i, b'\n', b'\n']).await.is_err() {
    ///             return; // client gone
    ///         }
    ///     }
    ///     out.finish();
    /// }
    /// # let _ = events;
    /// ```
    pub fn stream(
        &self,
        status: u16,
        headers: &[(&str, &[u8])],
    ) -> Result<StreamWriter<'_>, ReplyError> {
        if self.core.st().replied() || self.core.st().response_sent() {
            self.debug_ignored("stream");
            return Err(ReplyError::Ignored);
        }
        let checked = wire::status(status)
            .and_then(|()| {
                if wire::bodiless(status) {
                    Err(WireError::Bodiless(status))
                } else {
                    Ok(())
                }
            })
            .and_then(|()| wire::streamed_headers(headers, MAX_HEADERS));
        let declared = match checked {
            Ok(declared) => declared,
            Err(e) => {
                self.fail_closed("streamed reply", e);
                return Err(ReplyError::Invalid(e));
            }
        };
        let mut code = arrayvec::ArrayString::<8>::new();
        let _ = fmt::write(&mut code, format_args!("{status}"));
        let started = self.core.with_host(|h| {
            let mut pairs: arrayvec::ArrayVec<(&[u8], &[u8]), 33> = arrayvec::ArrayVec::new();
            pairs.push((b":status", code.as_bytes()));
            for (k, v) in headers {
                pairs.push((k.as_bytes(), v));
            }
            self.core.update(StreamState::stream_reply);
            h.send_response_headers(&pairs, false);
        });
        started
            .map(|()| StreamWriter {
                core: self.core,
                done: false,
                declared,
                sent: 0,
            })
            .ok_or(ReplyError::Ignored)
    }

    /// Whether this filter already sent a reply on this stream.
    pub fn replied(&self) -> bool {
        self.core.st().replied()
    }

    fn append(&self, ns: &str, key: &str, value: MetadataValue<'_>) -> bool {
        self.core
            .with_host(|h| h.append_metadata(ns.as_bytes(), key.as_bytes(), value))
            .unwrap_or(false)
    }

    fn names(&self, source: MetadataSource, ns: Option<&str>) -> MetadataNames<'_> {
        let core = self.core;
        let mut names = MetadataNames::default();
        core.with_host(|h| {
            h.metadata_names(source as u32, ns.map(str::as_bytes), &mut |raw| {
                if let Ok(name) = core::str::from_utf8(raw.keep_in(&core.arena)) {
                    names.push(name);
                }
            })
        });
        names
    }

    fn list_item(
        &self,
        source: MetadataSource,
        ns: &str,
        key: &str,
        index: usize,
        kind: MetaKind,
    ) -> Option<MetaRead<'static>> {
        // A number or a boolean: a string would be a view of the host's memory, which must be
        // copied inside the host call (see `metadata_list_str`).
        self.core
            .with_host(|h| {
                match h.metadata_list_item(
                    source as u32,
                    ns.as_bytes(),
                    key.as_bytes(),
                    index,
                    kind,
                ) {
                    Some(MetaRead::Num(n)) => Some(MetaRead::Num(n)),
                    Some(MetaRead::Bool(b)) => Some(MetaRead::Bool(b)),
                    _ => None,
                }
            })
            .flatten()
    }

    fn metric(
        &self,
        op: MetricOp,
        id: usize,
        expected: usize,
        labels: &[&str],
        v: u64,
    ) -> Result<(), MetricError> {
        if labels.len() != expected {
            let err = MetricError::LabelCount {
                expected,
                got: labels.len(),
            };
            self.log(
                Level::Debug,
                format_args!("jisr: metric update dropped: {err}"),
            );
            return Err(err);
        }
        let mut vals: arrayvec::ArrayVec<&[u8], 16> = arrayvec::ArrayVec::new();
        for l in labels.iter().take(16) {
            vals.push(l.as_bytes());
        }
        let r = metric_result(
            self.core.with_host(|h| h.metric(op, id, &vals, v)),
            expected,
            labels.len(),
        );
        if let Err(err) = r {
            self.log(
                Level::Debug,
                format_args!("jisr: metric update dropped: {err}"),
            );
        }
        r
    }

    /// The `filter_name` this filter was configured with.
    pub fn filter_name(&self) -> &str {
        self.core.name()
    }
}
