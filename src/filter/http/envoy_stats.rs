//! Envoy metrics mirroring a filter config's figures (`jisr_streams_total` and friends).
//!
//! Workers only count, in their own pool lanes. Where Envoy has config-level metric updates
//! (`http_filter_config_increment_counter`, `_set_gauge`: Envoy 1.39 and later), the figures
//! reach Envoy off the request path: a stream that changed a lane opens the config's
//! [`FlushGate`] with one relaxed load, and Envoy's main thread sums the lanes and sends what
//! changed, at most one flush interval (1 s) later (see `stats_flush`). A worker then never calls
//! Envoy's metric callbacks, which build each labelled stat name anew (and allocate) on every
//! call. Where those calls are missing (Envoy 1.38), each worker sends its own lane's changes
//! from inside a stream's hook every [`FLUSH_EVERY`] finished streams, as before.

use crate::executor::pool::{Idle, LANES, Pool, lane_index};
use crate::filter::http::stats::{FilterStats, FilterStatsSnapshot};
use crate::filter::http::stats_flush::{Figures, FlushGate, Series, mirror};
use crate::host::http::Host;
use crate::host::{ConfigHost, MetricKind, MetricOp};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Envoy metrics mirroring a config's figures (metric ids from `define_metric`).
pub(crate) struct EnvoyStats {
    streams: usize,
    polls: usize,
    panics: usize,
    wakes: usize,
    in_flight: usize,
    idle: usize,
    /// How the figures reach Envoy.
    path: Path,
}

/// How a config's figures reach Envoy.
enum Path {
    /// Envoy 1.39+: from the main thread, at most one flush interval after a change.
    Main(MainFlush),
    /// Envoy 1.38: from the workers, inside a stream's hook, every `FLUSH_EVERY` streams.
    Workers(WorkerFlush),
}

/// The main-thread flush of one config.
struct MainFlush {
    gate: Arc<FlushGate>,
    /// What the flushes sent so far (only the main thread flushes; the lock makes it `Sync`).
    sent: Mutex<Figures>,
}

impl Drop for MainFlush {
    fn drop(&mut self) {
        // The config is destroyed (main thread, after all its streams): no deadline may fire
        // for it any more. A commit already under way reaches a scheduler whose config Envoy
        // no longer has, and is dropped there.
        self.gate.close();
    }
}

/// The worker-side flush of one config (Envoy 1.38).
struct WorkerFlush {
    /// What each worker lane reported so far (written only by that lane's thread).
    lanes: Box<[Reported]>,
    /// Threads without a lane report the config's totals, under this lock.
    shared: Mutex<FilterStatsSnapshot>,
    /// Panics reported so far (panics are counted per config, not per lane).
    panics_reported: AtomicU64,
    /// A thread without a lane ended a stream without a host (see `on_stream_end_without_host`).
    shared_owed: AtomicBool,
}

/// What one lane has reported to Envoy (single-writer atomics), on its own cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Reported {
    tick: AtomicU64,
    streams: AtomicU64,
    polls: AtomicU64,
    wakes_inline: AtomicU64,
    wakes_scheduled: AtomicU64,
    in_flight: AtomicU64,
    idle: AtomicU64,
    /// A report fell due when a stream ended without a host; the next stream start sends it.
    owed: AtomicBool,
}

/// Finished streams (per worker) between two flushes to Envoy.
const FLUSH_EVERY: u64 = 16;

/// This stream's own figures, which reach the pool only when it is destroyed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Finishing {
    pub(crate) polls: u64,
    pub(crate) wakes_inline: u64,
    pub(crate) wakes_scheduled: u64,
}

impl EnvoyStats {
    /// Defines the metrics of the config named `name` and picks how its figures reach Envoy;
    /// the error names the metric Envoy refused and its result code. Runs on the main thread,
    /// while the config loads.
    ///
    /// Where Envoy has the config-level calls, every series is also set to 0 at once, so
    /// `/stats` lists them before the first request.
    pub(crate) fn define(host: &dyn ConfigHost, name: &str) -> Result<EnvoyStats, String> {
        let def = |kind, name: &str, labels: &[&str]| {
            host.define_metric(kind, name, labels)
                .map_err(|rc| format!("defining {name} failed (result {rc})"))
        };
        let mut stats = EnvoyStats {
            streams: def(MetricKind::Counter, "jisr_streams_total", &["filter"])?,
            polls: def(MetricKind::Counter, "jisr_polls_total", &["filter"])?,
            panics: def(MetricKind::Counter, "jisr_panics_total", &["filter"])?,
            wakes: def(MetricKind::Counter, "jisr_wakes_total", &["filter", "path"])?,
            in_flight: def(MetricKind::Gauge, "jisr_streams_in_flight", &["filter"])?,
            idle: def(MetricKind::Gauge, "jisr_idle_slots", &["filter"])?,
            path: Path::Workers(WorkerFlush {
                lanes: (0..LANES).map(|_| Reported::default()).collect(),
                shared: Mutex::new(FilterStatsSnapshot::default()),
                panics_reported: AtomicU64::new(0),
                shared_owed: AtomicBool::new(false),
            }),
        };
        // The first config-level call tells whether this Envoy has them (`None`: 1.38).
        let has_config_metrics = host
            .metric(MetricOp::GaugeSet, stats.in_flight, &[name.as_bytes()], 0)
            .is_some();
        if has_config_metrics {
            for series in [
                Series::Streams,
                Series::Polls,
                Series::Panics,
                Series::WakesInline,
                Series::WakesScheduled,
                Series::Idle,
            ] {
                stats.send(host, name.as_bytes(), series, 0);
            }
            stats.path = Path::Main(MainFlush {
                gate: FlushGate::new(
                    crate::filter::http::stats_flush::ProcessTimers {
                        fire: host.timers_fire_stats_flush(),
                    },
                    host.new_scheduler(),
                ),
                sent: Mutex::new(Figures::default()),
            });
        }
        Ok(stats)
    }

    /// Whether a stream's end reports through the stream's host (the worker flush of Envoy
    /// 1.38); with the main-thread flush, ending a stream needs nothing from Envoy.
    #[inline]
    pub(crate) fn reports_at_stream_end(&self) -> bool {
        matches!(self.path, Path::Workers(_))
    }

    /// A stream changed this worker's lane of the config's pool (it took a slot, or returned
    /// one): with the main-thread flush, opens the flush gate (one relaxed load unless the
    /// gate is shut). Nothing else happens on the worker.
    #[inline]
    pub(crate) fn touched(&self) {
        if let Path::Main(m) = &self.path {
            m.gate.touched();
        }
    }

    /// The main-thread flush (`FLUSH_EVENT` on the config's scheduler, main thread): sums the
    /// lanes and sends what changed since the last flush with the config-level calls; then
    /// the gate decides whether another flush follows (see `stats_flush`).
    pub(crate) fn flush<T: Idle>(
        &self,
        host: &dyn ConfigHost,
        name: &str,
        pool: &Pool<T>,
        stats: &FilterStats,
    ) {
        let Path::Main(m) = &self.path else {
            return;
        };
        m.gate.begin();
        let s = FilterStatsSnapshot::new(pool.stats(), stats);
        let now = Figures {
            streams: s.streams,
            polls: s.polls,
            panics: s.panics,
            wakes_inline: s.wakes_inline,
            wakes_scheduled: s.wakes_scheduled,
            in_flight: s.in_flight,
            idle: s.idle_slots,
        };
        let changed = {
            let mut sent = m.sent.lock().unwrap_or_else(|e| e.into_inner());
            mirror(&mut sent, now, |series, v| {
                self.send(host, name.as_bytes(), series, v)
            })
        };
        m.gate.end(changed);
    }

    /// One config-level metric update (main thread).
    fn send(&self, host: &dyn ConfigHost, f: &[u8], series: Series, value: u64) {
        let (op, id, labels): (MetricOp, usize, &[&[u8]]) = match series {
            Series::Streams => (MetricOp::CounterAdd, self.streams, &[f]),
            Series::Polls => (MetricOp::CounterAdd, self.polls, &[f]),
            Series::Panics => (MetricOp::CounterAdd, self.panics, &[f]),
            Series::WakesInline => (MetricOp::CounterAdd, self.wakes, &[f, b"inline"]),
            Series::WakesScheduled => (MetricOp::CounterAdd, self.wakes, &[f, b"scheduler"]),
            Series::InFlight => (MetricOp::GaugeSet, self.in_flight, &[f]),
            Series::Idle => (MetricOp::GaugeSet, self.idle, &[f]),
        };
        let _ = host.metric(op, id, labels, value);
    }

    /// Called when a stream finishes (on the worker, with its host). Envoy 1.38 only (else
    /// nothing): every `FLUSH_EVERY` streams of this worker, reports what changed on this
    /// worker since its last report.
    ///
    /// Each worker reports only its own lane's figures (counter increments, gauge changes),
    /// so workers never read each other's counters or take a lock; Envoy's stats are the sums.
    /// Between reports a stream costs one tick of its lane; `this` (the stream's own figures)
    /// is read only when reporting.
    #[inline]
    pub(crate) fn on_stream_end<T: Idle>(
        &self,
        host: &dyn Host,
        name: &str,
        pool: &Pool<T>,
        stats: &FilterStats,
        this: impl FnOnce() -> Finishing,
    ) {
        let Path::Workers(w) = &self.path else {
            return;
        };
        let Some(lane) = lane_index() else {
            return self.report_shared(w, host, name.as_bytes(), pool, stats, this());
        };
        let r = &w.lanes[lane];
        let tick = r.tick.load(Ordering::Relaxed);
        r.tick.store(tick.wrapping_add(1), Ordering::Relaxed);
        if tick % FLUSH_EVERY == 0 {
            r.owed.store(false, Ordering::Relaxed);
            self.report_lane(w, host, name.as_bytes(), pool, stats, r, Some(this()));
        }
    }

    /// Called when a stream ends with no host to report through (Envoy destroyed it without
    /// completing it: the upstream filter chain). Counts the stream like [`Self::on_stream_end`]
    /// and, when a report is due, leaves it to this worker's next stream start
    /// ([`Self::report_owed`]). The stream's own figures reach the pool when it is destroyed
    /// right after, so that report includes them.
    #[inline]
    pub(crate) fn on_stream_end_without_host(&self) {
        let Path::Workers(w) = &self.path else {
            return;
        };
        let Some(lane) = lane_index() else {
            w.shared_owed.store(true, Ordering::Relaxed);
            return;
        };
        let r = &w.lanes[lane];
        let tick = r.tick.load(Ordering::Relaxed);
        r.tick.store(tick.wrapping_add(1), Ordering::Relaxed);
        if tick % FLUSH_EVERY == 0 {
            r.owed.store(true, Ordering::Relaxed);
        }
    }

    /// Called when a stream starts (with its host, before it takes a slot): sends a report
    /// that [`Self::on_stream_end_without_host`] left due on this thread. One relaxed load
    /// when there is none.
    #[inline]
    pub(crate) fn report_owed<T: Idle>(
        &self,
        host: &dyn Host,
        name: &str,
        pool: &Pool<T>,
        stats: &FilterStats,
    ) {
        let Path::Workers(w) = &self.path else {
            return;
        };
        let Some(lane) = lane_index() else {
            let owed = &w.shared_owed;
            if owed.load(Ordering::Relaxed) && owed.swap(false, Ordering::Relaxed) {
                self.report_shared(w, host, name.as_bytes(), pool, stats, Finishing::default());
            }
            return;
        };
        let r = &w.lanes[lane];
        if r.owed.load(Ordering::Relaxed) {
            r.owed.store(false, Ordering::Relaxed);
            self.report_lane(w, host, name.as_bytes(), pool, stats, r, None);
        }
    }

    /// Reports this lane's changes since its last report.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn report_lane<T: Idle>(
        &self,
        w: &WorkerFlush,
        host: &dyn Host,
        f: &[u8],
        pool: &Pool<T>,
        stats: &FilterStats,
        r: &Reported,
        finishing: Option<Finishing>,
    ) {
        // `None`: no stream is finishing (a report sent at a stream start).
        let this = finishing.unwrap_or_default();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let Some(now) = pool.own_lane() else {
            return;
        };
        let counter = |id: usize, labels: &[&[u8]], cell: &AtomicU64, value: u64| {
            let d = value.wrapping_sub(load(cell));
            if d != 0 {
                host.metric(MetricOp::CounterAdd, id, labels, d);
                cell.store(value, Ordering::Relaxed);
            }
        };
        // The stream being finished counts as ended already.
        counter(self.streams, &[f], &r.streams, now.started);
        counter(
            self.polls,
            &[f],
            &r.polls,
            now.polls.wrapping_add(this.polls),
        );
        counter(
            self.wakes,
            &[f, b"inline"],
            &r.wakes_inline,
            now.wakes_inline.wrapping_add(this.wakes_inline),
        );
        counter(
            self.wakes,
            &[f, b"scheduler"],
            &r.wakes_scheduled,
            now.wakes_scheduled.wrapping_add(this.wakes_scheduled),
        );
        let gauge = |id: usize, cell: &AtomicU64, value: u64| {
            let d = value.wrapping_sub(load(cell)) as i64;
            if d >= 0 {
                // Also when unchanged: the gauge then exists in Envoy's stats from the start.
                host.metric(MetricOp::GaugeAdd, id, &[f], d as u64);
            } else {
                host.metric(MetricOp::GaugeSub, id, &[f], d.unsigned_abs());
            }
            cell.store(value, Ordering::Relaxed);
        };
        // A lane's own in-flight count may be "negative" (a stream started on another lane);
        // the wrapping differences still add up to the config's count in Envoy.
        gauge(
            self.in_flight,
            &r.in_flight,
            now.started
                .wrapping_sub(now.ended)
                .wrapping_sub(u64::from(finishing.is_some())),
        );
        gauge(self.idle, &r.idle, now.idle);
        self.report_panics(w, host, f, stats);
    }

    /// Panics are counted per config: reported by whichever worker sees new ones (a
    /// read-modify-write only when there are).
    fn report_panics(&self, w: &WorkerFlush, host: &dyn Host, f: &[u8], stats: &FilterStats) {
        let panics = stats.panics.load(Ordering::Relaxed);
        if panics != w.panics_reported.load(Ordering::Relaxed) {
            let before = w.panics_reported.swap(panics, Ordering::Relaxed);
            if panics > before {
                host.metric(MetricOp::CounterAdd, self.panics, &[f], panics - before);
            }
        }
    }

    /// A thread without a lane of its own reports the config's totals against what was
    /// reported that way before, under a lock.
    #[cold]
    #[inline(never)]
    fn report_shared<T: Idle>(
        &self,
        w: &WorkerFlush,
        host: &dyn Host,
        f: &[u8],
        pool: &Pool<T>,
        stats: &FilterStats,
        this: Finishing,
    ) {
        let mut last = w.shared.lock().unwrap_or_else(|e| e.into_inner());
        let mut now = FilterStatsSnapshot::new(pool.stats(), stats);
        now.polls += this.polls;
        now.wakes_inline += this.wakes_inline;
        now.wakes_scheduled += this.wakes_scheduled;
        let add = |id: usize, labels: &[&[u8]], d: u64| {
            if d > 0 {
                host.metric(MetricOp::CounterAdd, id, labels, d);
            }
        };
        add(self.streams, &[f], now.streams.saturating_sub(last.streams));
        add(self.polls, &[f], now.polls.saturating_sub(last.polls));
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
        *last = now;
        drop(last);
        self.report_panics(w, host, f, stats);
    }
}
