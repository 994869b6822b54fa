//! Reusable stream slots: one allocation per slot, reused for later streams of the same config.
//!
//! A slot is handed to Envoy as a thin pointer and must not move while a stream uses it (handler
//! futures may point into it), so slots are boxed and the box is what the pool keeps.

use std::sync::Mutex;

/// Most idle slots kept per config; slots freed beyond this are deallocated (bounds memory
/// after a burst).
pub(crate) const MAX_IDLE: usize = 1024;

/// Idle slots of one filter config.
pub(crate) struct Pool<T> {
    idle: Mutex<Vec<Box<T>>>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Pool<T> {
    /// Takes an idle slot, if any.
    pub(crate) fn take(&self) -> Option<Box<T>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Returns a slot for reuse (or frees it when the pool is full).
    pub(crate) fn put(&self, slot: Box<T>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(slot);
        }
    }

    /// Number of idle slots.
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Hands a slot to Envoy as a thin pointer.
    pub(crate) fn into_raw(slot: Box<T>) -> *const T {
        Box::into_raw(slot)
    }

    /// Takes back a slot handed out with [`Pool::into_raw`].
    ///
    /// # Safety
    /// `ptr` must come from `into_raw` of this `T` and not have been taken back before.
    pub(crate) unsafe fn from_raw(ptr: *const T) -> Box<T> {
        // SAFETY: guaranteed by the caller.
        unsafe { Box::from_raw(ptr as *mut T) }
    }
}

// SAFETY: a slot is only moved between threads while idle in the pool: its handler futures
// have been dropped (a slot whose futures could not be dropped is never returned) and its cells
// are reset before reuse, so no thread-bound data crosses threads with it.
unsafe impl<T> Send for Pool<T> {}
// SAFETY: all access to the idle list goes through the mutex; see `Send` for the contents.
unsafe impl<T> Sync for Pool<T> {}
