//! The unary callouts of one stream: what Envoy delivers is copied into storage the stream slot
//! owns, never into memory a handler future borrowed.
//!
//! Soundness does not depend on a callout future's destructor: a future that is forgotten while
//! its callout is in flight leaves an entry behind, Envoy's completion is written into that
//! entry (slot memory, alive until the slot is reused), and the entry is recycled when the
//! stream ends. A dropped future frees its entry at once, so its late completion finds nothing.
//!
//! Envoy may answer a callout *inside* the call that starts it (e.g. its own 503 when the
//! cluster has no healthy host) before it has told us the callout's id. The entry being opened
//! is therefore marked, and a completion for an unknown id that arrives while an open is in
//! progress belongs to it.

use crate::executor::spare::{OnDemand, Shelf, Spare};
use crate::executor::waker::WakerSlot;
pub(crate) use crate::filter::headers::CalloutHeaders;
use std::cell::{Cell, RefCell};
use std::thread::LocalKey;

/// What owns a table of unary callouts (an HTTP stream, a connection): how a callout future
/// reaches the table and starts a callout through the running hook's host.
pub(crate) trait CalloutOwner {
    /// The owner's table.
    fn callouts(&self) -> &Callouts;
    /// Starts a callout through the running hook's host: Envoy's id, or its init result;
    /// `None` when the owner can no longer be called (ended, or outside a hook).
    fn start_callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<Result<u64, u32>>;
    /// Whether the owner ended (its callouts can no longer complete).
    fn ended(&self) -> bool;
    /// Whether `w` is the owner's own waker (a combinator's is registered instead).
    fn is_own_waker(&self, w: &std::task::Waker) -> bool;
}

/// Most callouts tracked in flight per stream.
pub(crate) const MAX_IN_FLIGHT: usize = 16;
/// Body (and header) bytes an entry keeps when its table goes back to the shelf.
pub(crate) const RETAINED_BODY: usize = 64 * 1024;
/// Most spare tables a worker keeps.
pub(crate) const SHELF_TABLES: usize = 8;
/// Most bytes of spare tables a worker keeps.
pub(crate) const SHELF_BYTES: usize = 256 * 1024;
/// Largest spare table a worker keeps (bigger ones are freed when their stream ends).
pub(crate) const SHELF_TABLE_BYTES: usize = 128 * 1024;

/// Where an entry is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Unused.
    Free,
    /// Its start call into Envoy is running.
    Opening,
    /// Started; Envoy's id is known.
    InFlight(u64),
    /// Envoy delivered the completion.
    Done,
}

/// One callout's delivery area.
pub(crate) struct Entry {
    pub(crate) state: State,
    /// Tells a reused entry from the one a future started with.
    pub(crate) generation: u32,
    pub(crate) result: u32,
    pub(crate) status: u16,
    /// Response header names and values, back to back; `spans` are (start, name len, value len).
    pub(crate) head: Vec<u8>,
    pub(crate) spans: Vec<(u32, u32, u32)>,
    pub(crate) body: Vec<u8>,
    pub(crate) waker: WakerSlot,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            state: State::Free,
            generation: 0,
            result: 0,
            status: 0,
            head: Vec::new(),
            spans: Vec::new(),
            body: Vec::new(),
            waker: WakerSlot::default(),
        }
    }

    fn recycle(&mut self) {
        self.state = State::Free;
        self.generation = self.generation.wrapping_add(1);
        self.result = 0;
        self.status = 0;
        self.head.clear();
        self.spans.clear();
        self.body.clear();
        self.waker.clear();
        if self.body.capacity() > RETAINED_BODY {
            self.body = Vec::new();
        }
        if self.head.capacity() > RETAINED_BODY {
            self.head = Vec::new();
        }
    }
}

/// A handle on an entry: its index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) index: usize,
    pub(crate) generation: u32,
}

/// The entries of one stream's callouts: taken from the worker's shelf when the stream starts
/// its first callout.
#[derive(Default)]
pub(crate) struct Table {
    entries: RefCell<Vec<Entry>>,
    /// The entry whose start call is running, if any.
    opening: Cell<Option<usize>>,
}

impl Spare for Box<Table> {
    fn held(&self) -> usize {
        let entries = self.entries.borrow();
        size_of::<Table>()
            + entries.capacity() * size_of::<Entry>()
            + entries
                .iter()
                .map(|e| e.body.capacity() + e.head.capacity() + e.spans.capacity() * 12)
                .sum::<usize>()
    }
    fn recycle(&mut self) {
        for e in self.entries.get_mut().iter_mut() {
            if e.state != State::Free {
                e.recycle();
            }
        }
        *self.opening.get_mut() = None;
    }
    fn shelf() -> &'static LocalKey<RefCell<Shelf<Self>>> {
        thread_local! {
            static TABLES: RefCell<Shelf<Box<Table>>> = const {
                RefCell::new(Shelf::new(SHELF_TABLES, SHELF_BYTES, SHELF_TABLE_BYTES))
            };
        }
        &TABLES
    }
}

/// The callouts of one stream: nothing but a pointer until the first is started. Borrows of
/// the table never span a call into Envoy.
#[derive(Default)]
pub(crate) struct Callouts {
    table: OnDemand<Table>,
}

impl Callouts {
    /// Takes a free entry and marks it opening; `None` when all are busy.
    pub(crate) fn open(&self) -> Option<Ticket> {
        let table = self.table.get_or_take();
        let mut entries = table.entries.borrow_mut();
        let index = match entries.iter().position(|e| e.state == State::Free) {
            Some(i) => i,
            None if entries.len() < MAX_IN_FLIGHT => {
                entries.push(Entry::new());
                entries.len() - 1
            }
            None => return None,
        };
        entries[index].state = State::Opening;
        table.opening.set(Some(index));
        Some(Ticket {
            index,
            generation: entries[index].generation,
        })
    }

    /// The start call returned: `Ok(id)` started, `Err(rc)` refused. Returns whether the
    /// callout has an answer or will get one (an answer delivered during the call counts even
    /// when Envoy then reports the start as failed).
    pub(crate) fn opened(&self, t: Ticket, started: Result<u64, u32>) -> Result<(), u32> {
        let Some(table) = self.table.get() else {
            return Err(u32::MAX);
        };
        table.opening.set(None);
        let mut entries = table.entries.borrow_mut();
        let Some(e) = entries
            .get_mut(t.index)
            .filter(|e| e.generation == t.generation)
        else {
            return Err(u32::MAX);
        };
        match (e.state, started) {
            (State::Done, _) => Ok(()),
            (_, Ok(id)) => {
                e.state = State::InFlight(id);
                Ok(())
            }
            (_, Err(rc)) => {
                e.recycle();
                Err(rc)
            }
        }
    }

    /// Records Envoy's completion of callout `id`; returns whether an entry took it.
    pub(crate) fn deliver<'h>(
        &self,
        id: u64,
        result: u32,
        headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
        chunks: impl Iterator<Item = &'h [u8]>,
    ) -> bool {
        let Some(table) = self.table.get() else {
            return false;
        };
        let mut entries = table.entries.borrow_mut();
        let index = entries
            .iter()
            .position(|e| e.state == State::InFlight(id))
            .or_else(|| {
                // Answered inside its own start call, before we learnt its id.
                table
                    .opening
                    .get()
                    .filter(|&i| entries.get(i).is_some_and(|e| e.state == State::Opening))
            });
        let Some(e) = index.and_then(|i| entries.get_mut(i)) else {
            return false;
        };
        for (k, v) in headers {
            if k == b":status" {
                e.status = core::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            } else {
                let start = e.head.len() as u32;
                e.head.extend_from_slice(k);
                e.head.extend_from_slice(v);
                e.spans.push((start, k.len() as u32, v.len() as u32));
            }
        }
        for c in chunks {
            e.body.extend_from_slice(c);
        }
        e.result = result;
        e.state = State::Done;
        let waker = e.waker.take();
        drop(entries);
        // Outside the borrow: a waker may run arbitrary code.
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Runs `f` on the entry of `t` if it is still the one the ticket names.
    pub(crate) fn with<R>(&self, t: Ticket, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let mut entries = self.table.get()?.entries.borrow_mut();
        entries
            .get_mut(t.index)
            .filter(|e| e.generation == t.generation && e.state != State::Free)
            .map(f)
    }

    /// Frees the entry of `t` (its callout is abandoned: a late completion finds nothing).
    pub(crate) fn release(&self, t: Ticket) {
        let Some(table) = self.table.get() else {
            return;
        };
        if let Ok(mut entries) = table.entries.try_borrow_mut() {
            if let Some(e) = entries
                .get_mut(t.index)
                .filter(|e| e.generation == t.generation)
            {
                e.recycle();
            }
        }
    }

    /// Readies for a new stream (no future of the previous stream is alive): the table, if the
    /// stream took one, goes back to the shelf.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.table.release();
    }

    /// Bytes the stream holds for its callouts.
    #[cfg(feature = "testing")]
    pub(crate) fn capacity(&self) -> usize {
        self.table.get().map_or(0, |t| {
            let entries = t.entries.borrow();
            size_of::<Table>()
                + entries
                    .iter()
                    .map(|e| e.body.capacity() + e.head.capacity() + e.spans.capacity() * 12)
                    .sum::<usize>()
        })
    }
}
