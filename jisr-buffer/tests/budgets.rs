//! `Budgets` through its public API: a table that keys come and go through must keep serving.

use jisr_buffer::{BudgetError, Budgets};
use std::time::Duration;

/// Checks of throwaway keys (a budget keyed by client address, or an unvalidated header) take
/// no slot: a real key still gets its budget.
#[test]
fn checks_of_throwaway_keys_take_no_slot() {
    let b = Budgets::new(16, 100, Duration::from_secs(60));
    for i in 0..10_000u32 {
        assert_eq!(b.check(format!("client-{i}").as_bytes()), Ok(()));
    }
    assert!(b.charge(b"team-a", 40), "the table had room");
    assert_eq!(b.remaining(b"team-a"), 60);
}

/// Keys charged in one window leave room for other keys in the next: the table never locks
/// new keys out for the life of the process.
#[test]
fn keys_charged_in_an_earlier_window_are_evicted() {
    let window = Duration::from_millis(500);
    let b = Budgets::new(16, 100, window);
    let mut refused = 0;
    for i in 0..64u32 {
        if !b.charge(format!("throwaway-{i}").as_bytes(), 1) {
            refused += 1;
        }
    }
    assert!(refused > 0, "16 slots, 64 keys: {refused} refused");
    std::thread::sleep(window + Duration::from_millis(20));
    for i in 0..16u32 {
        let key = format!("team-{i}");
        assert!(b.charge(key.as_bytes(), 30), "{key} found no slot");
        assert_eq!(b.remaining(key.as_bytes()), 70);
    }
    // And the budgets are still exact.
    assert!(b.charge(b"team-3", 70));
    assert!(matches!(
        b.check(b"team-3"),
        Err(BudgetError::Exhausted { .. })
    ));
    assert_eq!(b.check(b"team-4"), Ok(()));
}
