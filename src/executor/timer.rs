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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

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
    /// The earliest deadline the driver was last told about.
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
            let next = t.heap.peek().map(|r| r.0.0);
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

    /// The earliest pending deadline.
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
            let wait = match earliest(&mut guard) {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
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

#[cfg(test)]
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

    #[test]
    fn deadlines_fire_in_order_and_removed_ones_never() {
        let t = Box::leak(Box::new(Timers {
            table: Mutex::default(),
            driver: Mutex::new(None),
            thread_cv: Condvar::new(),
            thread_started: OnceLock::new(),
        }));
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
