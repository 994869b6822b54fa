//! Child spans a stream's handlers started and have not finished yet.
//!
//! A child span belongs to the module until it is finished. Handlers hold a `Span` that
//! finishes its child on drop; the table here finishes whatever is left when the stream
//! completes (a span leaked with `mem::forget`, or a handler cancelled while no hook ran), so
//! every child is finished exactly once and before Envoy destroys the stream.

use super::context::{FinishSpan, SpanPtr};
use crate::executor::spare::{OnDemand, Shelf, Spare};
use arrayvec::ArrayVec;
use std::cell::RefCell;
use std::thread::LocalKey;

/// Most child spans a stream can have open at once.
pub(crate) const MAX_OPEN: usize = 16;
/// Most spare tables a worker keeps.
pub(crate) const SHELF_TABLES: usize = 16;

/// The open children of one stream: taken from the worker's shelf when the stream opens its
/// first child.
#[derive(Default)]
pub(crate) struct Open(RefCell<ArrayVec<(SpanPtr, FinishSpan), MAX_OPEN>>);

impl Spare for Box<Open> {
    fn held(&self) -> usize {
        size_of::<Open>()
    }
    fn recycle(&mut self) {
        // Empty already (`ChildSpans::reset` finishes every child first); nothing to finish.
        self.0.get_mut().clear();
    }
    fn shelf() -> &'static LocalKey<RefCell<Shelf<Self>>> {
        thread_local! {
            static TABLES: RefCell<Shelf<Box<Open>>> = const {
                RefCell::new(Shelf::new(
                    SHELF_TABLES,
                    SHELF_TABLES * size_of::<Open>(),
                    size_of::<Open>(),
                ))
            };
        }
        &TABLES
    }
}

/// A stream's child spans: nothing but a pointer until the first is opened.
#[derive(Default)]
pub(crate) struct ChildSpans {
    open: OnDemand<Open>,
}

impl ChildSpans {
    /// Records a new child; `false` (and the child is finished at once) when the table is full.
    pub(crate) fn open(&self, span: SpanPtr, finish: FinishSpan) -> bool {
        let Ok(mut open) = self.open.get_or_take().0.try_borrow_mut() else {
            // SAFETY: `finish` came with `span` from the host and the span is not recorded,
            // so this is its only finish.
            unsafe { finish(span) };
            return false;
        };
        if open.try_push((span, finish)).is_err() {
            drop(open);
            // SAFETY: as above: the span was never recorded.
            unsafe { finish(span) };
            return false;
        }
        true
    }

    /// Finishes `span` if it is still open (it is not once the stream completed).
    pub(crate) fn finish(&self, span: SpanPtr) {
        let Some(open) = self.open.get() else {
            return;
        };
        let found = open.0.try_borrow_mut().ok().and_then(|mut open| {
            let i = open.iter().position(|(s, _)| *s == span)?;
            Some(open.swap_remove(i))
        });
        if let Some((span, finish)) = found {
            // SAFETY: removed from the table above, so no other path finishes it again.
            unsafe { finish(span) };
        }
    }

    /// Whether `span` is open.
    pub(crate) fn is_open(&self, span: SpanPtr) -> bool {
        self.open.get().is_some_and(|open| {
            open.0
                .try_borrow()
                .is_ok_and(|open| open.iter().any(|(s, _)| *s == span))
        })
    }

    /// Whether the stream ever opened a child span (its table stays until the stream ends).
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.open.get().is_some()
    }

    /// Finishes every open child.
    #[inline]
    pub(crate) fn finish_all(&self) {
        let Some(open) = self.open.get() else {
            return;
        };
        loop {
            let next = open.0.try_borrow_mut().ok().and_then(|mut o| o.pop());
            let Some((span, finish)) = next else { return };
            // SAFETY: popped from the table, so this is the span's only finish.
            unsafe { finish(span) };
        }
    }

    /// Readies for a new stream: finishes every open child and gives the table, if the stream
    /// took one, back to the shelf.
    #[inline]
    pub(crate) fn reset(&mut self) {
        if self.open.get().is_none() {
            return;
        }
        self.finish_all();
        self.open.release();
    }
}
