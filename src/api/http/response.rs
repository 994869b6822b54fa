//! The upstream response as a response handler sees it.

use crate::api::http::body::{BodyError, ReadBody};
use crate::api::http::request::{HeaderValues, header_each, header_get, with_key};
use crate::api::log::Level;
use crate::api::wire::{self, Place, WireError};
use crate::filter::http::core::StreamCore;
use crate::filter::http::state::{BodyState, Retention};
use crate::host::http::{BodyKind, Map};
use std::fmt;

pub use crate::filter::http::core::ResponseMode;

/// Why a response change was refused.
///
/// ```
/// use jisr::response::ResponseError;
/// use jisr::testing::{MetaValue, TestFilter};
/// use jisr::{Registry, Request, Response, ResponseMode, ResponseWriter};
///
/// async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}
/// async fn tap(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
///     // In Observe mode the headers already went to the client.
///     if let Err(ResponseError::HeadersSent) = resp.set_header("x-tapped", "1") {
///         w.set_metadata_str("tap", "note", "headers already sent");
///     }
/// }
/// fn register(r: &mut Registry) { r.filter("tap").respond(ResponseMode::Observe, pass, tap); }
///
/// let f = TestFilter::new(register, "tap", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// s.response_headers(&[(":status", "200")], true);
/// assert_eq!(s.metadata("tap", "note"), Some(MetaValue::Str("headers already sent".into())));
/// assert_eq!(s.response_header("x-tapped"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The response headers already went to the client ([`ResponseMode::Observe`]).
    HeadersSent,
    /// Only [`ResponseMode::Buffer`] can replace the body.
    NotBuffered,
    /// The body is not complete yet (read it to the end first).
    BodyIncomplete,
    /// No chunk can be replaced now: only in [`Observe`](ResponseMode::Observe), during the
    /// hook that delivers a chunk, once the handler has read all of it.
    NoChunk,
    /// The stream is over (for [`Response::finished`]: it ended before the response did).
    Detached,
    /// Only [`ResponseMode::Observe`] can wait for the end of a response while it flows
    /// ([`Response::finished`]); in the other modes the response waits for the handler.
    NotObserved,
    /// The name or value is not valid HTTP, or the header is one jisr or Envoy owns
    /// (`content-length`, `transfer-encoding`, pseudo-headers but a valid `:status`): nothing
    /// changed.
    Invalid(WireError),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResponseError::HeadersSent => "response headers already sent downstream",
            ResponseError::NotBuffered => "the response body is only replaceable in Buffer mode",
            ResponseError::BodyIncomplete => "the response body is not complete yet",
            ResponseError::NoChunk => "no fully read response chunk is passing",
            ResponseError::Detached => "stream is not active",
            ResponseError::NotObserved => "only Observe mode can wait for the end of a response",
            ResponseError::Invalid(e) => return write!(f, "header refused: {e}"),
        })
    }
}

impl std::error::Error for ResponseError {}

/// The upstream (or locally generated) response, handed to a response handler.
///
/// ```
/// use jisr::{Response, ResponseWriter};
///
/// async fn stamp(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
///     let status = resp.status().unwrap_or(0);
///     let _ = resp.set_header("x-jisr-stamp", status.to_string());
/// }
/// # let _ = stamp;
/// ```
pub struct Response<'a> {
    pub(crate) core: &'a StreamCore,
    pub(crate) mode: ResponseMode,
}

impl<'a> Response<'a> {
    pub(crate) fn new(core: &'a StreamCore, mode: ResponseMode) -> Response<'a> {
        Response { core, mode }
    }

    /// The mode the filter was registered with.
    pub fn mode(&self) -> ResponseMode {
        self.mode
    }

    /// The status code (`:status`).
    pub fn status(&self) -> Option<u16> {
        self.header_str(":status").and_then(|s| s.parse().ok())
    }

    /// First value of response header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header_get(self.core, Map::ResponseHeaders, name, 0).0
    }

    /// First value of response header `name` if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// Every value of response header `name`.
    pub fn header_values<'r>(&'r self, name: &'r str) -> HeaderValues<'r> {
        HeaderValues::new(self.core, Map::ResponseHeaders, name)
    }

    /// Calls `f` with every response header.
    pub fn for_each_header(&self, f: impl FnMut(&[u8], &[u8])) {
        header_each(self.core, Map::ResponseHeaders, f)
    }

    /// A response trailer, once trailers arrived.
    pub fn trailer(&self, name: &str) -> Option<&[u8]> {
        header_get(self.core, Map::ResponseTrailers, name, 0).0
    }

    fn writable(&self) -> Result<(), ResponseError> {
        if self.mode == ResponseMode::Observe || self.core.st().response_sent() {
            log_debug(
                self.core,
                "response header change refused: headers already sent downstream",
            );
            return Err(ResponseError::HeadersSent);
        }
        Ok(())
    }

    /// Replaces response header `name` ([`Passthrough`](ResponseMode::Passthrough) and
    /// [`Buffer`](ResponseMode::Buffer); in [`Observe`](ResponseMode::Observe) the headers are
    /// already gone and this returns [`ResponseError::HeadersSent`]).
    ///
    /// The name and value are checked first ([`jisr::wire`](crate::wire)); what HTTP does not
    /// allow is refused with [`ResponseError::Invalid`], so nothing from a request can split
    /// the response.
    pub fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<(), ResponseError> {
        self.writable()?;
        let value = value.as_ref();
        wire::header(Place::Response, name.as_bytes(), value).map_err(ResponseError::Invalid)?;
        with_key(name, |key| {
            self.core
                .with_host(|h| h.set_header(Map::ResponseHeaders, key, Some(value)))
        })
        .map(|_| ())
        .ok_or(ResponseError::Detached)
    }

    /// Adds a response header value (see [`Response::set_header`] for when it works).
    pub fn add_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<(), ResponseError> {
        self.writable()?;
        let value = value.as_ref();
        if name.starts_with(':') {
            return Err(ResponseError::Invalid(WireError::Reserved));
        }
        wire::header(Place::Response, name.as_bytes(), value).map_err(ResponseError::Invalid)?;
        with_key(name, |key| {
            self.core
                .with_host(|h| h.add_header(Map::ResponseHeaders, key, value))
        })
        .map(|_| ())
        .ok_or(ResponseError::Detached)
    }

    /// Removes a response header (see [`Response::set_header`] for when it works).
    pub fn remove_header(&mut self, name: &str) -> Result<(), ResponseError> {
        self.writable()?;
        wire::removal(name.as_bytes()).map_err(ResponseError::Invalid)?;
        with_key(name, |key| {
            self.core
                .with_host(|h| h.set_header(Map::ResponseHeaders, key, None))
        })
        .map(|_| ())
        .ok_or(ResponseError::Detached)
    }

    /// Reads the next response body bytes into `buf`; `Ok(0)` is end of body. Always `Ok(0)` in
    /// [`Passthrough`](ResponseMode::Passthrough). `Err(BodyError::Aborted)` if the stream ends
    /// before the body does (upstream reset, client gone).
    pub fn read<'r>(&'r mut self, buf: &'r mut [u8]) -> ReadBody<'r> {
        ReadBody {
            core: self.core,
            request: false,
            buf,
        }
    }

    /// Reads the rest of the body into `out`; returns how many bytes.
    pub async fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<usize, BodyError> {
        crate::api::http::body::read_to_end(self.core, false, out, None).await
    }

    /// Stops reading the body: in Observe the tap ends; in Buffer the body is released as soon
    /// as the handler is done.
    pub fn skip_body(&mut self) {
        self.core.resp_body.update(BodyState::skip);
    }

    /// [`Observe`](ResponseMode::Observe): waits until the whole response has passed (body
    /// and trailers), without reading or copying a byte of it; everything flows to the client
    /// meanwhile. For a handler that acts at the end (metrics, an access line): then the
    /// status, [`attr_int`](Self::attr_int) and the writer's
    /// [`timing`](crate::ResponseWriter::timing) tell how it went.
    ///
    /// `Err(ResponseError::Detached)` when the stream ends first (client gone, upstream reset);
    /// `Err(ResponseError::NotObserved)` at once in the other modes, where the response waits
    /// for the handler instead.
    ///
    /// ```
    /// # use jisr::testing::{MetaValue, TestFilter};
    /// use jisr::{Registry, Request, Response, ResponseMode, ResponseWriter};
    ///
    /// async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}
    /// async fn at_end(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    ///     let outcome = match resp.finished().await {
    ///         Ok(()) => "complete",
    ///         Err(_) => "cut short",
    ///     };
    ///     w.set_metadata_str("end", "outcome", outcome);
    /// }
    /// fn register(r: &mut Registry) { r.filter("end").respond(ResponseMode::Observe, pass, at_end); }
    ///
    /// let f = TestFilter::new(register, "end", b"").unwrap();
    /// let mut s = f.stream();
    /// s.request_headers(&[(":path", "/")], true);
    /// s.response_headers(&[(":status", "200")], false);
    /// s.response_body(b"part 1, ", false);
    /// assert_eq!(s.metadata("end", "outcome"), None); // still flowing
    /// s.response_body(b"part 2", true);
    /// assert_eq!(s.forwarded_response_body(), b"part 1, part 2");
    /// assert_eq!(s.metadata("end", "outcome"), Some(MetaValue::Str("complete".into())));
    /// ```
    pub fn finished(&mut self) -> Finished<'_> {
        Finished {
            core: self.core,
            observed: self.mode == ResponseMode::Observe,
        }
    }

    /// A string attribute of the stream (see [`Attr`](crate::Attr)), as
    /// [`Request::attr_str`](crate::Request::attr_str) gives it: the client's address, the
    /// route, ...
    pub fn attr_str(&self, attr: crate::Attr) -> Option<&[u8]> {
        let core = self.core;
        core.with_host(|h| h.attr_str(attr.0).map(|r| r.keep_in(&core.arena)))
            .flatten()
    }

    /// An integer attribute of the stream (see [`Attr`](crate::Attr)).
    pub fn attr_int(&self, attr: crate::Attr) -> Option<u64> {
        self.core.with_host(|h| h.attr_int(attr.0)).flatten()
    }

    /// A boolean attribute of the stream (see [`Attr`](crate::Attr)).
    pub fn attr_bool(&self, attr: crate::Attr) -> Option<bool> {
        self.core.with_host(|h| h.attr_bool(attr.0)).flatten()
    }

    /// Whether the whole body has arrived.
    pub fn body_complete(&self) -> bool {
        self.core.resp_body.get().eos()
    }

    /// [`Observe`](ResponseMode::Observe): how many bytes of the chunk passing now the handler
    /// has not read yet (0 between body hooks, and in the other modes). Once it is 0 after a
    /// read, the handler has the whole chunk and may [`replace_chunk`](Self::replace_chunk).
    pub fn chunk_unread(&self) -> usize {
        let b = self.core.resp_body.get();
        if self.mode != ResponseMode::Observe
            || b.retention != Retention::Passing
            || !b.in_hook()
            || b.skipped()
        {
            return 0;
        }
        b.hook_end.min(b.limit).saturating_sub(b.offset.max(b.base))
    }

    /// [`Observe`](ResponseMode::Observe): sends `bytes` downstream in place of the chunk
    /// passing now (empty to send nothing), once the handler has read all of it
    /// ([`chunk_unread`](Self::chunk_unread) is 0), before its next `.await`. Anything else is
    /// [`ResponseError::NoChunk`]. The handler owns the framing: a response with a
    /// `content-length` (already sent downstream) must keep its length.
    ///
    /// ```
    /// # use jisr::testing::TestFilter;
    /// use jisr::{Registry, Request, Response, ResponseMode, ResponseWriter};
    ///
    /// async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}
    /// async fn shout(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
    ///     let mut buf = [0u8; 4];
    ///     let mut out = Vec::new();
    ///     while let Ok(n @ 1..) = resp.read(&mut buf).await {
    ///         out.extend(buf[..n].iter().map(u8::to_ascii_uppercase));
    ///         if resp.chunk_unread() == 0 {
    ///             let _ = resp.replace_chunk(&out);
    ///             out.clear();
    ///         }
    ///     }
    /// }
    /// fn register(r: &mut Registry) { r.filter("shout").respond(ResponseMode::Observe, pass, shout); }
    ///
    /// let f = TestFilter::new(register, "shout", b"").unwrap();
    /// let mut s = f.stream();
    /// s.request_headers(&[(":path", "/")], true);
    /// s.response_headers(&[(":status", "200")], false);
    /// s.response_body(b"hello, ", false);
    /// s.response_body(b"world", true);
    /// assert_eq!(s.forwarded_response_body(), b"HELLO, WORLD");
    /// ```
    pub fn replace_chunk(&mut self, bytes: &[u8]) -> Result<(), ResponseError> {
        let b = self.core.resp_body.get();
        if self.mode != ResponseMode::Observe
            || b.retention != Retention::Passing
            || !b.in_hook()
            || b.skipped()
            || self.chunk_unread() > 0
        {
            return Err(ResponseError::NoChunk);
        }
        // Read whole (checked above), so no later read in this hook copies from the chunk;
        // the hook measured its length before the handler ran, so the body's offsets hold.
        self.core
            .with_host(|h| {
                h.drain_body(BodyKind::ReceivedResponse, usize::MAX);
                if !bytes.is_empty() {
                    h.append_body(BodyKind::ReceivedResponse, bytes);
                }
            })
            .ok_or(ResponseError::Detached)
    }

    /// Replaces the response body ([`Buffer`](ResponseMode::Buffer) only, once the body is
    /// complete). `content-length` is set to the new length when the response had one; a
    /// response without it (chunked) stays chunked.
    pub fn replace_body(&mut self, body: &[u8]) -> Result<(), ResponseError> {
        if self.mode != ResponseMode::Buffer {
            return Err(ResponseError::NotBuffered);
        }
        if !self.core.resp_body.get().eos() {
            return Err(ResponseError::BodyIncomplete);
        }
        if self.core.st().response_sent() {
            return Err(ResponseError::HeadersSent);
        }
        let in_hook = self.core.resp_body.get().in_hook();
        self.core
            .with_host(|h| {
                h.drain_body(BodyKind::BufferedResponse, usize::MAX);
                if in_hook {
                    h.drain_body(BodyKind::ReceivedResponse, usize::MAX);
                    h.append_body(BodyKind::ReceivedResponse, body);
                } else {
                    h.append_body(BodyKind::BufferedResponse, body);
                }
                if h.header(Map::ResponseHeaders, b"content-length", 0).1 > 0 {
                    let mut digits = itoa(body.len());
                    h.set_header(
                        Map::ResponseHeaders,
                        b"content-length",
                        Some(digits.as_bytes()),
                    );
                    digits.clear();
                }
            })
            .ok_or(ResponseError::Detached)
    }
}

fn itoa(n: usize) -> arrayvec::ArrayString<20> {
    let mut s = arrayvec::ArrayString::new();
    let _ = fmt::write(&mut s, format_args!("{n}"));
    s
}

/// Future of [`Response::finished`].
pub struct Finished<'r> {
    core: &'r StreamCore,
    observed: bool,
}

impl core::future::Future for Finished<'_> {
    type Output = Result<(), ResponseError>;

    fn poll(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Self::Output> {
        use core::task::Poll;
        if !self.observed {
            return Poll::Ready(Err(ResponseError::NotObserved));
        }
        let core = self.core;
        let cursor = &core.resp_body;
        let b = cursor.get();
        if b.eos() {
            cursor.update(BodyState::woken);
            return Poll::Ready(Ok(()));
        }
        if core.st().ended() || b.aborted() {
            cursor.update(BodyState::woken);
            return Poll::Ready(Err(ResponseError::Detached));
        }
        // Each body hook of an Observe response wakes it; the stream's end (before the
        // body's) aborts the wait with one last poll.
        cursor.update(BodyState::wait);
        cursor.waker.register(cx, |w| core.is_own_waker(w));
        Poll::Pending
    }
}

pub(crate) fn log_debug(core: &StreamCore, msg: &str) {
    core.with_host(|h| {
        if h.log_enabled(Level::Debug as u32) {
            h.log(Level::Debug as u32, msg.as_bytes());
        }
    });
}
