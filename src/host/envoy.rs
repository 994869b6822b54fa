//! Calls into Envoy shared by the real hosts of every kind: the per-worker scratch arrays
//! handed to Envoy, and Envoy's process-wide `dynamic_modules` logger.

use crate::abi::ffi::{self, Buf, HeaderPair};
use arrayvec::ArrayVec;
use std::cell::RefCell;

/// Most headers a local reply or label list can carry without spilling to the thread scratch.
pub(crate) const INLINE: usize = 16;

thread_local! {
    // Reused arrays handed to Envoy (body chunk lists, header lists): grown once per worker,
    // never per request.
    pub(crate) static CHUNKS: RefCell<Vec<Buf>> = const { RefCell::new(Vec::new()) };
    pub(crate) static PAIRS: RefCell<Vec<HeaderPair>> = const { RefCell::new(Vec::new()) };
}

/// Takes a thread's scratch vector out of `cell` for the duration of `f`, so that no borrow is
/// held while `f` calls into Envoy: Envoy may run hooks of other jisr filters (on this thread)
/// inside that call, and they may need the scratch too (they then get an empty one and
/// allocate once). The larger of the two is kept.
pub(crate) fn with_scratch<T, R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<T>>>,
    f: impl FnOnce(&mut Vec<T>) -> R,
) -> R {
    let mut v = key.with(|cell| core::mem::take(&mut *cell.borrow_mut()));
    v.clear();
    let r = f(&mut v);
    // Not past `SCRATCH_RETAINED`: one call with a huge header list must not keep its array
    // on the worker for the life of the process (a rare call pays one reallocation).
    if v.capacity() > SCRATCH_RETAINED {
        v.clear();
        v.shrink_to(SCRATCH_RETAINED);
    }
    key.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.capacity() < v.capacity() {
            *slot = v;
        }
    });
    r
}

/// Most entries a thread's scratch array keeps between calls.
const SCRATCH_RETAINED: usize = 1024;

/// Hands `pairs` to `f` as an array of Envoy header pairs (inline for a few, else the
/// worker's scratch).
pub(crate) fn with_pairs<R>(
    pairs: &[(&[u8], &[u8])],
    f: impl FnOnce(*const HeaderPair, usize) -> R,
) -> R {
    if pairs.len() <= INLINE {
        let arr: ArrayVec<HeaderPair, INLINE> =
            pairs.iter().map(|(k, v)| HeaderPair::of(k, v)).collect();
        f(arr.as_ptr(), arr.len())
    } else {
        with_scratch(&PAIRS, |v| {
            v.extend(pairs.iter().map(|(k, v)| HeaderPair::of(k, v)));
            f(v.as_ptr(), v.len())
        })
    }
}

/// Envoy's `dynamic_modules` logger: is `level` enabled?
pub(crate) fn global_log_enabled(level: u32) -> bool {
    // SAFETY: a plain query, callable from any thread once the module is loaded.
    unsafe { ffi::envoy_dynamic_module_callback_log_enabled(level) }
}

/// Writes one line to Envoy's `dynamic_modules` logger, located at the caller.
#[track_caller]
pub(crate) fn global_log(level: u32, msg: &[u8]) {
    let site = core::panic::Location::caller();
    global_log_at(level, msg, site.file(), site.line())
}

/// Writes one line to Envoy's `dynamic_modules` logger with its source location: Envoy 1.40
/// shows it (`[src/lib.rs:12]`); older Envoys have no such callback and show `[:]`.
pub(crate) fn global_log_at(level: u32, msg: &[u8], file: &str, line: u32) {
    match crate::abi::late::get().log_v2 {
        // SAFETY: `log_v2` is Envoy's exported `envoy_dynamic_module_callback_log_v2`
        // (resolved by name; signature per the ABI). It only reads both buffers during the
        // call (it copies the file name into its own thread-local string).
        Some(log_v2) => unsafe { log_v2(level, Buf::of(msg), Buf::of(file.as_bytes()), line) },
        // SAFETY: Envoy copies the message during the call.
        None => unsafe { ffi::envoy_dynamic_module_callback_log(level, Buf::of(msg)) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static BIG: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    }

    /// A scratch array grown for one huge call is not kept; ordinary ones are reused.
    #[test]
    fn a_huge_scratch_is_not_retained() {
        with_scratch(&BIG, |v| v.extend(0..64));
        let kept = BIG.with(|c| c.borrow().capacity());
        assert!(kept >= 64);
        with_scratch(&BIG, |v| v.extend(0..100_000));
        let after = BIG.with(|c| c.borrow().capacity());
        assert!((kept..=SCRATCH_RETAINED).contains(&after), "{after}");
        with_scratch(&BIG, |v| {
            assert_eq!(v.capacity(), after, "reused");
            v.extend(0..8);
        });
    }

    /// Soundness item 10: a call into Envoy made with the scratch (a local reply with many
    /// headers) may re-enter another jisr filter that needs the scratch too; that must work,
    /// not fail with a `BorrowMutError`.
    #[test]
    fn item10_scratch_not_borrowed_across_calls_into_envoy() {
        let many: Vec<(Vec<u8>, Vec<u8>)> = (0..40)
            .map(|i| (format!("x-h{i}").into_bytes(), b"v".to_vec()))
            .collect();
        let pairs: Vec<(&[u8], &[u8])> = many
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        let inner = with_pairs(&pairs, |_, n| {
            // "Envoy" runs another filter's hook here, which sends its own big reply.
            assert_eq!(n, 40);
            with_pairs(&pairs, |p, n| {
                // SAFETY: `p` points at `n` pairs built from `pairs`, alive for this call.
                let first = unsafe { &*p };
                assert_eq!(first.key_len, 4);
                n
            })
        });
        assert_eq!(inner, 40);
        let chunks = with_scratch(&CHUNKS, |outer| {
            outer.push(Buf::EMPTY);
            with_scratch(&CHUNKS, |nested| {
                nested.push(Buf::EMPTY);
                nested.len()
            }) + outer.len()
        });
        assert_eq!(chunks, 2);
    }
}
