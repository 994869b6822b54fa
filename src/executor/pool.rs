//! Reusable stream slots: one allocation per slot, reused for later streams of the same config.
//!
//! A slot is handed to Envoy as a thin pointer and must not move while a stream uses it (handler
//! futures may point into it), so slots are boxed and the box is what the pool keeps.

use std::sync::Mutex;

/// Most idle slots kept per config; slots freed beyond this are deallocated (bounds memory
/// after a burst).
pub(crate) const MAX_IDLE: usize = 1024;

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

impl<T> StatsSource for Pool<T> {
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

    /// Ends a stream: returns its slot for reuse (or frees it when the pool is full, or drops
    /// nothing when `slot` is `None`, i.e. the slot could not be cleaned and is leaked).
    pub(crate) fn put(&self, slot: Option<Box<T>>, totals: StreamTotals) {
        let mut g = self.lock();
        g.stats.in_flight = g.stats.in_flight.saturating_sub(1);
        g.stats.polls += totals.polls;
        g.stats.wakes_inline += totals.wakes_inline;
        g.stats.wakes_scheduled += totals.wakes_scheduled;
        if let Some(slot) = slot {
            if g.idle.len() < MAX_IDLE {
                g.idle.push(slot);
            }
        }
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

// SAFETY: a slot is only moved between threads while idle in the pool: its handler futures
// have been dropped (a slot whose futures could not be dropped is never returned) and its cells
// are reset before reuse, so no thread-bound data crosses threads with it.
unsafe impl<T> Send for Pool<T> {}
// SAFETY: all access to the idle list goes through the mutex; see `Send` for the contents.
unsafe impl<T> Sync for Pool<T> {}
