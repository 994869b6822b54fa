//! The callout future: started on first poll, completed by Envoy's callout-done hook.
//!
//! While in flight, the future is registered in its stream's table with a pointer to its own
//! (pinned) delivery area. The hook writes the response there and then polls the handler; a
//! dropped future unregisters itself, so a late completion finds nothing and is ignored.

use crate::api::callout::{CalloutError, CalloutHeaders, CalloutRequest, CalloutResponse};
use crate::filter::core::StreamCore;
use std::cell::{Cell, UnsafeCell};
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};
use std::time::Instant;

/// Where a completion is written.
pub(crate) struct Delivery {
    done: Cell<bool>,
    result: Cell<u32>,
    status: Cell<u16>,
    headers: UnsafeCell<CalloutHeaders>,
    body: Cell<*mut Vec<u8>>,
    body_len: Cell<usize>,
}

/// How much earlier than the timeout (by jisr's clock) a 504 or reset still counts as Envoy's
/// timeout (capped at a tenth of the timeout).
const TIMEOUT_SLACK: std::time::Duration = std::time::Duration::from_millis(20);

/// Most callouts tracked in flight per stream.
pub(crate) const MAX_IN_FLIGHT: usize = 16;

/// The registrations of one stream.
pub(crate) type Registrations = arrayvec::ArrayVec<(u64, NonNull<Delivery>), MAX_IN_FLIGHT>;

/// Writes a completion into the registered future, if `id` is still registered; returns
/// whether it was.
pub(crate) fn deliver<'h>(
    core: &StreamCore,
    id: u64,
    result: u32,
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    chunks: impl Iterator<Item = &'h [u8]>,
) -> bool {
    let target = {
        let mut table = core.callouts.borrow_mut();
        let Some(pos) = table.iter().position(|(i, _)| *i == id) else {
            return false;
        };
        table.swap_remove(pos).1
    };
    // SAFETY: a registered pointer targets the delivery area of a live, pinned `Callout`
    // future (it unregisters in `Drop` before its memory goes), and that future is not being
    // polled: completions arrive in their own hook, outside any poll.
    let d = unsafe { target.as_ref() };
    let mut status = 0u16;
    // SAFETY: as above; nothing else references the header block while the future is idle.
    let block = unsafe { &mut *d.headers.get() };
    for (k, v) in headers {
        if k == b":status" {
            status = core::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        } else {
            block.push(k, v);
        }
    }
    let body = d.body.get();
    let mut n = 0;
    for c in chunks {
        // SAFETY: the pointer came from the future's `&mut Vec<u8>`, which the idle future
        // does not touch until it sees `done`.
        unsafe { (*body).extend_from_slice(c) };
        n += c.len();
    }
    d.body_len.set(n);
    d.status.set(status);
    d.result.set(result);
    d.done.set(true);
    true
}

/// Future of [`ResponseWriter::callout`](crate::ResponseWriter::callout).
pub struct Callout<'w> {
    core: &'w StreamCore,
    req: CalloutRequest<'w>,
    body_out: &'w mut Vec<u8>,
    delivery: Delivery,
    id: Option<u64>,
    started: Option<Instant>,
    finished: bool,
    _pin: PhantomPinned,
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
            delivery: Delivery {
                done: Cell::new(false),
                result: Cell::new(0),
                status: Cell::new(0),
                headers: UnsafeCell::new(CalloutHeaders::default()),
                body: Cell::new(core::ptr::null_mut()),
                body_len: Cell::new(0),
            },
            id: None,
            started: None,
            finished: false,
            _pin: PhantomPinned,
        }
    }

    fn unregister(&mut self) {
        if let Some(id) = self.id.take() {
            let mut table = self.core.callouts.borrow_mut();
            if let Some(pos) = table.iter().position(|(i, _)| *i == id) {
                table.swap_remove(pos);
            }
        }
    }

    fn start(&mut self, this: NonNull<Delivery>) -> Result<(), CalloutError> {
        let r = &self.req;
        let timeout_ms = u64::try_from(r.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut pairs: arrayvec::ArrayVec<(&[u8], &[u8]), 11> = arrayvec::ArrayVec::new();
        pairs.push((b":method", r.method.as_bytes()));
        pairs.push((b":path", r.path.as_bytes()));
        pairs.push((b"host", r.host.as_bytes()));
        for (k, v) in &r.headers[..r.n_headers] {
            pairs.push((k.as_bytes(), v));
        }
        if self.core.callouts.borrow().is_full() {
            return Err(CalloutError::TooManyInFlight);
        }
        let id = self
            .core
            .with_host(|h| h.callout(r.cluster.as_bytes(), &pairs, r.body, timeout_ms))
            .ok_or(CalloutError::Detached)?
            .map_err(CalloutError::from_init)?;
        self.core.callouts.borrow_mut().push((id, this));
        self.id = Some(id);
        self.started = Some(Instant::now());
        Ok(())
    }
}

impl Future for Callout<'_> {
    type Output = Result<CalloutResponse, CalloutError>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the future is never moved out of; `delivery` keeps its address while pinned,
        // which is what the registration relies on.
        let this = unsafe { self.get_unchecked_mut() };
        if this.finished {
            return Poll::Ready(Err(CalloutError::Detached));
        }
        if this.core.ended.get() {
            this.finished = true;
            this.unregister();
            return Poll::Ready(Err(CalloutError::Detached));
        }
        if this.id.is_none() && !this.delivery.done.get() {
            this.delivery.body.set(&raw mut *this.body_out);
            let target = NonNull::from(&this.delivery);
            if let Err(e) = this.start(target) {
                this.finished = true;
                return Poll::Ready(Err(e));
            }
            // Completions come in a later hook; nothing to wake here.
            return Poll::Pending;
        }
        if !this.delivery.done.get() {
            return Poll::Pending;
        }
        this.finished = true;
        this.id = None;
        // Envoy's timer starts a little before ours and fires a few ms "early" by our clock;
        // allow for that.
        let slack = TIMEOUT_SLACK.min(this.req.timeout / 10);
        let timed_out = this
            .started
            .is_some_and(|t| t.elapsed() + slack >= this.req.timeout);
        let status = this.delivery.status.get();
        let body_len = this.delivery.body_len.get();
        let body_start = this.body_out.len().saturating_sub(body_len);
        // When no response headers arrived in time, Envoy answers the callout itself: a 504
        // whose body is exactly this.
        let envoy_timeout =
            status == 504 && this.body_out[body_start..] == *b"upstream request timeout";
        let r = match this.delivery.result.get() {
            0 if envoy_timeout || (timed_out && status == 504) => {
                this.body_out.truncate(body_start);
                Err(CalloutError::Timeout)
            }
            0 => Ok(CalloutResponse {
                status,
                headers: core::mem::take(this.delivery.headers.get_mut()),
                body_len: this.delivery.body_len.get(),
            }),
            1 if timed_out => Err(CalloutError::Timeout),
            1 => Err(CalloutError::Reset),
            _ => Err(CalloutError::ResponseTooLarge),
        };
        Poll::Ready(r)
    }
}

impl Drop for Callout<'_> {
    fn drop(&mut self) {
        self.unregister();
    }
}
