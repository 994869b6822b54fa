//! HTTP callouts: requests to another cluster, awaited from any handler.

use std::fmt;
use std::time::Duration;

/// Why a callout failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalloutError {
    /// Envoy refused the request: `:method`, `:path` and `host` are required headers.
    MissingRequiredHeaders,
    /// No cluster with that name.
    ClusterNotFound,
    /// Envoy reported a duplicate callout id.
    DuplicateCalloutId,
    /// Envoy could not create the request.
    CannotCreateRequest,
    /// The callout's stream was reset after response headers arrived (e.g. the upstream closed
    /// mid-body). Note: when the connection is refused or reset *before* any headers, Envoy
    /// answers the callout itself with a 503 (body `upstream connect error or disconnect/reset
    /// before headers…`), which arrives as `Ok` with status 503: treat 5xx as "no answer".
    Reset,
    /// The response body exceeded Envoy's buffer limit.
    ResponseTooLarge,
    /// No response within the timeout (Envoy's own 504 `upstream request timeout` answer, or a
    /// reset at the timeout); the 504 body is not appended to the caller's buffer.
    Timeout,
    /// More callouts in flight on this stream than jisr tracks (16).
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
            CalloutError::ResponseTooLarge => "callout response exceeded the buffer limit",
            CalloutError::Timeout => "callout timed out",
            CalloutError::TooManyInFlight => "too many callouts in flight on this stream",
            CalloutError::Detached => "stream is not active",
        })
    }
}

impl std::error::Error for CalloutError {}

impl CalloutError {
    pub(crate) fn from_init(rc: u32) -> CalloutError {
        match rc {
            1 => CalloutError::MissingRequiredHeaders,
            2 => CalloutError::ClusterNotFound,
            3 => CalloutError::DuplicateCalloutId,
            _ => CalloutError::CannotCreateRequest,
        }
    }
}

/// A callout request: target cluster, headers (`:method`, `:path` and `host` are required by
/// Envoy), body and timeout.
///
/// ```
/// use jisr::CalloutRequest;
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

    /// Adds a header (up to 8 besides the required ones; more are ignored).
    pub fn header(mut self, name: &'r str, value: &'r [u8]) -> Self {
        if self.n_headers < self.headers.len() {
            self.headers[self.n_headers] = (name, value);
            self.n_headers += 1;
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

/// Response headers of a callout, kept inline (no allocation): up to 32 headers and 2 KiB of
/// names and values; what does not fit is dropped and [`truncated`](Self::truncated) says so.
#[derive(Clone, Debug)]
pub struct CalloutHeaders {
    pub(crate) bytes: arrayvec::ArrayVec<u8, 2048>,
    pub(crate) spans: arrayvec::ArrayVec<(u16, u16, u16), 32>,
    pub(crate) truncated: bool,
}

impl Default for CalloutHeaders {
    fn default() -> Self {
        CalloutHeaders {
            bytes: arrayvec::ArrayVec::new(),
            spans: arrayvec::ArrayVec::new(),
            truncated: false,
        }
    }
}

impl CalloutHeaders {
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        if self.spans.is_full() || self.bytes.remaining_capacity() < key.len() + value.len() {
            self.truncated = true;
            return;
        }
        self.bytes.try_extend_from_slice(key).ok();
        self.bytes.try_extend_from_slice(value).ok();
        self.spans
            .push((start as u16, key.len() as u16, value.len() as u16));
    }

    /// Every header (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|&(start, k, v)| {
            let (s, k, v) = (start as usize, k as usize, v as usize);
            (&self.bytes[s..s + k], &self.bytes[s + k..s + k + v])
        })
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Whether some headers did not fit.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

/// A completed callout: status and headers; the body went into the buffer given to
/// [`ResponseWriter::callout`](crate::ResponseWriter::callout).
#[derive(Clone, Debug)]
pub struct CalloutResponse {
    /// The `:status` code.
    pub status: u16,
    /// Response headers (without `:status`).
    pub headers: CalloutHeaders,
    /// Number of body bytes appended to the caller's buffer.
    pub body_len: usize,
}
