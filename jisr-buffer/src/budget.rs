//! [`Budgets`]: token budgets per key and time window, shared by every worker without a lock.
//!
//! # Table
//!
//! A fixed array of slots, each two atomic words: the key's hash (`0`: empty) and its state,
//! `window tag | tokens committed` in one word, updated by compare-and-swap. Tokens committed
//! are the tokens charged in the window plus those reserved in it and not yet settled or
//! released. The hash is keyed with a random seed per table (SipHash), so a client cannot
//! choose keys that land on someone else's budget or slots.
//!
//! * **Only `charge` and `reserve` take a slot.** `check` and `remaining` look a key up and
//!   answer "nothing committed" for a key without one; settling or releasing a reservation
//!   never takes a slot for what it gives back.
//! * **Slots are reclaimed.** A slot whose key committed nothing in the current window (its
//!   tag is older) carries no information; when a new key finds no empty slot among its
//!   probes it takes such a slot over: `state` goes from the stale value to [`RECLAIMING`] (so
//!   nobody charges it), the key word to the new key, then `state` to "this window, nothing
//!   committed". An updater re-reads the key after loading the state and before its
//!   compare-and-swap, and a reclaimed slot's state never returns to a value an updater loaded
//!   before (it carries the current window, a stale state never does), so no update lands on
//!   another key's slot.
//! * **A reservation belongs to its window.** A [`Reservation`] remembers the window tag its
//!   tokens were added in; settling or releasing it takes them back only from a state with
//!   that tag. Once a newer window started, they are gone with the old count: settling then
//!   charges the real usage to the current window, releasing does nothing. So a reservation
//!   never taken back (its guard forgotten) holds its tokens until its window ends, and never
//!   makes a later window's count wrong.
//! * **Counts keep their meaning past the limit.** Tokens committed are kept up to twice the
//!   limit (more saturates there). The reservations outstanding in a window were each admitted
//!   within the limit, so together they are at most the limit: taking them all back from a
//!   saturated count still leaves at least the limit, and the key stays spent for the window.
//! * **The window tag does not wrap.** The tag gets the bits it needs to count the windows of
//!   1000 years of uptime; tokens committed get the rest, and [`Budgets::new`] caps the limit
//!   to what fits (twice the limit must fit).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots probed for a key before the table counts as full.
const PROBES: usize = 16;
/// A slot being taken over by another key (never a valid state: counts stay below all-ones).
const RECLAIMING: u64 = u64::MAX;
/// The uptime over which a window tag must not wrap.
const NO_WRAP_FOR: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// Why a key may not spend now.
///
/// ```
/// use std::time::Duration;
/// use jisr_buffer::{BudgetError, Budgets};
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
    /// The key spent its budget in this window (or, for [`Budgets::reserve`], what is left is
    /// less than the reservation); it is refilled after `retry_after`.
    Exhausted {
        /// Time until the next window starts (round up for a `retry-after` header).
        retry_after: Duration,
    },
    /// The table has no room for another key (size it for the keys you expect); only
    /// [`Budgets::reserve`] returns it ([`Budgets::check`] takes no slot).
    Full,
}

struct Slot {
    key: AtomicU64,
    state: AtomicU64,
}

/// Token budgets: each key may spend `limit` tokens per fixed window (e.g. 100 000 tokens per
/// minute), shared by all threads of the process.
///
/// Exact and lock-free: a key's window and the tokens it committed live in one atomic word,
/// updated with compare-and-swap, so concurrent updates from several workers all count and a
/// new window starts at zero exactly once. The table is allocated once (`capacity` slots) and
/// never grows: a key takes a slot when it is first charged or reserved in a window, and a
/// slot whose key committed nothing in the current window can be taken over by another key,
/// so throwaway keys (a budget keyed by client address) cannot lock others out beyond one
/// window. Keys are told apart by a 64-bit hash keyed with a random seed per table: two keys
/// share a budget only by chance (about 2³² keys for an even chance), never by a client's
/// choice.
///
/// Two ways to spend:
///
/// * **Check, then charge.** [`check`](Self::check) before the work, [`charge`](Self::charge)
///   what it used after. Simple, but every request in flight when the budget runs out still
///   completes: a key overshoots by what those requests use.
/// * **Reserve, then settle.** [`reserve`](Self::reserve) an estimate before the work: it is
///   admitted only if the tokens charged and reserved in the window, plus this estimate, stay
///   within the limit. [`Reservation::settle`] replaces the estimate with the real usage
///   afterwards; [`Reservation::release`] (or dropping the reservation) gives it back when
///   the work failed. A key then overshoots only by what its requests use beyond their
///   estimates.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use jisr_buffer::{BudgetError, Budgets};
///
/// let budgets = Arc::new(Budgets::new(1024, 100, Duration::from_secs(60)));
/// assert!(budgets.check(b"key-1").is_ok());
/// budgets.charge(b"key-1", 30);
/// assert_eq!(budgets.remaining(b"key-1"), 70);
/// let r = budgets.reserve(b"key-1", 60).unwrap(); // 30 used + 60 reserved
/// assert!(matches!(budgets.reserve(b"key-1", 20), Err(BudgetError::Exhausted { .. })));
/// r.settle(45); // it used 45, not 60
/// assert_eq!(budgets.remaining(b"key-1"), 25);
/// budgets.charge(b"key-1", 30);
/// assert!(matches!(budgets.check(b"key-1"), Err(BudgetError::Exhausted { .. })));
/// assert!(budgets.check(b"key-2").is_ok()); // another key, another budget
/// ```
pub struct Budgets {
    slots: Box<[Slot]>,
    seed: RandomState,
    limit: u64,
    /// Bits of a state word that hold the tokens committed; the rest hold the window tag.
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

/// Tokens reserved for one request by [`Budgets::reserve`], until it is settled or released.
///
/// Dropping it releases it (the request failed, was refused or abandoned), so a handler
/// dropped at any point gives its reservation back. A reservation that is never dropped
/// (`mem::forget`) keeps its tokens counted until its window ends, and no longer: the next
/// window starts from zero as always, and nothing taken back later lands on a newer count.
///
/// It holds an [`Arc`] of its table (one reference count, no allocation), so it can be kept
/// from a request handler to its response handler.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use jisr_buffer::Budgets;
///
/// let budgets = Arc::new(Budgets::new(16, 1000, Duration::from_secs(60)));
/// let r = budgets.reserve(b"team-a", 400).unwrap();
/// assert_eq!((r.tokens(), budgets.remaining(b"team-a")), (400, 600));
/// drop(r); // the upstream failed: nothing was used
/// assert_eq!(budgets.remaining(b"team-a"), 1000);
/// let r = budgets.reserve(b"team-a", 400).unwrap();
/// r.settle(520); // more than reserved: the whole usage counts
/// assert_eq!(budgets.remaining(b"team-a"), 480);
/// ```
#[must_use = "dropping a reservation releases it at once"]
pub struct Reservation {
    budgets: Arc<Budgets>,
    hash: u64,
    /// The window tag the tokens were added in.
    window: u64,
    tokens: u64,
    /// Not settled nor released yet.
    open: bool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("tokens", &self.tokens)
            .field("open", &self.open)
            .finish()
    }
}

impl Reservation {
    /// Tokens reserved (the estimate, capped at the limit).
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The request used `used` tokens: the reservation is replaced by them. When its window
    /// is over, `used` is charged to the current window instead (like
    /// [`Budgets::charge`]). `false` when that found no room in the table.
    pub fn settle(mut self, used: u64) -> bool {
        let now = self.budgets.window_now(Instant::now());
        self.settle_in(used, now)
    }

    /// The request used nothing that can be counted: the reservation is given back (when its
    /// window is over, there is nothing left to give back). Dropping it does the same.
    pub fn release(mut self) {
        let now = self.budgets.window_now(Instant::now());
        self.release_in(now);
    }

    fn settle_in(&mut self, used: u64, now: u64) -> bool {
        self.open = false;
        let (r, tokens) = (self.window, self.tokens);
        let done = self.budgets.update_in(self.hash, now, true, |w, count| {
            Some(if w == r {
                count.saturating_sub(tokens).saturating_add(used)
            } else {
                count.saturating_add(used)
            })
        });
        matches!(done, Update::Done { .. })
    }

    fn release_in(&mut self, now: u64) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let (r, tokens) = (self.window, self.tokens);
        self.budgets.update_in(self.hash, now, false, |w, count| {
            (w == r && tokens > 0).then(|| count.saturating_sub(tokens))
        });
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.open {
            let now = self.budgets.window_now(Instant::now());
            self.release_in(now);
        }
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

/// What an update of a key's count did.
enum Update {
    /// Stored `count` in window `window`.
    Done { window: u64 },
    /// Left alone: the update refused the count it saw.
    Refused,
    /// The key has no slot (and the update was not to take one, or none was free).
    NoSlot,
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
    /// (a wrapped number could bring an old count back) and twice the limit still fits the
    /// count: at 2³⁹ − 1 tokens for one-hour windows, 2³⁴ − 1 for one-minute windows,
    /// 2²⁸ − 1 for one-second windows; [`limit`](Self::limit) says what applies.
    ///
    /// # Panics
    /// If `capacity` or `window` is zero.
    pub fn new(capacity: usize, limit: u64, window: Duration) -> Budgets {
        assert!(
            capacity > 0 && !window.is_zero(),
            "capacity and window must be non-zero"
        );
        // The window tag needs enough bits not to wrap within `NO_WRAP_FOR`; the count gets
        // the rest, up to what twice `limit` needs (0..=2 * limit, never all-ones, which
        // `RECLAIMING` is).
        let windows = NO_WRAP_FOR.as_nanos() / window.as_nanos();
        let tag_bits = (128 - windows.leading_zeros()).clamp(1, 63);
        let needed = 64 - limit.saturating_mul(2).saturating_add(1).leading_zeros();
        let used_bits = (64 - tag_bits).min(needed);
        let limit = limit.min((1u64 << (used_bits - 1)) - 1);
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

    /// The largest count kept (at least twice the limit).
    fn count_cap(&self) -> u64 {
        self.used_mask() - 1
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

    /// Tokens committed in `window` according to `state`.
    fn used(&self, state: u64, window: u64) -> u64 {
        if state != RECLAIMING && state >> self.used_bits == window {
            state & self.used_mask()
        } else {
            0
        }
    }

    fn pack(&self, window: u64, used: u64) -> u64 {
        (window << self.used_bits) | used.min(self.count_cap())
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
                // Stale: committed in an earlier window only (tags do not wrap, see `new`).
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

    /// The slot of `h`, if it has one.
    fn lookup(&self, h: u64, window: u64) -> Option<usize> {
        loop {
            return match self.find(h, window) {
                Found::At(at) => Some(at),
                Found::Busy => {
                    backoff();
                    continue;
                }
                _ => None,
            };
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

    /// Replaces the count of `h` with `f(w, count)`, where `w` is the window the update
    /// lands in (`window`, or the slot's newer one: an update that raced the start of a newer
    /// window counts in the newer one) and `count` what `h` committed in `w`. `f` returning
    /// `None` leaves the count alone. Takes a slot for `h` if it has none and `claim` says so.
    fn update_in(
        &self,
        h: u64,
        window: u64,
        claim: bool,
        f: impl Fn(u64, u64) -> Option<u64>,
    ) -> Update {
        loop {
            let at = if claim {
                self.claim(h, window)
            } else {
                self.lookup(h, window)
            };
            let Some(at) = at else {
                return Update::NoSlot;
            };
            let slot = &self.slots[at];
            let mut cur = slot.state.load(Ordering::Acquire);
            loop {
                // Taken over meanwhile (or being taken over): find the key's slot again.
                if cur == RECLAIMING || slot.key.load(Ordering::Acquire) != h {
                    backoff();
                    break;
                }
                let w = window.max(cur >> self.used_bits);
                let Some(count) = f(w, self.used(cur, w)) else {
                    return Update::Refused;
                };
                match slot.state.compare_exchange_weak(
                    cur,
                    self.pack(w, count),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Update::Done { window: w },
                    Err(actual) => cur = actual,
                }
            }
        }
    }

    /// Whether `key` may spend now (it has tokens left in this window: neither charged nor
    /// reserved).
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
        self.lookup(h, window).map_or(0, |at| {
            self.used(self.slots[at].state.load(Ordering::Acquire), window)
        })
    }

    /// Adds `tokens` to what `key` used in this window. `false` when the table has no room
    /// for the key (every slot it may use was charged by another key in this window).
    pub fn charge(&self, key: &[u8], tokens: u64) -> bool {
        self.charge_in(self.hash(key), tokens, self.window_now(Instant::now()))
    }

    fn charge_in(&self, h: u64, tokens: u64, window: u64) -> bool {
        let done = self.update_in(h, window, true, |_, count| {
            Some(count.saturating_add(tokens))
        });
        matches!(done, Update::Done { .. })
    }

    /// Reserves `tokens` (an estimate of what a request will use; more than the limit counts
    /// as the limit) for `key` in this window, if they fit: what the key charged and reserved
    /// in the window plus `tokens` is at most the limit. The reservation is taken back by
    /// [`Reservation::settle`] (replaced by the real usage) or [`Reservation::release`] (or
    /// by dropping it).
    ///
    /// An estimate of the whole limit fits only a key that committed nothing in the window:
    /// such a request runs alone.
    ///
    /// # Errors
    /// [`BudgetError::Exhausted`] when the tokens do not fit (with the time until the next
    /// window, when the key's count starts from zero; reservations given back earlier may make
    /// room sooner), [`BudgetError::Full`] when the table has no room for the key.
    pub fn reserve(self: &Arc<Self>, key: &[u8], tokens: u64) -> Result<Reservation, BudgetError> {
        let now = Instant::now();
        match self.reserve_in(self.hash(key), tokens, self.window_now(now)) {
            Ok(r) => Ok(r),
            Err(Update::NoSlot) => Err(BudgetError::Full),
            Err(_) => Err(BudgetError::Exhausted {
                retry_after: self.retry_after(now),
            }),
        }
    }

    fn reserve_in(
        self: &Arc<Self>,
        h: u64,
        tokens: u64,
        window: u64,
    ) -> Result<Reservation, Update> {
        let (limit, tokens) = (self.limit, tokens.min(self.limit));
        match self.update_in(h, window, true, |_, count| {
            (count < limit && count + tokens <= limit).then_some(count + tokens)
        }) {
            Update::Done { window } => Ok(Reservation {
                budgets: Arc::clone(self),
                hash: h,
                window,
                tokens,
                open: true,
            }),
            other => Err(other),
        }
    }

    /// Tokens `key` may still spend or reserve in this window.
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
        assert_eq!(hour.limit(), (1 << 39) - 1);
        let minute = Budgets::new(1, u64::MAX, Duration::from_secs(60));
        assert_eq!(minute.limit(), (1 << 34) - 1);
        let second = Budgets::new(1, u64::MAX, Duration::from_secs(1));
        assert_eq!(second.limit(), (1 << 28) - 1);
        // Twice the limit fits the count.
        assert!(second.count_cap() >= 2 * second.limit());
        let tiny = Budgets::new(1, 100, Duration::from_nanos(1));
        assert!(tiny.limit() <= 100);
        // 1000 years of one-second windows fit the tag.
        let windows = NO_WRAP_FOR.as_secs();
        assert_eq!(windows >> (64 - second.used_bits), 0);
    }
    #[test]
    fn reservations_admit_only_what_fits() {
        let b = Arc::new(Budgets::new(8, 100, Duration::from_secs(60)));
        let r1 = b.reserve(b"k", 60).unwrap();
        assert!(matches!(
            b.reserve(b"k", 50),
            Err(BudgetError::Exhausted { .. })
        ));
        let r2 = b.reserve(b"k", 40).unwrap();
        assert_eq!(b.remaining(b"k"), 0);
        assert!(b.check(b"k").is_err(), "reserved is spent for a check");
        assert!(
            b.reserve(b"k", 0).is_err(),
            "nothing left, not even for nothing"
        );
        r1.release();
        assert_eq!(b.remaining(b"k"), 60);
        assert!(r2.settle(10));
        assert_eq!(b.remaining(b"k"), 90);
        assert_eq!(b.remaining(b"other"), 100);
    }

    #[test]
    fn settling_replaces_the_estimate_by_the_usage() {
        let b = Arc::new(Budgets::new(8, 1000, Duration::from_secs(60)));
        let r = b.reserve(b"k", 300).unwrap();
        assert_eq!(r.tokens(), 300);
        assert!(r.settle(450), "more than reserved: all of it counts");
        assert_eq!(b.remaining(b"k"), 550);
        let r = b.reserve(b"k", 500).unwrap();
        assert!(r.settle(0));
        assert_eq!(b.remaining(b"k"), 550);
    }

    #[test]
    fn an_estimate_over_the_limit_runs_alone() {
        let b = Arc::new(Budgets::new(8, 100, Duration::from_secs(60)));
        let r = b.reserve(b"k", 5000).unwrap();
        assert_eq!(r.tokens(), 100);
        assert!(b.reserve(b"k", 1).is_err());
        drop(r);
        b.charge(b"k", 1);
        assert!(
            b.reserve(b"k", 5000).is_err(),
            "only for a key that used nothing"
        );
    }

    #[test]
    fn dropping_a_reservation_releases_it() {
        let b = Arc::new(Budgets::new(8, 100, Duration::from_secs(60)));
        {
            let _r = b.reserve(b"k", 70).unwrap();
            assert_eq!(b.remaining(b"k"), 30);
        }
        assert_eq!(b.remaining(b"k"), 100);
        let r = b.reserve(b"k", 70).unwrap();
        r.release(); // released once: the drop that follows gives nothing back again
        b.charge(b"k", 20);
        assert_eq!(b.remaining(b"k"), 80);
    }

    /// A reservation outliving its window takes nothing from the next window's count:
    /// settling charges the usage there, releasing does nothing, forgetting holds its tokens
    /// for its own window only.
    #[test]
    fn a_reservation_belongs_to_its_window() {
        let b = Arc::new(Budgets::new(8, 100, Duration::from_secs(60)));
        let mut r = b.reserve_in(5, 50, 1).ok().unwrap();
        assert!(b.charge_in(5, 30, 2));
        r.release_in(2);
        assert_eq!(b.used_in(5, 2), 30);
        let mut r = b.reserve_in(5, 40, 2).ok().unwrap();
        let mut old = b.reserve_in(6, 40, 2).ok().unwrap();
        assert!(r.settle_in(10, 2));
        assert_eq!(b.used_in(5, 2), 40);
        assert!(old.settle_in(25, 3));
        assert_eq!((b.used_in(6, 2), b.used_in(6, 3)), (0, 25));
        let forgotten = b.reserve_in(7, 90, 3).ok().unwrap();
        std::mem::forget(forgotten);
        assert_eq!(b.used_in(7, 3), 90);
        assert!(b.reserve_in(7, 20, 3).is_err(), "held for its window");
        assert!(b.reserve_in(7, 100, 4).is_ok(), "and no longer");
    }

    /// Counts past the limit saturate at twice the limit or more: giving every outstanding
    /// reservation back still leaves the key spent.
    #[test]
    fn a_saturated_count_stays_spent() {
        let b = Arc::new(Budgets::new(8, 100, Duration::from_secs(60)));
        let r1 = b.reserve(b"k", 60).unwrap();
        let r2 = b.reserve(b"k", 40).unwrap();
        assert!(b.charge(b"k", u64::MAX));
        r1.release();
        r2.release();
        assert!(b.check(b"k").is_err());
        assert_eq!(b.remaining(b"k"), 0);
    }

    #[test]
    fn concurrent_reservations_never_admit_more_than_the_limit() {
        let b = Arc::new(Budgets::new(64, 1000, Duration::from_secs(3600)));
        let held: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for _ in 0..1000 {
                        if let Ok(r) = b.reserve(b"k", 7) {
                            held.push(r);
                        }
                    }
                    held
                })
            })
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(held.len(), 1000 / 7);
        assert_eq!(b.remaining(b"k"), 1000 % 7);
        drop(held);
        assert_eq!(b.remaining(b"k"), 1000);
    }
}

/// Random sequences of reservations, settlements, releases, forgotten reservations, charges
/// and new windows, against a plain model of what each key committed per window.
#[cfg(all(test, not(loom)))]
mod model_tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Debug)]
    enum Op {
        Reserve { key: u64, tokens: u64 },
        Settle { pick: usize, used: u64 },
        Release { pick: usize },
        Forget { pick: usize },
        Charge { key: u64, tokens: u64 },
        NextWindow { by: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1..4u64, 0..140u64).prop_map(|(key, tokens)| Op::Reserve { key, tokens }),
            3 => (any::<usize>(), 0..140u64).prop_map(|(pick, used)| Op::Settle { pick, used }),
            2 => any::<usize>().prop_map(|pick| Op::Release { pick }),
            1 => any::<usize>().prop_map(|pick| Op::Forget { pick }),
            1 => (1..4u64, 0..60u64).prop_map(|(key, tokens)| Op::Charge { key, tokens }),
            1 => (1..3u64).prop_map(|by| Op::NextWindow { by }),
        ]
    }

    const LIMIT: u64 = 100;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn reservations_match_the_model(ops in proptest::collection::vec(op(), 1..80)) {
            let b = Arc::new(Budgets::new(64, LIMIT, Duration::from_secs(3600)));
            let cap = b.count_cap();
            prop_assert!(cap >= 2 * LIMIT);
            let mut now = 1u64;
            // Model: per key, (window, tokens committed in it).
            let mut model: HashMap<u64, (u64, u64)> = HashMap::new();
            // Outstanding: the real reservation, its key, window and tokens.
            let mut open: Vec<(Reservation, u64, u64, u64)> = Vec::new();
            let committed = |m: &HashMap<u64, (u64, u64)>, key: u64, now: u64| {
                m.get(&key).filter(|(w, _)| *w == now).map_or(0, |(_, c)| *c)
            };
            for op in ops {
                match op {
                    Op::Reserve { key, tokens } => {
                        let c = committed(&model, key, now);
                        let t = tokens.min(LIMIT);
                        let fits = c < LIMIT && c + t <= LIMIT;
                        match b.reserve_in(key, tokens, now) {
                            Ok(r) => {
                                prop_assert!(fits, "admitted {t} over {c}");
                                prop_assert_eq!(r.tokens(), t);
                                model.insert(key, (now, c + t));
                                open.push((r, key, now, t));
                            }
                            Err(_) => prop_assert!(!fits, "refused {t} over {c}"),
                        }
                    }
                    Op::Settle { pick, used } if !open.is_empty() => {
                        let (mut r, key, w, t) = open.swap_remove(pick % open.len());
                        prop_assert!(r.settle_in(used, now));
                        let c = committed(&model, key, now);
                        let c = if w == now {
                            prop_assert!(c >= t, "a reservation is in its count");
                            c - t + used
                        } else {
                            c + used
                        };
                        model.insert(key, (now, c.min(cap)));
                    }
                    Op::Release { pick } if !open.is_empty() => {
                        let (mut r, key, w, t) = open.swap_remove(pick % open.len());
                        r.release_in(now);
                        if w == now {
                            let c = committed(&model, key, now);
                            prop_assert!(c >= t, "a reservation is in its count");
                            model.insert(key, (now, c - t));
                        }
                    }
                    Op::Forget { pick } if !open.is_empty() => {
                        let (r, ..) = open.swap_remove(pick % open.len());
                        std::mem::forget(r);
                    }
                    Op::Charge { key, tokens } => {
                        prop_assert!(b.charge_in(key, tokens, now));
                        let c = committed(&model, key, now) + tokens;
                        model.insert(key, (now, c.min(cap)));
                    }
                    Op::NextWindow { by } => now += by,
                    _ => {}
                }
                for key in 1..4 {
                    let c = committed(&model, key, now);
                    prop_assert_eq!(b.used_in(key, now), c, "key {}", key);
                    // What is reserved and outstanding in this window never exceeds the limit.
                    let reserved: u64 = open
                        .iter()
                        .filter(|(_, k, w, _)| *k == key && *w == now)
                        .map(|(.., t)| t)
                        .sum();
                    prop_assert!(reserved <= LIMIT && reserved <= c);
                }
            }
            // The rest are released (by drop, in the real window): no panic, no count below 0.
            for (mut r, ..) in open {
                r.release_in(now);
            }
        }
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

    /// A reservation settled while another worker reserves: the reserve sees the count
    /// before or after the settlement, never in between, and is admitted only if it fits.
    #[test]
    fn reserve_races_settle() {
        loom::model(|| {
            let b = std::sync::Arc::new(Budgets::new(2, 10, Duration::from_secs(60)));
            let r = b.reserve_in(7, 5, 1).ok().unwrap();
            let t = {
                let mut r = r;
                loom::thread::spawn(move || assert!(r.settle_in(7, 1)))
            };
            // Fits beside the estimate (5 + 4), not beside the usage (7 + 4).
            let other = b.reserve_in(7, 4, 1);
            t.join().unwrap();
            let count = b.used_in(7, 1);
            match other {
                Ok(mut r) => {
                    assert_eq!(count, 11);
                    r.release_in(1);
                }
                Err(_) => assert_eq!(count, 7),
            }
        });
    }

    /// A reservation of window 1 settled by a worker that still reads window 1 while
    /// another worker starts window 2: the estimate is taken back from window 1 only; window
    /// 2 counts its own reservation and, when the settlement came after it, the usage.
    #[test]
    fn settle_races_a_new_window() {
        loom::model(|| {
            let b = std::sync::Arc::new(Budgets::new(2, 10, Duration::from_secs(60)));
            let r = b.reserve_in(7, 5, 1).ok().unwrap();
            let t = {
                let mut r = r;
                loom::thread::spawn(move || assert!(r.settle_in(3, 1)))
            };
            let next = b.reserve_in(7, 8, 2);
            t.join().unwrap();
            let next = next.ok().expect("window 2 starts from zero");
            let count = b.used_in(7, 2);
            assert!(count == 8 || count == 11, "{count}");
            drop(next);
        });
    }

    /// A stale reservation released while its slot is taken over by another key: the new
    /// key's count never loses the old key's tokens.
    #[test]
    fn release_races_a_slot_taken_over() {
        loom::model(|| {
            let b = std::sync::Arc::new(Budgets::new(1, 100, Duration::from_secs(60)));
            let r = b.reserve_in(1, 40, 0).ok().unwrap();
            let t = {
                let mut r = r;
                loom::thread::spawn(move || r.release_in(0))
            };
            let new_key = b.reserve_in(2, 30, 1);
            t.join().unwrap();
            if let Ok(r) = new_key {
                assert_eq!(b.used_in(2, 1), 30);
                drop(r);
            }
        });
    }
}
