//! Reading a body from a handler.

use crate::filter::http::core::StreamCore;
use crate::filter::http::state::BodyState;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Why a body read failed.
///
/// ```
/// use jisr::handler::BodyError;
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn small_only(mut req: Request<'_>, w: ResponseWriter<'_>) {
///     let mut body = Vec::new();
///     match req.read_body(8, &mut body).await {
///         Ok(_) => {}
///         Err(BodyError::TooLarge { limit }) => w.send(413, format!("over {limit} bytes").as_bytes()),
///         Err(BodyError::Aborted) => {} // the client left: nobody to answer
///     }
/// }
/// fn register(r: &mut Registry) { r.register("small_only", small_only); }
///
/// let f = TestFilter::new(register, "small_only", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":method", "POST"), (":path", "/")], false);
/// s.request_body(b"far more than eight bytes", true);
/// assert_eq!(s.local_reply().unwrap().body, b"over 8 bytes");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The stream ended (reset or disconnect) before the body was complete.
    Aborted,
    /// The body is larger than the limit given to the read (answer `413`).
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Aborted => f.write_str("stream ended before the body was complete"),
            BodyError::TooLarge { limit } => write!(f, "body larger than {limit} bytes"),
        }
    }
}

impl std::error::Error for BodyError {}

/// Future of one body read; see [`Request::read`](crate::Request::read).
///
/// ```
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
/// async fn no_pdf(mut req: Request<'_>, w: ResponseWriter<'_>) {
///     let mut magic = [0u8; 4];
///     let n = req.read(&mut magic).await.unwrap_or(0); // waits for the first body bytes
///     if magic[..n] == *b"%PDF" {
///         w.send(415, b"no PDFs here\n");
///     }
/// }
/// fn register(r: &mut Registry) { r.register("no_pdf", no_pdf); }
///
/// let f = TestFilter::new(register, "no_pdf", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":method", "POST"), (":path", "/upload")], false);
/// assert!(s.local_reply().is_none()); // no body yet: the handler waits
/// s.request_body(b"%PDF-1.7 ...", true);
/// assert_eq!(s.local_reply().unwrap().status, 415);
/// ```
pub struct ReadBody<'r> {
    pub(crate) core: &'r StreamCore,
    pub(crate) request: bool,
    pub(crate) buf: &'r mut [u8],
}

impl Future for ReadBody<'_> {
    type Output = Result<usize, BodyError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let core = this.core;
        let cursor = if this.request {
            &core.req_body
        } else {
            &core.resp_body
        };
        if core.st().ended() || cursor.get().aborted() {
            cursor.update(BodyState::woken);
            return Poll::Ready(Err(BodyError::Aborted));
        }
        // Not ended (checked above): only the hook's host is needed.
        match core.host.with(|h| cursor.read(h, this.request, this.buf)) {
            Some(Some(n)) => {
                cursor.update(BodyState::woken);
                Poll::Ready(Ok(n))
            }
            _ => {
                cursor.update(BodyState::wait);
                // The next body hook (or the stream's end) wakes it.
                cursor.waker.register(cx, |w| core.is_own_waker(w));
                Poll::Pending
            }
        }
    }
}

/// Reads the rest of a body (up to its limit) into `out`; returns how many bytes. With `max`,
/// a body longer than `max` bytes fails with `TooLarge` (what was read stays in `out`).
pub(crate) async fn read_to_end(
    core: &StreamCore,
    request: bool,
    out: &mut Vec<u8>,
    max: Option<usize>,
) -> Result<usize, BodyError> {
    let mut total = 0;
    let mut chunk = [0u8; 2048];
    loop {
        let n = ReadBody {
            core,
            request,
            buf: &mut chunk,
        }
        .await?;
        if n == 0 {
            return Ok(total);
        }
        out.extend_from_slice(&chunk[..n]);
        total += n;
        if let Some(limit) = max.filter(|m| total > *m) {
            return Err(BodyError::TooLarge { limit });
        }
    }
}
