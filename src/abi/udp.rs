//! The UDP listener filter kind's C ABI: Envoy's `envoy_dynamic_module_callback_udp_listener_*`
//! callbacks (all 21 that Envoy 1.40.0 exports), the values they and the hooks exchange, and the
//! hooks Envoy calls on the module (`hooks`).
//!
//! A UDP listener filter sees each datagram a UDP listener receives: it may read and replace
//! the payload, answer the peer (`filter_send_datagram`), and stop the datagram or pass it on.
//!
//! The 16 callbacks Envoy 1.38.3 already exports are linked directly; the 5 config-level metric
//! callbacks 1.39 added are looked up by name on first use (`udp_late()`), so the module still
//! loads on 1.38. CONSTRAINTS.md lists each with the first version that has it, and
//! `e2e/tests/network_abi.rs` checks both against the running Envoy.
//!
//! Pointers and enum values follow the same rules as in `super::network`.

// The handler layers for this kind use these declarations as they are built; until then most
// are unused.
#![allow(dead_code)]

use super::ffi::Buf;
use super::late::late_table;
use core::ffi::c_void;

/// Envoy's UDP listener filter (`DynamicModuleUdpListenerFilter`): one per listener and worker.
pub(crate) type UdpFilterEnvoyPtr = *mut c_void;
/// Envoy's UDP listener filter config (`DynamicModuleUdpListenerFilterConfig`).
pub(crate) type UdpConfigEnvoyPtr = *mut c_void;
/// The module's filter, returned by `on_udp_listener_filter_new`.
pub(crate) type UdpFilterModulePtr = *const c_void;
/// The module's filter config, returned by `on_udp_listener_filter_config_new`.
pub(crate) type UdpConfigModulePtr = *const c_void;

/// What `on_data` returns (`envoy_dynamic_module_type_on_udp_listener_filter_status`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FilterStatus {
    /// Pass the datagram to the next filter.
    Continue = 0,
    /// Stop here: later filters do not see this datagram.
    StopIteration = 1,
}

impl From<FilterStatus> for u32 {
    #[inline]
    fn from(s: FilterStatus) -> u32 {
        s as u32
    }
}

// Every callback Envoy 1.38.3 exports. Metric callbacks return a `super::metrics_result` value.
unsafe extern "C" {
    pub fn envoy_dynamic_module_callback_udp_listener_filter_get_datagram_data_chunks_size(
        filter: UdpFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_get_datagram_data_chunks(
        filter: UdpFilterEnvoyPtr,
        chunks_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_get_datagram_data_size(
        filter: UdpFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_set_datagram_data(
        filter: UdpFilterEnvoyPtr,
        data: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_get_peer_address(
        filter: UdpFilterEnvoyPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_get_local_address(
        filter: UdpFilterEnvoyPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_send_datagram(
        filter: UdpFilterEnvoyPtr,
        data: Buf,
        peer_address: Buf,
        peer_port: u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_config_define_counter(
        config: UdpConfigEnvoyPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_increment_counter(
        filter: UdpFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_config_define_gauge(
        config: UdpConfigEnvoyPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_set_gauge(
        filter: UdpFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_increment_gauge(
        filter: UdpFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_decrement_gauge(
        filter: UdpFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_config_define_histogram(
        config: UdpConfigEnvoyPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_record_histogram_value(
        filter: UdpFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_udp_listener_filter_get_worker_index(
        filter: UdpFilterEnvoyPtr,
    ) -> u32;
}

/// A config-level metric update, `(config, id, value) -> metrics result` (1.39+).
pub(crate) type UdpConfigMetricFn = unsafe extern "C" fn(UdpConfigEnvoyPtr, usize, u64) -> u32;

late_table! {
    /// The UDP listener filter's callbacks newer than Envoy 1.38; `None` where this Envoy lacks
    /// one.
    UdpLate, udp_late;
    /// 1.39: config-level metrics (usable without a datagram, e.g. from the main thread).
    config_increment_counter: UdpConfigMetricFn =
        c"envoy_dynamic_module_callback_udp_listener_filter_config_increment_counter",
    /// 1.39.
    config_increment_gauge: UdpConfigMetricFn =
        c"envoy_dynamic_module_callback_udp_listener_filter_config_increment_gauge",
    /// 1.39.
    config_decrement_gauge: UdpConfigMetricFn =
        c"envoy_dynamic_module_callback_udp_listener_filter_config_decrement_gauge",
    /// 1.39.
    config_set_gauge: UdpConfigMetricFn =
        c"envoy_dynamic_module_callback_udp_listener_filter_config_set_gauge",
    /// 1.39.
    config_record_histogram_value: UdpConfigMetricFn =
        c"envoy_dynamic_module_callback_udp_listener_filter_config_record_histogram_value",
}

/// The hooks Envoy looks up in the module for UDP listener filters (`envoy_dynamic_module_on_*`),
/// as the types of the functions the module exports. Envoy looks them up when a UDP listener
/// filter config names the module.
pub(crate) mod hooks {
    #![allow(non_camel_case_types)]

    use super::*;

    /// Main thread, when a filter config naming the module loads: `(config, filter name,
    /// config bytes)`. Returns the module's config; null rejects the config.
    pub(crate) type envoy_dynamic_module_on_udp_listener_filter_config_new =
        unsafe extern "C" fn(UdpConfigEnvoyPtr, Buf, Buf) -> UdpConfigModulePtr;
    /// Main thread, when Envoy drops the config (after all its filters are gone).
    pub(crate) type envoy_dynamic_module_on_udp_listener_filter_config_destroy =
        unsafe extern "C" fn(UdpConfigModulePtr);
    /// On each worker, when the UDP listener starts there: `(module config, Envoy filter)`.
    /// Returns the module's filter; null fails the filter's creation.
    pub(crate) type envoy_dynamic_module_on_udp_listener_filter_new =
        unsafe extern "C" fn(UdpConfigModulePtr, UdpFilterEnvoyPtr) -> UdpFilterModulePtr;
    /// A datagram arrived (read it with `filter_get_datagram_data_*`, the peer with
    /// `filter_get_peer_address`). Returns a `FilterStatus`.
    pub(crate) type envoy_dynamic_module_on_udp_listener_filter_on_data =
        unsafe extern "C" fn(UdpFilterEnvoyPtr, UdpFilterModulePtr) -> u32;
    /// The filter is destroyed; the module frees its filter.
    pub(crate) type envoy_dynamic_module_on_udp_listener_filter_destroy =
        unsafe extern "C" fn(UdpFilterModulePtr);
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
    }

    #[test]
    fn newer_callbacks_resolve_to_none_outside_envoy() {
        assert!(udp_late().config_set_gauge.is_none());
        assert_eq!(UdpLate::NAMES.len(), 5);
    }
}
