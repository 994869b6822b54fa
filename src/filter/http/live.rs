//! Streams that are waiting (their handler pended at least once), for `/jisr/streams`.
//!
//! A stream enters the registry the first time its handler pends, and leaves when it ends;
//! a handler that completes inside its hook never touches it. One lane per worker, each behind
//! its own mutex that only that worker and the admin reader take, so workers never contend.
//! Entries are reused (no allocation per stream once the lanes have grown).

use crate::filter::http::meta::FilterMeta;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

const LANES: usize = 64;

/// Whether anything can list the waiting streams (a jisr server extension answers
/// `/jisr/streams`); until then streams are not registered and pay one relaxed load.
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts registering waiting streams (from now on).
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether waiting streams are registered.
#[inline]
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What `/jisr/streams` shows of one waiting stream.
#[derive(Clone)]
pub(crate) struct LiveStream {
    pub(crate) filter: Arc<FilterMeta>,
    pub(crate) phase: &'static str,
    pub(crate) since: Instant,
    pub(crate) polls: u64,
    pub(crate) wakes_inline: u64,
    pub(crate) wakes_scheduled: u64,
}

/// A waiting stream's figures, updated by its worker after each poll without a lock (plain
/// relaxed stores) and read by the admin path. One per registry entry, made when the lane
/// first grows to that entry and kept for the process (bounded by the most streams ever
/// waiting at once on a worker).
#[derive(Default)]
pub(crate) struct Figures {
    response: AtomicU8,
    polls: AtomicU64,
    wakes_inline: AtomicU64,
    wakes_scheduled: AtomicU64,
}

impl Figures {
    /// Stores the stream's figures after a poll (its worker only).
    pub(crate) fn set(&self, response: bool, polls: u64, inline: u64, scheduled: u64) {
        self.response.store(u8::from(response), Ordering::Relaxed);
        self.polls.store(polls, Ordering::Relaxed);
        self.wakes_inline.store(inline, Ordering::Relaxed);
        self.wakes_scheduled.store(scheduled, Ordering::Relaxed);
    }
}

type Entry = Option<(Arc<FilterMeta>, Instant)>;

#[derive(Default)]
struct Lane {
    entries: Vec<Entry>,
    figures: Vec<&'static Figures>,
    free: Vec<usize>,
}

static REGISTRY: [Mutex<Lane>; LANES] = [const {
    Mutex::new(Lane {
        entries: Vec::new(),
        figures: Vec::new(),
        free: Vec::new(),
    })
}; LANES];

fn lane(worker: u32) -> MutexGuard<'static, Lane> {
    REGISTRY[worker as usize % LANES]
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Where a stream is in the registry, and its figures.
#[derive(Clone, Copy)]
pub(crate) struct LiveKey {
    worker: u32,
    index: usize,
    pub(crate) figures: &'static Figures,
}

/// Adds a stream that just pended for the first time (one lock, once per waiting stream).
pub(crate) fn enter(worker: u32, filter: Arc<FilterMeta>) -> LiveKey {
    let since = Instant::now();
    let mut l = lane(worker);
    let index = match l.free.pop() {
        Some(i) => {
            l.entries[i] = Some((filter, since));
            i
        }
        None => {
            l.entries.push(Some((filter, since)));
            l.figures.push(Box::leak(Box::default()));
            l.entries.len() - 1
        }
    };
    LiveKey {
        worker,
        index,
        figures: l.figures[index],
    }
}

/// The stream ended.
pub(crate) fn leave(key: LiveKey) {
    let mut l = lane(key.worker);
    if let Some(slot) = l.entries.get_mut(key.index) {
        if slot.take().is_some() {
            l.free.push(key.index);
        }
    }
}

/// Every waiting stream now.
pub(crate) fn snapshot() -> Vec<LiveStream> {
    let mut out = Vec::new();
    for worker in 0..LANES as u32 {
        let l = lane(worker);
        for (e, f) in l.entries.iter().zip(&l.figures) {
            if let Some((filter, since)) = e {
                out.push(LiveStream {
                    filter: filter.clone(),
                    phase: if f.response.load(Ordering::Relaxed) == 1 {
                        "response"
                    } else {
                        "request"
                    },
                    since: *since,
                    polls: f.polls.load(Ordering::Relaxed),
                    wakes_inline: f.wakes_inline.load(Ordering::Relaxed),
                    wakes_scheduled: f.wakes_scheduled.load(Ordering::Relaxed),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_listed_updated_and_reused() {
        let meta = Arc::new(FilterMeta {
            name: "f".into(),
            mode: crate::filter::http::meta::ResponseMode::Passthrough,
            stats: Default::default(),
            envoy: None,
            process_log: None,
        });
        enable();
        let mine = || {
            snapshot()
                .into_iter()
                .filter(|x| x.filter.name == "f")
                .collect::<Vec<_>>()
        };
        let a = enter(63, meta.clone());
        a.figures.set(true, 5, 1, 2);
        let seen = mine();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].phase, seen[0].polls, seen[0].wakes_scheduled),
            ("response", 5, 2)
        );
        leave(a);
        leave(a);
        assert!(mine().is_empty());
        let b = enter(63, meta);
        assert_eq!(b.index, a.index, "reused");
        leave(b);
        assert!(mine().is_empty());
    }
}
