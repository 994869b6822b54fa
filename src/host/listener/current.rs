//! Which host serves a socket's running hook.

use super::SocketHost;
use std::cell::Cell;
use std::ptr::NonNull;

/// The host of the hook currently running for one socket (empty between hooks, and for good
/// once Envoy destroyed the filter or the socket went on).
#[derive(Default)]
pub(crate) struct SocketHostSlot {
    current: Cell<Option<NonNull<dyn SocketHost + 'static>>>,
    detached: Cell<bool>,
}

impl SocketHostSlot {
    /// Makes `host` current for the duration of `f` (re-entrant: restores the previous one).
    #[inline]
    pub(crate) fn enter<R>(&self, host: &dyn SocketHost, f: impl FnOnce() -> R) -> R {
        struct Restore<'a> {
            slot: &'a SocketHostSlot,
            prev: Option<NonNull<dyn SocketHost + 'static>>,
        }
        impl Drop for Restore<'_> {
            #[inline]
            fn drop(&mut self) {
                self.slot.current.set(self.prev);
            }
        }
        let ptr: NonNull<dyn SocketHost + '_> = NonNull::from(host);
        // SAFETY: only the lifetime bound changes. The pointer is stored for the duration of
        // `f` and removed by `Restore` (also on unwind) before `host` can go away; `with` hands
        // it out only inside a closure, so no reference escapes.
        let ptr: NonNull<dyn SocketHost + 'static> = unsafe { core::mem::transmute(ptr) };
        let _restore = Restore {
            slot: self,
            prev: self.current.replace(Some(ptr)),
        };
        f()
    }

    /// Runs `f` with the current host; `None` outside hooks and once detached.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&dyn SocketHost) -> R) -> Option<R> {
        if self.detached.get() {
            return None;
        }
        let ptr = self.current.get()?;
        // SAFETY: a stored pointer is valid until `enter` returns (see there); we are inside
        // that call on the same thread, because the slot is `!Sync` and only set there.
        Some(f(unsafe { ptr.as_ref() }))
    }

    /// Whether a hook is running for this socket.
    pub(crate) fn is_set(&self) -> bool {
        self.current.get().is_some()
    }

    /// Nothing more is called on Envoy's filter (destroyed, or the socket went on).
    pub(crate) fn detach(&self) {
        self.detached.set(true);
    }

    /// Readies the slot for a new socket.
    pub(crate) fn reset(&mut self) {
        *self.current.get_mut() = None;
        *self.detached.get_mut() = false;
    }
}
