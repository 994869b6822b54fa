//! HTTP callouts: requests to another cluster, awaited from any handler.

use crate::api::wire::{self, Place, WireError};
pub use crate::filter::headers::CalloutHeaders;
use std::fmt;
use std::time::Duration;

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
