//! Which host serves a connection's running hook.

use super::ConnHost;
use std::cell::Cell;
use std::ptr::NonNull;

/// The host of the hook currently running for one connection (empty between hooks, and for
/// good once Envoy destroyed the filter).
#[derive(Default)]
pub(crate) struct ConnHostSlot {
    current: Cell<Option<NonNull<dyn ConnHost + 'static>>>,
    detached: Cell<bool>,
}

impl ConnHostSlot {
    /// Makes `host` current for the duration of `f` (re-entrant: restores the previous one).
    #[inline]
    pub(crate) fn enter<R>(&self, host: &dyn ConnHost, f: impl FnOnce() -> R) -> R {
        struct Restore<'a> {
            slot: &'a ConnHostSlot,
            prev: Option<NonNull<dyn ConnHost + 'static>>,
        }
        impl Drop for Restore<'_> {
            #[inline]
            fn drop(&mut self) {
                self.slot.current.set(self.prev);
            }
        }
        let ptr: NonNull<dyn ConnHost + '_> = NonNull::from(host);
        // SAFETY: only the lifetime bound changes. The pointer is stored for the duration of
        // `f` and removed by `Restore` (also on unwind) before `host` can go away; `with` hands
        // it out only inside a closure, so no reference escapes.
        let ptr: NonNull<dyn ConnHost + 'static> = unsafe { core::mem::transmute(ptr) };
        let _restore = Restore {
            slot: self,
            prev: self.current.replace(Some(ptr)),
        };
        f()
    }

    /// Runs `f` with the current host; `None` outside hooks and once detached.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&dyn ConnHost) -> R) -> Option<R> {
        if self.detached.get() {
            return None;
        }
        let ptr = self.current.get()?;
        // SAFETY: a stored pointer is valid until `enter` returns (see there); we are inside
        // that call on the same thread, because the slot is `!Sync` and only set there.
        Some(f(unsafe { ptr.as_ref() }))
    }

    /// Whether a hook is running for this connection.
    pub(crate) fn is_set(&self) -> bool {
        self.current.get().is_some()
    }

    /// Envoy destroys the filter: nothing more is called on it.
    pub(crate) fn detach(&self) {
        self.detached.set(true);
    }

    /// Readies the slot for a new connection.
    pub(crate) fn reset(&mut self) {
        *self.current.get_mut() = None;
        *self.detached.get_mut() = false;
    }
}
