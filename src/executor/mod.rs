//! The executor: polls handler futures inline on the worker, inside Envoy's hooks.
//!
//! Rules (see the crate docs): a poll happens only inside a hook; a wake during a poll re-polls
//! before the hook returns; a wake at any other time commits one scheduler event (coalesced);
//! the scheduler is created the first time a hook returns with the future pending.
//!
//! A hook that Envoy runs re-entrantly while a poll of the same stream is on the stack (an event
//! delivered inside a call the handler made into Envoy) never polls: it records its event and
//! marks the running poll as woken, so the outer poll loop polls again before its hook returns.

pub(crate) mod arena;
pub(crate) mod background;
pub(crate) mod pool;
pub(crate) mod sched;
pub(crate) mod spare;
pub(crate) mod task;
pub(crate) mod timer;
pub(crate) mod waker;

use sched::Committer;
use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use waker::WakeCell;

/// How many times a future that keeps waking itself during its own poll is re-polled inline
/// before the rest is handed to the scheduler (so a busy future cannot pin the worker).
const MAX_INLINE_POLLS: u32 = 32;

/// How one `drive` ended.
#[derive(Debug)]
pub(crate) enum Driven {
    /// The future completed.
    Ready,
    /// The future is waiting; a wake will commit a scheduler event.
    Pending,
    /// A poll of this stream was already running further up the stack (a re-entrant hook):
    /// nothing was polled; the running poll was marked woken and polls again.
    Nested,
    /// The future panicked; the payload message is returned.
    Panicked(String),
}

/// The executor's per-stream state: the wake cell and the poll bookkeeping.
pub(crate) struct Task {
    /// The stream's wake cell (its `Arc` is what wakers hold).
    pub(crate) wake: Arc<WakeCell>,
    /// A second wake cell, swapped in when a waker of the previous stream is still held.
    spare: Arc<WakeCell>,
    /// A poll of this stream is on the stack.
    polling: Cell<bool>,
    /// Polls of this stream.
    pub(crate) polls: Cell<u64>,
    /// Re-polls inline after a wake during a poll.
    pub(crate) repolls: Cell<u64>,
}

impl Default for Task {
    fn default() -> Self {
        Task {
            wake: Arc::new(WakeCell::default()),
            spare: Arc::new(WakeCell::default()),
            polling: Cell::new(false),
            polls: Cell::new(0),
            repolls: Cell::new(0),
        }
    }
}

impl Task {
    /// Readies the task for a new stream (no future of the previous stream is alive).
    #[inline]
    pub(crate) fn reset(&mut self) {
        waker::recycle(&mut self.wake, &mut self.spare);
        *self.polling.get_mut() = false;
        *self.polls.get_mut() = 0;
        *self.repolls.get_mut() = 0;
    }

    /// Whether `w` is this stream's own waker (the one every top-level poll passes), as opposed
    /// to a waker made by a combinator inside the handler.
    #[inline]
    pub(crate) fn is_own_waker(&self, w: &Waker) -> bool {
        w.will_wake(&waker::waker_ref(&self.wake))
    }

    /// Scheduler events committed for this stream so far.
    #[inline]
    pub(crate) fn commits(&self) -> u64 {
        u64::from(self.wake.commits.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Polls `poll` until it completes or waits without a pending wake.
    ///
    /// `deliver` runs first, inside the poll window: wakes it makes (of wakers registered by the
    /// handler's futures) coalesce into this drive instead of committing scheduler events.
    /// `new_scheduler` creates the stream's scheduler the first time it is needed (`None` when
    /// the stream can no longer be called).
    ///
    /// Generic and inlined: each hook gets its own copy, with `deliver` and `poll` inlined into
    /// it. `deliver` and the first poll run under one panic guard (a panic in either ends the
    /// drive the same way); later polls of the same drive (rare) get one guard each. Scheduler
    /// creation stays outside the guards, as a failure of jisr's rather than the handler's.
    #[inline]
    pub(crate) fn drive(
        &self,
        new_scheduler: impl Fn() -> Option<Committer>,
        deliver: impl FnOnce(),
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<()>,
    ) -> Driven {
        if self.polling.get() {
            return self.drive_nested(deliver);
        }
        let cell = &*self.wake;
        struct Idle<'a>(&'a Cell<bool>);
        impl Drop for Idle<'_> {
            #[inline]
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        self.polling.set(true);
        let _idle = Idle(&self.polling);
        self.polls.set(self.polls.get() + 1);
        let waker = waker::waker_ref(&self.wake);
        let mut cx = Context::from_waker(&waker);
        cell.begin_poll();
        let mut polled = catch(|| {
            deliver();
            poll(&mut cx)
        });
        let mut round = 0;
        loop {
            match polled {
                Ok(Poll::Ready(())) => {
                    cell.end_poll();
                    return Driven::Ready;
                }
                // The common wait: no waker left the worker and none woke during the poll.
                Ok(Poll::Pending) if cell.end_quiet_poll() => return Driven::Pending,
                Ok(Poll::Pending) => {}
                Err(msg) => {
                    cell.end_poll();
                    return Driven::Panicked(msg);
                }
            }
            if cell.woken_during_poll() {
                // Woken while polling (a yield, or an event recorded by a nested hook): poll
                // again before leaving the hook.
                self.repolls.set(self.repolls.get() + 1);
            } else {
                // Only a cloned waker can wake the stream from outside a hook; body data,
                // callouts and watermarks arrive in hooks that poll anyway. So the scheduler is
                // created the first time a pending poll leaves a cloned waker behind (before
                // `POLLING` is cleared, so no wake can slip between).
                if cell.was_cloned() && !cell.has_scheduler() {
                    if let Some(c) = new_scheduler() {
                        cell.set_scheduler(c);
                    }
                }
                if !cell.end_poll() {
                    return Driven::Pending;
                }
                self.repolls.set(self.repolls.get() + 1);
            }
            round += 1;
            if round == MAX_INLINE_POLLS {
                break;
            }
            cell.begin_poll();
            polled = catch(|| poll(&mut cx));
        }
        // Still waking itself: let the scheduler bring us back after other work ran.
        if !cell.has_scheduler() {
            if let Some(c) = new_scheduler() {
                cell.set_scheduler(c);
            }
        }
        cell.end_poll();
        cell.commit();
        Driven::Pending
    }

    /// `drive` re-entered from inside our own poll: record, and let the running poll go again.
    #[cold]
    #[inline(never)]
    fn drive_nested(&self, deliver: impl FnOnce()) -> Driven {
        if let Err(msg) = catch(deliver) {
            return Driven::Panicked(msg);
        }
        self.wake.wake_nested();
        Driven::Nested
    }
}

/// Runs `f`, turning a panic into its message. Never unwinds: a panic payload whose own `Drop`
/// panics is forgotten instead.
#[inline]
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(caught)
}

/// The message of a caught panic; drops its payload.
#[cold]
#[inline(never)]
pub(crate) fn caught(payload: Box<dyn Any + Send>) -> String {
    let msg = panic_message(payload.as_ref());
    drop_payload(payload);
    msg
}

/// Drops a panic payload without letting a panicking `Drop` of it unwind further.
fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // The payload of the payload's panic may be just as hostile: leak it.
        core::mem::forget(again);
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
