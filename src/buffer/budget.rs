//! [`Budgets`]: token budgets per key and time window, shared by every worker without a lock.
//!
//! # Table
//!
//! A fixed array of slots, each two atomic words: the key's hash (`0`: empty) and its state,
//! `window tag | tokens used` in one word, updated by compare-and-swap. The hash is keyed with
//! a random seed per table (SipHash), so a client cannot choose keys that land on someone
//! else's budget or slots.
//!
//! * **Only `charge` takes a slot.** `check` and `remaining` look a key up and answer "nothing
//!   used" for a key without one.
//! * **Slots are reclaimed.** A slot whose key used nothing in the current window (its tag is
//!   older) carries no information; when a new key finds no empty slot among its probes it takes such a slot
//!   over: `state` goes from the stale value to [`RECLAIMING`] (so nobody charges it), the key
//!   word to the new key, then `state` to "this window, nothing used". A charger re-reads the
//!   key after loading the state and before its compare-and-swap, and a reclaimed slot's state
//!   never returns to a value a charger loaded before (it carries the current window, a stale
//!   state never does), so no charge lands on another key's slot.
//! * **The window tag does not wrap.** The tag gets the bits it needs to count the windows of
//!   1000 years of uptime; tokens used get the rest (kept up to the limit only: more is
//!   "spent"), and [`Budgets::new`] caps the limit to what fits.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots probed for a key before the table counts as full.
const PROBES: usize = 16;
/// A slot being taken over by another key (never a valid state: used is kept below all-ones).
const RECLAIMING: u64 = u64::MAX;
/// The uptime over which a window tag must not wrap.
const NO_WRAP_FOR: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// Why a key may not spend now.
///
/// ```
/// use std::time::Duration;
/// use jisr::buffer::{BudgetError, Budgets};
///
/// let budgets = Budgets::new(1, 100, Duration::from_secs(60)); // room for one key
/// budgets.charge(b"team-a", 150);
/// match budgets.check(b"team-a") {
///     Err(BudgetError::Exhausted { retry_after }) => assert!(retry_after <= Duration::from_secs(60)),
///     other => panic!("{other:?}"),
/// }
/// assert!(budgets.check(b"team-b").is_ok()); // nothing used: a check takes no slot
/// assert!(!budgets.charge(b"team-b", 1)); // but team-a holds the only slot this window
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetError {
    /// The key spent its budget in this window; it is refilled after `retry_after`.
    Exhausted {
        /// Time until the next window starts (round up for a `retry-after` header).
        retry_after: Duration,
    },
    /// The table has no room for another key (size it for the keys you expect).
    /// [`Budgets::check`] no longer returns it (a check takes no slot); kept for callers
    /// that match on it.
    Full,
}

struct Slot {
    key: AtomicU64,
    state: AtomicU64,
}

/// Token budgets: each key may spend `limit` tokens per fixed window (e.g. 100 000 tokens per
/// minute), shared by all threads of the process.
///
/// Exact and lock-free: a key's window and the tokens it used live in one atomic word, updated
/// with compare-and-swap, so concurrent charges from several workers all count and a new
/// window starts at zero exactly once. The table is allocated once (`capacity` slots) and
/// never grows: a key takes a slot when it is first charged in a window, and a slot whose key
/// charged nothing in the current window can be taken over by another key, so throwaway keys
/// (a budget keyed by client address) cannot lock others out beyond one window. Keys are told
/// apart by a 64-bit hash keyed with a random seed per table: two keys share a budget only by
/// chance (about 2³² keys for an even chance), never by a client's choice.
///
/// A request is checked before it goes upstream and charged when its response ends (its usage
/// is known only then), so requests in flight when a budget runs out still complete: a key can
/// overshoot its budget by what those requests use. Tokens used are counted up to the limit.
///
/// ```
/// use std::time::Duration;
/// use jisr::buffer::{BudgetError, Budgets};
///
/// let budgets = Budgets::new(1024, 100, Duration::from_secs(60));
/// assert!(budgets.check(b"key-1").is_ok());
/// budgets.charge(b"key-1", 80);
/// assert_eq!(budgets.remaining(b"key-1"), 20);
/// budgets.charge(b"key-1", 30);
/// assert!(matches!(budgets.check(b"key-1"), Err(BudgetError::Exhausted { .. })));
/// assert!(budgets.check(b"key-2").is_ok()); // another key, another budget
/// ```
pub struct Budgets {
    slots: Box<[Slot]>,
    seed: RandomState,
    limit: u64,
    /// Bits of a state word that hold the tokens used; the rest hold the window tag.
    used_bits: u32,
    window: Duration,
    epoch: Instant,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field("capacity", &self.slots.len())
            .field("limit", &self.limit)
            .field("window", &self.window)
            .finish()
    }
}

/// Where a key is, or where it could go.
enum Found {
    At(usize),
    Empty(usize),
    Stale(usize, u64),
    /// Not found, and a probed slot is being taken over (perhaps for this key): look again.
    Busy,
    Full,
}

/// Waits a moment for another thread's two stores (a slot being taken over).
fn backoff() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

impl Budgets {
    /// A table for up to `capacity` keys charged in one window, each allowed `limit` tokens
    /// per `window`.
    ///
    /// The limit is capped so that the window number never wraps within 1000 years of uptime
    /// (a wrapped number could bring an old count back): at 2⁴⁰ − 2 tokens for one-hour
    /// windows, 2³⁵ − 2 for one-minute windows, 2²⁹ − 2 for one-second windows;
    /// [`limit`](Self::limit) says what applies.
    ///
    /// # Panics
    /// If `capacity` or `window` is zero.
    pub fn new(capacity: usize, limit: u64, window: Duration) -> Budgets {
        assert!(
            capacity > 0 && !window.is_zero(),
            "capacity and window must be non-zero"
        );
        // The window tag needs enough bits not to wrap within `NO_WRAP_FOR`; tokens used get
        // the rest, up to what `limit` needs (0..=limit, never all-ones: `RECLAIMING`).
        let windows = NO_WRAP_FOR.as_nanos() / window.as_nanos();
        let tag_bits = (128 - windows.leading_zeros()).clamp(1, 63);
        let used_bits = (64 - tag_bits).min(64 - limit.saturating_add(1).leading_zeros());
        let limit = limit.min((1u64 << used_bits) - 2);
        Budgets {
            slots: (0..capacity)
                .map(|_| Slot {
                    key: AtomicU64::new(0),
                    state: AtomicU64::new(0),
                })
                .collect(),
            seed: RandomState::new(),
            limit,
            used_bits,
            window,
            epoch: Instant::now(),
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        // Never 0 (0 marks an empty slot).
        self.seed.hash_one(key).max(1)
    }

    fn used_mask(&self) -> u64 {
        (1u64 << self.used_bits) - 1
    }

    /// The window tag now (the window number, which does not wrap; see `new`).
    fn window_now(&self, now: Instant) -> u64 {
        let n = now.saturating_duration_since(self.epoch).as_nanos() / self.window.as_nanos();
        (n as u64) & (u64::MAX >> self.used_bits)
    }

    fn retry_after(&self, now: Instant) -> Duration {
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        let w = self.window.as_nanos();
        let left = w - since % w;
        Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX))
    }

    /// Tokens used in `window` according to `state`.
    fn used(&self, state: u64, window: u64) -> u64 {
        if state != RECLAIMING && state >> self.used_bits == window {
            state & self.used_mask()
        } else {
            0
        }
    }

    fn pack(&self, window: u64, used: u64) -> u64 {
        (window << self.used_bits) | used.min(self.limit)
    }

    /// Looks `h` up among its probes; else the first empty slot, else the first stale one.
    fn find(&self, h: u64, window: u64) -> Found {
        let n = self.slots.len();
        let start = (h % n as u64) as usize;
        let (mut empty, mut stale, mut busy) = (None, None, false);
        for i in 0..PROBES.min(n) {
            let at = (start + i) % n;
            let slot = &self.slots[at];
            // The state first: a taken-over slot's final state is stored after its new key,
            // so a key read after that state is the new one.
            let st = slot.state.load(Ordering::Acquire);
            match slot.key.load(Ordering::Acquire) {
                k if k == h => return Found::At(at),
                0 => {
                    empty.get_or_insert(at);
                }
                _ if st == RECLAIMING => busy = true,
                // Stale: charged in an earlier window only (tags do not wrap, see `new`).
                _ if stale.is_none() && st >> self.used_bits < window => stale = Some((at, st)),
                _ => {}
            }
        }
        // A slot being taken over may be taken for this very key: claiming another one would
        // give the key two slots.
        if busy {
            return Found::Busy;
        }
        match (empty, stale) {
            (Some(at), _) => Found::Empty(at),
            (None, Some((at, st))) => Found::Stale(at, st),
            (None, None) => Found::Full,
        }
    }

    /// The slot of `h`, taken (or taken over) if it has none; `None` when every probed slot
    /// is in use this window.
    fn claim(&self, h: u64, window: u64) -> Option<usize> {
        // Each failed attempt means another thread changed one of the probed slots.
        loop {
            match self.find(h, window) {
                Found::At(at) => return Some(at),
                Found::Busy => backoff(),
                Found::Empty(at) => {
                    match self.slots[at].key.compare_exchange(
                        0,
                        h,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Some(at),
                        Err(other) if other == h => return Some(at),
                        Err(_) => continue,
                    }
                }
                Found::Stale(at, st) => {
                    let slot = &self.slots[at];
                    if slot
                        .state
                        .compare_exchange(st, RECLAIMING, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                    {
                        continue;
                    }
                    slot.key.store(h, Ordering::Release);
                    slot.state.store(self.pack(window, 0), Ordering::Release);
                    return Some(at);
                }
                Found::Full => return None,
            }
        }
    }

    /// Whether `key` may spend now (it has tokens left in this window).
    ///
    /// # Errors
    /// [`BudgetError::Exhausted`] with the time until the next window.
    pub fn check(&self, key: &[u8]) -> Result<(), BudgetError> {
        let now = Instant::now();
        if self.used_now(key, now) < self.limit {
            Ok(())
        } else {
            Err(BudgetError::Exhausted {
                retry_after: self.retry_after(now),
            })
        }
    }

    fn used_now(&self, key: &[u8], now: Instant) -> u64 {
        self.used_in(self.hash(key), self.window_now(now))
    }

    fn used_in(&self, h: u64, window: u64) -> u64 {
        loop {
            return match self.find(h, window) {
                Found::At(at) => self.used(self.slots[at].state.load(Ordering::Acquire), window),
                Found::Busy => {
                    backoff();
                    continue;
                }
                _ => 0,
            };
        }
    }

    /// Adds `tokens` to what `key` used in this window. `false` when the table has no room
    /// for the key (every slot it may use was charged by another key in this window).
    pub fn charge(&self, key: &[u8], tokens: u64) -> bool {
        self.charge_in(self.hash(key), tokens, self.window_now(Instant::now()))
    }

    fn charge_in(&self, h: u64, tokens: u64, window: u64) -> bool {
        loop {
            let Some(at) = self.claim(h, window) else {
                return false;
            };
            let slot = &self.slots[at];
            let mut cur = slot.state.load(Ordering::Acquire);
            loop {
                // Taken over meanwhile (or being taken over): find the key's slot again.
                if cur == RECLAIMING || slot.key.load(Ordering::Acquire) != h {
                    backoff();
                    break;
                }
                // A charge that raced the start of a newer window counts in the newer one.
                let w = window.max(cur >> self.used_bits);
                let next = self.pack(w, self.used(cur, w).saturating_add(tokens));
                match slot.state.compare_exchange_weak(
                    cur,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return true,
                    Err(actual) => cur = actual,
                }
            }
        }
    }

    /// Tokens `key` may still spend in this window.
    pub fn remaining(&self, key: &[u8]) -> u64 {
        self.limit
            .saturating_sub(self.used_now(key, Instant::now()))
    }

    /// Tokens allowed per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_charges_all_count() {
        let b = Arc::new(Budgets::new(64, u64::MAX, Duration::from_secs(3600)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        b.charge(b"k", 3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.limit() - b.remaining(b"k"), 120_000);
        assert!(b.limit() > 120_000);
    }

    #[test]
    fn a_new_window_starts_at_zero() {
        let b = Budgets::new(8, 10, Duration::from_millis(50));
        b.charge(b"k", 10);
        let Err(BudgetError::Exhausted { retry_after }) = b.check(b"k") else {
            panic!("exhausted");
        };
        assert!(retry_after <= Duration::from_millis(50));
        std::thread::sleep(retry_after + Duration::from_millis(5));
        assert_eq!(b.check(b"k"), Ok(()));
        assert_eq!(b.remaining(b"k"), 10);
    }

    #[test]
    fn a_full_table_says_so() {
        let b = Budgets::new(2, 10, Duration::from_secs(60));
        assert!(b.charge(b"a", 1) && b.charge(b"b", 1));
        assert_eq!(b.check(b"c"), Ok(()), "a check takes no slot");
        assert!(!b.charge(b"c", 1), "both slots charged in this window");
        assert_eq!(b.remaining(b"c"), 10);
    }

    #[test]
    fn hashes_are_keyed_per_table() {
        let (a, b) = (
            Budgets::new(1, 1, Duration::from_secs(1)),
            Budgets::new(1, 1, Duration::from_secs(1)),
        );
        // A client cannot compute where its key lands, or which keys share its hash.
        assert_ne!(a.hash(b"team-a"), b.hash(b"team-a"));
    }

    #[test]
    fn limits_are_capped_so_the_window_number_never_wraps() {
        let hour = Budgets::new(1, u64::MAX, Duration::from_secs(3600));
        assert_eq!(hour.limit(), (1 << 40) - 2);
        let second = Budgets::new(1, u64::MAX, Duration::from_secs(1));
        assert_eq!(second.limit(), (1 << 29) - 2);
        let tiny = Budgets::new(1, 100, Duration::from_nanos(1));
        assert!(tiny.limit() <= 100);
        // 1000 years of one-second windows fit the tag.
        let windows = NO_WRAP_FOR.as_secs();
        assert_eq!(windows >> (64 - second.used_bits), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Two workers charge one key in the same window: both charges count.
    #[test]
    fn concurrent_charges_of_one_key_all_count() {
        loom::model(|| {
            let b = Arc::new(Budgets::new(2, 1000, Duration::from_secs(60)));
            let t = {
                let b = b.clone();
                loom::thread::spawn(move || assert!(b.charge_in(7, 3, 1)))
            };
            assert!(b.charge_in(7, 5, 1));
            t.join().unwrap();
            assert_eq!(b.used_in(7, 1), 8);
        });
    }

    /// A slot taken over by a new key while its old key is charged: the new key's budget
    /// never counts the old key's tokens, and the old key's charge lands in one slot.
    #[test]
    fn a_slot_taken_over_never_mixes_two_keys() {
        loom::model(|| {
            let b = Arc::new(Budgets::new(1, 1000, Duration::from_secs(60)));
            assert!(b.charge_in(1, 2, 0)); // key 1 in window 0
            let old = {
                let b = b.clone();
                loom::thread::spawn(move || b.charge_in(1, 5, 0))
            };
            let new_key = b.charge_in(2, 3, 1); // key 2 in window 1 takes the slot over
            let old_charged = old.join().unwrap();
            if new_key {
                assert_eq!(b.used_in(2, 1), 3);
            }
            if old_charged && !new_key {
                assert_eq!(b.used_in(1, 0), 7);
            }
        });
    }

    /// Two first charges of one new key while a stale slot is taken over: the key ends with
    /// one slot holding both charges.
    #[test]
    fn two_first_charges_share_one_slot() {
        loom::model(|| {
            let b = Arc::new(Budgets::new(2, 1000, Duration::from_secs(60)));
            assert!(b.charge_in(1, 1, 0));
            assert!(b.charge_in(2, 1, 0));
            let t = {
                let b = b.clone();
                loom::thread::spawn(move || assert!(b.charge_in(9, 3, 1)))
            };
            assert!(b.charge_in(9, 4, 1));
            t.join().unwrap();
            assert_eq!(b.used_in(9, 1), 7);
        });
    }
}
