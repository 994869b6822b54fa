//! Inline storage for one handler future.

use std::cell::{Cell, UnsafeCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// How dropping a stored future went.
#[derive(Debug, PartialEq, Eq)]
pub enum Cleared {
    /// Dropped (or nothing was stored).
    Clean,
    /// Not dropped: the cell is being polled right now.
    Busy,
    /// Dropped, but its destructor panicked (the message); the cell is empty anyway.
    Panicked(String),
}

impl Cleared {
    /// Combines two outcomes, keeping the first that is not clean.
    #[inline]
    pub(crate) fn and(self, other: Cleared) -> Cleared {
        match self {
            Cleared::Clean => other,
            first => first,
        }
    }
}

/// Holds at most one future in place and polls it there.
///
/// A `TaskCell` lives inside a boxed stream slot that never moves while a stream uses it, so the
/// future it holds is pinned from `set` until it is dropped in place by `clear`/`set`/completion.
/// A destructor that panics is caught and the cell is still left empty, never holding a value
/// that was already dropped.
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

/// Clears the busy flag when dropped (also on unwind).
struct Busy<'a>(&'a Cell<bool>);

impl Drop for Busy<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<F> TaskCell<F> {
    /// Drops the value in `slot` in place and leaves `None`, even if the destructor panics.
    ///
    /// # Safety
    /// `slot` is the cell's storage, exclusively borrowed by the caller (the cell is busy).
    unsafe fn empty(slot: *mut Option<F>) -> Cleared {
        // SAFETY: guaranteed by the caller.
        let Some(fut) = (unsafe { &mut *slot }).as_mut() else {
            return Cleared::Clean;
        };
        let fut: *mut F = fut;
        // SAFETY: `fut` is a live, pinned value; it is dropped in place (pinning allows that)
        // exactly once: whether or not its destructor unwinds, the `Option` is overwritten with
        // `None` below without running any destructor again. A destructor that unwinds has
        // still dropped the rest of the value (Rust's drop glue continues on unwind).
        let dropped = super::catch(|| unsafe { core::ptr::drop_in_place(fut) });
        // SAFETY: `slot` is valid for writes (see above); the old value is already dropped.
        unsafe { core::ptr::write(slot, None) };
        match dropped {
            Ok(()) => Cleared::Clean,
            Err(msg) => Cleared::Panicked(msg),
        }
    }

    /// Drops the stored future in place. Does nothing (`Busy`) while the cell is being polled.
    #[inline]
    pub(crate) fn clear(&self) -> Cleared {
        if self.busy.get() {
            return Cleared::Busy;
        }
        // SAFETY: not busy, so no `&mut` to the storage exists (`poll` and `clear` hold one
        // only while busy); this shared read ends before anything else runs.
        if unsafe { (*self.fut.get()).is_none() } {
            // Usually: the future completed (and was dropped) or never started.
            return Cleared::Clean;
        }
        self.clear_stored()
    }

    /// `clear` of a cell that holds a future.
    #[inline(never)]
    fn clear_stored(&self) -> Cleared {
        self.busy.set(true);
        let _busy = Busy(&self.busy);
        // SAFETY: `busy` excludes every other access to the storage for this call.
        unsafe { Self::empty(self.fut.get()) }
    }
}

impl<F: Future> TaskCell<F> {
    /// Stores a new future after dropping any old one. Ignored (`Busy`, and `f` is dropped)
    /// while the cell is being polled.
    #[inline]
    pub(crate) fn set(&self, f: F) -> Cleared {
        let cleared = self.clear();
        if cleared == Cleared::Busy {
            return cleared;
        }
        // SAFETY: not busy (checked by `clear` on this thread, nothing ran since), and the
        // storage holds `None`, so nothing is dropped by the assignment.
        unsafe { core::ptr::write(self.fut.get(), Some(f)) };
        cleared
    }

    /// Polls the stored future; `Ready(None)` for an empty cell. A re-entrant poll (from inside
    /// the future's own poll) reports pending without touching the future.
    #[inline]
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        if self.busy.get() {
            return Poll::Pending;
        }
        self.busy.set(true);
        let _busy = Busy(&self.busy);
        let slot = self.fut.get();
        // SAFETY: `busy` excludes every other access for the duration of this borrow.
        let Some(fut) = (unsafe { &mut *slot }).as_mut() else {
            return Poll::Ready(None);
        };
        // SAFETY: the value stays at this address until dropped in place (see the type docs).
        let fut = unsafe { Pin::new_unchecked(fut) };
        match fut.poll(cx) {
            Poll::Ready(v) => {
                if !core::mem::needs_drop::<F>() {
                    // No drop glue, so dropping cannot panic: no guard needed.
                    // SAFETY: still busy (no other access to the storage); the `Some` is
                    // dropped in place (which runs no code for such an `F`) and overwritten.
                    unsafe {
                        core::ptr::drop_in_place(slot);
                        core::ptr::write(slot, None);
                    }
                    return Poll::Ready(Some(v));
                }
                // SAFETY: still busy; the future is done and is dropped in place now.
                if let Cleared::Panicked(msg) = unsafe { Self::empty(slot) } {
                    drop(v);
                    std::panic::resume_unwind(Box::new(msg));
                }
                Poll::Ready(Some(v))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
