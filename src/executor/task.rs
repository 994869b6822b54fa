//! Inline storage for one handler future.

use std::cell::{Cell, UnsafeCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Holds at most one future in place and polls it there.
///
/// A `TaskCell` lives inside a boxed stream slot that never moves while a stream uses it, so the
/// future it holds is pinned from `set` until it is dropped by `clear`/`set`/drop.
pub struct TaskCell<F> {
    fut: UnsafeCell<Option<F>>,
    busy: Cell<bool>,
}

impl<F> Default for TaskCell<F> {
    fn default() -> Self {
        TaskCell {
            fut: UnsafeCell::new(None),
            busy: Cell::new(false),
        }
    }
}

impl<F: Future> TaskCell<F> {
    /// Stores a new future (dropping any old one). Ignored while the cell is being polled.
    pub(crate) fn set(&self, f: F) {
        if self.busy.get() {
            return;
        }
        self.busy.set(true);
        // SAFETY: not busy, so no `poll` or `clear` holds a reference into the cell; the old
        // value is dropped in place, which is allowed for pinned data.
        unsafe { *self.fut.get() = Some(f) };
        self.busy.set(false);
    }

    /// Polls the stored future; `Ready(None)` for an empty cell. A re-entrant poll (from inside
    /// the future's own poll) reports pending without touching the future.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        if self.busy.get() {
            return Poll::Pending;
        }
        self.busy.set(true);
        struct Idle<'a>(&'a Cell<bool>);
        impl Drop for Idle<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _idle = Idle(&self.busy);
        // SAFETY: `busy` excludes every other access for the duration of this borrow; the
        // future never moves while stored (see the type docs), so pinning it here is sound.
        let slot = unsafe { &mut *self.fut.get() };
        let Some(fut) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        // SAFETY: see above: the value stays at this address until dropped in place.
        let fut = unsafe { Pin::new_unchecked(fut) };
        match fut.poll(cx) {
            Poll::Ready(v) => {
                *slot = None;
                Poll::Ready(Some(v))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Drops the stored future. Returns false (and does nothing) while the cell is being polled.
    pub(crate) fn clear(&self) -> bool {
        if self.busy.get() {
            return false;
        }
        self.busy.set(true);
        struct Idle<'a>(&'a Cell<bool>);
        impl Drop for Idle<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _idle = Idle(&self.busy);
        // SAFETY: `busy` excludes other accesses; dropping in place keeps the pin contract.
        let taken = unsafe { &mut *self.fut.get() };
        *taken = None;
        true
    }
}
