//! `ResponseWriter`: HTTP callouts to other clusters, unary and streaming, tied to the stream.

use super::*;

/// HTTP callouts to other clusters, unary and streaming, tied to the stream.
impl<'a> ResponseWriter<'a> {
    /// Sends an HTTP request to `req.cluster` and waits for the answer; the response body is
    /// appended to `body` (the only allocation is yours: reuse the buffer to avoid it).
    ///
    /// The request starts when the future is first polled. Several callouts can be in flight
    /// at once (e.g. with [`join`](crate::join)); dropping the future abandons the callout and
    /// its late completion is ignored.
    ///
    /// ```
    /// use jisr::{Request, ResponseWriter, callout::CalloutRequest};
    ///
    /// async fn check(req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let key = req.header("x-api-key").unwrap_or_default();
    ///     let mut body = Vec::new();
    ///     let verdict = w
    ///         .callout(CalloutRequest::get("auth", "/check", "auth").header("x-api-key", key), &mut body)
    ///         .await;
    ///     match verdict {
    ///         Ok(r) if r.status == 200 => {}
    ///         Ok(_) => w.send(403, b"denied"), // the service's verdict
    ///         // No verdict: unreachable (`Unavailable`), timeout, reset, refused request.
    ///         Err(e) => w.send(503, e.to_string().as_bytes()),
    ///     }
    /// }
    /// # let _ = check;
    /// ```
    pub fn callout<'c>(&'c self, req: CalloutRequest<'c>, body: &'c mut Vec<u8>) -> Callout<'c> {
        Callout::new(self.core, req, body)
    }

    /// Opens a streaming callout: sends the request headers (and `req`'s body, ending the
    /// request if `end_stream`); then send more body with [`CalloutStream::send`] and read the
    /// response as it arrives with [`CalloutStream::head`] and [`CalloutStream::read`]. At most
    /// two are open at once per stream.
    pub fn stream_callout(
        &self,
        req: CalloutRequest<'_>,
        end_stream: bool,
    ) -> Result<CalloutStream<'_>, CalloutError> {
        CalloutStream::open(self.core, &req, end_stream)
    }
}
