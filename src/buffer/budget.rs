//! [`Budgets`]: token budgets per key and time window, shared by every worker without a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bits of a slot's state that hold the tokens used (the rest hold the window number).
const USED_BITS: u32 = 40;
const USED_MAX: u64 = (1 << USED_BITS) - 1;
/// Slots probed for a key before the table counts as full.
const PROBES: usize = 16;

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
/// assert_eq!(budgets.check(b"team-b"), Err(BudgetError::Full));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetError {
    /// The key spent its budget in this window; it is refilled after `retry_after`.
    Exhausted {
        /// Time until the next window starts (round up for a `retry-after` header).
        retry_after: Duration,
    },
    /// The table has no room for another key (size it for the keys you expect).
    Full,
}

/// Token budgets: each key may spend `limit` tokens per fixed window (e.g. 100 000 tokens per
/// minute), shared by all threads of the process.
///
/// Exact and lock-free: a key's window and the tokens it used live in one atomic word, updated
/// with compare-and-swap, so concurrent charges from several workers all count and a new
/// window starts at zero exactly once. The table is allocated once (`capacity` slots); keys are
/// told apart by a 64-bit hash of their bytes (two keys colliding would share a budget; with
/// 64-bit hashes that needs about 2³² keys).
///
/// A request is checked before it goes upstream and charged when its response ends (its usage
/// is known only then), so requests in flight when a budget runs out still complete: a key can
/// overshoot its budget by what those requests use.
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
#[derive(Debug)]
pub struct Budgets {
    keys: Box<[AtomicU64]>,
    state: Box<[AtomicU64]>,
    limit: u64,
    window: Duration,
    epoch: Instant,
}

fn hash(key: &[u8]) -> u64 {
    // FNV-1a then a final mix; never 0 (0 marks an empty slot).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h.max(1)
}

impl Budgets {
    /// A table for up to `capacity` keys, each allowed `limit` tokens per `window`.
    ///
    /// # Panics
    /// If `capacity` or `window` is zero.
    pub fn new(capacity: usize, limit: u64, window: Duration) -> Budgets {
        assert!(
            capacity > 0 && !window.is_zero(),
            "capacity and window must be non-zero"
        );
        Budgets {
            keys: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            state: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            limit: limit.min(USED_MAX),
            window,
            epoch: Instant::now(),
        }
    }

    /// The window number now (wrapping; only equality matters).
    fn window_now(&self, now: Instant) -> u64 {
        let n = now.saturating_duration_since(self.epoch).as_nanos() / self.window.as_nanos();
        (n as u64) & ((1 << (64 - USED_BITS)) - 1)
    }

    fn retry_after(&self, now: Instant) -> Duration {
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        let w = self.window.as_nanos();
        let left = w - since % w;
        Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX))
    }

    /// The slot of `key`, claimed if new; `None` when the table is full.
    fn slot(&self, key: &[u8]) -> Option<usize> {
        let h = hash(key);
        let n = self.keys.len();
        let start = (h as usize) % n;
        for i in 0..PROBES.min(n) {
            let at = (start + i) % n;
            let k = &self.keys[at];
            match k.load(Ordering::Acquire) {
                0 => match k.compare_exchange(0, h, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Some(at),
                    Err(other) if other == h => return Some(at),
                    Err(_) => continue,
                },
                other if other == h => return Some(at),
                _ => continue,
            }
        }
        None
    }

    fn used(&self, state: u64, window: u64) -> u64 {
        if state >> USED_BITS == window {
            state & USED_MAX
        } else {
            0
        }
    }

    /// Whether `key` may spend now (it has tokens left in this window).
    ///
    /// # Errors
    /// [`BudgetError::Exhausted`] with the time until the next window, or
    /// [`BudgetError::Full`].
    pub fn check(&self, key: &[u8]) -> Result<(), BudgetError> {
        let now = Instant::now();
        let at = self.slot(key).ok_or(BudgetError::Full)?;
        let used = self.used(self.state[at].load(Ordering::Acquire), self.window_now(now));
        if used < self.limit {
            Ok(())
        } else {
            Err(BudgetError::Exhausted {
                retry_after: self.retry_after(now),
            })
        }
    }

    /// Adds `tokens` to what `key` used in this window. `false` when the table is full.
    pub fn charge(&self, key: &[u8], tokens: u64) -> bool {
        let Some(at) = self.slot(key) else {
            return false;
        };
        let window = self.window_now(Instant::now());
        let cell = &self.state[at];
        let mut cur = cell.load(Ordering::Acquire);
        loop {
            let used = self.used(cur, window).saturating_add(tokens).min(USED_MAX);
            let next = (window << USED_BITS) | used;
            match cell.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Tokens `key` may still spend in this window.
    pub fn remaining(&self, key: &[u8]) -> u64 {
        let Some(at) = self.slot(key) else {
            return 0;
        };
        let used = self.used(
            self.state[at].load(Ordering::Acquire),
            self.window_now(Instant::now()),
        );
        self.limit.saturating_sub(used)
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
        assert!(b.check(b"a").is_ok() && b.check(b"b").is_ok());
        assert_eq!(b.check(b"c"), Err(BudgetError::Full));
        assert!(!b.charge(b"c", 1));
    }
}
