//! Time for handlers and tasks: `sleep`, `timeout` and `interval`, without a thread per
//! request and without an async runtime.
//!
//! Deadlines are kept process-wide. When the module runs a jisr server extension
//! ([`Registry::server`](crate::Registry::server)), Envoy's main-thread timer fires them; a
//! module without one gets a single timer thread, started on the first sleep. A due sleep wakes
//! its future through the waker it was polled with: a handler is then polled again on its own
//! worker, through its stream's scheduler.

use crate::executor::timer::{TimerKey, timers};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Waits until `duration` has passed.
///
/// A duration too large for a deadline (`Duration::MAX`, or anything past what
/// [`Instant`] can hold) means "no deadline": the sleep never completes, and a [`timeout`]
/// with it simply waits for its future.
///
/// ```
/// use std::time::Duration;
/// use jisr::{Request, ResponseWriter};
///
/// async fn slow(_req: Request<'_>, w: ResponseWriter<'_>) {
///     jisr::time::sleep(Duration::from_millis(200)).await;
///     w.send(200, b"late\n");
/// }
/// # let _ = slow;
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        deadline: Instant::now().checked_add(duration),
        key: None,
    }
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline: Some(deadline),
        key: None,
    }
}

/// The future of [`sleep`]. Dropping it cancels the timer.
///
/// ```
/// use std::time::{Duration, Instant};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn tarpit(_req: Request<'_>, w: ResponseWriter<'_>) {
///     jisr::time::sleep(Duration::from_millis(20)).await; // the worker serves others meanwhile
///     w.send(429, b"slow down\n");
/// }
/// fn register(r: &mut Registry) { r.register("tarpit", tarpit); }
///
/// let f = TestFilter::new(register, "tarpit", b"").unwrap();
/// let (mut s, start) = (f.stream(), Instant::now());
/// s.request_headers(&[(":path", "/login")], true);
/// assert!(s.local_reply().is_none()); // asleep
/// s.wait_scheduled(Duration::from_secs(5));
/// assert_eq!(s.local_reply().unwrap().status, 429);
/// assert!(start.elapsed() >= Duration::from_millis(20));
/// ```
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep {
    /// `None`: no deadline (the duration did not fit an [`Instant`]); it never completes.
    deadline: Option<Instant>,
    key: Option<TimerKey>,
}

impl Sleep {
    /// When it completes; `None` when it never does (see [`sleep`]).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// assert!(jisr::time::sleep(Duration::from_secs(1)).deadline().is_some());
    /// assert_eq!(jisr::time::sleep(Duration::MAX).deadline(), None);
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(deadline) = this.deadline else {
            // No deadline: nothing to register, nothing will ever wake this.
            return Poll::Pending;
        };
        let fired = match this.key {
            None if Instant::now() >= deadline => true,
            None => {
                this.key = Some(timers().insert(deadline, cx.waker()));
                false
            }
            Some(key) => timers().poll(key, cx.waker()),
        };
        if fired {
            if let Some(key) = this.key.take() {
                timers().remove(key);
            }
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            timers().remove(key);
        }
    }
}

/// The deadline of a [`timeout`] passed first.
///
/// ```
/// use std::time::Duration;
/// use jisr::callout::CalloutRequest;
/// # use jisr::testing::TestFilter;
/// use jisr::time::{Elapsed, timeout};
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn geo(_req: Request<'_>, w: ResponseWriter<'_>) {
///     let mut body = Vec::new();
///     let call = w.callout(CalloutRequest::get("geo", "/lookup", "geo.local"), &mut body);
///     match timeout(Duration::from_millis(20), call).await {
///         Ok(_answer) => {}
///         Err(Elapsed) => w.send(504, b"geo lookup too slow\n"), // the callout is abandoned
///     }
/// }
/// fn register(r: &mut Registry) { r.register("geo", geo); }
///
/// let f = TestFilter::new(register, "geo", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true); // the callout is never answered
/// s.wait_scheduled(Duration::from_secs(5));
/// assert_eq!(s.local_reply().unwrap().status, 504);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Runs `future` for at most `duration`: its output, or [`Elapsed`] (the future is dropped,
/// which cancels what it was doing, e.g. a callout's answer is ignored). A duration too large
/// for a deadline (`Duration::MAX`) waits for the future without a limit.
///
/// ```
/// use std::time::Duration;
/// use jisr::callout::CalloutRequest;
/// use jisr::{Request, ResponseWriter};
///
/// async fn bounded(_req: Request<'_>, w: ResponseWriter<'_>) {
///     let mut body = Vec::new();
///     let call = w.callout(CalloutRequest::get("slow", "/", "slow.local"), &mut body);
///     match jisr::time::timeout(Duration::from_millis(300), call).await {
///         Ok(Ok(r)) if r.status == 200 => {}
///         _ => w.send(504, b"slow upstream\n"),
///     }
/// }
/// # let _ = bounded;
/// ```
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    let mut sleep = sleep(duration);
    std::future::poll_fn(|cx: &mut Context<'_>| {
        if let Poll::Ready(out) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match Pin::new(&mut sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Ticks every `period`, the first tick one period from now. A tick that is late does not
/// make later ones come faster: the next is one period after the late one.
pub fn interval(period: Duration) -> Interval {
    Interval {
        period,
        sleep: sleep(period),
    }
}

/// See [`interval`].
///
/// ```
/// use std::time::Duration;
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn heartbeat(_req: Request<'_>, w: ResponseWriter<'_>) {
///     let Ok(mut out) = w.stream(200, &[("content-type", b"text/event-stream")]) else { return };
///     let mut every = jisr::time::interval(Duration::from_millis(5));
///     for _ in 0..3 {
///         every.tick().await;
///         let _ = out.send(b": ping\n\n").await;
///     }
/// } // dropping `out` ends the reply
/// # fn register(r: &mut Registry) { r.register("heartbeat", heartbeat); }
///
/// let f = TestFilter::new(register, "heartbeat", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/events")], true);
/// while !s.streamed_reply().unwrap().ended {
///     assert!(s.wait_scheduled(Duration::from_secs(5)));
/// }
/// assert_eq!(s.streamed_reply().unwrap().data.concat(), b": ping\n\n".repeat(3));
/// ```
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    sleep: Sleep,
}

impl Interval {
    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        (&mut self.sleep).await;
        self.sleep = sleep(self.period);
    }
}
