//! HTTP callouts: requests to another cluster, awaited from any handler.

use crate::abi::callout_result;
use crate::api::wire::{self, Place, WireError};
use crate::filter::callouts::{CalloutOwner, State, Ticket};
pub use crate::filter::headers::CalloutHeaders;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Why a callout failed.
///
/// ```
/// use jisr::callout::{CalloutError, CalloutRequest};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn check(_req: Request<'_>, w: ResponseWriter<'_>) {
///     let mut body = Vec::new();
///     match w.callout(CalloutRequest::get("auth", "/check", "auth.local"), &mut body).await {
///         Ok(r) if r.status == 200 => {}
///         Ok(_) => w.send(403, b"denied\n"), // the service said no
///         Err(CalloutError::Timeout) => w.send(504, b"auth timed out\n"),
///         Err(e) => w.send(503, e.to_string().as_bytes()), // no verdict: unreachable, reset...
///     }
/// }
/// fn register(r: &mut Registry) { r.register("check", check); }
///
/// let f = TestFilter::new(register, "check", b"").unwrap();
/// let mut s = f.stream();
/// s.set_unknown_cluster("auth"); // a typo in the cluster name, say
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.local_reply().unwrap().body, b"callout refused: cluster not found");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalloutError {
    /// Envoy refused the request: `:method`, `:path` and `host` are required headers.
    MissingRequiredHeaders,
    /// No cluster with that name.
    ClusterNotFound,
    /// Envoy reported a duplicate callout id.
    DuplicateCalloutId,
    /// Envoy could not create the request (a reason jisr's own checks did not foresee; jisr
    /// refuses invalid method, path, host and headers itself, as [`CalloutError::Invalid`]).
    CannotCreateRequest,
    /// The method, path, host or a header is not valid HTTP, a header is one jisr or Envoy
    /// sets itself (pseudo-headers, `host`, `content-length`, `transfer-encoding`), or more
    /// than 8 headers were added: the request was not sent.
    Invalid(WireError),
    /// The callout's stream was reset after response headers arrived (e.g. the upstream closed
    /// mid-body).
    Reset,
    /// The service gave no answer: Envoy answered the callout itself with its own `503`
    /// because the connection was refused or reset before any response, no host was healthy,
    /// or a circuit breaker was open. Never an `Ok`, so an outage is not mistaken for the
    /// service's verdict (a `403` from an authz service is `Ok`; an unreachable one is this).
    /// Envoy's body is not appended to the caller's buffer.
    Unavailable(NoAnswer),
    /// The response body exceeded Envoy's buffer limit.
    ResponseTooLarge,
    /// No response within the timeout (Envoy's own 504 `upstream request timeout` answer, or a
    /// reset at the timeout); the 504 body is not appended to the caller's buffer.
    Timeout,
    /// More callouts in flight on this stream than jisr tracks (16; a callout future that was
    /// forgotten with `mem::forget` keeps its place until the stream ends).
    TooManyInFlight,
    /// Called outside a handler poll or after the stream ended.
    Detached,
}

impl fmt::Display for CalloutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CalloutError::MissingRequiredHeaders => {
                "callout refused: the headers :method, :path and host are required"
            }
            CalloutError::ClusterNotFound => "callout refused: cluster not found",
            CalloutError::DuplicateCalloutId => "callout refused: duplicate callout id",
            CalloutError::CannotCreateRequest => "callout refused: cannot create request",
            CalloutError::Reset => "callout reset",
            CalloutError::Unavailable(why) => {
                return write!(f, "callout got no answer: {}", why.as_str());
            }
            CalloutError::ResponseTooLarge => "callout response exceeded the buffer limit",
            CalloutError::Timeout => "callout timed out",
            CalloutError::TooManyInFlight => "too many callouts in flight on this stream",
            CalloutError::Detached => "stream is not active",
            CalloutError::Invalid(e) => return write!(f, "callout refused: {e}"),
        })
    }
}

impl std::error::Error for CalloutError {}

/// Why Envoy answered a callout itself (see [`CalloutError::Unavailable`]).
///
/// ```
/// use jisr::callout::{CalloutError, NoAnswer};
///
/// let e = CalloutError::Unavailable(NoAnswer::ConnectFailure);
/// assert_eq!(e.to_string(), "callout got no answer: connection failure");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoAnswer {
    /// The connection to the service was refused or could not be made.
    ConnectFailure,
    /// The connection was closed or reset before any response headers.
    ResetBeforeHeaders,
    /// The cluster has no healthy host.
    NoHealthyHost,
    /// A circuit breaker (too many connections, requests or retries) refused the request.
    Overflow,
}

impl NoAnswer {
    fn as_str(self) -> &'static str {
        match self {
            NoAnswer::ConnectFailure => "connection failure",
            NoAnswer::ResetBeforeHeaders => "reset before headers",
            NoAnswer::NoHealthyHost => "no healthy host",
            NoAnswer::Overflow => "overflow",
        }
    }

    /// Whether a `503` whose body so far is `partial` may still turn out to be Envoy's own
    /// (a streaming callout's head waits for the body's end to tell).
    pub(crate) fn may_be(status: u16, partial: &[u8]) -> bool {
        const CONNECT: &[u8] = b"upstream connect error or disconnect/reset before headers";
        status == 503
            && (CONNECT.starts_with(partial)
                || partial.starts_with(CONNECT)
                || b"no healthy upstream".starts_with(partial))
    }

    /// Recognises the `503` Envoy's router answers a callout with when the service gave no
    /// answer, by its exact bodies (stable across Envoy 1.37–1.40): `no healthy upstream`, and
    /// `upstream connect error or disconnect/reset before headers. reset reason: <reason>`.
    pub(crate) fn of(status: u16, body: &[u8]) -> Option<NoAnswer> {
        const CONNECT: &[u8] = b"upstream connect error or disconnect/reset before headers";
        if status != 503 {
            return None;
        }
        if body == b"no healthy upstream" {
            return Some(NoAnswer::NoHealthyHost);
        }
        let reason = body.strip_prefix(CONNECT)?;
        let has = |needle: &[u8]| reason.windows(needle.len()).any(|w| w == needle);
        Some(if has(b"overflow") {
            NoAnswer::Overflow
        } else if has(b"connection failure") {
            NoAnswer::ConnectFailure
        } else {
            NoAnswer::ResetBeforeHeaders
        })
    }
}

impl CalloutError {
    pub(crate) fn from_init(rc: u32) -> CalloutError {
        use crate::abi::callout_init;
        match rc {
            callout_init::MISSING_REQUIRED_HEADERS => CalloutError::MissingRequiredHeaders,
            callout_init::CLUSTER_NOT_FOUND => CalloutError::ClusterNotFound,
            callout_init::DUPLICATE_CALLOUT_ID => CalloutError::DuplicateCalloutId,
            _ => CalloutError::CannotCreateRequest,
        }
    }
}

/// A callout request: target cluster, headers (`:method`, `:path` and `host` are required by
/// Envoy), body and timeout.
///
/// ```
/// use jisr::callout::CalloutRequest;
/// use std::time::Duration;
///
/// let req = CalloutRequest::get("auth", "/check", "auth.local")
///     .header("x-api-key", b"k")
///     .timeout(Duration::from_millis(250));
/// # let _ = req;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct CalloutRequest<'r> {
    pub(crate) cluster: &'r str,
    pub(crate) method: &'r str,
    pub(crate) path: &'r str,
    pub(crate) host: &'r str,
    pub(crate) headers: [(&'r str, &'r [u8]); 8],
    pub(crate) n_headers: usize,
    pub(crate) queries: [(&'r str, &'r [u8]); 8],
    pub(crate) n_queries: usize,
    /// More headers or query pairs were added than fit: the request is refused when it starts.
    pub(crate) too_many: bool,
    pub(crate) body: &'r [u8],
    pub(crate) timeout: Duration,
}

impl<'r> CalloutRequest<'r> {
    /// A request to `cluster` with method, path and host (the three required headers); no
    /// body, 5 s timeout.
    pub fn new(cluster: &'r str, method: &'r str, path: &'r str, host: &'r str) -> Self {
        CalloutRequest {
            cluster,
            method,
            path,
            host,
            headers: [("", &[]); 8],
            n_headers: 0,
            queries: [("", &[]); 8],
            n_queries: 0,
            too_many: false,
            body: &[],
            timeout: Duration::from_secs(5),
        }
    }

    /// A GET request.
    pub fn get(cluster: &'r str, path: &'r str, host: &'r str) -> Self {
        Self::new(cluster, "GET", path, host)
    }

    /// A POST request with `body`.
    pub fn post(cluster: &'r str, path: &'r str, host: &'r str, body: &'r [u8]) -> Self {
        Self::new(cluster, "POST", path, host).body(body)
    }

    /// Adds a header (up to 8 besides the required ones; a request with more is refused
    /// with [`WireError::TooManyHeaders`] when it starts, and none of it is sent).
    pub fn header(mut self, name: &'r str, value: &'r [u8]) -> Self {
        if self.n_headers < self.headers.len() {
            self.headers[self.n_headers] = (name, value);
            self.n_headers += 1;
        } else {
            self.too_many = true;
        }
        self
    }

    /// Appends a query parameter to the path (up to 8), percent-encoding the name and the value
    /// (everything but letters, digits and `-._~`), after a `?` or an `&` when the path has a
    /// query already. The path is put together when the request starts, on the stack (at most
    /// 4 KiB; longer is refused with [`WireError::TooLong`]).
    ///
    /// ```
    /// use jisr::callout::CalloutRequest;
    /// # use jisr::testing::TestFilter;
    /// # use jisr::{Registry, Request, ResponseWriter};
    ///
    /// async fn lookup(req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let user = req.header("x-user").unwrap_or_default();
    ///     let call = CalloutRequest::get("users", "/v1/find?limit=1", "users.local")
    ///         .query("name", user)
    ///         .query("scope", b"read/write");
    ///     let _ = w.callout(call, &mut Vec::new()).await;
    /// }
    /// fn register(r: &mut Registry) { r.register("lookup", lookup); }
    ///
    /// let f = TestFilter::new(register, "lookup", b"").unwrap();
    /// let mut s = f.stream();
    /// s.request_headers(&[(":path", "/"), ("x-user", "ada lovelace&admin=1")], true);
    /// let sent = &s.callouts()[0].headers;
    /// assert_eq!(sent[1], (":path".to_string(),
    ///     b"/v1/find?limit=1&name=ada%20lovelace%26admin%3D1&scope=read%2Fwrite".to_vec()));
    /// ```
    pub fn query(mut self, name: &'r str, value: &'r [u8]) -> Self {
        if self.n_queries < self.queries.len() {
            self.queries[self.n_queries] = (name, value);
            self.n_queries += 1;
        } else {
            self.too_many = true;
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: &'r [u8]) -> Self {
        self.body = body;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A completed callout: status and headers; the body went into the buffer given to
/// [`ResponseWriter::callout`](crate::ResponseWriter::callout).
///
/// ```
/// use jisr::callout::{CalloutRequest, CalloutResponse};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn check(_req: Request<'_>, w: ResponseWriter<'_>) {
///     let mut body = Vec::new();
///     let verdict = w.callout(CalloutRequest::get("auth", "/check", "auth.local"), &mut body).await;
///     if let Ok(CalloutResponse { status: 403, body_len, .. }) = verdict {
///         w.send(403, &body[..body_len]); // pass the auth service's reason on
///     }
/// }
/// fn register(r: &mut Registry) { r.register("check", check); }
///
/// let f = TestFilter::new(register, "check", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// let id = s.callouts()[0].id;
/// s.complete_callout(id, 403, &[], b"key revoked");
/// assert_eq!(s.local_reply().unwrap().body, b"key revoked");
/// ```
#[derive(Clone, Debug)]
pub struct CalloutResponse {
    /// The `:status` code.
    pub status: u16,
    /// Response headers (without `:status`).
    pub headers: CalloutHeaders,
    /// Number of body bytes appended to the caller's buffer.
    pub body_len: usize,
}

/// How much earlier than the timeout (by jisr's clock) a 504 or reset still counts as Envoy's
/// timeout (capped at a tenth of the timeout).
pub(crate) const TIMEOUT_SLACK: Duration = Duration::from_millis(20);

/// Room for a path with its query parameters, put together on the stack.
pub(crate) type PathBuf = arrayvec::ArrayVec<u8, 4096>;

/// The request headers of a callout as Envoy takes them: the three required ones first. The
/// path with its query parameters is written into `path` when there are any.
pub(crate) fn request_pairs<'p>(
    r: &'p CalloutRequest<'_>,
    path: &'p mut PathBuf,
) -> Result<Pairs<'p, 11>, CalloutError> {
    let full: &[u8] = if r.n_queries == 0 {
        r.path.as_bytes()
    } else {
        with_query(r, path).map_err(CalloutError::Invalid)?;
        path.as_slice()
    };
    check(r, full).map_err(CalloutError::Invalid)?;
    let mut pairs = arrayvec::ArrayVec::new();
    pairs.push((b":method".as_slice(), r.method.as_bytes()));
    pairs.push((b":path".as_slice(), full));
    pairs.push((b"host".as_slice(), r.host.as_bytes()));
    for (k, v) in &r.headers[..r.n_headers] {
        pairs.push((k.as_bytes(), *v));
    }
    Ok(pairs)
}

/// Writes `r`'s path and its percent-encoded query parameters into `out`.
fn with_query(r: &CalloutRequest<'_>, out: &mut PathBuf) -> Result<(), WireError> {
    fn put(out: &mut PathBuf, bytes: &[u8]) -> Result<(), WireError> {
        out.try_extend_from_slice(bytes)
            .map_err(|_| WireError::TooLong)
    }
    fn encoded(out: &mut PathBuf, bytes: &[u8]) -> Result<(), WireError> {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &b in bytes {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                put(out, &[b])?;
            } else {
                put(
                    out,
                    &[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]],
                )?;
            }
        }
        Ok(())
    }
    out.clear();
    put(out, r.path.as_bytes())?;
    let mut sep = if r.path.contains('?') { b'&' } else { b'?' };
    for (k, v) in &r.queries[..r.n_queries] {
        put(out, &[sep])?;
        encoded(out, k.as_bytes())?;
        put(out, b"=")?;
        encoded(out, v)?;
        sep = b'&';
    }
    Ok(())
}

/// Header pairs handed to the host.
pub(crate) type Pairs<'a, const N: usize> = arrayvec::ArrayVec<(&'a [u8], &'a [u8]), N>;

/// Checks a callout request's method, path (`path`: with its query), host and headers by the
/// HTTP grammar.
fn check(r: &CalloutRequest<'_>, path: &[u8]) -> Result<(), WireError> {
    if r.too_many {
        return Err(WireError::TooManyHeaders);
    }
    wire::method(r.method.as_bytes())?;
    wire::path(path)?;
    wire::authority(r.host.as_bytes())?;
    for (k, v) in &r.headers[..r.n_headers] {
        if k.eq_ignore_ascii_case("host") {
            return Err(WireError::Reserved);
        }
        wire::header(Place::Plain, k.as_bytes(), v)?;
    }
    Ok(())
}

/// Checks trailers and turns them into pairs (at most `N`).
pub(crate) fn trailer_pairs<'t, const N: usize>(
    trailers: &'t [(&str, &[u8])],
) -> Result<Pairs<'t, N>, CalloutError> {
    wire::plain_headers(trailers, N).map_err(CalloutError::Invalid)?;
    Ok(trailers.iter().map(|(k, v)| (k.as_bytes(), *v)).collect())
}

/// Future of [`ResponseWriter::callout`](crate::ResponseWriter::callout).
///
/// Envoy's answer is written into storage the stream owns and copied into your buffer when this
/// future completes, so forgetting the future (`mem::forget`) is harmless: the callout keeps a
/// place in the stream's table until the stream ends, and its answer is discarded.
///
/// Callouts started together run concurrently:
///
/// ```
/// use jisr::callout::CalloutRequest;
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn both(mut req: Request<'_>, w: ResponseWriter<'_>) {
///     let (mut user, mut plan) = (Vec::new(), Vec::new());
///     let a = w.callout(CalloutRequest::get("users", "/me", "users.local"), &mut user);
///     let b = w.callout(CalloutRequest::get("billing", "/plan", "billing.local"), &mut plan);
///     let _ = jisr::join(a, b).await; // both in flight at once
///     let _ = req.set_header("x-plan", &plan);
/// }
/// # fn register(r: &mut Registry) { r.register("both", both); }
///
/// let f = TestFilter::new(register, "both", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// let ids: Vec<u64> = s.callouts().iter().map(|c| c.id).collect();
/// assert_eq!(ids.len(), 2);
/// s.complete_callout(ids[1], 200, &[], b"pro");
/// s.complete_callout(ids[0], 200, &[], b"ada");
/// assert_eq!(s.request_header("x-plan").as_deref(), Some("pro"));
/// ```
pub struct Callout<'w> {
    core: &'w dyn CalloutOwner,
    req: CalloutRequest<'w>,
    body_out: &'w mut Vec<u8>,
    ticket: Option<Ticket>,
    started: Option<Instant>,
    finished: bool,
}

impl<'w> Callout<'w> {
    pub(crate) fn new(
        core: &'w dyn CalloutOwner,
        req: CalloutRequest<'w>,
        body_out: &'w mut Vec<u8>,
    ) -> Self {
        Callout {
            core,
            req,
            body_out,
            ticket: None,
            started: None,
            finished: false,
        }
    }

    /// Starts the callout; `Ok` once it is in flight or already answered.
    fn start(&mut self) -> Result<Ticket, CalloutError> {
        let core = self.core;
        let r = &self.req;
        let timeout_ms = u64::try_from(r.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut path = PathBuf::new();
        let pairs = request_pairs(r, &mut path)?;
        let ticket = core
            .callouts()
            .open()
            .ok_or(CalloutError::TooManyInFlight)?;
        self.started = Some(Instant::now());
        // No borrow of the table is held here: Envoy may answer inside this call.
        let started = core
            .start_callout(r.cluster.as_bytes(), &pairs, r.body, timeout_ms)
            .unwrap_or(Err(u32::MAX));
        match core.callouts().opened(ticket, started) {
            Ok(()) => Ok(ticket),
            Err(u32::MAX) => Err(CalloutError::Detached),
            Err(rc) => Err(CalloutError::from_init(rc)),
        }
    }

    /// Turns the delivered answer into the future's output.
    fn finish(&mut self, ticket: Ticket) -> Result<CalloutResponse, CalloutError> {
        let timeout = self.req.timeout;
        // Envoy's timer starts a little before ours and fires a few ms "early" by our clock;
        // allow for that.
        let slack = TIMEOUT_SLACK.min(timeout / 10);
        let timed_out = self.started.is_some_and(|t| t.elapsed() + slack >= timeout);
        let body_out = &mut *self.body_out;
        let r = self
            .core
            .callouts()
            .with(ticket, |e| {
                // When no response headers arrived in time, Envoy answers the callout itself:
                // a 504 whose body is exactly this.
                let envoy_timeout = e.status == 504 && e.body == b"upstream request timeout";
                match e.result {
                    callout_result::SUCCESS if envoy_timeout || (timed_out && e.status == 504) => {
                        Err(CalloutError::Timeout)
                    }
                    callout_result::SUCCESS if NoAnswer::of(e.status, &e.body).is_some() => {
                        Err(CalloutError::Unavailable(
                            NoAnswer::of(e.status, &e.body).unwrap_or(NoAnswer::ResetBeforeHeaders),
                        ))
                    }
                    callout_result::SUCCESS => {
                        let mut headers = CalloutHeaders::default();
                        for &(start, k, v) in &e.spans {
                            let (s, k, v) = (start as usize, k as usize, v as usize);
                            headers.push(&e.head[s..s + k], &e.head[s + k..s + k + v]);
                        }
                        body_out.extend_from_slice(&e.body);
                        Ok(CalloutResponse {
                            status: e.status,
                            headers,
                            body_len: e.body.len(),
                        })
                    }
                    callout_result::RESET if timed_out => Err(CalloutError::Timeout),
                    callout_result::RESET => Err(CalloutError::Reset),
                    _ => Err(CalloutError::ResponseTooLarge),
                }
            })
            .unwrap_or(Err(CalloutError::Detached));
        self.core.callouts().release(ticket);
        r
    }
}

impl Future for Callout<'_> {
    type Output = Result<CalloutResponse, CalloutError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(Err(CalloutError::Detached));
        }
        if this.core.ended() {
            this.finished = true;
            if let Some(t) = this.ticket.take() {
                this.core.callouts().release(t);
            }
            return Poll::Ready(Err(CalloutError::Detached));
        }
        let ticket = match this.ticket {
            Some(t) => t,
            None => match this.start() {
                Ok(t) => {
                    this.ticket = Some(t);
                    t
                }
                Err(e) => {
                    this.finished = true;
                    return Poll::Ready(Err(e));
                }
            },
        };
        let core = this.core;
        let done = core.callouts().with(ticket, |e| {
            if e.state == State::Done {
                return true;
            }
            e.waker.register(cx, |w| core.is_own_waker(w));
            false
        });
        match done {
            Some(false) => Poll::Pending,
            Some(true) => {
                this.finished = true;
                this.ticket = None;
                Poll::Ready(this.finish(ticket))
            }
            None => {
                this.finished = true;
                this.ticket = None;
                Poll::Ready(Err(CalloutError::Detached))
            }
        }
    }
}

impl Drop for Callout<'_> {
    fn drop(&mut self) {
        // Abandons the callout: its late completion finds no entry and is ignored.
        if let Some(t) = self.ticket.take() {
            self.core.callouts().release(t);
        }
    }
}
