//! A handle on the scheduler of one task: commits wake-up events from any thread.

/// Commits scheduler events for one stream; callable from any thread. Releases the scheduler
/// when dropped.
///
/// Built from plain function pointers rather than an enum or a trait object: only the host that
/// creates a committer references its functions, so test binaries never link Envoy's symbols,
/// and creating one never allocates.
pub(crate) struct Committer {
    ptr: *mut core::ffi::c_void,
    commit: unsafe fn(*mut core::ffi::c_void, u64),
    release: unsafe fn(*mut core::ffi::c_void),
}

// SAFETY: each host guarantees its `commit` is callable from any thread and that `release` runs
// once (from `Drop`); `ptr` is only used through those functions.
unsafe impl Send for Committer {}
// SAFETY: see `Send`; `commit` takes the pointer by value and the hosts synchronise internally.
unsafe impl Sync for Committer {}

impl Committer {
    /// # Safety
    /// `commit` must be safe to call with `ptr` from any thread until `release(ptr)` runs, and
    /// `release` must free whatever `ptr` owns.
    pub(crate) unsafe fn new(
        ptr: *mut core::ffi::c_void,
        commit: unsafe fn(*mut core::ffi::c_void, u64),
        release: unsafe fn(*mut core::ffi::c_void),
    ) -> Committer {
        Committer {
            ptr,
            commit,
            release,
        }
    }

    /// A committer that does nothing (for a stream that can no longer be called).
    pub(crate) fn inert() -> Committer {
        unsafe fn nothing(_: *mut core::ffi::c_void, _: u64) {}
        unsafe fn release(_: *mut core::ffi::c_void) {}
        // SAFETY: both functions ignore the pointer, so any thread may call them any time.
        unsafe { Committer::new(core::ptr::null_mut(), nothing, release) }
    }

    pub(crate) fn commit(&self, event: u64) {
        // SAFETY: upheld by the constructor's contract; `release` has not run (we are alive).
        unsafe { (self.commit)(self.ptr, event) }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // SAFETY: runs once; the constructor's contract says `release` frees `ptr`.
        unsafe { (self.release)(self.ptr) }
    }
}
