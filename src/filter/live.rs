//! Streams that are waiting (their handler pended at least once), for `/jisr/streams`.
//!
//! A stream enters the registry the first time its handler pends, and leaves when it ends;
//! a handler that completes inside its hook never touches it. One lane per worker, each behind
//! its own mutex that only that worker and the admin reader take, so workers never contend.
//! Entries are reused (no allocation per stream once the lanes have grown).

use crate::filter::core::FilterMeta;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

const LANES: usize = 64;

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

#[derive(Default)]
struct Lane {
    entries: Vec<Option<(u64, LiveStream)>>,
    free: Vec<usize>,
    next_generation: u64,
}

static REGISTRY: [Mutex<Lane>; LANES] = [const {
    Mutex::new(Lane {
        entries: Vec::new(),
        free: Vec::new(),
        next_generation: 0,
    })
}; LANES];

fn lane(worker: u32) -> MutexGuard<'static, Lane> {
    REGISTRY[worker as usize % LANES]
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Where a stream is in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LiveKey {
    worker: u32,
    index: usize,
    generation: u64,
}

/// Adds a stream that just pended for the first time.
pub(crate) fn enter(worker: u32, s: LiveStream) -> LiveKey {
    let mut l = lane(worker);
    l.next_generation += 1;
    let generation = l.next_generation;
    let index = match l.free.pop() {
        Some(i) => {
            l.entries[i] = Some((generation, s));
            i
        }
        None => {
            l.entries.push(Some((generation, s)));
            l.entries.len() - 1
        }
    };
    LiveKey {
        worker,
        index,
        generation,
    }
}

/// Updates a waiting stream's figures after a poll.
pub(crate) fn update(key: LiveKey, f: impl FnOnce(&mut LiveStream)) {
    let mut l = lane(key.worker);
    if let Some(Some((g, s))) = l.entries.get_mut(key.index) {
        if *g == key.generation {
            f(s);
        }
    }
}

/// The stream ended.
pub(crate) fn leave(key: LiveKey) {
    let mut l = lane(key.worker);
    let Some(slot) = l.entries.get_mut(key.index) else {
        return;
    };
    if matches!(slot, Some((g, _)) if *g == key.generation) {
        *slot = None;
        l.free.push(key.index);
    }
}

/// Every waiting stream now.
pub(crate) fn snapshot() -> Vec<LiveStream> {
    let mut out = Vec::new();
    for worker in 0..LANES as u32 {
        let l = lane(worker);
        out.extend(l.entries.iter().flatten().map(|(_, s)| s.clone()));
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
            mode: crate::ResponseMode::Passthrough,
            stats: Default::default(),
            envoy: None,
            process_log: None,
        });
        let s = |phase| LiveStream {
            filter: meta.clone(),
            phase,
            since: Instant::now(),
            polls: 1,
            wakes_inline: 0,
            wakes_scheduled: 0,
        };
        let a = enter(63, s("request"));
        update(a, |x| x.polls = 5);
        let mine = |v: Vec<LiveStream>| v.into_iter().filter(|x| x.filter.name == "f").count();
        assert!(
            snapshot()
                .iter()
                .any(|x| x.filter.name == "f" && x.polls == 5)
        );
        leave(a);
        leave(a);
        let b = enter(63, s("response"));
        assert_eq!(b.index, a.index, "reused");
        update(a, |x| x.polls = 99);
        assert!(
            snapshot().iter().all(|x| x.polls != 99),
            "stale key ignored"
        );
        leave(b);
        assert_eq!(mine(snapshot()), 0);
    }
}
