//! Reusable stream slots: one allocation per slot, reused for later streams of the same config.
//!
//! A slot is handed to Envoy as a thin pointer and must not move while a stream uses it (handler
//! futures may point into it), so slots are boxed and the box is what the pool keeps.

use std::sync::Mutex;

/// Most idle slots kept per config; slots freed beyond this are deallocated (bounds memory
/// after a burst).
pub(crate) const MAX_IDLE: usize = 1024;

/// Most slots a config may leak (slots whose futures could not be dropped; not expected to
/// happen) before it refuses new streams instead of leaking more.
pub(crate) const MAX_LEAKED: u64 = 64;

/// Counts kept with the idle list, under the same lock (no extra atomics per request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PoolStats {
    /// Streams started.
    pub(crate) streams: u64,
    /// Streams not yet destroyed.
    pub(crate) in_flight: u64,
    /// Polls of destroyed streams.
    pub(crate) polls: u64,
    /// Slots ever allocated.
    pub(crate) allocated: u64,
    /// Idle slots.
    pub(crate) idle: u64,
    /// Re-polls inline because a wake arrived during a poll.
    pub(crate) wakes_inline: u64,
    /// Wakes that went through Envoy's scheduler.
    pub(crate) wakes_scheduled: u64,
    /// Slots that could not be cleaned and were leaked instead of reused.
    pub(crate) leaked: u64,
}

/// What one finished stream adds to its pool's counts.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StreamTotals {
    pub(crate) polls: u64,
    pub(crate) wakes_inline: u64,
    pub(crate) wakes_scheduled: u64,
}

/// Anything that can report pool counts (type-erased pools, for introspection).
pub(crate) trait StatsSource: Send + Sync {
    fn stats(&self) -> PoolStats;
}

impl<T: Idle> StatsSource for Pool<T> {
    fn stats(&self) -> PoolStats {
        Pool::stats(self)
    }
}

struct Inner<T> {
    idle: Vec<Box<T>>,
    stats: PoolStats,
}

/// Idle slots of one filter config.
pub(crate) struct Pool<T> {
    inner: Mutex<Inner<T>>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            inner: Mutex::new(Inner {
                idle: Vec::new(),
                stats: PoolStats::default(),
            }),
        }
    }
}

impl<T> Pool<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes an idle slot, or makes one with `new`; counts a started stream.
    pub(crate) fn take_or(&self, new: impl FnOnce() -> Box<T>) -> Box<T> {
        let taken = {
            let mut g = self.lock();
            g.stats.streams += 1;
            g.stats.in_flight += 1;
            let slot = g.idle.pop();
            if slot.is_none() {
                g.stats.allocated += 1;
            }
            slot
        };
        taken.unwrap_or_else(new)
    }

    /// Ends a stream: returns its (idle) slot for reuse, or frees it when the pool is full.
    pub(crate) fn put(&self, slot: Box<T>, totals: StreamTotals) {
        let mut g = self.lock();
        g.stats.in_flight = g.stats.in_flight.saturating_sub(1);
        g.stats.polls += totals.polls;
        g.stats.wakes_inline += totals.wakes_inline;
        g.stats.wakes_scheduled += totals.wakes_scheduled;
        if g.idle.len() < MAX_IDLE {
            g.idle.push(slot);
            return;
        }
        drop(g);
        drop(slot);
    }

    /// Ends a stream whose slot could not be cleaned (a future still borrowed): it is leaked,
    /// never reused or freed, and counted. Returns how many this pool leaked so far.
    pub(crate) fn leak(&self, slot: Box<T>, totals: StreamTotals) -> u64 {
        let mut g = self.lock();
        g.stats.in_flight = g.stats.in_flight.saturating_sub(1);
        g.stats.polls += totals.polls;
        g.stats.leaked += 1;
        let n = g.stats.leaked;
        drop(g);
        Box::leak(slot);
        n
    }

    /// Slots leaked so far.
    pub(crate) fn leaked(&self) -> u64 {
        self.lock().stats.leaked
    }

    /// Sum of `f` over the idle slots.
    pub(crate) fn idle_sum(&self, f: impl Fn(&T) -> usize) -> usize {
        self.lock().idle.iter().map(|s| f(s)).sum()
    }

    /// Number of idle slots.
    pub(crate) fn idle(&self) -> usize {
        self.lock().idle.len()
    }

    /// The counts, with the idle size.
    pub(crate) fn stats(&self) -> PoolStats {
        let g = self.lock();
        PoolStats {
            idle: g.idle.len() as u64,
            ..g.stats
        }
    }

    /// Hands a slot to Envoy as a thin pointer.
    pub(crate) fn into_raw(slot: Box<T>) -> *mut T {
        Box::into_raw(slot)
    }

    /// Takes back a slot handed out with [`Pool::into_raw`].
    ///
    /// # Safety
    /// `ptr` must come from `into_raw` of this `T` and not have been taken back before.
    pub(crate) unsafe fn from_raw(ptr: *const T) -> Box<T> {
        // SAFETY: guaranteed by the caller.
        unsafe { Box::from_raw(ptr as *mut T) }
    }
}

/// Slot types that may wait in a pool shared by all workers.
///
/// # Safety
/// A value handed to [`Pool::put`] must be idle: everything in it that is bound to one thread
/// (handler futures, per-stream filters, anything holding references to the stream) has been
/// dropped, so what remains (plain data, `Send` wakers, pointers to `Sync` config) may move to,
/// and be dropped on, another thread.
pub(crate) unsafe trait Idle {}

// SAFETY: only idle values (see `Idle`) are ever stored, and a stored value is only touched by
// the thread that takes it out.
unsafe impl<T: Idle> Send for Pool<T> {}
// SAFETY: all access to the idle list goes through the mutex; see `Send` for the contents.
unsafe impl<T: Idle> Sync for Pool<T> {}
