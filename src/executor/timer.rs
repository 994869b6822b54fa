//! Timers for every future jisr polls: request handlers on workers and tasks on the main thread.
//!
//! One process-wide set of deadlines. A sleeping future registers its deadline and waker; when
//! the earliest deadline changes, the *driver* is told. The driver is Envoy's main-thread timer
//! of a jisr server extension (see `api::server`) when the module runs one; otherwise a single
//! timer thread, started on first use, stands in (never a thread per request). Firing wakes
//! every due waker: a handler's waker commits to its stream's scheduler, so it is polled on its
//! own worker as for any other wake-up.
//!
//! No allocation per sleep once the tables have grown: entries live in a vector reused through
//! a free list, and the deadline heap keeps its capacity.
//!
//! # Arming
//!
//! `armed` is the deadline the driver is set to fire at, or will be once the kick it was sent
//! is handled. Whoever sets the driver's timer (the driver's re-arm through [`Timers::arm`],
//! [`Timers::fire`], the fallback thread before it waits) stores, under the table's lock, the
//! earliest *live* deadline it armed for: never a cancelled one. An insert kicks the driver
//! only when its deadline is earlier than `armed` (or nothing is armed), so the rule that keeps
//! every live deadline announced is: `armed` is `None` only when no live deadline exists, and
//! otherwise is no later than the earliest live one. A deadline cancelled after it was armed
//! keeps `armed` early, which costs one fire that finds nothing due and re-arms.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
// Under `--cfg loom` the table's lock is loom's, so the arming protocol is model-checked
// (`loom_tests` below); the fallback thread is not part of the models.
#[cfg(loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
use std::sync::OnceLock;
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

/// The longest a driver waits before looking again (a far deadline is re-armed from there).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A registered deadline: index into the entry table and its generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    index: usize,
    generation: u64,
}

#[derive(Default)]
struct Entry {
    waker: Option<Waker>,
    deadline: Option<Instant>,
    generation: u64,
    fired: bool,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    free: Vec<usize>,
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// The deadline the driver fires at next (see the module docs).
    armed: Option<Instant>,
}

/// The earliest live deadline (stale heap tops are dropped on the way).
fn earliest(t: &mut Table) -> Option<Instant> {
    while let Some(Reverse((_, index, generation))) = t.heap.peek().copied() {
        let e = &t.entries[index];
        if e.generation == generation && !e.fired {
            break;
        }
        t.heap.pop();
    }
    t.heap.peek().map(|r| r.0.0)
}

/// How the earliest deadline reaches something that fires it.
pub(crate) trait Driver: Send + Sync {
    /// The earliest deadline changed (called from any thread, without the table locked).
    fn rearm(&self);
}

/// The process's timers.
pub(crate) struct Timers {
    table: Mutex<Table>,
    /// A main-thread driver, installed by a jisr server extension.
    driver: Mutex<Option<&'static dyn Driver>>,
    /// The fallback driver's wake-up.
    thread_cv: Condvar,
    thread_started: OnceLock<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process's timers.
pub(crate) fn timers() -> &'static Timers {
    static T: OnceLock<Timers> = OnceLock::new();
    T.get_or_init(|| Timers {
        table: Mutex::default(),
        driver: Mutex::new(None),
        thread_cv: Condvar::new(),
        thread_started: OnceLock::new(),
    })
}

impl Timers {
    /// Registers a deadline for `waker`.
    pub(crate) fn insert(&'static self, deadline: Instant, waker: &Waker) -> TimerKey {
        let mut t = lock(&self.table);
        let index = match t.free.pop() {
            Some(i) => i,
            None => {
                t.entries.push(Entry::default());
                t.entries.len() - 1
            }
        };
        let e = &mut t.entries[index];
        e.waker = Some(waker.clone());
        e.deadline = Some(deadline);
        e.fired = false;
        let generation = e.generation;
        t.heap.push(Reverse((deadline, index, generation)));
        let earlier = t.armed.is_none_or(|a| deadline < a);
        if earlier {
            t.armed = Some(deadline);
        }
        drop(t);
        if earlier {
            self.kick();
        }
        TimerKey { index, generation }
    }

    /// Whether `key` fired; else updates its waker.
    pub(crate) fn poll(&self, key: TimerKey, waker: &Waker) -> bool {
        let mut t = lock(&self.table);
        let Some(e) = t.entries.get_mut(key.index) else {
            return true;
        };
        if e.generation != key.generation || e.fired {
            return true;
        }
        if !e.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            e.waker = Some(waker.clone());
        }
        false
    }

    /// Forgets `key` (fired or not).
    pub(crate) fn remove(&self, key: TimerKey) {
        let mut t = lock(&self.table);
        let Some(e) = t.entries.get_mut(key.index) else {
            return;
        };
        if e.generation != key.generation {
            return;
        }
        e.generation += 1;
        e.waker = None;
        e.deadline = None;
        e.fired = false;
        t.free.push(key.index);
        // Its heap item is skipped when popped (stale generation).
    }

    /// Fires every deadline up to `now`; returns the next deadline, if any.
    pub(crate) fn fire(&self, now: Instant) -> Option<Instant> {
        let mut due: arrayvec::ArrayVec<Waker, 32> = arrayvec::ArrayVec::new();
        loop {
            let mut t = lock(&self.table);
            let mut more = false;
            while let Some(Reverse((deadline, index, generation))) = t.heap.peek().copied() {
                if deadline > now {
                    break;
                }
                t.heap.pop();
                let e = &mut t.entries[index];
                if e.generation != generation || e.fired {
                    continue;
                }
                e.fired = true;
                if let Some(w) = e.waker.take() {
                    if let Err(e) = due.try_push(w) {
                        // Wake the rest in the next round, outside the lock.
                        t.heap.push(Reverse((deadline, index, generation)));
                        t.entries[index].fired = false;
                        t.entries[index].waker = Some(e.element());
                        more = true;
                        break;
                    }
                }
            }
            // The earliest *live* deadline: a cancelled sleep at the top of the heap must not
            // be what the driver is armed for (it would never be re-armed past it).
            let next = earliest(&mut t);
            t.armed = next;
            drop(t);
            for w in due.drain(..) {
                w.wake();
            }
            if !more {
                return next;
            }
        }
    }

    /// The earliest pending deadline, which the caller (a driver) arms its timer for.
    pub(crate) fn arm(&self) -> Option<Instant> {
        let mut t = lock(&self.table);
        let next = earliest(&mut t);
        t.armed = next;
        next
    }

    /// The earliest pending deadline (without arming).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        earliest(&mut lock(&self.table))
    }

    /// Installs the main-thread driver (a jisr server extension); the fallback thread, if it
    /// runs, keeps firing too (harmless: firing is idempotent).
    pub(crate) fn set_driver(&'static self, driver: Option<&'static dyn Driver>) {
        *lock(&self.driver) = driver;
        self.kick();
    }

    /// Tells the driver the earliest deadline changed.
    fn kick(&'static self) {
        let driver = *lock(&self.driver);
        match driver {
            Some(d) => d.rearm(),
            None => {
                self.thread_started.get_or_init(|| {
                    let spawned = std::thread::Builder::new()
                        .name("jisr-timers".into())
                        .spawn(move || self.thread_loop());
                    if spawned.is_err() {
                        // Without a thread nothing fires until a driver is installed; the
                        // sleeps then wait for it.
                    }
                });
                self.thread_cv.notify_all();
            }
        }
    }

    fn thread_loop(&'static self) {
        loop {
            self.fire(Instant::now());
            // The wait is computed under the lock an insert takes, and the condvar releases it
            // atomically: a deadline inserted meanwhile notifies after we wait.
            let mut guard = lock(&self.table);
            let next = earliest(&mut guard);
            guard.armed = next;
            let wait = match next {
                Some(d) => d.saturating_duration_since(Instant::now()).min(MAX_WAIT),
                None => MAX_WAIT,
            };
            if !wait.is_zero() {
                drop(
                    self.thread_cv
                        .wait_timeout(guard, wait)
                        .unwrap_or_else(|e| e.into_inner()),
                );
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn private_timers() -> &'static Timers {
        Box::leak(Box::new(Timers {
            table: Mutex::default(),
            driver: Mutex::new(None),
            thread_cv: Condvar::new(),
            thread_started: OnceLock::new(),
        }))
    }

    /// A driver as Envoy's main-thread timer is one: a kick makes it arm for what
    /// [`Timers::arm`] says; it fires when the (simulated) clock reaches that.
    struct Recording {
        timers: OnceLock<&'static Timers>,
        armed: Mutex<Option<Instant>>,
    }
    impl Driver for Recording {
        fn rearm(&self) {
            let t = self.timers.get().expect("set");
            *lock(&self.armed) = t.arm();
        }
    }
    impl Recording {
        fn install(t: &'static Timers) -> &'static Recording {
            let d: &'static Recording = Box::leak(Box::new(Recording {
                timers: OnceLock::new(),
                armed: Mutex::new(None),
            }));
            let _ = d.timers.set(t);
            t.set_driver(Some(d));
            d
        }
        fn armed(&self) -> Option<Instant> {
            *lock(&self.armed)
        }
        /// The clock is at `now`: the timer fires if due, then is re-armed (as
        /// `api::server::timer_fired` does).
        fn advance(&self, now: Instant) {
            if self.armed().is_some_and(|a| a <= now) {
                self.timers.get().expect("set").fire(now);
                self.rearm();
            }
        }
    }

    /// A cancelled sleep at the top of the set (a `timeout` whose future won), a shorter sleep
    /// that fires, then a later sleep: the later one must still be announced and fire.
    #[test]
    fn a_cancelled_top_deadline_does_not_freeze_the_driver() {
        let t = private_timers();
        let d = Recording::install(t);
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let w = Waker::from(c.clone());
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let won = t.insert(ms(1000), &w);
        t.remove(won);
        let short = t.insert(ms(100), &w);
        assert_eq!(d.armed(), Some(ms(100)));
        d.advance(ms(100));
        assert!(t.poll(short, &w));
        t.remove(short);
        let later = t.insert(ms(1500), &w);
        assert!(
            d.armed().is_some_and(|a| a <= ms(1500)),
            "a live deadline at 1500 ms, the driver armed for {:?}",
            d.armed().map(|a| a - t0)
        );
        d.advance(ms(1500));
        assert!(t.poll(later, &w), "the later sleep fired");
        assert_eq!(c.0.load(Ordering::SeqCst), 2);
    }

    /// A deadline cancelled between the kick and the driver's re-arm leaves nothing armed;
    /// the next insert must kick again.
    #[test]
    fn a_deadline_cancelled_before_the_driver_arms_is_not_what_it_waits_for() {
        let t = private_timers();
        struct Lazy;
        impl Driver for Lazy {
            fn rearm(&self) {}
        }
        t.set_driver(Some(&Lazy));
        let w = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let t0 = Instant::now();
        let gone = t.insert(t0 + Duration::from_millis(10), &w);
        t.remove(gone);
        // The driver handles the kick now: nothing live, nothing armed.
        assert_eq!(t.arm(), None);
        assert_eq!(lock(&t.table).armed, None);
        let d = Recording::install(t);
        let key = t.insert(t0 + Duration::from_millis(20), &w);
        assert_eq!(d.armed(), Some(t0 + Duration::from_millis(20)));
        t.remove(key);
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            /// A sleep of this many ms from the clock.
            Insert(u16),
            /// Cancels the n-th live key (modulo).
            Cancel(usize),
            /// The clock moves on by this many ms.
            Advance(u16),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0u16..500).prop_map(Op::Insert),
                any::<usize>().prop_map(Op::Cancel),
                (0u16..300).prop_map(Op::Advance),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Random inserts, cancels and fires never leave a live deadline unannounced: the
            /// driver is always armed no later than the earliest live deadline, and once the
            /// clock passes a deadline it has fired.
            #[test]
            fn no_live_deadline_is_left_unannounced(ops in proptest::collection::vec(op(), 1..60)) {
                let t = private_timers();
                let d = Recording::install(t);
                let w = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
                let t0 = Instant::now();
                let mut now = t0;
                let mut live: Vec<(TimerKey, Instant)> = Vec::new();
                for op in ops {
                    match op {
                        Op::Insert(ms) => {
                            let at = now + Duration::from_millis(u64::from(ms));
                            live.push((t.insert(at, &w), at));
                        }
                        Op::Cancel(n) if !live.is_empty() => {
                            let (key, _) = live.remove(n % live.len());
                            t.remove(key);
                        }
                        Op::Cancel(_) => {}
                        Op::Advance(ms) => {
                            now += Duration::from_millis(u64::from(ms));
                            d.advance(now);
                            // What fired is consumed, as a `Sleep` does when polled.
                            live.retain(|&(key, at)| {
                                let fired = t.poll(key, &w);
                                assert_eq!(fired, at <= now, "deadline {:?}, clock {:?}", at - t0, now - t0);
                                if fired {
                                    t.remove(key);
                                }
                                !fired
                            });
                        }
                    }
                    if let Some(first) = live.iter().map(|&(_, at)| at).min() {
                        prop_assert!(
                            d.armed().is_some_and(|a| a <= first),
                            "live deadline {:?}, armed {:?}",
                            first - t0,
                            d.armed().map(|a| a - t0)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn deadlines_fire_in_order_and_removed_ones_never() {
        let t = private_timers();
        // Keep the fallback thread out of this test: a driver that does nothing.
        struct Manual;
        impl Driver for Manual {
            fn rearm(&self) {}
        }
        t.set_driver(Some(&Manual));
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let w = Waker::from(c.clone());
        let now = Instant::now();
        let a = t.insert(now + Duration::from_millis(10), &w);
        let b = t.insert(now + Duration::from_millis(20), &w);
        let gone = t.insert(now + Duration::from_millis(5), &w);
        t.remove(gone);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_millis(10)));
        assert_eq!(
            t.fire(now + Duration::from_millis(12)),
            Some(now + Duration::from_millis(20))
        );
        assert_eq!(c.0.load(Ordering::SeqCst), 1);
        assert!(t.poll(a, &w) && !t.poll(b, &w));
        t.fire(now + Duration::from_millis(30));
        assert!(t.poll(b, &w));
        assert_eq!(c.0.load(Ordering::SeqCst), 2);
        t.remove(a);
        t.remove(b);
        // Slots are reused.
        let again = t.insert(now, &w);
        assert!(again.index <= 2);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Mutex};

    /// The server extension's driver: a kick commits a scheduler event, and the main thread
    /// re-arms Envoy's timer from [`Timers::arm`] when it handles the event (later, in order).
    struct MainThread {
        kicked: Mutex<bool>,
    }
    impl Driver for MainThread {
        fn rearm(&self) {
            *self.kicked.lock().unwrap() = true;
        }
    }

    /// What the main thread armed Envoy's timer for, after handling pending kicks.
    fn handle_kicks(t: &Timers, d: &MainThread, envoy_timer: &Mutex<Option<Instant>>) {
        while std::mem::take(&mut *d.kicked.lock().unwrap()) {
            *envoy_timer.lock().unwrap() = t.arm();
        }
    }

    /// The main thread fires the due deadline while one worker cancels the top deadline (a
    /// `timeout` whose future won) and another inserts a sleep. Once the main thread has
    /// handled its events, Envoy's timer is armed no later than the earliest live deadline.
    #[test]
    fn fire_cancel_and_insert_never_leave_a_live_deadline_unarmed() {
        for sleep_ms in [3u64, 7, 12] {
            loom::model(move || {
                let t: &'static Timers = Box::leak(Box::new(Timers {
                    table: Mutex::default(),
                    driver: Mutex::new(None),
                    thread_cv: Condvar::new(),
                    thread_started: OnceLock::new(),
                }));
                let d: &'static MainThread = Box::leak(Box::new(MainThread {
                    kicked: Mutex::new(false),
                }));
                let envoy_timer = Arc::new(Mutex::new(None));
                t.set_driver(Some(d));
                let w = Waker::noop();
                let t0 = Instant::now();
                let ms = move |n| t0 + Duration::from_millis(n);
                let timeout = t.insert(ms(10), w);
                let _due = t.insert(ms(5), w);
                handle_kicks(t, d, &envoy_timer);
                assert_eq!(*envoy_timer.lock().unwrap(), Some(ms(5)));

                let cancel = loom::thread::spawn(move || t.remove(timeout));
                let sleep = loom::thread::spawn(move || t.insert(ms(sleep_ms), Waker::noop()));
                // Envoy's timer fired at 5 ms: fire, then re-arm (`api::server::timer_fired`).
                t.fire(ms(5));
                *envoy_timer.lock().unwrap() = t.arm();
                handle_kicks(t, d, &envoy_timer);
                cancel.join().unwrap();
                let sleep = sleep.join().unwrap();
                handle_kicks(t, d, &envoy_timer);

                let armed = *envoy_timer.lock().unwrap();
                let fired = t.poll(sleep, w);
                if fired {
                    // Only a deadline at or before the fire can have fired.
                    assert!(sleep_ms <= 5);
                } else {
                    assert!(
                        armed.is_some_and(|a| a <= ms(sleep_ms)),
                        "a live sleep at {sleep_ms} ms, Envoy's timer at {:?}",
                        armed.map(|a| a - t0)
                    );
                }
            });
        }
    }
}
