//! Per-route configs: parsed once by the module, handed back by Envoy per request.

use std::any::Any;

/// What the module returns from `on_http_filter_per_route_config_new`.
pub(crate) struct RouteConfigBox {
    pub(crate) value: Box<dyn Any + Send + Sync>,
}

/// The route config behind a pointer from `get_most_specific_route_config`.
///
/// `anchor` bounds the borrow: Envoy keeps a route's per-filter configs alive while a stream
/// holds that route, and the anchor (a request or response handle) cannot outlive the stream.
pub(crate) fn deref<T: ?Sized>(
    ptr: *const core::ffi::c_void,
    _anchor: &T,
) -> Option<&RouteConfigBox> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: every non-null per-route pointer Envoy hands this module came from
    // `Box::into_raw(Box<RouteConfigBox>)` in our per-route hook and is alive (see above).
    Some(unsafe { &*(ptr as *const RouteConfigBox) })
}
