//! Per-config figures for introspection: the counters a config keeps beside its slot pool,
//! and the snapshot introspection reads.

use crate::executor::pool::PoolStats;
use std::sync::atomic::{AtomicU64, Ordering};

/// Figures of one filter config (all its workers).
///
/// ```
/// use jisr::stats::{FilterStatsSnapshot, filter_stats};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn hello(mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     let _ = req.set_header("x-hello", "world");
/// }
/// fn register(r: &mut Registry) { r.register("hello", hello); }
///
/// let f = TestFilter::new(register, "hello", b"").unwrap();
/// for _ in 0..3 {
///     f.stream().request_headers(&[(":path", "/")], true);
/// }
/// let stats: FilterStatsSnapshot = f.stats();
/// assert_eq!((stats.streams, stats.in_flight, stats.panics), (3, 0, 0));
/// assert_eq!(stats.slots_allocated, 1); // one stream at a time: one slot, reused
/// // The same figures, as the module's introspection sees every live config:
/// assert!(filter_stats().iter().any(|(name, s)| name == "hello" && *s == stats));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterStatsSnapshot {
    /// Streams started.
    pub streams: u64,
    /// Streams not yet destroyed.
    pub in_flight: u64,
    /// Handler polls of finished streams.
    pub polls: u64,
    /// Stream slots ever allocated (slots are reused; this grows only with concurrency).
    pub slots_allocated: u64,
    /// Idle slots kept for reuse (at most 256 per worker and config).
    pub idle_slots: u64,
    /// Handler panics caught.
    pub panics: u64,
    /// Wakes during a poll, answered by an inline re-poll.
    pub wakes_inline: u64,
    /// Wakes that went through Envoy's scheduler.
    pub wakes_scheduled: u64,
    /// Destructors of handler futures that panicked (caught; the slot was still reused).
    pub drop_panics: u64,
    /// Failures inside jisr itself, each failed closed (500 or reset).
    pub internal_failures: u64,
    /// Slots that could not be cleaned and were leaked (not expected; the config refuses new
    /// streams after 64).
    pub slots_leaked: u64,
}

impl FilterStatsSnapshot {
    pub(crate) fn new(pool: PoolStats, stats: &FilterStats) -> Self {
        FilterStatsSnapshot {
            streams: pool.streams,
            in_flight: pool.in_flight,
            polls: pool.polls,
            slots_allocated: pool.allocated,
            idle_slots: pool.idle,
            panics: stats.panics.load(Ordering::Relaxed),
            wakes_inline: pool.wakes_inline,
            wakes_scheduled: pool.wakes_scheduled,
            drop_panics: stats.drop_panics.load(Ordering::Relaxed),
            internal_failures: stats.internal_failures.load(Ordering::Relaxed),
            slots_leaked: pool.leaked,
        }
    }
}

/// Introspection counters of one filter config that are not kept by its slot pool.
#[derive(Debug, Default)]
pub(crate) struct FilterStats {
    pub(crate) panics: AtomicU64,
    /// Destructors of handler futures (or their values) that panicked; caught, and the slot
    /// was still cleaned and reused.
    pub(crate) drop_panics: AtomicU64,
    /// Panics inside jisr itself, failed closed.
    pub(crate) internal_failures: AtomicU64,
}

impl FilterStats {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
