//! The streaming callouts of one stream: their response as Envoy delivers it, kept in storage
//! the stream slot owns until the handler reads it.
//!
//! Envoy may deliver events for a new stream *inside* the call that opens it (the router can
//! answer 503 at once when a cluster has no healthy host) and still report success. The entry
//! being opened is therefore marked, and events for an unknown id that arrive while an open is
//! in progress belong to it.

use crate::executor::spare::{OnDemand, Shelf, Spare};
use crate::executor::waker::WakerSlot;
use crate::filter::callouts::CalloutHeaders;
use std::cell::{Cell, RefCell};
use std::thread::LocalKey;

/// Most streaming callouts open at once on one stream.
pub(crate) const MAX_STREAMS: usize = 2;
/// Response bytes buffered for a streaming callout before it is reset for overflow.
pub(crate) const MAX_BUFFERED: usize = 4 << 20;
/// Data buffer capacity an entry keeps when its table goes back to the shelf.
pub(crate) const RETAINED_DATA: usize = 64 * 1024;
/// Most spare tables a worker keeps.
pub(crate) const SHELF_TABLES: usize = 8;
/// Most bytes of spare tables a worker keeps.
pub(crate) const SHELF_BYTES: usize = 256 * 1024;

/// Where an entry is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum EntryState {
    /// Unused.
    #[default]
    Free,
    /// Its open call into Envoy is running.
    Opening,
    /// Open under Envoy's id.
    Open(u64),
}

/// State of one streaming callout.
#[derive(Default)]
pub(crate) struct CalloutState {
    pub(crate) slot: EntryState,
    pub(crate) generation: u32,
    pub(crate) status: u16,
    pub(crate) headers: CalloutHeaders,
    pub(crate) got_headers: bool,
    pub(crate) data: Vec<u8>,
    pub(crate) trailers: CalloutHeaders,
    pub(crate) ended: bool,
    pub(crate) complete: bool,
    pub(crate) reset: Option<u32>,
    pub(crate) waker: WakerSlot,
}

impl CalloutState {
    fn recycle(&mut self) {
        self.slot = EntryState::Free;
        self.generation = self.generation.wrapping_add(1);
        self.status = 0;
        self.headers.clear();
        self.got_headers = false;
        self.data.clear();
        if self.data.capacity() > RETAINED_DATA {
            self.data = Vec::new();
        }
        self.trailers.clear();
        self.ended = false;
        self.complete = false;
        self.reset = None;
        self.waker.clear();
    }
}

/// One event of a streaming callout, as Envoy delivers it.
pub(crate) enum StreamEvent<'e, 'h> {
    Headers(&'e mut dyn Iterator<Item = (&'h [u8], &'h [u8])>, bool),
    Data(&'e mut dyn Iterator<Item = &'h [u8]>, bool),
    Trailers(&'e mut dyn Iterator<Item = (&'h [u8], &'h [u8])>),
    Complete,
    Reset(u32),
}

/// What recording an event asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// No stream took it.
    Unknown,
    /// Recorded.
    Kept,
    /// Recorded, and the stream overflowed: reset stream `id` (outside any borrow).
    Overflow(u64),
}

/// A handle on an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) index: usize,
    pub(crate) generation: u32,
}

/// The entries of one stream's streaming callouts (with their inline header buffers, some
/// kilobytes): taken from the worker's shelf when the stream opens its first one.
#[derive(Default)]
pub(crate) struct Table {
    entries: [RefCell<CalloutState>; MAX_STREAMS],
    opening: Cell<Option<usize>>,
}

impl Spare for Box<Table> {
    fn held(&self) -> usize {
        size_of::<Table>()
            + self
                .entries
                .iter()
                .map(|c| c.borrow().data.capacity())
                .sum::<usize>()
    }
    fn recycle(&mut self) {
        for cell in self.entries.iter_mut() {
            cell.get_mut().recycle();
        }
        *self.opening.get_mut() = None;
    }
    fn shelf() -> &'static LocalKey<RefCell<Shelf<Self>>> {
        thread_local! {
            static TABLES: RefCell<Shelf<Box<Table>>> = const {
                RefCell::new(Shelf::new(
                    SHELF_TABLES,
                    SHELF_BYTES,
                    size_of::<Table>() + MAX_STREAMS * RETAINED_DATA,
                ))
            };
        }
        &TABLES
    }
}

/// The streaming callouts of one stream: nothing but a pointer until the first is opened.
/// Borrows never span a call into Envoy.
#[derive(Default)]
pub(crate) struct Streams {
    table: OnDemand<Table>,
}

impl Streams {
    /// Takes a free entry and marks it opening; `None` when all are busy.
    pub(crate) fn open(&self) -> Option<Ticket> {
        let table = self.table.get_or_take();
        for (index, cell) in table.entries.iter().enumerate() {
            let Ok(mut st) = cell.try_borrow_mut() else {
                continue;
            };
            if st.slot == EntryState::Free {
                st.slot = EntryState::Opening;
                table.opening.set(Some(index));
                return Some(Ticket {
                    index,
                    generation: st.generation,
                });
            }
        }
        None
    }

    /// The open call returned: `Ok(id)` opened (events may already be recorded), `Err` refused.
    pub(crate) fn opened(&self, t: Ticket, result: Result<u64, u32>) -> Result<(), u32> {
        let Some(table) = self.table.get() else {
            return Err(u32::MAX);
        };
        table.opening.set(None);
        let mut st = table.entries[t.index].borrow_mut();
        if st.generation != t.generation {
            return Err(u32::MAX);
        }
        match result {
            Ok(id) => {
                st.slot = EntryState::Open(id);
                Ok(())
            }
            Err(rc) => {
                st.recycle();
                Err(rc)
            }
        }
    }

    /// Runs `f` on the entry of `t` if it is still the one the ticket names.
    pub(crate) fn with<R>(&self, t: Ticket, f: impl FnOnce(&mut CalloutState) -> R) -> Option<R> {
        let mut st = self.entry(t)?;
        (st.slot != EntryState::Free).then(|| f(&mut st))
    }

    /// The entry `t` names, borrowed, if it is still that ticket's (same generation).
    fn entry(&self, t: Ticket) -> Option<std::cell::RefMut<'_, CalloutState>> {
        let st = self
            .table
            .get()?
            .entries
            .get(t.index)?
            .try_borrow_mut()
            .ok()?;
        (st.generation == t.generation).then_some(st)
    }

    /// Frees the entry of `t`; returns the id it was open under, if any (the caller resets it).
    pub(crate) fn release(&self, t: Ticket) -> Option<u64> {
        let mut st = self.entry(t)?;
        let open = match st.slot {
            EntryState::Open(id) if !st.complete && st.reset.is_none() => Some(id),
            _ => None,
        };
        st.recycle();
        open
    }

    /// Records an event for stream `id`.
    pub(crate) fn record(&self, id: u64, event: StreamEvent<'_, '_>) -> Recorded {
        let Some(table) = self.table.get() else {
            return Recorded::Unknown;
        };
        let opening = table.opening.get();
        let found = table.entries.iter().enumerate().find_map(|(i, cell)| {
            let st = cell.try_borrow_mut().ok()?;
            let mine = st.slot == EntryState::Open(id)
                || (st.slot == EntryState::Opening && opening == Some(i));
            mine.then_some(st)
        });
        let Some(mut st) = found else {
            return Recorded::Unknown;
        };
        let mut overflow = false;
        match event {
            StreamEvent::Headers(it, eos) => {
                for (k, v) in it {
                    if k == b":status" {
                        st.status = core::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                    } else {
                        st.headers.push(k, v);
                    }
                }
                st.got_headers = true;
                st.ended |= eos;
            }
            StreamEvent::Data(it, eos) => {
                for c in it {
                    if st.data.len() + c.len() > MAX_BUFFERED {
                        st.reset = Some(u32::MAX);
                        overflow = true;
                        break;
                    }
                    st.data.extend_from_slice(c);
                }
                st.ended |= eos;
            }
            StreamEvent::Trailers(it) => {
                for (k, v) in it {
                    st.trailers.push(k, v);
                }
                st.ended = true;
            }
            StreamEvent::Complete => {
                st.complete = true;
                st.ended = true;
            }
            StreamEvent::Reset(reason) => st.reset = Some(reason),
        }
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        if overflow {
            Recorded::Overflow(id)
        } else {
            Recorded::Kept
        }
    }

    /// Readies for a new stream (no future of the previous stream is alive): the table, if the
    /// stream took one, goes back to the shelf.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.table.release();
    }

    /// Bytes the stream holds for its streaming callouts.
    #[cfg(feature = "testing")]
    pub(crate) fn capacity(&self) -> usize {
        self.table.get().map_or(0, |t| {
            size_of::<Table>()
                + t.entries
                    .iter()
                    .filter_map(|c| c.try_borrow().ok().map(|s| s.data.capacity()))
                    .sum::<usize>()
        })
    }
}
