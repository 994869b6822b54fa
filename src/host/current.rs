//! Which config host serves the background poll running on this thread. Each kind keeps its
//! own current host beside its host trait (`http::current`, `server`).

use super::ConfigHost;
use std::cell::Cell;
use std::ptr::NonNull;

thread_local! {
    /// The host of the config whose background tasks are being polled on this thread (the
    /// main thread, inside a config hook); empty otherwise.
    static CONFIG_HOST: Cell<Option<NonNull<dyn ConfigHost + 'static>>> = const { Cell::new(None) };
}

/// Makes `host` the current config host for the duration of `f` (re-entrant).
pub(crate) fn enter_config<R>(host: &dyn ConfigHost, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<NonNull<dyn ConfigHost + 'static>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CONFIG_HOST.with(|c| c.set(self.0));
        }
    }
    let ptr: NonNull<dyn ConfigHost + '_> = NonNull::from(host);
    // SAFETY: only the lifetime bound changes. The pointer is stored for the duration of `f`
    // and removed by `Restore` (also on unwind) before `host` can go away; `with_config` hands
    // it out only inside a closure on this thread, so no reference escapes.
    let ptr: NonNull<dyn ConfigHost + 'static> = unsafe { core::mem::transmute(ptr) };
    let _restore = Restore(CONFIG_HOST.with(|c| c.replace(Some(ptr))));
    f()
}

/// Runs `f` with the current config host; `None` outside a background poll (e.g. on a worker
/// thread, or from a thread of the user's).
pub(crate) fn with_config<R>(f: impl FnOnce(&dyn ConfigHost) -> R) -> Option<R> {
    let ptr = CONFIG_HOST.with(Cell::get)?;
    // SAFETY: a stored pointer is valid until `enter_config` returns (see there), and we are
    // inside that call on the same thread (the cell is thread-local).
    Some(f(unsafe { ptr.as_ref() }))
}

/// Defines `$slot`: where the host of the hook currently running for one connection or socket
/// of a kind is kept (empty between hooks, and for good once the object is detached: Envoy
/// destroyed it, or it went on). Each kind names its own host trait `$host`.
macro_rules! hook_host_slot {
    ($(#[$doc:meta])* $slot:ident, $host:path) => {
        $(#[$doc])*
        #[derive(Default)]
        pub(crate) struct $slot {
            current: ::std::cell::Cell<Option<::std::ptr::NonNull<dyn $host + 'static>>>,
            detached: ::std::cell::Cell<bool>,
        }

        /// The current host, with its borrow's lifetime erased (see `enter`).
        type Erased = ::std::ptr::NonNull<dyn $host + 'static>;

        impl $slot {
            /// Makes `host` current for the duration of `f` (re-entrant: restores the previous
            /// one).
            #[inline]
            pub(crate) fn enter<R>(&self, host: &dyn $host, f: impl FnOnce() -> R) -> R {
                struct Restore<'a> {
                    slot: &'a $slot,
                    prev: Option<::std::ptr::NonNull<dyn $host + 'static>>,
                }
                impl Drop for Restore<'_> {
                    #[inline]
                    fn drop(&mut self) {
                        self.slot.current.set(self.prev);
                    }
                }
                type Borrowed<'h> = ::std::ptr::NonNull<dyn $host + 'h>;
                let from: Borrowed<'_> = ::std::ptr::NonNull::from(host);
                // SAFETY: only the lifetime bound changes. The pointer is stored for the
                // duration of `f` and removed by `Restore` (also on unwind) before `host` can go
                // away; `with` hands it out only inside a closure, so no reference escapes.
                let ptr = unsafe { ::core::mem::transmute::<Borrowed<'_>, Erased>(from) };
                let _restore = Restore {
                    slot: self,
                    prev: self.current.replace(Some(ptr)),
                };
                f()
            }

            /// Runs `f` with the current host; `None` outside hooks and once detached.
            #[inline]
            pub(crate) fn with<R>(&self, f: impl FnOnce(&dyn $host) -> R) -> Option<R> {
                if self.detached.get() {
                    return None;
                }
                let ptr = self.current.get()?;
                // SAFETY: a stored pointer is valid until `enter` returns (see there); we are
                // inside that call on the same thread, because the slot is `!Sync` and only set
                // there.
                Some(f(unsafe { ptr.as_ref() }))
            }

            /// Whether a hook is running for this object.
            pub(crate) fn is_set(&self) -> bool {
                self.current.get().is_some()
            }

            /// Nothing more is called on Envoy's object.
            pub(crate) fn detach(&self) {
                self.detached.set(true);
            }

            /// Readies the slot for the next object.
            pub(crate) fn reset(&mut self) {
                *self.current.get_mut() = None;
                *self.detached.get_mut() = false;
            }
        }
    };
}
pub(crate) use hook_host_slot;
