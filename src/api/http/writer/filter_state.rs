//! `ResponseWriter`: Filter state: bytes, typed values Envoy's other filters read, and module objects.

use super::*;
use crate::api::Unsupported;
use crate::api::http::control::{StateLife, StateSharing};
use crate::host::http::objects;
use std::sync::Arc;

/// Filter state: bytes, typed values Envoy's other filters read, and module objects.
impl<'a> ResponseWriter<'a> {
    /// Stores bytes in Envoy's filter state under `key` (readable by later filters).
    pub fn set_filter_state(&self, key: &str, value: &[u8]) -> bool {
        self.core
            .with_host(|h| h.set_filter_state(key.as_bytes(), value))
            .unwrap_or(false)
    }

    /// Reads bytes from Envoy's filter state, copied into `out`; returns the length copied.
    pub fn filter_state(&self, key: &str, out: &mut Vec<u8>) -> Option<usize> {
        self.core
            .with_host(|h| h.filter_state(key.as_bytes()).map(|raw| raw.append_to(out)))
            .flatten()
    }
}

/// Filter state: bytes, typed values Envoy's other filters read, and module objects.
impl<'w> ResponseWriter<'w> {
    /// Sets filter state `key` through the object factory Envoy has for that key, so Envoy's
    /// own filters and extensions can read it (e.g. `envoy.network.upstream_server_name`, or
    /// any key read by `%FILTER_STATE(key)%` in an access log). `false` when Envoy has no
    /// factory for `key` or the value does not parse. For plain bytes only other modules
    /// read, use [`set_filter_state`](Self::set_filter_state).
    pub fn set_filter_state_typed(&self, key: &str, value: &[u8]) -> bool {
        self.core
            .with_host(|h| h.set_filter_state_typed(key.as_bytes(), value))
            .unwrap_or(false)
    }

    /// Any filter state object under `key` (set by any filter), serialized by its own type,
    /// copied into the stream's arena; `None` when absent or not serializable.
    pub fn filter_state_typed(&self, key: &str) -> Option<&[u8]> {
        let core = self.core;
        core.with_host(|h| {
            h.filter_state_typed(key.as_bytes())
                .map(|raw| raw.keep_in(&core.arena))
        })
        .flatten()
    }

    /// Whether any filter state object (set by any filter, of any type) is stored under `key`.
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40.
    pub fn has_filter_state(&self, key: &str) -> Result<bool, Unsupported> {
        self.core
            .with_host(|h| h.has_filter_state(key.as_bytes()))
            .flatten()
            .ok_or(Unsupported {
                callback: "envoy_dynamic_module_callback_http_has_filter_state",
            })
    }

    /// Stores a Rust value in Envoy's filter state under `key` for `life`. Later handlers of
    /// any jisr filter in this module read it back with
    /// [`filter_state_object`](Self::filter_state_object) (as an `Arc<T>`, without copying);
    /// Envoy drops it when its life ends. `Ok(false)` when Envoy refused (e.g. a read-only
    /// object already holds `key`); the value is dropped then.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use jisr::control::StateLife;
    /// use jisr::{Request, ResponseWriter};
    ///
    /// struct Principal { user: String }
    ///
    /// async fn authn(req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let user = req.header_str("x-user").unwrap_or("anonymous").to_string();
    ///     let _ = w.set_filter_state_object("acme.principal", Principal { user }, StateLife::Request);
    /// }
    ///
    /// async fn authz(_req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let who: Option<Arc<Principal>> = w.filter_state_object("acme.principal").ok().flatten();
    ///     if who.is_none() {
    ///         w.send(401, b"who are you?\n");
    ///     }
    /// }
    /// # let _ = (authn, authz);
    /// ```
    ///
    /// # Errors
    /// [`Unsupported`] on Envoy 1.38 (the value is dropped); it works from 1.39 on.
    pub fn set_filter_state_object<T: Send + Sync + 'static>(
        &self,
        key: &str,
        value: T,
        life: StateLife,
    ) -> Result<bool, Unsupported> {
        let unsupported = Unsupported {
            callback: "envoy_dynamic_module_callback_http_set_filter_state_object",
        };
        let (ptr, dtor) = objects::into_object(Arc::new(value));
        match self
            .core
            .with_host(|h| h.set_filter_state_object(key.as_bytes(), ptr, dtor, life as u32))
        {
            Some(Some(ok)) => Ok(ok),
            // Envoy never took it.
            _ => {
                objects::reclaim(ptr);
                Err(unsupported)
            }
        }
    }

    /// The value a jisr filter of this module stored under `key` with
    /// [`set_filter_state_object`](Self::set_filter_state_object); `None` when absent, of
    /// another type, or stored by something else (another module, Envoy).
    ///
    /// # Errors
    /// [`Unsupported`] on Envoy 1.38.
    pub fn filter_state_object<T: Send + Sync + 'static>(
        &self,
        key: &str,
    ) -> Result<Option<Arc<T>>, Unsupported> {
        let ptr = self
            .core
            .with_host(|h| h.filter_state_object(key.as_bytes()))
            .flatten()
            .ok_or(Unsupported {
                callback: "envoy_dynamic_module_callback_http_get_filter_state_object",
            })?;
        Ok(objects::get::<T>(ptr))
    }

    /// Like [`set_filter_state_typed`](Self::set_filter_state_typed), with the state's life
    /// span and whether it is shared with the upstream connection (e.g. to pool upstream
    /// connections per tenant).
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40.
    pub fn set_filter_state_typed_with(
        &self,
        key: &str,
        value: &[u8],
        life: StateLife,
        sharing: StateSharing,
    ) -> Result<bool, Unsupported> {
        self.core
            .with_host(|h| {
                h.set_filter_state_value(key.as_bytes(), value, life as u32, sharing as u32)
            })
            .flatten()
            .ok_or(Unsupported {
                callback: "envoy_dynamic_module_callback_http_set_filter_state_value",
            })
    }
}
