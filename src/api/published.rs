//! [`Published`]: a value one side publishes and every worker reads without a lock.
//!
//! # Protocol
//!
//! The value and its generation change together under the value's mutex; the generation is
//! mirrored in an atomic for the lock-free check. A reader's cache entry is
//! `(id, generation, weak value)`, filled from one consistent read under the mutex, so it
//! never pairs a generation with an older value. The fast path loads the generation
//! (`Acquire`); the same generation means no publication happened since the entry was filled
//! (generations only grow: a `u64` does not wrap), and the entry's value is still the current
//! one. A publication's store of the new generation happens before `publish` returns, so a
//! later `get` on any thread sees the new generation and misses its cache.
//!
//! Ids come from a process-wide counter, never an address. Entries hold `Weak` references;
//! entries whose value died are dropped the next time the thread fills an entry.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::{Arc, Weak};

#[cfg(loom)]
use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};
#[cfg(not(loom))]
use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ids of `Published` values: unique for the life of the process.
static NEXT_ID: StdAtomicU64 = StdAtomicU64::new(1);

/// A value published by one side (e.g. a server task) and read by request handlers on every
/// worker, without a lock and without allocating in the steady state: each thread keeps the
/// last version it saw and re-reads (under a lock) only after a new publication.
///
/// Each `Published` has its own id, never reused in the process, so a new one created where
/// a dropped one lived never reads the old one's value. Threads keep only weak references:
/// once a `Published` is dropped (or has published a newer value), the old value is dropped
/// as soon as no handler holds an [`Arc`] from [`get`](Self::get), on whichever thread read it.
/// After [`publish`](Self::publish) returns, every later [`get`](Self::get), on any thread,
/// returns the new value or a newer one.
///
/// ```
/// use std::sync::LazyLock;
/// use jisr::server::Published;
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// static KEYS: LazyLock<Published<Vec<String>>> = LazyLock::new(|| Published::new(Vec::new()));
///
/// async fn check(req: Request<'_>, w: ResponseWriter<'_>) {
///     let key = req.header_str("x-api-key").unwrap_or_default();
///     if !KEYS.get().iter().any(|k| k == key) {
///         w.send(401, b"unknown key\n");
///     }
/// }
/// fn register(r: &mut Registry) { r.register("check", check); }
///
/// let f = TestFilter::new(register, "check", b"").unwrap();
/// KEYS.publish(vec!["k1".to_string()]); // e.g. by a server task, after a fetch
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/"), ("x-api-key", "k1")], true);
/// assert!(s.local_reply().is_none());
/// ```
pub struct Published<T> {
    /// Unique for the life of the process (never an address, which can be reused).
    id: u64,
    /// Mirrors `value.0` for the lock-free check.
    generation: AtomicU64,
    /// The generation and the value, changed together.
    value: Mutex<(u64, Arc<T>)>,
}

/// A thread's view of one published value: its id, the generation seen, the value (weak: the
/// cache never keeps a value alive).
struct Seen {
    id: u64,
    generation: u64,
    value: Weak<dyn Any + Send + Sync>,
}

#[cfg(not(loom))]
std::thread_local! {
    static SEEN: RefCell<Vec<Seen>> = const { RefCell::new(Vec::new()) };
}
#[cfg(loom)]
loom::thread_local! {
    static SEEN: RefCell<Vec<Seen>> = RefCell::new(Vec::new());
}

impl<T: Send + Sync + 'static> Published<T> {
    /// A published value starting at `initial`.
    pub fn new(initial: T) -> Published<T> {
        Published {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            generation: AtomicU64::new(1),
            value: Mutex::new((1, Arc::new(initial))),
        }
    }

    /// Replaces the value; readers see it at their next [`get`](Self::get).
    pub fn publish(&self, value: T) {
        let new = Arc::new(value);
        let old = {
            let mut v = lock(&self.value);
            let generation = v.0 + 1;
            let old = core::mem::replace(&mut v.1, new);
            v.0 = generation;
            self.generation.store(generation, Ordering::Release);
            old
        };
        // The old value's drop (if no reader holds it) runs outside the lock.
        drop(old);
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        let generation = self.generation.load(Ordering::Acquire);
        let cached = SEEN
            .try_with(|seen| {
                let seen = seen.borrow();
                let e = seen
                    .iter()
                    .find(|e| e.id == self.id && e.generation == generation)?;
                e.value.upgrade()
            })
            .ok()
            .flatten();
        if let Some(v) = cached.and_then(|v| v.downcast::<T>().ok()) {
            return v;
        }
        // One consistent read: the generation and the value it belongs to.
        let (generation, v) = {
            let g = lock(&self.value);
            (g.0, g.1.clone())
        };
        let weak: Weak<dyn Any + Send + Sync> = Arc::downgrade(&v) as Weak<dyn Any + Send + Sync>;
        // Outside a thread's life (a thread-local destructor) nothing is cached.
        let _ = SEEN.try_with(|seen| {
            let mut seen = seen.borrow_mut();
            // Values that died (their `Published` was dropped or published anew) leave.
            seen.retain(|e| e.id == self.id || e.value.strong_count() > 0);
            let entry = Seen {
                id: self.id,
                generation,
                value: weak,
            };
            match seen.iter_mut().find(|e| e.id == self.id) {
                Some(e) => *e = entry,
                None => seen.push(entry),
            }
        });
        v
    }
}

impl<T> fmt::Debug for Published<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published")
            .field("id", &self.id)
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish()
    }
}

/// Entries this thread keeps (for tests).
#[cfg(all(test, not(loom)))]
fn cached_entries() -> usize {
    SEEN.with(|s| s.borrow().len())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Counted(&'static AtomicUsize);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A thread that read a dropped `Published` does not keep its value alive, and its cache
    /// does not grow with `Published` values that come and go.
    #[test]
    fn a_dropped_value_dies_and_the_cache_does_not_grow() {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        let before = cached_entries();
        for i in 0..100 {
            let p = Published::new(Counted(&DROPS));
            drop(p.get());
            p.publish(Counted(&DROPS));
            drop(p.get());
            drop(p);
            assert_eq!(DROPS.load(std::sync::atomic::Ordering::SeqCst), 2 * (i + 1));
        }
        assert!(cached_entries() <= before + 1, "{}", cached_entries());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// A reader racing a publication: once `publish` returned (the join), the reader's next
    /// `get` returns the new value, whatever the interleaving of its earlier `get` with it.
    #[test]
    fn a_get_after_publish_sees_it() {
        loom::model(|| {
            let p = Arc::new(Published::new(1u32));
            let reader = {
                let p = p.clone();
                loom::thread::spawn(move || {
                    let first = *p.get();
                    (p, first)
                })
            };
            p.publish(2);
            let (p2, first) = reader.join().unwrap();
            assert!(first == 1 || first == 2);
            // The reader thread is gone; read on a fresh one, and on this one.
            let again = loom::thread::spawn(move || *p2.get()).join().unwrap();
            assert_eq!(again, 2);
            assert_eq!(*p.get(), 2);
        });
    }

    /// The same reader thread, before and after a concurrent publication it then waits for.
    #[test]
    fn a_reader_thread_does_not_keep_a_stale_value() {
        use loom::sync::atomic::AtomicBool;
        loom::model(|| {
            let p = Arc::new(Published::new(1u32));
            let done = Arc::new(AtomicBool::new(false));
            let writer = {
                let (p, done) = (p.clone(), done.clone());
                loom::thread::spawn(move || {
                    p.publish(2);
                    done.store(true, Ordering::Release);
                })
            };
            // Held, as a handler holds what it read: the cache could still upgrade to it.
            let first = p.get();
            if done.load(Ordering::Acquire) {
                assert_eq!(*p.get(), 2, "published before this get");
            }
            drop(first);
            writer.join().unwrap();
            assert_eq!(*p.get(), 2);
        });
    }
}
