//! Background tasks of a filter config: futures polled on Envoy's main thread.
//!
//! A config that asks for background work gets one `Runtime`. Tasks may be spawned from any
//! thread (a handler on a worker, a thread of the user's); a waker marks its task ready and
//! commits an event to the config's scheduler, and Envoy then calls the config's `scheduled`
//! hook on the main thread, where `run` polls every ready task. Callout answers and stream
//! events for the config land in tables here (copies, owned) and wake the task waiting for
//! them. Nothing here is `unsafe`: tasks are `Send` boxed futures behind a mutex.
//!
//! When the config is destroyed (main thread) the runtime is closed: every task is dropped,
//! the scheduler deleted, and later spawns drop their future at once.

use crate::executor::sched::Committer;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};

/// A spawned task.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A header list owned by the runtime.
pub(crate) type OwnedHeaders = Vec<(String, Vec<u8>)>;

/// An event of a background streaming callout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StreamEvent {
    Headers(u16, OwnedHeaders, bool),
    Data(Vec<u8>, bool),
    Trailers(OwnedHeaders),
    Complete,
    Reset,
}

/// A background callout's outcome: status, headers, body; or the ABI callout result.
pub(crate) type CalloutOutcome = Result<(u16, OwnedHeaders, Vec<u8>), u32>;

#[derive(Default)]
struct TaskSlot {
    fut: Option<BoxFuture>,
    /// The slot holds a live task (its future may be out for polling).
    live: bool,
    queued: bool,
    generation: u64,
}

#[derive(Default)]
struct Tasks {
    slots: Vec<TaskSlot>,
    ready: VecDeque<usize>,
    free: Vec<usize>,
    running: bool,
    closed: bool,
    /// Tasks whose polls panicked (caught; the task is dropped).
    panics: u64,
    /// Messages of panics not yet reported (see `take_panics`).
    unreported: Vec<String>,
}

struct CalloutSlot {
    /// Envoy's id; 0 while the start call runs (an answer delivered inside it lands here).
    id: u64,
    waker: Option<Waker>,
    outcome: Option<CalloutOutcome>,
}

struct StreamSlot {
    id: u64,
    waker: Option<Waker>,
    events: VecDeque<StreamEvent>,
}

#[derive(Default)]
struct Io {
    callouts: Vec<CalloutSlot>,
    streams: Vec<StreamSlot>,
}

/// The background runtime of one filter config.
#[derive(Default)]
pub(crate) struct Runtime {
    tasks: Mutex<Tasks>,
    committer: Mutex<Option<Committer>>,
    io: Mutex<Io>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct TaskWaker {
    rt: Weak<Runtime>,
    id: usize,
    generation: u64,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(rt) = self.rt.upgrade() {
            rt.ready(self.id, self.generation);
        }
    }
}

/// Drops futures outside any lock, catching panicking destructors.
fn drop_all(futs: Vec<BoxFuture>) {
    for f in futs {
        if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(f))) {
            core::mem::forget(p);
        }
    }
}

impl Runtime {
    /// A runtime whose wake-ups go through `committer`.
    pub(crate) fn new(committer: Committer) -> Arc<Runtime> {
        let rt = Arc::new(Runtime::default());
        *lock(&rt.committer) = Some(committer);
        rt
    }

    fn commit(&self) {
        self.commit_event(0);
    }

    /// Commits `event` to the owner's scheduler (0 means "tasks are ready"; owners may use
    /// other ids for their own wake-ups). Nothing once the runtime is closed.
    pub(crate) fn commit_event(&self, event: u64) {
        if let Some(c) = lock(&self.committer).as_ref() {
            c.commit(event);
        }
    }

    /// Adds a task; `false` (and the future is dropped) once the runtime is closed.
    pub(crate) fn spawn(&self, fut: BoxFuture) -> bool {
        let mut t = lock(&self.tasks);
        if t.closed {
            drop(t);
            drop_all(vec![fut]);
            return false;
        }
        let id = match t.free.pop() {
            Some(id) => id,
            None => {
                t.slots.push(TaskSlot::default());
                t.slots.len() - 1
            }
        };
        let slot = &mut t.slots[id];
        slot.fut = Some(fut);
        slot.live = true;
        slot.queued = true;
        t.ready.push_back(id);
        let kick = !t.running;
        drop(t);
        if kick {
            self.commit();
        }
        true
    }

    fn ready(&self, id: usize, generation: u64) {
        let mut t = lock(&self.tasks);
        let Some(slot) = t.slots.get_mut(id) else {
            return;
        };
        if !slot.live || slot.generation != generation || slot.queued {
            return;
        }
        slot.queued = true;
        t.ready.push_back(id);
        let kick = !t.running && !t.closed;
        drop(t);
        if kick {
            self.commit();
        }
    }

    /// Polls every ready task until none is (main thread). A nested call (a hook delivered
    /// inside a poll) returns at once: the outer loop polls what became ready.
    pub(crate) fn run(self: &Arc<Self>) {
        {
            let mut t = lock(&self.tasks);
            if t.running || t.closed {
                return;
            }
            t.running = true;
        }
        loop {
            let next = {
                let mut t = lock(&self.tasks);
                let Some(id) = t.ready.pop_front() else {
                    t.running = false;
                    return;
                };
                let slot = &mut t.slots[id];
                slot.queued = false;
                slot.fut.take().map(|f| (id, slot.generation, f))
            };
            let Some((id, generation, mut fut)) = next else {
                continue;
            };
            let waker = Waker::from(Arc::new(TaskWaker {
                rt: Arc::downgrade(self),
                id,
                generation,
            }));
            let mut cx = Context::from_waker(&waker);
            let polled = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
            let mut t = lock(&self.tasks);
            match polled {
                Ok(Poll::Pending) if !t.closed => {
                    t.slots[id].fut = Some(fut);
                    continue;
                }
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(())) => {}
                Err(p) => {
                    t.panics += 1;
                    drop(t);
                    let msg = crate::executor::caught(p);
                    t = lock(&self.tasks);
                    if t.unreported.len() < 16 {
                        t.unreported.push(msg);
                    }
                }
            }
            let slot = &mut t.slots[id];
            slot.live = false;
            slot.generation += 1;
            if !t.closed {
                t.free.push(id);
            }
            drop(t);
            drop_all(vec![fut]);
        }
    }

    /// Tasks whose poll panicked so far.
    pub(crate) fn panics(&self) -> u64 {
        lock(&self.tasks).panics
    }

    /// Messages of task panics since the last call, for the owner to log.
    pub(crate) fn take_panics(&self) -> Vec<String> {
        core::mem::take(&mut lock(&self.tasks).unreported)
    }

    /// Tasks alive (spawned and not finished).
    pub(crate) fn live_tasks(&self) -> usize {
        lock(&self.tasks).slots.iter().filter(|s| s.live).count()
    }

    /// The config is going away (main thread): drops every task and the scheduler.
    pub(crate) fn close(&self) {
        let futs: Vec<BoxFuture> = {
            let mut t = lock(&self.tasks);
            t.closed = true;
            t.ready.clear();
            t.slots.iter_mut().filter_map(|s| s.fut.take()).collect()
        };
        drop_all(futs);
        let committer = lock(&self.committer).take();
        drop(committer);
        let io = core::mem::take(&mut *lock(&self.io));
        drop(io);
    }

    // ---- Callouts.

    /// Opens a callout slot before its start call (an answer Envoy delivers inside that call
    /// lands in it).
    pub(crate) fn callout_opening(&self) {
        lock(&self.io).callouts.push(CalloutSlot {
            id: 0,
            waker: None,
            outcome: None,
        });
    }

    /// The start call returned: `Ok(id)` names the opening slot, `Err` removes it.
    pub(crate) fn callout_opened(&self, started: Result<u64, u32>) -> Result<u64, u32> {
        let mut io = lock(&self.io);
        let Some(i) = io.callouts.iter().rposition(|c| c.id == 0) else {
            return started;
        };
        match started {
            Ok(id) => {
                io.callouts[i].id = id;
                Ok(id)
            }
            Err(rc) => {
                io.callouts.remove(i);
                Err(rc)
            }
        }
    }

    /// Envoy answered callout `id` (or the one being opened).
    pub(crate) fn callout_done(&self, id: u64, outcome: CalloutOutcome) {
        let waker = {
            let mut io = lock(&self.io);
            let i = io
                .callouts
                .iter()
                .position(|c| c.id == id)
                .or_else(|| io.callouts.iter().rposition(|c| c.id == 0));
            let Some(i) = i else { return };
            let c = &mut io.callouts[i];
            c.outcome = Some(outcome);
            c.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes callout `id`'s outcome, or registers `waker` for it.
    pub(crate) fn callout_poll(&self, id: u64, waker: &Waker) -> Option<CalloutOutcome> {
        let mut io = lock(&self.io);
        let i = io.callouts.iter().position(|c| c.id == id)?;
        if io.callouts[i].outcome.is_some() {
            return io.callouts.remove(i).outcome;
        }
        io.callouts[i].waker = Some(waker.clone());
        None
    }

    /// Forgets callout `id` (its future was dropped; a late answer is ignored).
    pub(crate) fn callout_forget(&self, id: u64) {
        lock(&self.io).callouts.retain(|c| c.id != id);
    }

    // ---- Streams.

    /// Opens a stream slot before its start call.
    pub(crate) fn stream_opening(&self) {
        lock(&self.io).streams.push(StreamSlot {
            id: 0,
            waker: None,
            events: VecDeque::new(),
        });
    }

    /// The start call returned.
    pub(crate) fn stream_opened(&self, started: Result<u64, u32>) -> Result<u64, u32> {
        let mut io = lock(&self.io);
        let Some(i) = io.streams.iter().rposition(|c| c.id == 0) else {
            return started;
        };
        match started {
            Ok(id) => {
                io.streams[i].id = id;
                Ok(id)
            }
            Err(rc) => {
                io.streams.remove(i);
                Err(rc)
            }
        }
    }

    /// An event of stream `id` (or the one being opened).
    pub(crate) fn stream_event(&self, id: u64, ev: StreamEvent) {
        let waker = {
            let mut io = lock(&self.io);
            let i = io
                .streams
                .iter()
                .position(|c| c.id == id)
                .or_else(|| io.streams.iter().rposition(|c| c.id == 0));
            let Some(i) = i else { return };
            let s = &mut io.streams[i];
            s.events.push_back(ev);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The next event of stream `id`, or registers `waker` (`Ok(None)`); `Err` for a stream
    /// the runtime does not know (closed, or forgotten).
    pub(crate) fn stream_poll(&self, id: u64, waker: &Waker) -> Result<Option<StreamEvent>, ()> {
        let mut io = lock(&self.io);
        let Some(s) = io.streams.iter_mut().find(|c| c.id == id) else {
            return Err(());
        };
        if let Some(ev) = s.events.pop_front() {
            return Ok(Some(ev));
        }
        s.waker = Some(waker.clone());
        Ok(None)
    }

    /// Forgets stream `id`.
    pub(crate) fn stream_forget(&self, id: u64) {
        lock(&self.io).streams.retain(|c| c.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn counting() -> (Arc<AtomicU64>, Committer) {
        let n = Arc::new(AtomicU64::new(0));
        unsafe fn commit(p: *mut core::ffi::c_void, _: u64) {
            // SAFETY: `p` is the counter's `Arc` pointer, alive until `release`.
            unsafe { &*(p as *const AtomicU64) }.fetch_add(1, Ordering::SeqCst);
        }
        unsafe fn release(p: *mut core::ffi::c_void) {
            // SAFETY: gives back the count taken by `into_raw` below.
            drop(unsafe { Arc::from_raw(p as *const AtomicU64) });
        }
        let p = Arc::into_raw(n.clone()) as *mut core::ffi::c_void;
        // SAFETY: commit only reads the counter, release frees once.
        (n, unsafe { Committer::new(p, commit, release) })
    }

    #[test]
    fn spawn_wake_run_and_close() {
        let (commits, c) = counting();
        let rt = Runtime::new(c);
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let stash: Arc<Mutex<Option<Waker>>> = Arc::default();
        let s = stash.clone();
        rt.spawn(Box::pin(std::future::poll_fn(move |cx| {
            h.fetch_add(1, Ordering::SeqCst);
            *lock(&s) = Some(cx.waker().clone());
            Poll::<()>::Pending
        })));
        assert_eq!(commits.load(Ordering::SeqCst), 1);
        rt.run();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // A wake from another thread commits one event; run polls again.
        let w = lock(&stash).take().unwrap();
        std::thread::spawn(move || w.wake()).join().unwrap();
        assert_eq!(commits.load(Ordering::SeqCst), 2);
        rt.run();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(rt.live_tasks(), 1);
        rt.close();
        assert_eq!(rt.live_tasks(), 1, "closed: the slot is not reused");
        // After close: spawns are dropped, stale wakers do nothing.
        assert!(!rt.spawn(Box::pin(async {})));
        if let Some(w) = lock(&stash).take() {
            w.wake();
        }
        assert_eq!(commits.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_panicking_task_is_dropped_and_others_run() {
        let (_, c) = counting();
        let rt = Runtime::new(c);
        rt.spawn(Box::pin(async { panic!("boom") }));
        let done = Arc::new(AtomicU64::new(0));
        let d = done.clone();
        rt.spawn(Box::pin(async move {
            d.store(1, Ordering::SeqCst);
        }));
        rt.run();
        assert_eq!((rt.panics(), done.load(Ordering::SeqCst)), (1, 1));
        assert_eq!(rt.live_tasks(), 0);
    }

    #[test]
    fn callout_answered_inside_its_start_call_is_kept() {
        let (_, c) = counting();
        let rt = Runtime::new(c);
        rt.callout_opening();
        rt.callout_done(7, Ok((503, vec![], b"no host".to_vec())));
        assert_eq!(rt.callout_opened(Ok(7)), Ok(7));
        let w = Waker::noop();
        assert_eq!(
            rt.callout_poll(7, w),
            Some(Ok((503, vec![], b"no host".to_vec())))
        );
        assert_eq!(rt.callout_poll(7, w), None, "taken once");
    }
}
