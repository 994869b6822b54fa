//! Handing a config's figures to Envoy off the request path: the gate workers open with one
//! relaxed load, the flush the main thread runs one interval later, and what a flush sends.
//!
//! # Protocol
//!
//! Workers count in their own pool lanes as always (single-writer atomics). After a stream
//! changed its lane (a slot taken, a slot returned), the worker calls [`FlushGate::touched`]:
//! one relaxed load of `armed`. Only when it is clear does the worker arm the gate: it sets
//! `armed` and registers one deadline, [`FLUSH_INTERVAL`] from now, in jisr's process-wide
//! timers. When the deadline fires, the gate commits [`FLUSH_EVENT`] to the config's
//! scheduler, and Envoy's main thread runs the flush: it sums the lanes, sends what changed
//! with the config-level metric calls, then
//!
//! - if anything changed, keeps `armed` set and registers the next deadline (under traffic the
//!   main thread flushes once per interval and workers never arm);
//! - if nothing changed and `armed` was set, clears it and registers one more deadline, the
//!   *tail*;
//! - if nothing changed and `armed` was already clear (this was the tail), stops.
//!
//! At most one deadline is pending per gate (`pending`, under a lock): arming while one is
//! pending adds nothing.
//!
//! # Why the tail
//!
//! A worker's lane stores and its load of `armed` are not ordered against the main thread's
//! clear and its lane loads (no fence on the worker: that would cost every request). So a
//! worker may still see `armed` set while the flush that clears it reads the lane before the
//! worker's stores. The tail runs one interval after the clear: by then those stores were
//! visible long ago (a store leaves the core's store buffer within nanoseconds), and any
//! worker that touched the gate after the clear saw it clear and armed it. So the last figures
//! reach Envoy at most about one interval after the last stream changed them, and a quiet
//! config costs nothing: no deadline, no flush. The loom model below checks the interleavings.

use crate::executor::sched::Committer;
use crate::executor::timer::{TimerKey, timers};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

#[cfg(loom)]
use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};
#[cfg(not(loom))]
use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};

/// How long after a stream changed a config's figures Envoy's `jisr_*` stats show them, at
/// most (plus the main thread's latency).
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The event id a flush is committed with on the config's scheduler (background tasks use 0).
pub(crate) const FLUSH_EVENT: u64 = 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a gate registers its deadline.
pub(crate) trait Deadlines: Send + Sync + 'static {
    /// What identifies a registered deadline.
    type Key: Send + 'static;
    /// Wakes `waker` once, `after` from now.
    fn set(&self, after: Duration, waker: &Waker) -> Self::Key;
    /// Forgets `key`, fired or not.
    fn cancel(&self, key: Self::Key);
}

/// jisr's process-wide timers (fired by a server extension's main-thread timer, else by the
/// timer thread), or none: the host runs the flush itself when asked (a simulated host under
/// Miri, whose leak check would count the timer thread as a leak when a test ends).
pub(crate) struct ProcessTimers {
    /// `false`: deadlines are not registered; the flush runs only when the host calls it.
    pub(crate) fire: bool,
}

impl Deadlines for ProcessTimers {
    type Key = Option<TimerKey>;
    fn set(&self, after: Duration, waker: &Waker) -> Option<TimerKey> {
        self.fire
            .then(|| timers().insert(Instant::now() + after, waker))
    }
    fn cancel(&self, key: Option<TimerKey>) {
        if let Some(key) = key {
            timers().remove(key)
        }
    }
}

/// The arming state of one config's flush (see the module docs).
pub(crate) struct FlushGate<D: Deadlines = ProcessTimers> {
    /// Set while a flush is due: a worker that sees it set does nothing more.
    armed: AtomicBool,
    /// The one pending deadline, taken by the flush it leads to.
    pending: Mutex<Option<D::Key>>,
    deadlines: D,
    /// The config's own scheduler: a fired deadline commits [`FLUSH_EVENT`] to it. Deleted
    /// when the gate is dropped, which a fired deadline's waker may delay past the config's
    /// destruction: Envoy then drops the commit (its scheduler holds the config weakly).
    committer: Committer,
}

impl<D: Deadlines> FlushGate<D> {
    pub(crate) fn new(deadlines: D, committer: Committer) -> Arc<Self> {
        Arc::new(FlushGate {
            armed: AtomicBool::new(false),
            pending: Mutex::new(None),
            deadlines,
            committer,
        })
    }

    /// A worker changed its lane: arms the gate unless it is armed (one relaxed load).
    #[inline]
    pub(crate) fn touched(self: &Arc<Self>) {
        if !self.armed.load(Ordering::Relaxed) {
            self.arm();
        }
    }

    #[cold]
    #[inline(never)]
    fn arm(self: &Arc<Self>) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            self.schedule();
        }
    }

    /// Registers the deadline unless one is pending.
    fn schedule(self: &Arc<Self>) {
        let mut pending = lock(&self.pending);
        if pending.is_none() {
            let waker = Waker::from(self.clone());
            *pending = Some(self.deadlines.set(FLUSH_INTERVAL, &waker));
        }
    }

    /// A flush starts (main thread): its deadline is consumed.
    pub(crate) fn begin(&self) {
        let key = lock(&self.pending).take();
        if let Some(key) = key {
            self.deadlines.cancel(key);
        }
    }

    /// A flush ended (main thread); `changed`: it sent something.
    pub(crate) fn end(self: &Arc<Self>, changed: bool) {
        if changed {
            self.armed.store(true, Ordering::Relaxed);
            self.schedule();
        } else if self.armed.load(Ordering::Relaxed) {
            self.armed.store(false, Ordering::SeqCst);
            // The tail (see the module docs).
            self.schedule();
        }
    }

    /// The config is going away (main thread): forgets the pending deadline, so the timers
    /// drop their waker (and with it, usually, the gate) now.
    pub(crate) fn close(&self) {
        self.begin();
    }

    /// Whether a deadline is pending (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_pending(&self) -> bool {
        lock(&self.pending).is_some()
    }

    /// Whether the gate is armed (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }
}

impl<D: Deadlines> Wake for FlushGate<D> {
    fn wake(self: Arc<Self>) {
        self.committer.commit(FLUSH_EVENT);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.committer.commit(FLUSH_EVENT);
    }
}

/// One config's figures as Envoy's `jisr_*` stats show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Figures {
    pub(crate) streams: u64,
    pub(crate) polls: u64,
    pub(crate) panics: u64,
    pub(crate) wakes_inline: u64,
    pub(crate) wakes_scheduled: u64,
    pub(crate) in_flight: u64,
    pub(crate) idle: u64,
}

/// One of the `jisr_*` series of a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Series {
    /// Counters: the value is an increment.
    Streams,
    Polls,
    Panics,
    WakesInline,
    WakesScheduled,
    /// Gauges: the value is the new value.
    InFlight,
    Idle,
}

/// Sends what changed from `sent` to `now` (counter increments, new gauge values) through
/// `emit` and records it in `sent`; whether anything was sent. Counters never go back: a
/// reading below what was sent sends nothing (lanes are read one by one, never backwards, so
/// this does not happen; the guard keeps a counter from being sent twice if it did).
pub(crate) fn mirror(sent: &mut Figures, now: Figures, mut emit: impl FnMut(Series, u64)) -> bool {
    let mut changed = false;
    let mut counter = |series, sent: &mut u64, now: u64| {
        if now > *sent {
            emit(series, now - *sent);
            *sent = now;
            changed = true;
        }
    };
    counter(Series::Streams, &mut sent.streams, now.streams);
    counter(Series::Polls, &mut sent.polls, now.polls);
    counter(Series::Panics, &mut sent.panics, now.panics);
    counter(
        Series::WakesInline,
        &mut sent.wakes_inline,
        now.wakes_inline,
    );
    counter(
        Series::WakesScheduled,
        &mut sent.wakes_scheduled,
        now.wakes_scheduled,
    );
    let mut gauge = |series, sent: &mut u64, now: u64| {
        if now != *sent {
            emit(series, now);
            *sent = now;
            changed = true;
        }
    };
    gauge(Series::InFlight, &mut sent.in_flight, now.in_flight);
    gauge(Series::Idle, &mut sent.idle, now.idle);
    changed
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// Deadlines that only record what is pending; the test fires them.
    #[derive(Default)]
    struct Manual {
        set: std::sync::Mutex<Vec<(u64, Waker)>>,
        next: std::sync::atomic::AtomicU64,
    }
    impl Deadlines for &'static Manual {
        type Key = u64;
        fn set(&self, _after: Duration, waker: &Waker) -> u64 {
            let k = self.next.fetch_add(1, Ordering::SeqCst);
            self.set.lock().unwrap().push((k, waker.clone()));
            k
        }
        fn cancel(&self, key: u64) {
            self.set.lock().unwrap().retain(|(k, _)| *k != key);
        }
    }
    impl Manual {
        fn pending(&self) -> usize {
            self.set.lock().unwrap().len()
        }
    }

    fn gate() -> (Arc<FlushGate<&'static Manual>>, &'static Manual) {
        let m: &'static Manual = Box::leak(Box::default());
        (FlushGate::new(m, Committer::inert()), m)
    }

    #[test]
    fn a_busy_config_flushes_each_interval_and_a_quiet_one_stops_after_the_tail() {
        let (g, m) = gate();
        g.touched();
        g.touched();
        assert_eq!(m.pending(), 1, "one deadline, however many streams");
        // Under traffic: every flush sees changes and registers the next one.
        for _ in 0..3 {
            g.begin();
            assert_eq!(m.pending(), 0);
            g.touched(); // armed: nothing
            assert_eq!(m.pending(), 0);
            g.end(true);
            assert_eq!(m.pending(), 1);
        }
        // Traffic stops: the first quiet flush clears the gate and registers the tail.
        g.begin();
        g.end(false);
        assert!(!g.is_armed());
        assert_eq!(m.pending(), 1);
        // The tail finds nothing either: nothing is pending any more.
        g.begin();
        g.end(false);
        assert_eq!((g.is_armed(), m.pending()), (false, 0));
        // The next stream arms again.
        g.touched();
        assert_eq!((g.is_armed(), m.pending()), (true, 1));
    }

    #[test]
    fn a_stream_during_the_tail_keeps_one_deadline() {
        let (g, m) = gate();
        g.touched();
        g.begin();
        g.end(false); // quiet: the tail is pending, the gate clear
        g.touched(); // a stream arms while the tail is pending: no second deadline
        assert_eq!((g.is_armed(), m.pending()), (true, 1));
        g.begin();
        g.end(true);
        assert_eq!(m.pending(), 1);
    }

    #[test]
    fn closing_forgets_the_pending_deadline() {
        let (g, m) = gate();
        g.touched();
        assert!(g.is_pending());
        g.close();
        assert_eq!((g.is_pending(), m.pending()), (false, 0));
    }

    #[test]
    fn a_fired_deadline_commits_the_flush_event_to_the_config_scheduler() {
        use crate::executor::sched::Committer;
        static EVENTS: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
        unsafe fn commit(_: *mut core::ffi::c_void, event: u64) {
            EVENTS.lock().unwrap().push(event);
        }
        unsafe fn release(_: *mut core::ffi::c_void) {}
        // SAFETY: both functions ignore the pointer and are callable from any thread.
        let committer = unsafe { Committer::new(core::ptr::null_mut(), commit, release) };
        let m: &'static Manual = Box::leak(Box::default());
        let g = FlushGate::new(m, committer);
        g.touched();
        let waker = m.set.lock().unwrap()[0].1.clone();
        waker.wake();
        assert_eq!(*EVENTS.lock().unwrap(), [FLUSH_EVENT]);
    }

    /// With the real process timers: the deadline fires about one interval later and wakes
    /// the gate (its committer), on whatever drives the timers.
    #[test]
    fn the_process_timers_fire_the_flush_one_interval_later() {
        use std::sync::mpsc;
        static TX: std::sync::Mutex<Option<mpsc::Sender<u64>>> = std::sync::Mutex::new(None);
        unsafe fn commit(_: *mut core::ffi::c_void, event: u64) {
            if let Some(tx) = TX.lock().unwrap().as_ref() {
                let _ = tx.send(event);
            }
        }
        unsafe fn release(_: *mut core::ffi::c_void) {}
        let (tx, rx) = mpsc::channel();
        *TX.lock().unwrap() = Some(tx);
        // SAFETY: both functions ignore the pointer and are callable from any thread.
        let committer = unsafe { Committer::new(core::ptr::null_mut(), commit, release) };
        let g = FlushGate::new(ProcessTimers { fire: true }, committer);
        let start = Instant::now();
        g.touched();
        let event = rx
            .recv_timeout(FLUSH_INTERVAL * 5)
            .expect("the flush deadline fired");
        assert_eq!(event, FLUSH_EVENT);
        let waited = start.elapsed();
        assert!(waited >= FLUSH_INTERVAL, "{waited:?}");
        g.begin(); // the flush consumes the (fired) deadline
        assert!(!g.is_pending());
    }

    /// Envoy's side of the mirror: counters add, gauges set.
    #[derive(Default)]
    struct Envoy(RefCell<BTreeMap<&'static str, u64>>);
    impl Envoy {
        fn apply(&self, s: Series, v: u64) {
            let mut m = self.0.borrow_mut();
            let (name, gauge) = match s {
                Series::Streams => ("streams", false),
                Series::Polls => ("polls", false),
                Series::Panics => ("panics", false),
                Series::WakesInline => ("wakes_inline", false),
                Series::WakesScheduled => ("wakes_scheduled", false),
                Series::InFlight => ("in_flight", true),
                Series::Idle => ("idle", true),
            };
            let e = m.entry(name).or_default();
            if gauge {
                *e = v;
            } else {
                *e += v;
            }
        }
        fn figures(&self) -> Figures {
            let m = self.0.borrow();
            let g = |k| m.get(k).copied().unwrap_or(0);
            Figures {
                streams: g("streams"),
                polls: g("polls"),
                panics: g("panics"),
                wakes_inline: g("wakes_inline"),
                wakes_scheduled: g("wakes_scheduled"),
                in_flight: g("in_flight"),
                idle: g("idle"),
            }
        }
    }

    #[test]
    fn a_flush_sends_increments_and_gauge_values_only_when_they_changed() {
        let envoy = Envoy::default();
        let mut sent = Figures::default();
        let now = Figures {
            streams: 3,
            polls: 5,
            in_flight: 1,
            ..Figures::default()
        };
        let mut calls = Vec::new();
        assert!(mirror(&mut sent, now, |s, v| {
            calls.push((s, v));
            envoy.apply(s, v)
        }));
        assert_eq!(
            calls,
            [
                (Series::Streams, 3),
                (Series::Polls, 5),
                (Series::InFlight, 1)
            ]
        );
        assert!(!mirror(&mut sent, now, |_, _| panic!("nothing changed")));
        let later = Figures {
            streams: 4,
            in_flight: 0,
            ..now
        };
        assert!(mirror(&mut sent, later, |s, v| envoy.apply(s, v)));
        assert_eq!(envoy.figures(), later);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// Steps of a config's life: streams change the figures (counters only grow, gauges
        /// move both ways), flushes happen at any point, and one may read a stale value.
        #[derive(Clone, Debug)]
        enum Step {
            Grow([u8; 5]),
            Gauges(u8, u8),
            Flush,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                any::<[u8; 5]>().prop_map(Step::Grow),
                (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Step::Gauges(a, b)),
                Just(Step::Flush),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Whatever the sequence: after each flush Envoy shows exactly the figures that
            /// flush read, a flush reports a change exactly when there was one, and the gate
            /// never holds more than one deadline, and holds one whenever it is armed.
            #[test]
            fn envoy_shows_what_each_flush_read(steps in proptest::collection::vec(step(), 1..80)) {
                let (g, m) = gate();
                let envoy = Envoy::default();
                let mut sent = Figures::default();
                let mut now = Figures::default();
                for s in steps {
                    match s {
                        Step::Grow(d) => {
                            now.streams += u64::from(d[0]);
                            now.polls += u64::from(d[1]);
                            now.panics += u64::from(d[2]);
                            now.wakes_inline += u64::from(d[3]);
                            now.wakes_scheduled += u64::from(d[4]);
                            g.touched();
                        }
                        Step::Gauges(a, b) => {
                            now.in_flight = u64::from(a);
                            now.idle = u64::from(b);
                            g.touched();
                        }
                        Step::Flush => {
                            if m.pending() == 1 {
                                g.begin();
                                let before = sent;
                                let changed = mirror(&mut sent, now, |s, v| envoy.apply(s, v));
                                prop_assert_eq!(changed, before != now);
                                prop_assert_eq!(envoy.figures(), now);
                                g.end(changed);
                            }
                        }
                    }
                    prop_assert!(m.pending() <= 1);
                    prop_assert!(!g.is_armed() || m.pending() == 1);
                }
                // Traffic stops: the pending flushes run out (at most a change, a quiet one
                // and the tail), and Envoy shows the last figures.
                let mut flushes = 0;
                while m.pending() == 1 {
                    g.begin();
                    let changed = mirror(&mut sent, now, |s, v| envoy.apply(s, v));
                    g.end(changed);
                    flushes += 1;
                    prop_assert!(flushes <= 3);
                }
                prop_assert_eq!(envoy.figures(), now);
                prop_assert!(!g.is_armed());
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicU64;

    /// Deadlines as a count of pending flushes (the model runs them itself).
    struct Count(loom::sync::atomic::AtomicU64);
    impl Deadlines for &'static Count {
        type Key = ();
        fn set(&self, _after: Duration, _waker: &Waker) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn cancel(&self, _key: ()) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A worker ends a stream (a relaxed lane store, then `touched`) while the main thread
    /// runs a flush that may be the quiet one that clears the gate. Whatever the interleaving,
    /// once the worker is done the pending flushes (run one interval apart, here: after the
    /// join) bring Envoy to the worker's figure, and then nothing is left pending.
    #[test]
    fn the_last_stream_reaches_envoy_whatever_the_interleaving() {
        loom::model(|| {
            let count: &'static Count = Box::leak(Box::new(Count(AtomicU64::new(0))));
            let gate = FlushGate::new(count, Committer::inert());
            let lane = Arc::new(AtomicU64::new(0));
            // A flush is pending from an earlier stream whose figure Envoy already has.
            gate.touched();
            let mut sent = 0u64;
            let flush = |gate: &Arc<FlushGate<&'static Count>>, sent: &mut u64| {
                gate.begin();
                let now = lane.load(Ordering::Relaxed);
                let changed = now != *sent;
                *sent = now;
                gate.end(changed);
            };
            let worker = {
                let (gate, lane) = (gate.clone(), lane.clone());
                loom::thread::spawn(move || {
                    lane.store(1, Ordering::Relaxed);
                    gate.touched();
                })
            };
            flush(&gate, &mut sent);
            worker.join().unwrap();
            let mut flushes = 0;
            while count.0.load(Ordering::SeqCst) > 0 {
                flush(&gate, &mut sent);
                flushes += 1;
                assert!(flushes <= 3);
            }
            assert_eq!(sent, 1);
            assert!(!gate.armed.load(Ordering::SeqCst));
        });
    }
}
