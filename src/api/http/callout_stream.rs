//! Streaming callouts: send a request body in chunks, read the response as it arrives.

use crate::api::callout::{
    CalloutError, CalloutHeaders, CalloutRequest, NoAnswer, PathBuf, request_pairs, trailer_pairs,
};
use crate::filter::http::callout_streams::Ticket;
use crate::filter::http::core::StreamCore;
use std::future::poll_fn;
use std::task::Poll;

/// An open streaming callout; from [`ResponseWriter::stream_callout`].
///
/// Response data is buffered (reusing the stream slot's buffer) until [`read`](Self::read)
/// takes it; more than 4 MiB unread resets the callout. Dropping an unfinished stream resets
/// it.
///
/// ```
/// use jisr::callout::CalloutRequest;
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn relay(_req: Request<'_>, w: ResponseWriter<'_>) {
///     let req = CalloutRequest::post("llm", "/v1/complete", "llm.local", b"{\"prompt\":");
///     let Ok(mut up) = w.stream_callout(req, false) else { return w.send(503, b"") };
///     let _ = up.send(b"\"hi\"}", true); // the rest of the request body
///     let mut answer = Vec::new();
///     while up.read(&mut answer).await.is_ok_and(|n| n > 0) {}
///     w.send(200, &answer);
/// }
/// # fn register(r: &mut Registry) { r.register("relay", relay); }
///
/// let f = TestFilter::new(register, "relay", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// let id = s.callouts()[0].id;
/// s.stream_callout_headers(id, 200, &[], false);
/// s.stream_callout_data(id, b"hello", true);
/// assert_eq!(s.local_reply().unwrap().body, b"hello");
/// ```
///
/// [`ResponseWriter::stream_callout`]: crate::ResponseWriter::stream_callout
pub struct CalloutStream<'w> {
    core: &'w StreamCore,
    ticket: Ticket,
}

/// Status and headers of a streaming callout's response.
///
/// ```
/// use jisr::callout::{CalloutHead, CalloutRequest};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn subscribe(_req: Request<'_>, w: ResponseWriter<'_>) {
///     let req = CalloutRequest::get("events", "/subscribe", "events.local");
///     let Ok(mut events) = w.stream_callout(req, true) else { return };
///     match events.head().await {
///         Ok(CalloutHead { status: 200, .. }) => { /* read events with `events.read` */ }
///         Ok(head) => w.send(502, format!("events answered {}", head.status).as_bytes()),
///         Err(e) => w.send(503, e.to_string().as_bytes()),
///     }
/// }
/// # fn register(r: &mut Registry) { r.register("subscribe", subscribe); }
///
/// let f = TestFilter::new(register, "subscribe", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// let id = s.callouts()[0].id;
/// s.stream_callout_headers(id, 404, &[], true);
/// assert_eq!(s.local_reply().unwrap().body, b"events answered 404");
/// ```
#[derive(Clone, Debug)]
pub struct CalloutHead {
    /// The `:status` code.
    pub status: u16,
    /// The other headers.
    pub headers: CalloutHeaders,
}

impl<'w> CalloutStream<'w> {
    pub(crate) fn open(
        core: &'w StreamCore,
        req: &CalloutRequest<'_>,
        end_stream: bool,
    ) -> Result<Self, CalloutError> {
        let timeout_ms = u64::try_from(req.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut path = PathBuf::new();
        let pairs = request_pairs(req, &mut path)?;
        let ticket = core.streams.open().ok_or(CalloutError::TooManyInFlight)?;
        // No borrow of the table is held here: Envoy may deliver the stream's first events
        // (even its end) inside this call; they are recorded against the opening entry.
        let started = core
            .with_host(|h| {
                h.start_stream(
                    req.cluster.as_bytes(),
                    &pairs,
                    req.body,
                    end_stream,
                    timeout_ms,
                )
            })
            .unwrap_or(Err(u32::MAX));
        match core.streams.opened(ticket, started) {
            Ok(()) => Ok(CalloutStream { core, ticket }),
            Err(u32::MAX) => Err(CalloutError::Detached),
            Err(rc) => Err(CalloutError::from_init(rc)),
        }
    }

    /// The stream's id, while it is open.
    fn id(&self) -> Option<u64> {
        self.core
            .streams
            .with(self.ticket, |st| match st.slot {
                crate::filter::http::callout_streams::EntryState::Open(id)
                    if st.reset.is_none() =>
                {
                    Some(id)
                }
                _ => None,
            })
            .flatten()
    }

    /// Sends request body bytes; `end_stream` ends the request.
    pub fn send(&mut self, data: &[u8], end_stream: bool) -> Result<(), CalloutError> {
        let Some(id) = self.id() else {
            return Err(CalloutError::Reset);
        };
        // No borrow is held: Envoy may deliver events of this stream inside the call.
        match self.core.with_host(|h| h.stream_send(id, data, end_stream)) {
            Some(true) => Ok(()),
            Some(false) => Err(CalloutError::Reset),
            None => Err(CalloutError::Detached),
        }
    }

    /// Sends request trailers (ends the request).
    pub fn send_trailers(&mut self, trailers: &[(&str, &[u8])]) -> Result<(), CalloutError> {
        let pairs = trailer_pairs::<32>(trailers)?;
        let Some(id) = self.id() else {
            return Err(CalloutError::Reset);
        };
        match self.core.with_host(|h| h.stream_trailers(id, &pairs)) {
            Some(true) => Ok(()),
            Some(false) => Err(CalloutError::Reset),
            None => Err(CalloutError::Detached),
        }
    }

    /// Waits for the response headers. When Envoy answered for a service it could not reach
    /// (see [`CalloutError::Unavailable`]) this is that error, not a head: a `503` head is
    /// returned once its body shows it is the service's own.
    pub async fn head(&mut self) -> Result<CalloutHead, CalloutError> {
        let core = self.core;
        let ticket = self.ticket;
        poll_fn(|cx| {
            if core.st().ended() {
                return Poll::Ready(Err(CalloutError::Detached));
            }
            core.streams
                .with(ticket, |st| {
                    // A 503 that may be Envoy answering for an unreachable service: its body
                    // (one short line, delivered with the head) tells, so wait for its end.
                    if st.got_headers && NoAnswer::may_be(st.status, &st.data) {
                        if st.ended {
                            if let Some(why) = NoAnswer::of(st.status, &st.data) {
                                return Poll::Ready(Err(CalloutError::Unavailable(why)));
                            }
                        } else if st.reset.is_none() {
                            st.waker.register(cx, |w| core.is_own_waker(w));
                            return Poll::Pending;
                        }
                    }
                    if st.got_headers {
                        Poll::Ready(Ok(CalloutHead {
                            status: st.status,
                            headers: st.headers.clone(),
                        }))
                    } else if st.reset.is_some() || st.ended {
                        Poll::Ready(Err(CalloutError::Reset))
                    } else {
                        st.waker.register(cx, |w| core.is_own_waker(w));
                        Poll::Pending
                    }
                })
                .unwrap_or(Poll::Ready(Err(CalloutError::Detached)))
        })
        .await
    }

    /// Waits for response body bytes and appends them to `out`; `Ok(0)` at the end of the
    /// response.
    pub async fn read(&mut self, out: &mut Vec<u8>) -> Result<usize, CalloutError> {
        let core = self.core;
        let ticket = self.ticket;
        poll_fn(|cx| {
            if core.st().ended() {
                return Poll::Ready(Err(CalloutError::Detached));
            }
            core.streams
                .with(ticket, |st| {
                    if !st.data.is_empty() {
                        let n = st.data.len();
                        out.extend_from_slice(&st.data);
                        st.data.clear();
                        Poll::Ready(Ok(n))
                    } else if st.reset.is_some() {
                        Poll::Ready(Err(CalloutError::Reset))
                    } else if st.ended {
                        Poll::Ready(Ok(0))
                    } else {
                        st.waker.register(cx, |w| core.is_own_waker(w));
                        Poll::Pending
                    }
                })
                .unwrap_or(Poll::Ready(Err(CalloutError::Detached)))
        })
        .await
    }

    /// The response trailers received so far.
    pub fn trailers(&self) -> CalloutHeaders {
        self.core
            .streams
            .with(self.ticket, |st| st.trailers.clone())
            .unwrap_or_default()
    }
}

impl Drop for CalloutStream<'_> {
    fn drop(&mut self) {
        // Forget the stream before resetting it: Envoy reports the reset synchronously, and
        // that report must find nothing (and no borrowed state). A forgotten `CalloutStream`
        // keeps its entry until the stream ends; its events land in stream-owned storage.
        if let Some(id) = self.core.streams.release(self.ticket) {
            self.core.with_host(|h| h.stream_reset(id));
        }
    }
}
