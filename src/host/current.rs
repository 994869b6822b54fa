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
