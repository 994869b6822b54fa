//! Introspection: what each filter config is doing, for operators and tests.
//!
//! Every jisr filter config keeps counts in its slot pool (no extra atomics per request). They
//! are reachable three ways: [`filter_stats`] in code, the built-in `jisr_introspection` filter
//! (`/jisr/healthz`, `/jisr/version`, `/jisr/stats` answered from local replies, meant for an
//! admin listener), and Envoy stats (`dynamicmodulescustom.jisr_*{filter=…}`, flushed every
//! 16 finished streams; opt out with [`Registry::envoy_stats`](crate::Registry::envoy_stats)).

use crate::api::config::{ConfigError, ConfigHandle};
use crate::api::metrics::{Counter, Gauge};
use crate::api::request::Request;
use crate::api::writer::ResponseWriter;
use crate::executor::pool::{PoolStats, StatsSource};
use crate::filter::core::{FilterMeta, FilterStats};
use crate::host::{Host, MetricOp};
use std::fmt::Write as _;
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

/// Envoy metrics mirroring a config's figures.
pub(crate) struct EnvoyStats {
    streams: Counter,
    polls: Counter,
    panics: Counter,
    wakes: Counter,
    in_flight: Gauge,
    idle: Gauge,
    tick: AtomicU32,
    last: Mutex<FilterStatsSnapshot>,
}

/// Finished streams between two flushes to Envoy.
const FLUSH_EVERY: u32 = 16;

impl EnvoyStats {
    pub(crate) fn define(cfg: &mut ConfigHandle<'_>) -> Result<EnvoyStats, ConfigError> {
        Ok(EnvoyStats {
            streams: cfg.counter("jisr_streams_total", &["filter"])?,
            polls: cfg.counter("jisr_polls_total", &["filter"])?,
            panics: cfg.counter("jisr_panics_total", &["filter"])?,
            wakes: cfg.counter("jisr_wakes_total", &["filter", "path"])?,
            in_flight: cfg.gauge("jisr_streams_in_flight", &["filter"])?,
            idle: cfg.gauge("jisr_idle_slots", &["filter"])?,
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
        let add = |c: Counter, labels: &[&[u8]], d: u64| {
            if d > 0 {
                host.metric(MetricOp::CounterAdd, c.id, labels, d);
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
            self.in_flight.id,
            &[f],
            now.in_flight.saturating_sub(1),
        );
        host.metric(MetricOp::GaugeSet, self.idle.id, &[f], now.idle_slots);
        *last = now;
    }
}

/// Name of the built-in introspection filter.
pub const INTROSPECTION_FILTER: &str = "jisr_introspection";

/// The built-in introspection filter: answers `/jisr/healthz`, `/jisr/version` and
/// `/jisr/stats` with local replies; other paths pass.
pub(crate) async fn introspection(req: Request<'_>, w: ResponseWriter<'_>) {
    let path = req.path().unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    match path {
        "/jisr/healthz" => w.send_with(
            200,
            &[("content-type", b"text/plain")],
            b"ok\n",
            INTROSPECTION_FILTER,
        ),
        "/jisr/version" => {
            let body = format!(
                "{{\"jisr\":\"{}\",\"envoy_abi\":\"{}\"}}\n",
                env!("CARGO_PKG_VERSION"),
                crate::abi::hooks::ABI_VERSION.to_str().unwrap_or("")
            );
            w.send_with(
                200,
                &[("content-type", b"application/json")],
                body.as_bytes(),
                INTROSPECTION_FILTER,
            )
        }
        "/jisr/stats" => {
            let mut body = String::from("{\"filters\":[");
            for (i, (name, s)) in filter_stats().iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                let _ = write!(
                    body,
                    "{{\"filter\":\"{}\",\"streams\":{},\"in_flight\":{},\"polls\":{},\"slots_allocated\":{},\"idle_slots\":{},\"panics\":{},\"wakes_inline\":{},\"wakes_scheduled\":{},\"drop_panics\":{},\"internal_failures\":{},\"slots_leaked\":{}}}",
                    name.escape_default(),
                    s.streams,
                    s.in_flight,
                    s.polls,
                    s.slots_allocated,
                    s.idle_slots,
                    s.panics,
                    s.wakes_inline,
                    s.wakes_scheduled,
                    s.drop_panics,
                    s.internal_failures,
                    s.slots_leaked
                );
            }
            body.push_str("]}\n");
            w.send_with(
                200,
                &[("content-type", b"application/json")],
                body.as_bytes(),
                INTROSPECTION_FILTER,
            )
        }
        _ => {}
    }
}
