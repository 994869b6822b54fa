//! The listener filter kind's C ABI: Envoy's `envoy_dynamic_module_callback_listener_*`
//! callbacks (all 73 that Envoy 1.40.0 exports, plus one that only 1.38 has), the
//! values they and the hooks exchange, and the hooks Envoy calls on the module (`hooks`).
//!
//! A listener filter runs on an accepted socket before Envoy makes a connection of it: it peeks
//! at the first bytes (`filter_get_buffer_chunk`), may set what filter chain matching sees (SNI,
//! ALPN, transport protocol, addresses), and then lets the socket go on or closes it.
//!
//! The 62 callbacks every supported Envoy (1.38.3 to 1.40.0) exports are linked directly; the 11
//! that 1.39 and 1.40 added, and `filter_set_dynamic_metadata` (1.38 only: 1.39 dropped it, and
//! `filter_set_dynamic_metadata_string` is there on every version), are looked up by name on
//! first use (`listener_late()`), so the module loads on every version. CONSTRAINTS.md lists
//! each with the versions that have it, and `e2e/tests/network_abi.rs` checks both against the
//! running Envoy.
//!
//! Pointers and enum values follow the same rules as in `super::network`.

// The handler layers for this kind use these declarations as they are built; until then most
// are unused.
#![allow(dead_code)]

use super::ffi::{Buf, HeaderPair};
use super::late::late_table;
use core::ffi::c_void;

/// Envoy's listener filter (`DynamicModuleListenerFilter`): one per accepted socket.
pub(crate) type ListenerFilterEnvoyPtr = *mut c_void;
/// Envoy's listener filter config (`DynamicModuleListenerFilterConfig`).
pub(crate) type ListenerConfigEnvoyPtr = *mut c_void;
/// The module's per-socket filter, returned by `on_listener_filter_new`.
pub(crate) type ListenerFilterModulePtr = *const c_void;
/// The module's filter config, returned by `on_listener_filter_config_new`.
pub(crate) type ListenerConfigModulePtr = *const c_void;
/// A filter's scheduler: made by `filter_scheduler_new`, freed by `filter_scheduler_delete`.
pub(crate) type ListenerSchedulerPtr = *mut c_void;
/// A config's (main-thread) scheduler: made by `filter_config_scheduler_new`, freed by
/// `filter_config_scheduler_delete`.
pub(crate) type ListenerConfigSchedulerPtr = *mut c_void;

/// What `on_accept` and `on_data` return (`envoy_dynamic_module_type_on_listener_filter_status`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FilterStatus {
    /// Go on to the next listener filter.
    Continue = 0,
    /// Wait: for more bytes (`on_data` runs again), or until the filter calls
    /// `filter_continue_filter_chain`.
    StopIteration = 1,
}

/// What `filter_get_address_type` returns (`envoy_dynamic_module_type_address_type`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddressType {
    /// No address, or one of another type.
    Unknown = 0,
    /// An IP address.
    Ip = 1,
    /// A Unix domain socket path.
    Pipe = 2,
    /// An Envoy internal address.
    EnvoyInternal = 3,
}

impl From<FilterStatus> for u32 {
    #[inline]
    fn from(s: FilterStatus) -> u32 {
        s as u32
    }
}

impl AddressType {
    /// The type a callback returned, or `None` for a value this ABI does not define.
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Unknown,
            1 => Self::Ip,
            2 => Self::Pipe,
            3 => Self::EnvoyInternal,
            _ => return None,
        })
    }
}

// Every callback Envoy 1.38.3, 1.39.3 and 1.40.0 all export. Metric callbacks return a
// `super::metrics_result` value, `filter_http_callout` a `super::callout_init` value.
unsafe extern "C" {
    pub fn envoy_dynamic_module_callback_listener_filter_get_buffer_chunk(
        filter: ListenerFilterEnvoyPtr,
        chunk_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_drain_buffer(
        filter: ListenerFilterEnvoyPtr,
        length: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_set_detected_transport_protocol(
        filter: ListenerFilterEnvoyPtr,
        protocol: Buf,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_set_requested_server_name(
        filter: ListenerFilterEnvoyPtr,
        name: Buf,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_set_requested_application_protocols(
        filter: ListenerFilterEnvoyPtr,
        protocols: *const Buf,
        protocols_count: usize,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_set_ja3_hash(
        filter: ListenerFilterEnvoyPtr,
        hash: Buf,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_set_ja4_hash(
        filter: ListenerFilterEnvoyPtr,
        hash: Buf,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_get_requested_server_name(
        filter: ListenerFilterEnvoyPtr,
        result_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_detected_transport_protocol(
        filter: ListenerFilterEnvoyPtr,
        result_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_requested_application_protocols_size(
        filter: ListenerFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_listener_filter_get_requested_application_protocols(
        filter: ListenerFilterEnvoyPtr,
        protocols_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_ja3_hash(
        filter: ListenerFilterEnvoyPtr,
        result_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_ja4_hash(
        filter: ListenerFilterEnvoyPtr,
        result_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_is_ssl(
        filter: ListenerFilterEnvoyPtr,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_ssl_uri_sans_size(
        filter: ListenerFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_listener_filter_get_ssl_uri_sans(
        filter: ListenerFilterEnvoyPtr,
        sans_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_ssl_dns_sans_size(
        filter: ListenerFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_listener_filter_get_ssl_dns_sans(
        filter: ListenerFilterEnvoyPtr,
        sans_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_ssl_subject(
        filter: ListenerFilterEnvoyPtr,
        result_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_remote_address(
        filter: ListenerFilterEnvoyPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_direct_remote_address(
        filter: ListenerFilterEnvoyPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_local_address(
        filter: ListenerFilterEnvoyPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_direct_local_address(
        filter: ListenerFilterEnvoyPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_original_dst(
        filter: ListenerFilterEnvoyPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_address_type(
        filter: ListenerFilterEnvoyPtr,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_listener_filter_is_local_address_restored(
        filter: ListenerFilterEnvoyPtr,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_set_remote_address(
        filter: ListenerFilterEnvoyPtr,
        address: Buf,
        port: u32,
        is_ipv6: bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_restore_local_address(
        filter: ListenerFilterEnvoyPtr,
        address: Buf,
        port: u32,
        is_ipv6: bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_continue_filter_chain(
        filter: ListenerFilterEnvoyPtr,
        success: bool,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_use_original_dst(
        filter: ListenerFilterEnvoyPtr,
        use_original_dst: bool,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_close_socket(
        filter: ListenerFilterEnvoyPtr,
        details: Buf,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_write_to_socket(
        filter: ListenerFilterEnvoyPtr,
        data: Buf,
    ) -> i64;
    pub fn envoy_dynamic_module_callback_listener_filter_get_socket_fd(
        filter: ListenerFilterEnvoyPtr,
    ) -> i64;
    pub fn envoy_dynamic_module_callback_listener_filter_set_socket_option_int(
        filter: ListenerFilterEnvoyPtr,
        level: i64,
        name: i64,
        value: i64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_set_socket_option_bytes(
        filter: ListenerFilterEnvoyPtr,
        level: i64,
        name: i64,
        value: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_socket_option_int(
        filter: ListenerFilterEnvoyPtr,
        level: i64,
        name: i64,
        value_out: *mut i64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_socket_option_bytes(
        filter: ListenerFilterEnvoyPtr,
        level: i64,
        name: i64,
        value_out: *mut u8,
        value_size: usize,
        actual_size_out: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_set_filter_state(
        filter: ListenerFilterEnvoyPtr,
        key: Buf,
        value: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_get_filter_state(
        filter: ListenerFilterEnvoyPtr,
        key: Buf,
        value_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_set_downstream_transport_failure_reason(
        filter: ListenerFilterEnvoyPtr,
        reason: Buf,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_get_connection_start_time_ms(
        filter: ListenerFilterEnvoyPtr,
    ) -> u64;
    pub fn envoy_dynamic_module_callback_listener_filter_get_dynamic_metadata_string(
        filter: ListenerFilterEnvoyPtr,
        filter_namespace: Buf,
        key: Buf,
        value_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_set_dynamic_metadata_string(
        filter: ListenerFilterEnvoyPtr,
        filter_namespace: Buf,
        key: Buf,
        value: Buf,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_get_dynamic_metadata_number(
        filter: ListenerFilterEnvoyPtr,
        filter_namespace: Buf,
        key: Buf,
        result: *mut f64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_listener_filter_set_dynamic_metadata_number(
        filter: ListenerFilterEnvoyPtr,
        filter_namespace: Buf,
        key: Buf,
        value: f64,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_max_read_bytes(
        filter: ListenerFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_listener_filter_config_define_counter(
        config: ListenerConfigEnvoyPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_listener_filter_increment_counter(
        filter: ListenerFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_listener_filter_config_define_gauge(
        config: ListenerConfigEnvoyPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_listener_filter_set_gauge(
        filter: ListenerFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_listener_filter_increment_gauge(
        filter: ListenerFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_listener_filter_decrement_gauge(
        filter: ListenerFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_listener_filter_config_define_histogram(
        config: ListenerConfigEnvoyPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_listener_filter_record_histogram_value(
        filter: ListenerFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_listener_filter_http_callout(
        filter: ListenerFilterEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: Buf,
        headers: *const HeaderPair,
        headers_size: usize,
        body: Buf,
        timeout_milliseconds: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_listener_filter_scheduler_new(
        filter: ListenerFilterEnvoyPtr,
    ) -> ListenerSchedulerPtr;
    pub fn envoy_dynamic_module_callback_listener_filter_scheduler_commit(
        scheduler: ListenerSchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_scheduler_delete(
        scheduler: ListenerSchedulerPtr,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_config_scheduler_new(
        config: ListenerConfigEnvoyPtr,
    ) -> ListenerConfigSchedulerPtr;
    pub fn envoy_dynamic_module_callback_listener_filter_config_scheduler_delete(
        scheduler: ListenerConfigSchedulerPtr,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_config_scheduler_commit(
        scheduler: ListenerConfigSchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_listener_filter_get_worker_index(
        filter: ListenerFilterEnvoyPtr,
    ) -> u32;
}

/// A config-level metric update, `(config, id, value) -> metrics result` (1.39+).
pub(crate) type ListenerConfigMetricFn =
    unsafe extern "C" fn(ListenerConfigEnvoyPtr, usize, u64) -> u32;

late_table! {
    /// The listener filter's callbacks that not every supported Envoy exports; `None` where
    /// this Envoy lacks one.
    ListenerLate, listener_late;
    /// 1.38 only: a string in the dynamic metadata `(namespace, key, value)`; 1.39 dropped it
    /// (`filter_set_dynamic_metadata_string`, which every version has, sets a string value).
    set_dynamic_metadata: unsafe extern "C" fn(ListenerFilterEnvoyPtr, Buf, Buf, Buf) =
        c"envoy_dynamic_module_callback_listener_filter_set_dynamic_metadata",
    /// 1.39: config-level metrics (usable without a socket, e.g. from the main thread).
    config_increment_counter: ListenerConfigMetricFn =
        c"envoy_dynamic_module_callback_listener_filter_config_increment_counter",
    /// 1.39.
    config_increment_gauge: ListenerConfigMetricFn =
        c"envoy_dynamic_module_callback_listener_filter_config_increment_gauge",
    /// 1.39.
    config_decrement_gauge: ListenerConfigMetricFn =
        c"envoy_dynamic_module_callback_listener_filter_config_decrement_gauge",
    /// 1.39.
    config_set_gauge: ListenerConfigMetricFn =
        c"envoy_dynamic_module_callback_listener_filter_config_set_gauge",
    /// 1.39.
    config_record_histogram_value: ListenerConfigMetricFn =
        c"envoy_dynamic_module_callback_listener_filter_config_record_histogram_value",
    /// 1.39: a string attribute (an `envoy_dynamic_module_type_attribute_id` value), pointing
    /// into Envoy's memory.
    get_attribute_string: unsafe extern "C" fn(ListenerFilterEnvoyPtr, u32, *mut Buf) -> bool =
        c"envoy_dynamic_module_callback_listener_filter_get_attribute_string",
    /// 1.39: an integer attribute.
    get_attribute_int: unsafe extern "C" fn(ListenerFilterEnvoyPtr, u32, *mut u64) -> bool =
        c"envoy_dynamic_module_callback_listener_filter_get_attribute_int",
    /// 1.39: a boolean attribute.
    get_attribute_bool: unsafe extern "C" fn(ListenerFilterEnvoyPtr, u32, *mut bool) -> bool =
        c"envoy_dynamic_module_callback_listener_filter_get_attribute_bool",
    /// 1.39: several string metadata values under one namespace (key/value pairs).
    set_dynamic_metadata_string_batch:
        unsafe extern "C" fn(ListenerFilterEnvoyPtr, Buf, *const HeaderPair, usize) =
        c"envoy_dynamic_module_callback_listener_filter_set_dynamic_metadata_string_batch",
    /// 1.40: a typed filter-state object `(key, serialized value)`, made by the object factory
    /// registered for the key.
    set_filter_state_typed: unsafe extern "C" fn(ListenerFilterEnvoyPtr, Buf, Buf) -> bool =
        c"envoy_dynamic_module_callback_listener_filter_set_filter_state_typed",
    /// 1.40: a typed filter-state object's serialized value, pointing into Envoy's memory.
    get_filter_state_typed: unsafe extern "C" fn(ListenerFilterEnvoyPtr, Buf, *mut Buf) -> bool =
        c"envoy_dynamic_module_callback_listener_filter_get_filter_state_typed",
}

/// The hooks Envoy looks up in the module for listener filters (`envoy_dynamic_module_on_*`),
/// as the types of the functions the module exports. Envoy looks them up when a listener filter
/// config names the module.
pub(crate) mod hooks {
    #![allow(non_camel_case_types)]

    use super::*;

    /// Main thread, when a filter config naming the module loads: `(config, filter name,
    /// config bytes)`. Returns the module's config; null rejects the config.
    pub(crate) type envoy_dynamic_module_on_listener_filter_config_new =
        unsafe extern "C" fn(ListenerConfigEnvoyPtr, Buf, Buf) -> ListenerConfigModulePtr;
    /// Main thread, when Envoy drops the config (after all its filters are gone).
    pub(crate) type envoy_dynamic_module_on_listener_filter_config_destroy =
        unsafe extern "C" fn(ListenerConfigModulePtr);
    /// Worker thread, once per accepted socket: `(module config, Envoy filter)`. Returns the
    /// module's filter; null closes the socket.
    pub(crate) type envoy_dynamic_module_on_listener_filter_new =
        unsafe extern "C" fn(
            ListenerConfigModulePtr,
            ListenerFilterEnvoyPtr,
        ) -> ListenerFilterModulePtr;
    /// The socket was accepted (no connection exists yet); the first hook of each socket.
    /// Returns a `FilterStatus`: `StopIteration` waits for data (`on_data`) or for
    /// `filter_continue_filter_chain`.
    pub(crate) type envoy_dynamic_module_on_listener_filter_on_accept =
        unsafe extern "C" fn(ListenerFilterEnvoyPtr, ListenerFilterModulePtr) -> u32;
    /// Bytes arrived: `(.., bytes available to peek)`; they stay in the socket for later
    /// filters. Returns a `FilterStatus`: `StopIteration` waits for more.
    pub(crate) type envoy_dynamic_module_on_listener_filter_on_data =
        unsafe extern "C" fn(ListenerFilterEnvoyPtr, ListenerFilterModulePtr, usize) -> u32;
    /// The socket closed while this filter held the chain (only that filter is told).
    pub(crate) type envoy_dynamic_module_on_listener_filter_on_close =
        unsafe extern "C" fn(ListenerFilterEnvoyPtr, ListenerFilterModulePtr);
    /// How many bytes the filter wants to peek at (0: none, `on_data` never runs). Envoy asks
    /// often; it must be cheap.
    pub(crate) type envoy_dynamic_module_on_listener_filter_get_max_read_bytes =
        unsafe extern "C" fn(ListenerFilterEnvoyPtr, ListenerFilterModulePtr) -> usize;
    /// On the socket's worker, after `filter_scheduler_commit(.., event id)`.
    pub(crate) type envoy_dynamic_module_on_listener_filter_scheduled =
        unsafe extern "C" fn(ListenerFilterEnvoyPtr, ListenerFilterModulePtr, u64);
    /// On the main thread, after `filter_config_scheduler_commit(.., event id)`: `(Envoy
    /// config, module config, event id)`.
    pub(crate) type envoy_dynamic_module_on_listener_filter_config_scheduled =
        unsafe extern "C" fn(ListenerConfigEnvoyPtr, ListenerConfigModulePtr, u64);
    /// An HTTP callout the filter started ended: `(.., callout id, result, headers, header
    /// count, body chunks, chunk count)`, the result an `abi::callout_result` value; the arrays
    /// are Envoy's, valid during the call, null when there is no answer.
    pub(crate) type envoy_dynamic_module_on_listener_filter_http_callout_done =
        unsafe extern "C" fn(
            ListenerFilterEnvoyPtr,
            ListenerFilterModulePtr,
            u64,
            u32,
            *const HeaderPair,
            usize,
            *const Buf,
            usize,
        );
    /// The filter is destroyed; the module frees its filter. No callback may use the Envoy
    /// filter after this.
    pub(crate) type envoy_dynamic_module_on_listener_filter_destroy =
        unsafe extern "C" fn(ListenerFilterModulePtr);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers Envoy's ABI gives each value (checked against Envoy 1.38–1.40).
    #[test]
    fn values_have_the_abi_numbers() {
        assert_eq!(
            [FilterStatus::Continue, FilterStatus::StopIteration].map(u32::from),
            [0, 1]
        );
        let types = [
            AddressType::Unknown,
            AddressType::Ip,
            AddressType::Pipe,
            AddressType::EnvoyInternal,
        ];
        for (v, t) in types.into_iter().enumerate() {
            assert_eq!(AddressType::from_u32(v as u32), Some(t));
        }
        assert_eq!(AddressType::from_u32(4), None);
    }

    #[test]
    fn late_callbacks_resolve_to_none_outside_envoy() {
        let late = listener_late();
        assert!(late.set_dynamic_metadata.is_none() && late.get_filter_state_typed.is_none());
        assert_eq!(ListenerLate::NAMES.len(), 12);
    }
}
