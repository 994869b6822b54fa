//! Streaming callouts: send a request body in chunks, read the response as it arrives.

use crate::api::callout::{CalloutError, CalloutHeaders, CalloutRequest};
use crate::filter::core::StreamCore;
use std::future::poll_fn;
use std::task::Poll;

/// Most streaming callouts open at once on one stream.
pub(crate) const MAX_STREAMS: usize = 2;

/// Response bytes buffered for a streaming callout before it is reset for overflow.
const MAX_BUFFERED: usize = 4 << 20;

/// State of one streaming callout, kept in the stream slot (its buffers are reused).
#[derive(Default)]
pub(crate) struct StreamState {
    pub(crate) id: Option<u64>,
    pub(crate) status: u16,
    pub(crate) headers: CalloutHeaders,
    pub(crate) got_headers: bool,
    pub(crate) data: Vec<u8>,
    pub(crate) trailers: CalloutHeaders,
    pub(crate) ended: bool,
    pub(crate) complete: bool,
    pub(crate) reset: Option<u32>,
}

impl StreamState {
    fn clear(&mut self) {
        self.id = None;
        self.status = 0;
        self.headers = CalloutHeaders::default();
        self.got_headers = false;
        self.data.clear();
        self.trailers = CalloutHeaders::default();
        self.ended = false;
        self.complete = false;
        self.reset = None;
    }
}

/// One event of a streaming callout, as Envoy delivers it.
pub(crate) enum StreamEvent<'h> {
    Headers(&'h mut dyn Iterator<Item = (&'h [u8], &'h [u8])>, bool),
    Data(&'h mut dyn Iterator<Item = &'h [u8]>, bool),
    Trailers(&'h mut dyn Iterator<Item = (&'h [u8], &'h [u8])>),
    Complete,
    Reset(u32),
}

/// Records an event for the streaming callout `id`; false if no such stream is open.
pub(crate) fn record(core: &StreamCore, id: u64, event: StreamEvent<'_>) -> bool {
    let mut overflow = false;
    for cell in core.streams.iter() {
        // A report arriving while the state is borrowed (a re-entrant call from Envoy) has no
        // stream to update.
        let Ok(mut st) = cell.try_borrow_mut() else {
            continue;
        };
        if st.id != Some(id) {
            continue;
        }
        match event {
            StreamEvent::Headers(it, eos) => {
                for (k, v) in it {
                    if k == b":status" {
                        st.status = core::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                    } else {
                        st.headers.push(k, v);
                    }
                }
                st.got_headers = true;
                st.ended |= eos;
            }
            StreamEvent::Data(it, eos) => {
                for c in it {
                    if st.data.len() + c.len() > MAX_BUFFERED {
                        st.reset = Some(u32::MAX);
                        overflow = true;
                        break;
                    }
                    st.data.extend_from_slice(c);
                }
                st.ended |= eos;
            }
            StreamEvent::Trailers(it) => {
                for (k, v) in it {
                    st.trailers.push(k, v);
                }
                st.ended = true;
            }
            StreamEvent::Complete => {
                st.complete = true;
                st.ended = true;
            }
            StreamEvent::Reset(reason) => st.reset = Some(reason),
        }
        drop(st);
        if overflow {
            // Outside the borrow: Envoy may report the reset synchronously.
            core.with_host(|h| h.stream_reset(id));
        }
        return true;
    }
    false
}

/// An open streaming callout; from [`ResponseWriter::stream_callout`].
///
/// Response data is buffered (reusing the stream slot's buffer) until [`read`](Self::read)
/// takes it; more than 4 MiB unread resets the callout. Dropping an unfinished stream resets
/// it.
///
/// [`ResponseWriter::stream_callout`]: crate::ResponseWriter::stream_callout
pub struct CalloutStream<'w> {
    core: &'w StreamCore,
    idx: usize,
    id: u64,
}

/// Status and headers of a streaming callout's response.
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
        let idx = core
            .streams
            .iter()
            .position(|c| c.borrow().id.is_none())
            .ok_or(CalloutError::TooManyInFlight)?;
        let timeout_ms = u64::try_from(req.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut pairs: arrayvec::ArrayVec<(&[u8], &[u8]), 11> = arrayvec::ArrayVec::new();
        pairs.push((b":method", req.method.as_bytes()));
        pairs.push((b":path", req.path.as_bytes()));
        pairs.push((b"host", req.host.as_bytes()));
        for (k, v) in &req.headers[..req.n_headers] {
            pairs.push((k.as_bytes(), v));
        }
        let id = core
            .with_host(|h| {
                h.start_stream(
                    req.cluster.as_bytes(),
                    &pairs,
                    req.body,
                    end_stream,
                    timeout_ms,
                )
            })
            .ok_or(CalloutError::Detached)?
            .map_err(CalloutError::from_init)?;
        let mut st = core.streams[idx].borrow_mut();
        st.clear();
        st.id = Some(id);
        Ok(CalloutStream { core, idx, id })
    }

    fn state(&self) -> std::cell::RefMut<'_, StreamState> {
        self.core.streams[self.idx].borrow_mut()
    }

    /// Sends request body bytes; `end_stream` ends the request.
    pub fn send(&mut self, data: &[u8], end_stream: bool) -> Result<(), CalloutError> {
        if self.state().reset.is_some() {
            return Err(CalloutError::Reset);
        }
        match self
            .core
            .with_host(|h| h.stream_send(self.id, data, end_stream))
        {
            Some(true) => Ok(()),
            Some(false) => Err(CalloutError::Reset),
            None => Err(CalloutError::Detached),
        }
    }

    /// Sends request trailers (ends the request).
    pub fn send_trailers(&mut self, trailers: &[(&str, &[u8])]) -> Result<(), CalloutError> {
        let mut pairs: arrayvec::ArrayVec<(&[u8], &[u8]), 32> = arrayvec::ArrayVec::new();
        for (k, v) in trailers.iter().take(32) {
            pairs.push((k.as_bytes(), v));
        }
        match self.core.with_host(|h| h.stream_trailers(self.id, &pairs)) {
            Some(true) => Ok(()),
            Some(false) => Err(CalloutError::Reset),
            None => Err(CalloutError::Detached),
        }
    }

    /// Waits for the response headers.
    pub async fn head(&mut self) -> Result<CalloutHead, CalloutError> {
        poll_fn(|_cx| {
            if self.core.ended.get() {
                return Poll::Ready(Err(CalloutError::Detached));
            }
            let st = self.state();
            if st.got_headers {
                Poll::Ready(Ok(CalloutHead {
                    status: st.status,
                    headers: st.headers.clone(),
                }))
            } else if st.reset.is_some() {
                Poll::Ready(Err(CalloutError::Reset))
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Waits for response body bytes and appends them to `out`; `Ok(0)` at the end of the
    /// response.
    pub async fn read(&mut self, out: &mut Vec<u8>) -> Result<usize, CalloutError> {
        poll_fn(|_cx| {
            if self.core.ended.get() {
                return Poll::Ready(Err(CalloutError::Detached));
            }
            let mut st = self.state();
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
                Poll::Pending
            }
        })
        .await
    }

    /// The response trailers received so far.
    pub fn trailers(&self) -> CalloutHeaders {
        self.state().trailers.clone()
    }
}

impl Drop for CalloutStream<'_> {
    fn drop(&mut self) {
        let open = {
            let mut st = self.core.streams[self.idx].borrow_mut();
            if st.id != Some(self.id) {
                return;
            }
            // Forget the stream before resetting it: Envoy reports the reset synchronously,
            // and that report must find nothing (and no borrowed state).
            st.id = None;
            !st.complete && st.reset.is_none()
        };
        if open {
            self.core.with_host(|h| h.stream_reset(self.id));
        }
    }
}
