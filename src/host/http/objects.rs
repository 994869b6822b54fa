//! Rust values kept in Envoy's filter state as module objects.
//!
//! Envoy stores an opaque pointer and a destructor; any module (or another build of jisr) may
//! store objects under any key, so a pointer read back is dereferenced only if this module
//! made it and it is still alive: every live object's address is in a process-wide set,
//! removed by the destructor before the object is freed.

use super::context::ObjectDtor;
use core::ffi::c_void;
use std::any::Any;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a module object points at.
struct Object {
    value: Arc<dyn Any + Send + Sync>,
}

static LIVE: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn live() -> MutexGuard<'static, Option<HashSet<usize>>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Turns `value` into a module object: its pointer and the destructor Envoy must call once.
pub(crate) fn into_object(value: Arc<dyn Any + Send + Sync>) -> (*mut c_void, ObjectDtor) {
    let ptr = Box::into_raw(Box::new(Object { value })).cast::<c_void>();
    live().get_or_insert_with(HashSet::new).insert(ptr as usize);
    (ptr, destroy)
}

/// Frees an object Envoy never took (the host lacks the callback).
pub(crate) fn reclaim(ptr: *mut c_void) {
    // SAFETY: `ptr` came from `into_object` and was not handed to Envoy, so this is its only
    // destruction.
    unsafe { destroy(ptr) }
}

/// The value of the module object at `ptr`, if this module made it, it is alive and holds a
/// `T`.
pub(crate) fn get<T: Send + Sync + 'static>(ptr: *mut c_void) -> Option<Arc<T>> {
    if ptr.is_null() {
        return None;
    }
    let guard = live();
    if !guard.as_ref()?.contains(&(ptr as usize)) {
        return None;
    }
    // SAFETY: the address is in the live set, so it is an `Object` made by `into_object` whose
    // destructor has not run: `destroy` removes it under the same lock before freeing it, and
    // the lock is held until the `Arc` is cloned.
    let obj = unsafe { &*ptr.cast::<Object>() };
    let value = Arc::clone(&obj.value);
    drop(guard);
    value.downcast::<T>().ok()
}

/// Envoy's destructor for our objects.
///
/// # Safety
/// `ptr` must come from `into_object` and be destroyed only once.
unsafe extern "C" fn destroy(ptr: *mut c_void) {
    if let Some(set) = live().as_mut() {
        set.remove(&(ptr as usize));
    }
    // SAFETY: per the contract, `ptr` is a leaked `Box<Object>` freed only here; it left the
    // live set above, so no reader can reach it any more.
    let obj = unsafe { Box::from_raw(ptr.cast::<Object>()) };
    // A panicking `Drop` of the user's value must not unwind into Envoy.
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(obj)))
    {
        // Its own `Drop` might panic too: forget it.
        core::mem::forget(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_objects_of_the_right_type_are_read() {
        let (p, dtor) = into_object(Arc::new(7u32));
        assert_eq!(get::<u32>(p).as_deref(), Some(&7));
        assert!(get::<u64>(p).is_none(), "another type");
        let other = Box::into_raw(Box::new(5u32)).cast::<c_void>();
        assert!(get::<u32>(other).is_none(), "not ours");
        // SAFETY: made above with Box::into_raw.
        drop(unsafe { Box::from_raw(other.cast::<u32>()) });
        // SAFETY: made by into_object, destroyed once.
        unsafe { dtor(p) };
        assert!(get::<u32>(p).is_none(), "destroyed");
    }
}
