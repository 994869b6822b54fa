//! The stream waker: a small shared cell that turns wakes into re-polls.
//!
//! One `WakeCell` per stream slot. The waker handed to handler futures is an `Arc` of it
//! (`std::task::Wake`), so cloning a waker never allocates and a waker may outlive its stream:
//! once the stream ends the cell is marked dead and every later wake is a no-op.

use crate::host::Committer;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Wake;

/// The future is being polled on the worker right now.
const POLLING: u32 = 1;
/// A wake arrived since the last poll started.
const WOKEN: u32 = 2;
/// A scheduler event is committed and not yet delivered.
const COMMITTED: u32 = 4;
/// The stream has ended; wakes do nothing.
const DEAD: u32 = 8;

/// Event id used for wake-ups (the only scheduler event jisr commits).
pub(crate) const WAKE_EVENT: u64 = 1;

/// Shared wake state of one stream.
#[derive(Default)]
pub(crate) struct WakeCell {
    state: AtomicU32,
    scheduler: Mutex<Option<Committer>>,
    /// Wakes that had to commit a scheduler event (for introspection and tests).
    pub(crate) commits: AtomicU32,
}

impl WakeCell {
    fn lock(&self) -> MutexGuard<'_, Option<Committer>> {
        self.scheduler.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the start of a poll and forgets earlier wakes (this poll observes them).
    pub(crate) fn begin_poll(&self) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some((s & !WOKEN) | POLLING)
            });
    }

    /// Whether a wake arrived during the current poll (the poll flag stays set).
    pub(crate) fn woken_during_poll(&self) -> bool {
        self.state.load(Ordering::Acquire) & WOKEN != 0
    }

    /// Marks the end of a poll that returned `Pending`; true if a wake arrived during it.
    pub(crate) fn end_poll(&self) -> bool {
        self.state.fetch_and(!POLLING, Ordering::AcqRel) & WOKEN != 0
    }

    /// Marks the end of a poll that completed.
    pub(crate) fn end_poll_ready(&self) {
        self.state.fetch_and(!POLLING, Ordering::AcqRel);
    }

    /// Whether a scheduler exists for this stream.
    pub(crate) fn has_scheduler(&self) -> bool {
        self.lock().is_some()
    }

    /// Installs the stream's scheduler (created lazily by the caller, on the worker).
    pub(crate) fn set_scheduler(&self, committer: Committer) {
        let mut g = self.lock();
        if self.state.load(Ordering::Acquire) & DEAD == 0 {
            *g = Some(committer);
        }
    }

    /// A delivered scheduler event: later wakes may commit again.
    pub(crate) fn delivered(&self) {
        self.state.fetch_and(!COMMITTED, Ordering::AcqRel);
    }

    /// Commits one scheduler event unless one is already pending (wakes coalesce).
    pub(crate) fn commit(&self) {
        if self.state.fetch_or(COMMITTED, Ordering::AcqRel) & (COMMITTED | DEAD) != 0 {
            return;
        }
        let g = self.lock();
        if self.state.load(Ordering::Acquire) & DEAD != 0 {
            return;
        }
        match &*g {
            Some(c) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                c.commit(WAKE_EVENT);
            }
            // No scheduler yet means no poll has returned pending; nothing to resume.
            None => {
                self.state.fetch_and(!COMMITTED, Ordering::AcqRel);
            }
        }
    }

    /// The stream ended: later wakes are no-ops and the scheduler is released.
    pub(crate) fn kill(&self) {
        let mut g = self.lock();
        self.state.fetch_or(DEAD, Ordering::AcqRel);
        drop(g.take());
    }

    /// Readies a cell for a new stream. Only valid when nobody else holds the cell.
    pub(crate) fn reset(&mut self) {
        *self.state.get_mut() = 0;
        *self.commits.get_mut() = 0;
        *self.scheduler.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn wake_inner(&self) {
        let prev = self.state.fetch_or(WOKEN, Ordering::AcqRel);
        if prev & DEAD != 0 || prev & POLLING != 0 {
            // Dead: ignore. Polling: the poll loop re-polls before the hook returns.
            return;
        }
        self.commit();
    }
}

impl Wake for WakeCell {
    fn wake(self: Arc<Self>) {
        self.wake_inner();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_inner();
    }
}

/// Returns a cell ready for a new stream, reusing `cell` when no stale waker holds it.
pub(crate) fn recycle(cell: &mut Arc<WakeCell>) {
    match Arc::get_mut(cell) {
        Some(c) => c.reset(),
        // A waker from the previous stream is still out there: leave that cell to it (it is
        // dead, so its wakes are no-ops) and start a fresh one. Rare; allocates once.
        None => *cell = Arc::new(WakeCell::default()),
    }
}
