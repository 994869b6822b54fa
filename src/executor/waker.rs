//! The stream waker: a small shared cell that turns wakes into re-polls.
//!
//! One `WakeCell` per stream slot. The waker handed to handler futures is an `Arc` of it
//! (`std::task::Wake`), so cloning a waker never allocates and a waker may outlive its stream:
//! once the stream ends the cell is marked dead and every later wake is a no-op.
//!
//! # The scheduler handle, without a lock
//!
//! The stream's scheduler (`Committer`) sits in a plain cell beside the state word. The state
//! word carries, besides its flags, a count of the wakes that are using the scheduler right now
//! (`USER` units above the flags). The rules:
//!
//! - **Publish** (`set_scheduler`, worker only, once per stream): the handle is written while
//!   `HAS_SCHED` is clear, so nobody reads it yet; then `HAS_SCHED` is set with release order.
//! - **Use** (`commit`, any thread): one compare-and-swap sets `COMMITTED` and adds a user, only
//!   while `HAS_SCHED` is set and `DEAD` is not (acquire: the handle's write is visible). The
//!   handle is read, the event committed, and the user removed.
//! - **Retire** (`kill`, worker only, once per stream): `DEAD` is set. From then on nobody
//!   becomes a user, so whoever brings the state to "dead with no user" frees the handle: `kill`
//!   itself when no wake was using it, else the last wake to leave (on its thread; Envoy allows
//!   deleting a scheduler from any thread). Exactly one of them sees that transition.
//! - **Reuse** (`recycle`, worker): only once the `Arc` has no other holder, so no wake is
//!   inside the cell; the handle was freed by then.
//!
//! `loom_tests` model-checks these rules.

use crate::executor::sched::Committer;
use std::sync::Arc;
// Under `--cfg loom` the wake state is loom's, so the protocol is model-checked (`loom_tests`).
#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, Ordering};

/// The future is being polled on the worker right now.
const POLLING: u32 = 1;
/// A wake arrived since the last poll started.
const WOKEN: u32 = 2;
/// A scheduler event is committed and not yet delivered.
const COMMITTED: u32 = 4;
/// The stream has ended; wakes do nothing.
const DEAD: u32 = 8;
/// A scheduler is installed (so `kill` must release it).
const HAS_SCHED: u32 = 16;
/// The waker was cloned: someone may wake the stream later, from anywhere.
const CLONED: u32 = 32;
/// One wake using the scheduler handle right now (the count sits above the flags).
const USER: u32 = 1 << 8;

/// Event id used for wake-ups (the only scheduler event jisr commits).
pub(crate) const WAKE_EVENT: u64 = 1;

/// The scheduler handle's cell: std's `UnsafeCell`, or loom's (which checks every access
/// against the model's happens-before).
#[cfg(not(loom))]
struct HandleCell(core::cell::UnsafeCell<Option<Committer>>);
#[cfg(loom)]
struct HandleCell(loom::cell::UnsafeCell<Option<Committer>>);

impl Default for HandleCell {
    fn default() -> Self {
        #[cfg(not(loom))]
        return HandleCell(core::cell::UnsafeCell::new(None));
        #[cfg(loom)]
        return HandleCell(loom::cell::UnsafeCell::new(None));
    }
}

impl HandleCell {
    /// # Safety
    /// No write of the cell may run meanwhile (see the module docs: a user reads it only while
    /// `HAS_SCHED` is set and it is not retired).
    #[inline]
    unsafe fn read<R>(&self, f: impl FnOnce(&Option<Committer>) -> R) -> R {
        #[cfg(not(loom))]
        // SAFETY: guaranteed by the caller.
        return f(unsafe { &*self.0.get() });
        #[cfg(loom)]
        // SAFETY: guaranteed by the caller.
        return self.0.with(|p| f(unsafe { &*p }));
    }

    /// # Safety
    /// No other access of the cell may run meanwhile (publish while `HAS_SCHED` is clear;
    /// retire by the one thread that saw the state become dead with no user).
    #[inline]
    unsafe fn write<R>(&self, f: impl FnOnce(&mut Option<Committer>) -> R) -> R {
        #[cfg(not(loom))]
        // SAFETY: guaranteed by the caller.
        return f(unsafe { &mut *self.0.get() });
        #[cfg(loom)]
        // SAFETY: guaranteed by the caller.
        return self.0.with_mut(|p| f(unsafe { &mut *p }));
    }
}

/// Shared wake state of one stream.
#[derive(Default)]
pub(crate) struct WakeCell {
    state: AtomicU32,
    /// The stream's scheduler, published and retired as the module docs say.
    scheduler: HandleCell,
    /// Wakes that had to commit a scheduler event (for introspection and tests).
    pub(crate) commits: AtomicU32,
}

// SAFETY: the only non-`Sync` part is the handle cell, whose accesses follow the protocol of
// the module docs: one writer at a time, never concurrently with a reader (`Committer` itself is
// `Send + Sync`).
unsafe impl Sync for WakeCell {}
// SAFETY: as above; every part may move to another thread (`Committer` is `Send`).
unsafe impl Send for WakeCell {}

impl WakeCell {
    /// Marks the start of a poll and forgets earlier wakes (this poll observes them).
    #[inline]
    pub(crate) fn begin_poll(&self) {
        let s = self.state.load(Ordering::Acquire);
        if s & CLONED == 0 {
            // No waker left the worker, so no other thread can touch the state: a plain store.
            self.state.store((s & !WOKEN) | POLLING, Ordering::Relaxed);
        } else {
            let _ = self
                .state
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                    Some((s & !WOKEN) | POLLING)
                });
        }
    }

    /// Whether a wake arrived during the current poll (the poll flag stays set).
    #[inline]
    pub(crate) fn woken_during_poll(&self) -> bool {
        self.state.load(Ordering::Acquire) & WOKEN != 0
    }

    /// Marks the end of a poll that returned `Pending`; true if a wake arrived during it.
    #[inline]
    pub(crate) fn end_poll(&self) -> bool {
        // A clone made during this poll set `CLONED` on this thread, so this load sees it.
        let s = self.state.load(Ordering::Acquire);
        if s & CLONED == 0 {
            self.state.store(s & !POLLING, Ordering::Relaxed);
            return s & WOKEN != 0;
        }
        self.state.fetch_and(!POLLING, Ordering::AcqRel) & WOKEN != 0
    }

    /// Ends a poll that returned `Pending` when nothing can have happened to the state
    /// meanwhile: no waker was ever cloned (so no other thread touches it) and no wake arrived
    /// during the poll. Returns false, changing nothing, otherwise: the caller takes the general
    /// path (`woken_during_poll`, `end_poll`). One load and a plain store, where the general
    /// path loads the state three times.
    #[inline]
    pub(crate) fn end_quiet_poll(&self) -> bool {
        let s = self.state.load(Ordering::Acquire);
        if s & (CLONED | WOKEN) == 0 {
            self.state.store(s & !POLLING, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// A hook re-entered during a poll of this stream recorded an event: the running poll must
    /// go again before its hook returns.
    pub(crate) fn wake_nested(&self) {
        self.state.fetch_or(WOKEN, Ordering::AcqRel);
    }

    /// Whether a waker of this stream was ever cloned (so a wake can come from outside a hook).
    #[inline]
    pub(crate) fn was_cloned(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLONED != 0
    }

    /// Whether a scheduler exists for this stream.
    #[inline]
    pub(crate) fn has_scheduler(&self) -> bool {
        self.state.load(Ordering::Acquire) & HAS_SCHED != 0
    }

    /// Installs the stream's scheduler (created lazily by the caller). On the worker only, and
    /// only while none is installed (`has_scheduler` is false).
    pub(crate) fn set_scheduler(&self, committer: Committer) {
        // Only the worker sets `DEAD` and `HAS_SCHED`, so this load cannot go stale before the
        // store below.
        let s = self.state.load(Ordering::Acquire);
        if s & (DEAD | HAS_SCHED) != 0 {
            // The stream ended (or, not expected, has one): release the new handle now.
            drop(committer);
            return;
        }
        // SAFETY: publish step: `HAS_SCHED` is clear, so no wake reads the cell (a wake becomes
        // a user only once it sees `HAS_SCHED`), and the previous handle was retired before the
        // cell could be reused (see `recycle`): the cell holds `None`, nothing else touches it.
        unsafe { self.scheduler.write(|h| *h = Some(committer)) };
        // Release: a wake that sees `HAS_SCHED` sees the handle.
        self.state.fetch_or(HAS_SCHED, Ordering::Release);
    }

    /// A delivered scheduler event: later wakes may commit again.
    #[inline]
    pub(crate) fn delivered(&self) {
        self.state.fetch_and(!COMMITTED, Ordering::AcqRel);
    }

    /// Commits one scheduler event unless one is already pending (wakes coalesce). Any thread.
    pub(crate) fn commit(&self) {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            // Committed: coalesces. Dead: nothing to resume. No scheduler yet means no poll
            // returned pending with a waker out (`drive` installs one before the poll flag
            // clears): nothing to resume either.
            if s & (COMMITTED | DEAD) != 0 || s & HAS_SCHED == 0 {
                return;
            }
            // Acquire on success: the handle's write (before `HAS_SCHED`'s release) is visible.
            match self.state.compare_exchange_weak(
                s,
                (s | COMMITTED) + USER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        // SAFETY: use step: this thread is a user, so the handle is published and not retired
        // (retiring waits for the last user); only reads happen while users exist.
        unsafe {
            self.scheduler.read(|h| {
                if let Some(c) = h {
                    c.commit(WAKE_EVENT);
                }
            })
        };
        // Release: this use of the handle happens before whoever retires it.
        let prev = self.state.fetch_sub(USER, Ordering::AcqRel);
        if prev & DEAD != 0 && prev / USER == 1 {
            // The stream ended while this wake used the handle, and this was the last user.
            self.retire();
        }
    }

    /// The stream ended: later wakes are no-ops and the scheduler is released (now, or by the
    /// last wake still using it). On the worker, once per stream.
    pub(crate) fn kill(&self) {
        let prev = self.state.fetch_or(DEAD, Ordering::AcqRel);
        if prev & HAS_SCHED != 0 && prev / USER == 0 {
            self.retire();
        }
    }

    /// Frees the scheduler handle: called once, by whoever saw the state become dead with no
    /// user (acquire: every use happened before).
    #[cold]
    fn retire(&self) {
        // SAFETY: retire step: the state is dead with no user, so nobody reads the cell or will
        // (users need `DEAD` clear) and nobody else retires (the transition happens once); the
        // worker publishes only while not dead.
        let handle = unsafe { self.scheduler.write(Option::take) };
        drop(handle);
    }

    fn wake_inner(&self) {
        let prev = self.state.fetch_or(WOKEN, Ordering::AcqRel);
        if prev & DEAD != 0 || prev & POLLING != 0 {
            // Dead: ignore. Polling: the poll loop re-polls before the hook returns.
            return;
        }
        self.commit();
    }
}

/// Returns a cell ready for a new stream, reusing `cell` when no stale waker holds it.
#[inline]
pub(crate) fn recycle(cell: &mut Arc<WakeCell>, spare: &mut Arc<WakeCell>) {
    // Nobody can start holding the cell meanwhile: cloning a waker needs a reference.
    #[inline]
    fn reuse(cell: &mut Arc<WakeCell>) -> bool {
        // No read-modify-write on the stream path: a relaxed load of the count, then an acquire
        // fence, which synchronises with the release decrement of every waker dropped on
        // another thread (so its last wake happens before the reset below). jisr never makes
        // `Weak`s of a cell, so a count of one means this is the only reference.
        if Arc::strong_count(cell) != 1 {
            return false;
        }
        std::sync::atomic::fence(Ordering::Acquire);
        // The handle was retired (by `kill` or the last wake using it) before that wake let go
        // of the cell.
        debug_assert!(
            cell.state.load(Ordering::Relaxed) & HAS_SCHED == 0
                // SAFETY: no other holder, so no other access (see above).
                || unsafe { cell.scheduler.read(Option::is_none) }
        );
        cell.state.store(0, Ordering::Relaxed);
        cell.commits.store(0, Ordering::Relaxed);
        true
    }
    if reuse(cell) {
        return;
    }
    // A waker of the previous stream is still out there — typically another thread that just
    // woke it and has not dropped it yet. Leave that cell to it (it is dead, its wakes are
    // no-ops) and take the slot's spare, which an earlier stream used.
    core::mem::swap(cell, spare);
    if !reuse(cell) {
        // Both are still held somewhere: rare; allocates once.
        *cell = Arc::new(WakeCell::default());
    }
}

/// Ends the stream's wakes: later wakes are no-ops and the scheduler is released.
#[inline]
pub(crate) fn kill(cell: &Arc<WakeCell>) {
    // Nobody else holds the cell and no scheduler exists: nothing can wake it, nothing to free.
    if Arc::strong_count(cell) == 1 && !cell.has_scheduler() {
        return;
    }
    cell.kill();
}

/// A waker for `cell` that borrows the caller's reference instead of cloning the `Arc`; clones
/// made from it (e.g. by a future that stores its waker) hold their own reference.
#[inline]
pub(crate) fn waker_ref(cell: &Arc<WakeCell>) -> std::mem::ManuallyDrop<std::task::Waker> {
    let raw = std::task::RawWaker::new(Arc::as_ptr(cell) as *const (), &VTABLE);
    // SAFETY: the vtable below treats the data pointer as an `Arc<WakeCell>` pointer, which it
    // is; the returned waker is never dropped (`ManuallyDrop`), so it does not give back the
    // reference it never took, and it cannot outlive `cell`'s borrow at its use sites (it lives
    // on the stack of one `drive`).
    std::mem::ManuallyDrop::new(unsafe { std::task::Waker::from_raw(raw) })
}

static VTABLE: std::task::RawWakerVTable =
    std::task::RawWakerVTable::new(raw_clone, raw_wake, raw_wake_by_ref, raw_drop);

/// # Safety
/// `p` is an `Arc<WakeCell>` pointer with a live strong reference.
unsafe fn raw_clone(p: *const ()) -> std::task::RawWaker {
    // SAFETY: see above; the clone owns one new strong reference.
    unsafe { Arc::increment_strong_count(p as *const WakeCell) };
    // SAFETY: the reference is live (we just added one).
    let cell = unsafe { &*(p as *const WakeCell) };
    if cell.state.load(Ordering::Relaxed) & CLONED == 0 {
        cell.state.fetch_or(CLONED, Ordering::AcqRel);
    }
    std::task::RawWaker::new(p, &VTABLE)
}

/// # Safety
/// `p` owns one strong reference (a cloned waker being consumed).
unsafe fn raw_wake(p: *const ()) {
    // SAFETY: takes over the waker's reference and releases it after waking.
    let cell = unsafe { Arc::from_raw(p as *const WakeCell) };
    cell.wake_inner();
}

/// # Safety
/// `p` is a live `Arc<WakeCell>` pointer.
unsafe fn raw_wake_by_ref(p: *const ()) {
    // SAFETY: the waker holds (or borrows) a live reference for this call.
    unsafe { &*(p as *const WakeCell) }.wake_inner();
}

/// # Safety
/// `p` owns one strong reference (a cloned waker being dropped).
unsafe fn raw_drop(p: *const ()) {
    // SAFETY: releases the waker's reference.
    unsafe { Arc::decrement_strong_count(p as *const WakeCell) };
}

/// Where a jisr future keeps the waker of the task that awaits it, when that is not the
/// stream's own waker (e.g. a `FuturesUnordered` inside the handler): the event it waits for
/// wakes it. With the stream's own waker nothing is stored, because the hook that delivers the
/// event polls the stream anyway.
#[derive(Default)]
pub(crate) struct WakerSlot(std::cell::Cell<Option<std::task::Waker>>);

impl std::fmt::Debug for WakerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WakerSlot")
    }
}

impl WakerSlot {
    /// Registers the waker of `cx` unless `own` says it is the stream's own.
    #[inline]
    pub(crate) fn register(
        &self,
        cx: &std::task::Context<'_>,
        own: impl FnOnce(&std::task::Waker) -> bool,
    ) {
        let w = cx.waker();
        let prev = self.0.take();
        if own(w) {
            drop(prev);
            return;
        }
        match prev {
            Some(p) if p.will_wake(w) => self.0.set(Some(p)),
            _ => self.0.set(Some(w.clone())),
        }
    }

    /// Wakes and forgets the registered waker, if any.
    #[inline]
    pub(crate) fn wake(&self) {
        if let Some(w) = self.0.take() {
            w.wake();
        }
    }

    /// Takes the registered waker (to wake it once no borrow is held).
    #[inline]
    pub(crate) fn take(&self) -> Option<std::task::Waker> {
        self.0.take()
    }

    /// Forgets the registered waker.
    #[inline]
    pub(crate) fn clear(&self) {
        drop(self.0.take());
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A quiet pending poll ends on the fast path and clears the poll flag; a wake during the
    /// poll, or a waker that left the worker, sends the caller down the general path with the
    /// state untouched.
    #[test]
    fn only_a_quiet_poll_ends_on_the_fast_path() {
        let cell = Arc::new(WakeCell::default());
        cell.begin_poll();
        assert!(cell.end_quiet_poll());
        assert_eq!(cell.state.load(Ordering::Relaxed) & POLLING, 0);

        // Woken during the poll (a yield): the poll must go again, so nothing is ended.
        cell.begin_poll();
        waker_ref(&cell).wake_by_ref();
        let before = cell.state.load(Ordering::Relaxed);
        assert!(!cell.end_quiet_poll());
        assert_eq!(cell.state.load(Ordering::Relaxed), before);
        assert!(cell.woken_during_poll());
        assert!(cell.end_poll(), "the general path still sees the wake");

        // A cloned waker may wake from another thread: the general path handles it.
        cell.begin_poll();
        let out = (*waker_ref(&cell)).clone();
        let before = cell.state.load(Ordering::Relaxed);
        assert!(!cell.end_quiet_poll());
        assert_eq!(cell.state.load(Ordering::Relaxed), before);
        assert!(!cell.end_poll());
        assert_eq!(cell.state.load(Ordering::Relaxed) & POLLING, 0);
        drop(out);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicBool, AtomicUsize};

    /// What Envoy's scheduler saw: events committed, and whether it was released.
    struct Probe {
        commits: AtomicUsize,
        released: AtomicBool,
    }

    /// A cell whose waker was cloned (so wakes may come from other threads), with a scheduler
    /// that records into a fresh probe.
    fn cell() -> (Arc<WakeCell>, &'static Probe) {
        let (cell, probe, committer) = bare();
        cell.set_scheduler(committer);
        (cell, probe)
    }

    /// A cloned cell with no scheduler yet, the probe, and the scheduler to install.
    fn bare() -> (Arc<WakeCell>, &'static Probe, Committer) {
        let probe: &'static Probe = Box::leak(Box::new(Probe {
            commits: AtomicUsize::new(0),
            released: AtomicBool::new(false),
        }));
        unsafe fn commit(p: *mut core::ffi::c_void, _event: u64) {
            // SAFETY: `p` is the leaked probe (see below).
            let probe = unsafe { &*(p as *const Probe) };
            assert!(
                !probe.released.load(Ordering::Acquire),
                "commit after release"
            );
            probe.commits.fetch_add(1, Ordering::AcqRel);
        }
        unsafe fn release(p: *mut core::ffi::c_void) {
            // SAFETY: as above.
            let probe = unsafe { &*(p as *const Probe) };
            assert!(
                !probe.released.swap(true, Ordering::AcqRel),
                "released twice"
            );
        }
        let cell = Arc::new(WakeCell::default());
        // SAFETY: the probe is leaked, so valid from any thread for ever; both functions only
        // touch its atomics.
        let c = unsafe { Committer::new(probe as *const Probe as *mut _, commit, release) };
        cell.state.fetch_or(CLONED, Ordering::AcqRel);
        (cell, probe, c)
    }

    /// A wake from another thread during or around a poll is never lost: either the poll loop
    /// sees it (and polls again before the hook returns) or a scheduler event is committed.
    #[test]
    fn a_wake_around_a_poll_is_seen_or_scheduled() {
        loom::model(|| {
            let (cell, probe) = cell();
            let waker = cell.clone();
            let other = loom::thread::spawn(move || waker.wake_inner());
            cell.begin_poll();
            // The future registered its waker here and returned `Pending`.
            let repoll = cell.end_poll();
            other.join().unwrap();
            let scheduled = probe.commits.load(Ordering::Acquire) > 0;
            assert!(repoll || scheduled, "the wake was lost");
            cell.kill();
        });
    }

    /// Two wakes while no poll runs coalesce into one scheduler event; once it is delivered, the
    /// next wake commits again.
    #[test]
    fn wakes_coalesce_until_delivered() {
        loom::model(|| {
            let (cell, probe) = cell();
            let (a, b) = (cell.clone(), cell.clone());
            let ta = loom::thread::spawn(move || a.wake_inner());
            let tb = loom::thread::spawn(move || b.wake_inner());
            ta.join().unwrap();
            tb.join().unwrap();
            assert_eq!(probe.commits.load(Ordering::Acquire), 1);
            cell.delivered();
            cell.wake_inner();
            assert_eq!(probe.commits.load(Ordering::Acquire), 2);
            cell.kill();
        });
    }

    /// A wake racing the stream's end never uses the scheduler after `kill` released it, and
    /// the scheduler is released exactly once.
    #[test]
    fn a_wake_racing_kill_never_commits_to_a_released_scheduler() {
        loom::model(|| {
            let (cell, probe) = cell();
            let waker = cell.clone();
            let other = loom::thread::spawn(move || waker.wake_inner());
            cell.kill();
            other.join().unwrap();
            assert!(probe.released.load(Ordering::Acquire));
            // Dead: later wakes do nothing.
            let before = probe.commits.load(Ordering::Acquire);
            cell.wake_inner();
            assert_eq!(probe.commits.load(Ordering::Acquire), before);
        });
    }

    /// Two wakes using the scheduler while the stream ends: the handle is released exactly
    /// once — by `kill`, or by the last wake to leave it — and never used after that.
    #[test]
    fn the_last_user_out_releases_the_scheduler_once() {
        loom::model(|| {
            let (cell, probe) = cell();
            let (a, b) = (cell.clone(), cell.clone());
            let ta = loom::thread::spawn(move || a.wake_inner());
            let tb = loom::thread::spawn(move || b.wake_inner());
            // The worker delivers an event (so a second wake may commit again), then the
            // stream ends.
            cell.delivered();
            cell.kill();
            ta.join().unwrap();
            tb.join().unwrap();
            assert!(probe.released.load(Ordering::Acquire), "never released");
            assert_eq!(
                cell.state.load(Ordering::Acquire) / USER,
                0,
                "a user left behind"
            );
        });
    }

    /// The scheduler is installed during the poll that leaves a cloned waker behind: a wake
    /// from another thread around that poll is seen by the poll loop or committed to the new
    /// scheduler, never lost.
    #[test]
    fn a_scheduler_installed_in_a_poll_catches_the_wake() {
        loom::model(|| {
            let (cell, probe, committer) = bare();
            // The event the wake announces: set before the wake, read by the poll.
            let ready = Arc::new(AtomicBool::new(false));
            let (waker, event) = (cell.clone(), ready.clone());
            let other = loom::thread::spawn(move || {
                event.store(true, Ordering::Release);
                waker.wake_inner();
            });
            cell.begin_poll();
            // The poll: done if it sees the event, else pending with its waker out.
            let done = ready.load(Ordering::Acquire);
            cell.set_scheduler(committer);
            let repoll = cell.end_poll();
            other.join().unwrap();
            let scheduled = probe.commits.load(Ordering::Acquire) > 0;
            assert!(done || repoll || scheduled, "the wake was lost");
            cell.kill();
            assert!(probe.released.load(Ordering::Acquire));
        });
    }
}
