//! Introspection: what a filter config is doing.

use crate::executor::pool::PoolStats;
use crate::filter::core::FilterStats;
use std::sync::atomic::Ordering;

/// Figures of one filter config (all its workers), for operators and tests.
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
    /// Idle slots kept for reuse (at most 1024 per config).
    pub idle_slots: u64,
    /// Handler panics caught.
    pub panics: u64,
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
        }
    }
}
