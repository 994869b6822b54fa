//! The executor: polls handler futures inline on the worker, inside Envoy's hooks.
//!
//! Rules (see the crate docs): a poll happens only inside a hook; a wake during a poll re-polls
//! before the hook returns; a wake at any other time commits one scheduler event (coalesced);
//! the scheduler is created the first time a hook returns with the future pending.

pub(crate) mod pool;
pub(crate) mod waker;

use crate::host::Host;
use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};
use waker::WakeCell;

/// How many times a future that keeps waking itself during its own poll is re-polled inline
/// before the rest is handed to the scheduler (so a busy future cannot pin the worker).
const MAX_INLINE_POLLS: u32 = 32;

/// The host of the hook currently running for one stream (empty between hooks).
#[derive(Default)]
pub(crate) struct HostSlot {
    current: Cell<Option<NonNull<dyn Host + 'static>>>,
}

impl HostSlot {
    /// Makes `host` current for the duration of `f` (re-entrant: restores the previous one).
    pub(crate) fn enter<R>(&self, host: &dyn Host, f: impl FnOnce() -> R) -> R {
        struct Restore<'a> {
            slot: &'a HostSlot,
            prev: Option<NonNull<dyn Host + 'static>>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.slot.current.set(self.prev);
            }
        }
        let ptr: NonNull<dyn Host + '_> = NonNull::from(host);
        // SAFETY: only the lifetime bound changes. The pointer is stored for the duration of
        // `f` and removed by `Restore` (also on unwind) before `host` can go away; `with` hands
        // it out only inside a closure, so no reference escapes.
        let ptr: NonNull<dyn Host + 'static> = unsafe { core::mem::transmute(ptr) };
        let _restore = Restore {
            slot: self,
            prev: self.current.replace(Some(ptr)),
        };
        f()
    }

    /// Runs `f` with the current host; `None` outside hooks (e.g. while a future is dropped at
    /// stream end), where nothing may be called on the stream.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&dyn Host) -> R) -> Option<R> {
        let ptr = self.current.get()?;
        // SAFETY: a stored pointer is valid until `enter` returns (see `enter`); we are inside
        // that call on the same thread because `HostSlot` is `!Sync` and only set there.
        Some(f(unsafe { ptr.as_ref() }))
    }

    /// Whether a hook is running for this stream.
    pub(crate) fn is_set(&self) -> bool {
        self.current.get().is_some()
    }
}

/// How one `drive` ended.
pub(crate) enum Driven {
    /// The future completed.
    Ready,
    /// The future is waiting; a wake will commit a scheduler event.
    Pending,
    /// The future panicked; the payload message is returned.
    Panicked(String),
}

/// Polls `poll` until it completes or waits without a pending wake, creating the stream's
/// scheduler the first time it returns pending.
pub(crate) fn drive(
    cell: &Arc<WakeCell>,
    repolls: &Cell<u64>,
    host: &dyn Host,
    poll: &mut dyn FnMut(&mut Context<'_>) -> Poll<()>,
) -> Driven {
    let waker = waker::waker_ref(cell);
    let mut cx = Context::from_waker(&waker);
    for _ in 0..MAX_INLINE_POLLS {
        cell.begin_poll();
        match panic::catch_unwind(AssertUnwindSafe(|| poll(&mut cx))) {
            Ok(Poll::Ready(())) => {
                cell.end_poll_ready();
                return Driven::Ready;
            }
            Ok(Poll::Pending) => {}
            Err(payload) => {
                cell.end_poll_ready();
                return Driven::Panicked(panic_message(payload.as_ref()));
            }
        }
        if cell.woken_during_poll() {
            // Woken while polling (e.g. a yield): poll again before leaving the hook.
            repolls.set(repolls.get() + 1);
            continue;
        }
        // Only a cloned waker can wake the stream from outside a hook; body data, callouts and
        // watermarks arrive in hooks that poll anyway. So the scheduler is created the first
        // time a pending poll leaves a cloned waker behind (before `POLLING` is cleared, so no
        // wake can slip between).
        if cell.was_cloned() && !cell.has_scheduler() {
            cell.set_scheduler(host.new_scheduler());
        }
        if !cell.end_poll() {
            return Driven::Pending;
        }
        repolls.set(repolls.get() + 1);
    }
    // Still waking itself: let the scheduler bring us back after other work ran.
    if !cell.has_scheduler() {
        cell.set_scheduler(host.new_scheduler());
    }
    cell.end_poll();
    cell.commit();
    Driven::Pending
}

/// Runs `f`, turning a panic into its message.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(p.as_ref()))
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
pub(crate) mod callout;
pub(crate) mod raw_slot;
pub(crate) mod slot;
pub(crate) mod task;
