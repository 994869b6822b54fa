//! Reusable stream slots: one allocation per slot, reused for later streams of the same config.
//!
//! A slot is handed to Envoy as a thin pointer and must not move while a stream uses it (handler
//! futures may point into it), so slots are boxed and the box is what the pool keeps.
//!
//! Each thread that starts or ends streams (Envoy's workers) has a lane of its own in every
//! pool: a free list and counters that only that thread writes. Taking and returning a slot is
//! then a plain `Vec` pop/push with no lock and no atomic read-modify-write, and slots stay on
//! the worker that uses them. A thread gets its lane number the first time it touches any pool
//! and keeps it for its life, so a lane is owned by exactly one thread by construction
//! (whatever Envoy's worker index says). Threads beyond [`LANES`] share one locked lane.

use std::cell::UnsafeCell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Most idle slots kept per lane (worker) and config; slots freed beyond this are deallocated
/// (bounds memory after a burst).
pub(crate) const MAX_IDLE: usize = 256;

/// Threads with a lane of their own; later threads share the locked overflow lane.
pub(crate) const LANES: usize = 64;

/// Most slots a config may leak (slots whose futures could not be dropped; not expected to
/// happen) before it refuses new streams instead of leaking more.
pub(crate) const MAX_LEAKED: u64 = 64;

/// Counts of a pool (all lanes).
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

/// One lane's counts (see [`Pool::own_lane`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LaneTotals {
    pub(crate) started: u64,
    pub(crate) ended: u64,
    pub(crate) polls: u64,
    pub(crate) wakes_inline: u64,
    pub(crate) wakes_scheduled: u64,
    pub(crate) idle: u64,
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

/// Counters of one lane: written only by the lane's thread (a relaxed load then store, no
/// read-modify-write), read by anyone. Started and ended streams of one stream may be counted
/// on different lanes; only the sums mean something.
#[derive(Default)]
struct Counters {
    started: AtomicU64,
    ended: AtomicU64,
    polls: AtomicU64,
    allocated: AtomicU64,
    idle: AtomicU64,
    wakes_inline: AtomicU64,
    wakes_scheduled: AtomicU64,
}

/// Adds `n` to a counter only this thread writes.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// One thread's lane, on its own cache lines.
#[repr(align(128))]
struct Lane<T> {
    idle: UnsafeCell<Vec<Box<T>>>,
    counts: Counters,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane {
            idle: UnsafeCell::new(Vec::new()),
            counts: Counters::default(),
        }
    }
}

/// Idle slots of one filter config.
pub(crate) struct Pool<T> {
    lanes: Box<[Lane<T>]>,
    /// The lane of threads without one of their own (and its counters, under the lock).
    overflow: Mutex<(Vec<Box<T>>, PoolStats)>,
    leaked: AtomicU64,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            lanes: (0..LANES).map(|_| Lane::default()).collect(),
            overflow: Mutex::new((Vec::new(), PoolStats::default())),
            leaked: AtomicU64::new(0),
        }
    }
}

/// The calling thread's lane number (assigned once per thread), or `None` past [`LANES`].
#[inline]
pub(crate) fn lane_index() -> Option<usize> {
    // A const-initialised cell without a destructor: every access is a plain thread-local load.
    // `usize::MAX` until the thread first asks; `LANES` once it asked and got no lane.
    let lane = LANE.with(|l| l.get());
    if lane < LANES {
        return Some(lane);
    }
    assign_lane(lane)
}

thread_local! {
    static LANE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// First call on a thread (gives it the next lane number, for good), and threads without a
/// lane.
#[cold]
#[inline(never)]
fn assign_lane(lane: usize) -> Option<usize> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    if lane != usize::MAX {
        return None;
    }
    let next = NEXT.fetch_add(1, Ordering::Relaxed);
    let lane = next.min(LANES);
    LANE.with(|l| l.set(lane));
    (lane < LANES).then_some(lane)
}

impl<T> Pool<T> {
    /// Runs `f` on the calling thread's own idle list and counters, or on the shared overflow
    /// lane (under its lock) for threads without a lane.
    #[inline]
    fn with_lane<R>(&self, f: impl FnOnce(&mut Vec<Box<T>>, LaneCounts<'_>) -> R) -> R {
        match lane_index() {
            Some(i) => {
                let lane = &self.lanes[i];
                // SAFETY: lane `i` belongs to this thread alone (`lane_index` hands each number
                // to one thread, for good), and `f` cannot re-enter the pool (it only moves
                // boxes and counts), so this is the only reference to the list.
                let idle = unsafe { &mut *lane.idle.get() };
                f(idle, LaneCounts::Own(&lane.counts))
            }
            None => {
                let mut g = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
                let (idle, stats) = &mut *g;
                f(idle, LaneCounts::Shared(stats))
            }
        }
    }

    /// Takes an idle slot, or makes one with `new`; counts a started stream.
    #[inline]
    pub(crate) fn take_or(&self, new: impl FnOnce() -> Box<T>) -> Box<T> {
        let taken = self.with_lane(|idle, counts| {
            let slot = idle.pop();
            counts.started(slot.is_none(), idle.len());
            slot
        });
        match taken {
            Some(slot) => slot,
            None => cold(new),
        }
    }

    /// Ends a stream: returns its (idle) slot for reuse, or frees it when the lane is full.
    #[inline]
    pub(crate) fn put(&self, slot: Box<T>, totals: StreamTotals) {
        let spill = self.with_lane(|idle, counts| {
            let spill = if idle.len() < MAX_IDLE {
                idle.push(slot);
                None
            } else {
                Some(slot)
            };
            counts.ended(totals, idle.len());
            spill
        });
        drop(spill);
    }

    /// Ends a stream whose slot could not be cleaned (a future still borrowed): it is leaked,
    /// never reused or freed, and counted. Returns how many this pool leaked so far.
    pub(crate) fn leak(&self, slot: Box<T>, totals: StreamTotals) -> u64 {
        self.with_lane(|idle, counts| counts.ended(totals, idle.len()));
        Box::leak(slot);
        self.leaked.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The calling thread's own lane counts (`None` for a thread without a lane): streams
    /// started and ended on this lane, their polls and wakes, and its idle slots. Reads nothing
    /// another thread writes.
    pub(crate) fn own_lane(&self) -> Option<LaneTotals> {
        let c = &self.lanes[lane_index()?].counts;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Some(LaneTotals {
            started: load(&c.started),
            ended: load(&c.ended),
            polls: load(&c.polls),
            wakes_inline: load(&c.wakes_inline),
            wakes_scheduled: load(&c.wakes_scheduled),
            idle: load(&c.idle),
        })
    }

    /// Slots leaked so far.
    pub(crate) fn leaked(&self) -> u64 {
        self.leaked.load(Ordering::Relaxed)
    }

    /// Number of idle slots (all lanes).
    #[cfg(feature = "testing")]
    pub(crate) fn idle(&self) -> usize {
        self.stats().idle as usize
    }

    /// The counts, summed over the lanes.
    pub(crate) fn stats(&self) -> PoolStats {
        let mut s = {
            let g = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
            PoolStats {
                idle: g.0.len() as u64,
                ..g.1
            }
        };
        let (mut started, mut ended) = (s.streams, s.streams.wrapping_sub(s.in_flight));
        for lane in self.lanes.iter() {
            let c = &lane.counts;
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            started = started.wrapping_add(load(&c.started));
            ended = ended.wrapping_add(load(&c.ended));
            s.polls = s.polls.wrapping_add(load(&c.polls));
            s.allocated = s.allocated.wrapping_add(load(&c.allocated));
            s.idle = s.idle.wrapping_add(load(&c.idle));
            s.wakes_inline = s.wakes_inline.wrapping_add(load(&c.wakes_inline));
            s.wakes_scheduled = s.wakes_scheduled.wrapping_add(load(&c.wakes_scheduled));
        }
        s.streams = started;
        s.in_flight = started.saturating_sub(ended);
        s.leaked = self.leaked();
        s
    }

    /// Sum of `f` over the idle slots of the calling thread's lane and the overflow lane.
    #[cfg(feature = "testing")]
    pub(crate) fn idle_sum(&self, f: impl Fn(&T) -> usize) -> usize {
        let own = self.with_lane(|idle, _| idle.iter().map(|s| f(s)).sum::<usize>());
        let shared = if lane_index().is_some() {
            let g = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
            g.0.iter().map(|s| f(s)).sum()
        } else {
            0
        };
        own + shared
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

/// Calls `f` out of line: for paths taken once per slot (allocating one), kept away from the
/// per-stream code around them.
#[cold]
#[inline(never)]
fn cold<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The counters a lane operation updates.
enum LaneCounts<'a> {
    /// The thread's own lane: single-writer atomics.
    Own(&'a Counters),
    /// The overflow lane: plain counts under its lock.
    Shared(&'a mut PoolStats),
}

impl LaneCounts<'_> {
    #[inline]
    fn started(self, allocated: bool, idle: usize) {
        match self {
            LaneCounts::Own(c) => {
                bump(&c.started, 1);
                bump(&c.allocated, u64::from(allocated));
                c.idle.store(idle as u64, Ordering::Relaxed);
            }
            LaneCounts::Shared(s) => {
                s.streams += 1;
                s.in_flight += 1;
                s.allocated += u64::from(allocated);
            }
        }
    }

    #[inline]
    fn ended(self, t: StreamTotals, idle: usize) {
        match self {
            LaneCounts::Own(c) => {
                bump(&c.ended, 1);
                bump(&c.polls, t.polls);
                bump(&c.wakes_inline, t.wakes_inline);
                bump(&c.wakes_scheduled, t.wakes_scheduled);
                c.idle.store(idle as u64, Ordering::Relaxed);
            }
            LaneCounts::Shared(s) => {
                s.in_flight = s.in_flight.saturating_sub(1);
                s.polls += t.polls;
                s.wakes_inline += t.wakes_inline;
                s.wakes_scheduled += t.wakes_scheduled;
            }
        }
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

// SAFETY: only idle values (see `Idle`) are ever stored; a lane's list is only touched by the
// thread that owns the lane (see `with_lane`), and the pool is dropped on whatever thread drops
// the config, once no stream uses it.
unsafe impl<T: Idle> Send for Pool<T> {}
// SAFETY: lanes are per thread (see `with_lane`), counters are atomics, the overflow lane is
// under a mutex; see `Send` for the contents.
unsafe impl<T: Idle> Sync for Pool<T> {}
