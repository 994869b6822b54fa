//! The request as a handler sees it.

use crate::api::http::attr::Attr;
use crate::api::http::body::{BodyError, ReadBody};
use crate::api::wire::{self, Place, WireError};
use crate::filter::http::core::StreamCore;
use crate::filter::http::state::BodyState;
use crate::host::http::{BodyKind, Map};
use arrayvec::ArrayVec;

/// The downstream request, handed to a request handler.
///
/// Header, trailer and attribute getters return values copied once into storage that belongs
/// to the stream (no allocation per request: the storage is reused by the stream's slot), never
/// Envoy's own memory: Envoy's buffers are valid only until the end of the current hook or the
/// next change, and a value may be kept across an `.await`, a reply or a header change. A value
/// borrows the `Request`, and the `'a` lifetime ties the handle to the stream, so neither can
/// outlive the handler:
///
/// ```compile_fail,E0515
/// # use jisr::Request;
/// fn keep<'x>(req: Request<'_>) -> &'x [u8] {
///     req.header("x-user").unwrap_or_default() // error: the value borrows `req`
/// }
/// ```
///
/// Handles belong to the worker thread that runs the stream; they cannot be sent or shared
/// with another thread (Envoy's callbacks are only valid there):
///
/// ```compile_fail,E0277
/// # use jisr::{Request, ResponseWriter};
/// async fn handler(req: Request<'_>, _w: ResponseWriter<'_>) {
///     std::thread::scope(|s| {
///         s.spawn(|| req.header("x-user").map(<[u8]>::len)); // error: `Request` is not `Sync`
///     });
/// }
/// ```
///
/// ```compile_fail,E0277
/// # use jisr::{Request, ResponseWriter};
/// async fn handler(_req: Request<'_>, w: ResponseWriter<'_>) {
///     std::thread::scope(|s| {
///         s.spawn(move || w.send(500, b"from elsewhere")); // error: not `Send`
///     });
/// }
/// ```
///
/// Header changes take `&mut self`, so a value read before a change of the same request is not
/// mistaken for the current one:
///
/// ```compile_fail,E0502
/// # use jisr::{Request, ResponseWriter};
/// async fn handler(mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     let user = req.header("x-user");
///     req.set_header("x-user", "admin"); // error: `req` is borrowed by `user`
///     let _ = user;
/// }
/// ```
///
/// Values stay valid across an `.await` (even one that crosses hooks) and across a reply:
///
/// ```
/// use jisr::{Request, ResponseWriter, callout::CalloutRequest};
///
/// async fn handler(req: Request<'_>, w: ResponseWriter<'_>) {
///     let key = req.header("x-api-key").unwrap_or_default();
///     let mut body = Vec::new();
///     let _ = w.callout(CalloutRequest::get("auth", "/", "auth").header("x-api-key", key), &mut body).await;
///     w.send(403, b"denied");
///     w.set_metadata_str("auth", "key_len", &key.len().to_string());
/// }
/// # let _ = handler;
/// ```
///
/// ```
/// use jisr::{Request, ResponseWriter};
///
/// async fn handler(mut req: Request<'_>, w: ResponseWriter<'_>) {
///     let is_admin = req.header("x-role") == Some(b"admin".as_slice());
///     if !is_admin {
///         w.send(403, b"forbidden");
///         return;
///     }
///     let _ = req.set_header("x-checked", "1");
/// }
/// # let _ = handler;
/// ```
pub struct Request<'a> {
    pub(crate) core: &'a StreamCore,
}

/// Lower-cases `name` into a stack buffer when needed (Envoy keys are lower case).
pub(crate) fn lower(name: &str) -> ArrayVec<u8, 128> {
    let mut out = ArrayVec::new();
    for b in name.bytes().take(128) {
        out.push(b.to_ascii_lowercase());
    }
    out
}

/// Calls `f` with `name` as Envoy stores header keys (lower case), copying only when needed:
/// names are usually written in lower case already.
pub(crate) fn with_key<R>(name: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        f(name.as_bytes())
    } else if name.len() <= 128 {
        f(&lower(name))
    } else {
        long_key(name, f)
    }
}

/// A name longer than the stack copy holds, in upper case somewhere: lower-cased on the heap
/// (rare; HTTP/2 refuses upper-case names, so it must not reach Envoy as it is).
#[cold]
#[inline(never)]
fn long_key<R>(name: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    f(name.to_ascii_lowercase().as_bytes())
}

/// The `index`-th value of header `name` in `map`, copied into the stream's arena (so it stays
/// valid whatever happens to Envoy's header map later), and how many values `name` has.
#[inline]
pub(crate) fn header_get<'s>(
    core: &'s StreamCore,
    map: Map,
    name: &str,
    index: usize,
) -> (Option<&'s [u8]>, usize) {
    with_key(name, |key| {
        core.with_host(|h| {
            let (raw, n) = h.header(map, key, index);
            // The view of Envoy's memory lives only inside this call; the handler gets a copy.
            (raw.map(|r| r.keep_in(&core.arena)), n)
        })
        .unwrap_or((None, 0))
    })
}

/// Calls `f` with every header of `map`. The headers are copied into the stream's scratch
/// first, so `f` may do anything (even reply, which replaces the response header map).
pub(crate) fn header_each(core: &StreamCore, map: Map, mut f: impl FnMut(&[u8], &[u8])) {
    let mut buf = core.take_snapshot();
    buf.clear();
    core.with_host(|h| {
        h.for_each_header(map, &mut |k, v| {
            buf.extend_from_slice(&(k.len() as u32).to_ne_bytes());
            buf.extend_from_slice(&(v.len() as u32).to_ne_bytes());
            k.append_to(&mut buf);
            v.append_to(&mut buf);
        })
    });
    let mut at = 0;
    while at + 8 <= buf.len() {
        let k = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        let v = u32::from_ne_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]) as usize;
        let key = &buf[at + 8..at + 8 + k];
        let value = &buf[at + 8 + k..at + 8 + k + v];
        f(key, value);
        at += 8 + k + v;
    }
    // A nested iteration (from inside `f`) used a scratch of its own; keep ours.
    core.put_snapshot(buf);
}

/// Why [`Request::replace_body`] did not replace the body.
///
/// ```
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
/// async fn redact(mut req: Request<'_>, w: ResponseWriter<'_>) {
///     // Wrong: the body was not read yet, so it cannot be replaced.
///     if let Err(e) = req.replace_body(b"{}") {
///         w.send(500, format!("{e:?}: {e}").as_bytes());
///     }
/// }
/// fn register(r: &mut Registry) { r.register("redact", redact); }
///
/// let f = TestFilter::new(register, "redact", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":method", "POST"), (":path", "/")], false);
/// let body = s.local_reply().unwrap().body;
/// assert_eq!(body, b"BodyIncomplete: the body was not read to its end");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplaceError {
    /// The body was not read to its end (or was limited or skipped).
    BodyIncomplete,
    /// Called outside the handler's poll, or after the stream ended.
    Detached,
}

impl core::fmt::Display for ReplaceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ReplaceError::BodyIncomplete => "the body was not read to its end",
            ReplaceError::Detached => "the stream is not active",
        })
    }
}

impl std::error::Error for ReplaceError {}

/// Why a request header was not changed.
///
/// ```
/// use jisr::handler::HeaderError;
/// use jisr::wire::WireError;
///
/// assert_eq!(
///     HeaderError::Invalid(WireError::Reserved).to_string(),
///     "header refused: header is set by jisr or Envoy here"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The name or value is not valid HTTP here (nothing changed).
    Invalid(WireError),
    /// Called outside the handler's poll, or after the stream ended.
    Detached,
}

impl core::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HeaderError::Invalid(e) => write!(f, "header refused: {e}"),
            HeaderError::Detached => f.write_str("the stream is not active"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Values one batch call fetches; a header with more values is read one value per call.
const BATCH: usize = 8;

/// All values of one header, in order, each copied into the stream's arena. On Envoy 1.39+
/// up to 8 values come from one call into Envoy; older Envoys (and more values) take one call
/// per value.
///
/// ```
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
/// async fn hops(mut req: Request<'_>, w: ResponseWriter<'_>) {
///     let hops = req.header_values("x-forwarded-for").count();
///     if hops > 1 {
///         w.send(400, b"too many proxies\n");
///     }
///     let _ = req.set_header("x-hops", hops.to_string());
/// }
/// fn register(r: &mut Registry) { r.register("hops", hops); }
///
/// let f = TestFilter::new(register, "hops", b"").unwrap();
/// let mut s = f.stream();
/// let xff = [(":path", "/"), ("x-forwarded-for", "10.0.0.1"), ("x-forwarded-for", "10.0.0.2")];
/// s.request_headers(&xff, true);
/// assert_eq!(s.local_reply().unwrap().status, 400);
/// ```
pub struct HeaderValues<'r> {
    core: &'r StreamCore,
    map: Map,
    name: &'r str,
    index: usize,
    count: usize,
    batch: arrayvec::ArrayVec<&'r [u8], BATCH>,
}

impl<'r> HeaderValues<'r> {
    pub(crate) fn new(core: &'r StreamCore, map: Map, name: &'r str) -> HeaderValues<'r> {
        let mut batch = arrayvec::ArrayVec::new();
        let count = with_key(name, |key| {
            core.with_host(|h| {
                let mut over = false;
                let n = h.header_values(map, key, BATCH, &mut |raw| {
                    // The view lives only inside this call; keep a copy.
                    if batch.try_push(raw.keep_in(&core.arena)).is_err() {
                        over = true;
                    }
                });
                match n {
                    Some(n) if !over => n,
                    _ => {
                        batch.clear();
                        h.header(map, key, 0).1
                    }
                }
            })
            .unwrap_or(0)
        });
        HeaderValues {
            core,
            map,
            name,
            index: 0,
            count,
            batch,
        }
    }
}

impl<'r> Iterator for HeaderValues<'r> {
    type Item = &'r [u8];

    fn next(&mut self) -> Option<&'r [u8]> {
        if self.index >= self.count {
            return None;
        }
        if !self.batch.is_empty() {
            let v = self.batch.get(self.index).copied();
            self.index += 1;
            return v;
        }
        let (v, n) = header_get(self.core, self.map, self.name, self.index);
        self.count = n;
        self.index += 1;
        v
    }
}

impl<'a> Request<'a> {
    pub(crate) fn new(core: &'a StreamCore) -> Request<'a> {
        Request { core }
    }

    /// The first value of header `name` (case-insensitive), as raw bytes.
    #[inline]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header_get(self.core, Map::RequestHeaders, name, 0).0
    }

    /// The first value of header `name` if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// Every value of header `name`, in order.
    pub fn header_values<'r>(&'r self, name: &'r str) -> HeaderValues<'r> {
        HeaderValues::new(self.core, Map::RequestHeaders, name)
    }

    /// Calls `f` with every header (name, value), pseudo-headers included, in order.
    pub fn for_each_header(&self, f: impl FnMut(&[u8], &[u8])) {
        header_each(self.core, Map::RequestHeaders, f)
    }

    /// `:path` (path and query).
    pub fn path(&self) -> Option<&str> {
        self.header_str(":path")
    }

    /// `:method`.
    pub fn method(&self) -> Option<&str> {
        self.header_str(":method")
    }

    /// `:authority` (the host).
    pub fn authority(&self) -> Option<&str> {
        self.header_str(":authority")
    }

    /// `:scheme`.
    pub fn scheme(&self) -> Option<&str> {
        self.header_str(":scheme")
    }

    /// Replaces all values of request header `name` with `value`. Applied at once.
    ///
    /// The name and value are checked first ([`jisr::wire`](crate::wire)): a name that is not
    /// a token, a value with a control byte, `content-length` or `transfer-encoding` (Envoy
    /// frames the body), or a pseudo-header value that would change the request line
    /// (`:method` a token; `:path` `/` and visible ASCII; `:authority`, `host` and `:scheme`
    /// by their grammar) is refused with [`HeaderError::Invalid`] and nothing changes.
    ///
    /// ```
    /// # use jisr::testing::TestFilter;
    /// # use jisr::{Registry, Request, ResponseWriter};
    /// use jisr::handler::HeaderError;
    ///
    /// async fn tag(mut req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let user = req.header("x-user").unwrap_or_default().to_vec();
    ///     if let Err(HeaderError::Invalid(e)) = req.set_header("x-user-tag", &user) {
    ///         w.send(400, e.to_string().as_bytes());
    ///     }
    /// }
    /// fn register(r: &mut Registry) { r.register("tag", tag); }
    ///
    /// let f = TestFilter::new(register, "tag", b"").unwrap();
    /// let mut s = f.stream();
    /// s.request_headers(&[(":path", "/"), ("x-user", "ada\u{0}")], true);
    /// assert_eq!(s.local_reply().unwrap().body, b"header value: byte 0x00 at 3 is not allowed");
    /// ```
    pub fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<(), HeaderError> {
        let value = value.as_ref();
        wire::header(Place::Request, name.as_bytes(), value).map_err(HeaderError::Invalid)?;
        with_key(name, |key| {
            self.core
                .with_host(|h| h.set_header(Map::RequestHeaders, key, Some(value)))
        })
        .map(|_| ())
        .ok_or(HeaderError::Detached)
    }

    /// Adds a value to request header `name`. Applied at once. Checked as
    /// [`set_header`](Self::set_header); pseudo-headers have one value and cannot be added to.
    pub fn add_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<(), HeaderError> {
        let value = value.as_ref();
        if name.starts_with(':') {
            return Err(HeaderError::Invalid(WireError::Reserved));
        }
        wire::header(Place::Request, name.as_bytes(), value).map_err(HeaderError::Invalid)?;
        with_key(name, |key| {
            self.core
                .with_host(|h| h.add_header(Map::RequestHeaders, key, value))
        })
        .map(|_| ())
        .ok_or(HeaderError::Detached)
    }

    /// Removes request header `name`. Applied at once. Pseudo-headers cannot be removed.
    pub fn remove_header(&mut self, name: &str) -> Result<(), HeaderError> {
        wire::removal(name.as_bytes()).map_err(HeaderError::Invalid)?;
        with_key(name, |key| {
            self.core
                .with_host(|h| h.set_header(Map::RequestHeaders, key, None))
        })
        .map(|_| ())
        .ok_or(HeaderError::Detached)
    }

    /// A string attribute of the stream (see [`Attr`]).
    pub fn attr_str(&self, attr: Attr) -> Option<&[u8]> {
        let core = self.core;
        core.with_host(|h| h.attr_str(attr.0).map(|r| r.keep_in(&core.arena)))
            .flatten()
    }

    /// An integer attribute of the stream (see [`Attr`]).
    pub fn attr_int(&self, attr: Attr) -> Option<u64> {
        self.core.with_host(|h| h.attr_int(attr.0)).flatten()
    }

    /// A boolean attribute of the stream (see [`Attr`]).
    pub fn attr_bool(&self, attr: Attr) -> Option<bool> {
        self.core.with_host(|h| h.attr_bool(attr.0)).flatten()
    }

    /// This filter's per-route config for the request's route (the most specific one: route,
    /// then virtual host, then route table), parsed by the function given to
    /// [`Registry::route_config`](crate::Registry::route_config). `None` when the route has
    /// none or it is of another type.
    pub fn route_config<R: 'static>(&self) -> Option<&R> {
        let ptr = self.core.with_host(|h| h.route_config())?;
        crate::host::http::route::deref(ptr, self)?
            .value
            .downcast_ref::<R>()
    }

    /// The `filter_name` this filter was configured with.
    pub fn filter_name(&self) -> &str {
        self.core.name()
    }

    /// Request trailers value, once trailers arrived (case-insensitive name).
    pub fn trailer(&self, name: &str) -> Option<&[u8]> {
        header_get(self.core, Map::RequestTrailers, name, 0).0
    }

    /// Reads the next bytes of the request body into `buf`; `Ok(0)` means end of body (or the
    /// [`limit_body`](Self::limit_body) was reached).
    ///
    /// Body bytes stay in Envoy's buffer and are forwarded unchanged; reading only copies them.
    pub fn read<'r>(&'r mut self, buf: &'r mut [u8]) -> ReadBody<'r> {
        ReadBody {
            core: self.core,
            request: true,
            buf,
        }
    }

    /// Reads the rest of the body (up to the limit) into `out`; returns how many bytes.
    pub async fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<usize, BodyError> {
        crate::api::http::body::read_to_end(self.core, true, out, None).await
    }

    /// Reads the whole body into `out`, failing with [`BodyError::TooLarge`] (answer `413`)
    /// as soon as it passes `max` bytes. The body is held (not forwarded) while the handler
    /// runs, so the handler can then [`replace_body`](Self::replace_body). Envoy's own
    /// buffer limit (1 MiB by default, see
    /// [`ResponseWriter::set_buffer_limit`](crate::ResponseWriter::set_buffer_limit)) applies
    /// too: past it Envoy answers `413` itself.
    ///
    /// ```
    /// use jisr::handler::BodyError;
    /// use jisr::{Request, ResponseWriter};
    ///
    /// async fn rewrite(mut req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let mut body = Vec::new();
    ///     match req.read_body(64 * 1024, &mut body).await {
    ///         Ok(_) => {
    ///             body.make_ascii_uppercase();
    ///             let _ = req.replace_body(&body);
    ///         }
    ///         Err(BodyError::TooLarge { .. }) => w.send(413, b"body too large\n"),
    ///         Err(BodyError::Aborted) => {}
    ///     }
    /// }
    /// # let _ = rewrite;
    /// ```
    pub async fn read_body(&mut self, max: usize, out: &mut Vec<u8>) -> Result<usize, BodyError> {
        crate::api::http::body::read_to_end(self.core, true, out, Some(max)).await
    }

    /// Replaces the whole request body with `body` before it goes upstream, keeping
    /// `content-length` right (set when the request had one). The body must have been read to
    /// its end (e.g. with [`read_body`](Self::read_body)) and not limited or skipped.
    ///
    /// # Errors
    /// [`ReplaceError::BodyIncomplete`] before the end of the body was read,
    /// [`ReplaceError::Detached`] outside the handler's poll or after the stream ended.
    pub fn replace_body(&mut self, body: &[u8]) -> Result<(), ReplaceError> {
        let b = self.core.req_body.get();
        // Held and read whole: nothing of the body went upstream yet.
        if !b.eos()
            || b.skipped()
            || b.limit != usize::MAX
            || b.retention != crate::filter::http::state::Retention::Held
        {
            return Err(ReplaceError::BodyIncomplete);
        }
        let in_hook = b.in_hook();
        self.core
            .with_host(|h| {
                h.drain_body(BodyKind::BufferedRequest, usize::MAX);
                if in_hook {
                    h.drain_body(BodyKind::ReceivedRequest, usize::MAX);
                    h.append_body(BodyKind::ReceivedRequest, body);
                } else {
                    h.append_body(BodyKind::BufferedRequest, body);
                }
                if h.header(Map::RequestHeaders, b"content-length", 0).1 > 0 {
                    let mut digits = arrayvec::ArrayString::<20>::new();
                    let _ = core::fmt::write(&mut digits, format_args!("{}", body.len()));
                    h.set_header(
                        Map::RequestHeaders,
                        b"content-length",
                        Some(digits.as_bytes()),
                    );
                }
            })
            .ok_or(ReplaceError::Detached)
    }

    /// The handler will not read the body: it flows on as soon as the handler is done.
    pub fn skip_body(&mut self) {
        self.core.req_body.update(BodyState::skip);
    }

    /// The handler sees at most `n` body bytes; after that reads return end of body. The whole
    /// body is still forwarded upstream.
    pub fn limit_body(&mut self, n: usize) {
        self.core.req_body.update(|b| b.limit(n));
    }

    /// Bytes of the body read so far.
    pub fn body_read(&self) -> usize {
        self.core.req_body.get().offset
    }
}
