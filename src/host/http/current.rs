//! Which host serves a stream's running hook, and whether the stream can still be called.

use super::Host;
use std::cell::Cell;
use std::ptr::NonNull;

/// The host of the hook currently running for one stream (empty between hooks).
///
/// Once Envoy has asked to destroy the stream (possibly from inside one of our own calls into
/// it), the slot is *detached*: [`HostSlot::with`] returns `None` for the rest of the stream,
/// so nothing more is called on Envoy's filter pointer.
#[derive(Default)]
pub(crate) struct HostSlot {
    current: Cell<Option<NonNull<dyn Host + 'static>>>,
    detached: Cell<bool>,
}

impl HostSlot {
    /// Makes `host` current for the duration of `f` (re-entrant: restores the previous one).
    #[inline]
    pub(crate) fn enter<R>(&self, host: &dyn Host, f: impl FnOnce() -> R) -> R {
        struct Restore<'a> {
            slot: &'a HostSlot,
            prev: Option<NonNull<dyn Host + 'static>>,
        }
        impl Drop for Restore<'_> {
            #[inline]
            fn drop(&mut self) {
                self.slot.current.set(self.prev);
            }
        }
        let ptr: NonNull<dyn Host + '_> = NonNull::from(host);
        // SAFETY: only the lifetime bound changes. The pointer is stored for the duration of
        // `f` and removed by `Restore` (also on unwind) before `host` can go away; `with` hands
        // it out only inside a closure, so no reference escapes.
        let ptr: NonNull<dyn Host + 'static> = unsafe { core::mem::transmute(ptr) };
        let _restore = Restore {
            slot: self,
            prev: self.current.replace(Some(ptr)),
        };
        f()
    }

    /// Runs `f` with the current host; `None` outside hooks (e.g. while a future is dropped at
    /// stream end) and once the stream is detached, where nothing may be called on it.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&dyn Host) -> R) -> Option<R> {
        if self.detached.get() {
            return None;
        }
        let ptr = self.current.get()?;
        // SAFETY: a stored pointer is valid until `enter` returns (see `enter`); we are inside
        // that call on the same thread because `HostSlot` is `!Sync` and only set there.
        Some(f(unsafe { ptr.as_ref() }))
    }

    /// Whether a hook is running for this stream.
    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.current.get().is_some()
    }

    /// Envoy asked to destroy the stream: no more calls on its filter pointer.
    pub(crate) fn detach(&self) {
        self.detached.set(true);
    }

    /// Readies the slot for a new stream.
    #[inline]
    pub(crate) fn reset(&mut self) {
        *self.current.get_mut() = None;
        *self.detached.get_mut() = false;
    }
}
