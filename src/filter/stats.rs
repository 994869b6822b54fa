//! Per-config figures for introspection, and their mirror in Envoy stats.

use crate::executor::pool::{PoolStats, StatsSource};
use crate::filter::core::{FilterMeta, FilterStats};
use crate::host::{ConfigHost, Host, MetricKind, MetricOp};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Figures of one filter config (all its workers).
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

struct Live {
    meta: Weak<FilterMeta>,
    pool: Weak<dyn StatsSource>,
}

static LIVE: Mutex<Vec<Live>> = Mutex::new(Vec::new());

/// Records a filter config so introspection can find it (until it is destroyed).
pub(crate) fn register_live(meta: &Arc<FilterMeta>, pool: Arc<dyn StatsSource>) {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|l| l.meta.strong_count() > 0);
    live.push(Live {
        meta: Arc::downgrade(meta),
        pool: Arc::downgrade(&pool),
    });
}

/// The figures of every live filter config of this module, by filter name (a name appears once
/// per Envoy filter config using it).
pub fn filter_stats() -> Vec<(String, FilterStatsSnapshot)> {
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.iter()
        .filter_map(|l| {
            let (meta, pool) = (l.meta.upgrade()?, l.pool.upgrade()?);
            Some((
                meta.name.clone(),
                FilterStatsSnapshot::new(pool.stats(), &meta.stats),
            ))
        })
        .collect()
}

/// Envoy metrics mirroring a config's figures (metric ids from `define_metric`).
pub(crate) struct EnvoyStats {
    streams: usize,
    polls: usize,
    panics: usize,
    wakes: usize,
    in_flight: usize,
    idle: usize,
    tick: AtomicU32,
    last: Mutex<FilterStatsSnapshot>,
}

/// Finished streams between two flushes to Envoy.
const FLUSH_EVERY: u32 = 16;

impl EnvoyStats {
    /// Defines the metrics; the error names the metric Envoy refused and its result code.
    pub(crate) fn define(host: &dyn ConfigHost) -> Result<EnvoyStats, String> {
        let def = |kind, name: &str, labels: &[&str]| {
            host.define_metric(kind, name, labels)
                .map_err(|rc| format!("defining {name} failed (result {rc})"))
        };
        Ok(EnvoyStats {
            streams: def(MetricKind::Counter, "jisr_streams_total", &["filter"])?,
            polls: def(MetricKind::Counter, "jisr_polls_total", &["filter"])?,
            panics: def(MetricKind::Counter, "jisr_panics_total", &["filter"])?,
            wakes: def(MetricKind::Counter, "jisr_wakes_total", &["filter", "path"])?,
            in_flight: def(MetricKind::Gauge, "jisr_streams_in_flight", &["filter"])?,
            idle: def(MetricKind::Gauge, "jisr_idle_slots", &["filter"])?,
            tick: AtomicU32::new(0),
            last: Mutex::new(FilterStatsSnapshot::default()),
        })
    }

    /// Called when a stream finishes (on the worker, with its host): every `FLUSH_EVERY`
    /// streams, adds what changed since the last flush.
    pub(crate) fn on_stream_end(
        &self,
        host: &dyn Host,
        name: &str,
        now: impl FnOnce() -> FilterStatsSnapshot,
    ) {
        if self.tick.fetch_add(1, Ordering::Relaxed) % FLUSH_EVERY != 0 {
            return;
        }
        let now = now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let f = name.as_bytes();
        let add = |id: usize, labels: &[&[u8]], d: u64| {
            if d > 0 {
                host.metric(MetricOp::CounterAdd, id, labels, d);
            }
        };
        add(self.streams, &[f], now.streams.saturating_sub(last.streams));
        add(self.polls, &[f], now.polls.saturating_sub(last.polls));
        add(self.panics, &[f], now.panics.saturating_sub(last.panics));
        add(
            self.wakes,
            &[f, b"inline"],
            now.wakes_inline.saturating_sub(last.wakes_inline),
        );
        add(
            self.wakes,
            &[f, b"scheduler"],
            now.wakes_scheduled.saturating_sub(last.wakes_scheduled),
        );
        // The stream being finished is still counted in flight; Envoy shows the settled value.
        host.metric(
            MetricOp::GaugeSet,
            self.in_flight,
            &[f],
            now.in_flight.saturating_sub(1),
        );
        host.metric(MetricOp::GaugeSet, self.idle, &[f], now.idle_slots);
        *last = now;
    }
}
