//! A handler's unary callout: the future `ResponseWriter::callout` returns, whose answer
//! Envoy delivers into storage the stream slot owns.

use crate::abi::callout_result;
use crate::api::callout::{
    CalloutError, CalloutHeaders, CalloutRequest, CalloutResponse, NoAnswer, PathBuf,
    TIMEOUT_SLACK, request_pairs,
};
use crate::filter::http::callouts::{State, Ticket};
use crate::filter::http::core::StreamCore;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

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
    core: &'w StreamCore,
    req: CalloutRequest<'w>,
    body_out: &'w mut Vec<u8>,
    ticket: Option<Ticket>,
    started: Option<Instant>,
    finished: bool,
}

impl<'w> Callout<'w> {
    pub(crate) fn new(
        core: &'w StreamCore,
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
        let ticket = core.callouts.open().ok_or(CalloutError::TooManyInFlight)?;
        self.started = Some(Instant::now());
        // No borrow of the table is held here: Envoy may answer inside this call.
        let started = core
            .with_host(|h| h.callout(r.cluster.as_bytes(), &pairs, r.body, timeout_ms))
            .unwrap_or(Err(u32::MAX));
        match core.callouts.opened(ticket, started) {
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
            .callouts
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
        self.core.callouts.release(ticket);
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
        if this.core.st().ended() {
            this.finished = true;
            if let Some(t) = this.ticket.take() {
                this.core.callouts.release(t);
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
        let done = core.callouts.with(ticket, |e| {
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
            self.core.callouts.release(t);
        }
    }
}
