//! The network (L4) filter kind's C ABI: Envoy's `envoy_dynamic_module_callback_network_*`
//! callbacks (all 87 that Envoy 1.40.0 exports), the values they and the hooks exchange, and the
//! hooks Envoy calls on the module (`hooks`).
//!
//! The 76 callbacks Envoy 1.38.3 already exports are linked directly (`unsafe extern "C"`); the
//! 11 that 1.39 and 1.40 added are looked up by name on first use (`network_late()`), so the
//! module still loads on 1.38. CONSTRAINTS.md lists each with the first version that has it,
//! and `e2e/tests/network_abi.rs` checks both against the running Envoy binary.
//!
//! Pointers: `*FilterEnvoyPtr` and `*ConfigEnvoyPtr` are Envoy's objects, valid from the hook that
//! hands them over until the matching destroy hook; `*ModulePtr` are the module's, returned from
//! the `*_new` hooks and given back on every later hook. Schedulers are allocated by Envoy and
//! freed by the module (`*_scheduler_delete`). `Buf` out-parameters point into Envoy's memory,
//! valid until the hook that called returns. Enum-typed values cross the boundary as `u32` (C
//! enums with non-negative values); the enums below name them.

// The handler layers for this kind use these declarations as they are built; until then most
// are unused.
#![allow(dead_code)]

use super::ffi::{Buf, HeaderPair};
use super::late::late_table;
use core::ffi::c_void;

/// Envoy's network filter (`DynamicModuleNetworkFilter`): one per downstream connection.
pub(crate) type NetworkFilterEnvoyPtr = *mut c_void;
/// Envoy's network filter config (`DynamicModuleNetworkFilterConfig`).
pub(crate) type NetworkConfigEnvoyPtr = *mut c_void;
/// The module's per-connection filter, returned by `on_network_filter_new`.
pub(crate) type NetworkFilterModulePtr = *const c_void;
/// The module's filter config, returned by `on_network_filter_config_new`.
pub(crate) type NetworkConfigModulePtr = *const c_void;
/// A connection's scheduler: made by `filter_scheduler_new`, freed by `filter_scheduler_delete`.
pub(crate) type NetworkSchedulerPtr = *mut c_void;
/// A config's (main-thread) scheduler: made by `filter_config_scheduler_new`, freed by
/// `filter_config_scheduler_delete`.
pub(crate) type NetworkConfigSchedulerPtr = *mut c_void;

/// What the data hooks (`new_connection`, `read`, `write`) return
/// (`envoy_dynamic_module_type_on_network_filter_data_status`, Envoy's `Network::FilterStatus`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataStatus {
    /// Go on to the next filter.
    Continue = 0,
    /// Stop here until the filter calls `filter_continue_reading`.
    StopIteration = 1,
}

/// How `filter_close` closes the connection (`envoy_dynamic_module_type_network_connection_close_type`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseType {
    /// Write what is pending, then close.
    FlushWrite = 0,
    /// Close without flushing what is pending.
    NoFlush = 1,
    /// Write what is pending, then close after the delayed-close timeout.
    FlushWriteAndDelay = 2,
    /// Drop what is pending and close now.
    Abort = 3,
    /// Drop what is pending, send a TCP RST and close now.
    AbortReset = 4,
}

/// What `on_network_filter_event` reports (`envoy_dynamic_module_type_network_connection_event`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectionEvent {
    /// The peer closed the connection.
    RemoteClose = 0,
    /// Envoy closed it.
    LocalClose = 1,
    /// The connection is established.
    Connected = 2,
    /// Established with 0-RTT data.
    ConnectedZeroRtt = 3,
}

/// What `filter_get_connection_state` returns (`envoy_dynamic_module_type_network_connection_state`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectionState {
    /// Open.
    Open = 0,
    /// Closing.
    Closing = 1,
    /// Closed.
    Closed = 2,
}

/// What `filter_read_disable` returns (`envoy_dynamic_module_type_network_read_disable_status`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadDisableStatus {
    /// Nothing changed.
    NoTransition = 0,
    /// Reading stays disabled (the disable count is still positive).
    StillReadDisabled = 1,
    /// Reading was disabled and is now enabled.
    TransitionedToReadEnabled = 2,
    /// Reading was enabled and is now disabled.
    TransitionedToReadDisabled = 3,
}

/// When a socket option applies (`envoy_dynamic_module_type_socket_option_state`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SocketOptionState {
    /// Before `bind`.
    Prebind = 0,
    /// After `bind`.
    Bound = 1,
    /// After `listen`.
    Listening = 2,
}

/// Which of `SocketOption`'s values is set (`envoy_dynamic_module_type_socket_option_value_type`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SocketOptionValueType {
    /// `int_value`.
    Int = 0,
    /// `byte_value`.
    Bytes = 1,
}

/// One socket option as `network_get_socket_options` fills it
/// (`envoy_dynamic_module_type_socket_option`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SocketOption {
    /// The `setsockopt` level.
    pub(crate) level: i64,
    /// The `setsockopt` name.
    pub(crate) name: i64,
    /// A `SocketOptionState` value.
    pub(crate) state: u32,
    /// A `SocketOptionValueType` value.
    pub(crate) value_type: u32,
    /// The value when `value_type` is `Int`.
    pub(crate) int_value: i64,
    /// The value when `value_type` is `Bytes` (Envoy's memory).
    pub(crate) byte_value: Buf,
}

impl SocketOption {
    /// An empty option, to size the array Envoy fills.
    pub(crate) const EMPTY: SocketOption = SocketOption {
        level: 0,
        name: 0,
        state: 0,
        value_type: 0,
        int_value: 0,
        byte_value: Buf::EMPTY,
    };
}

macro_rules! to_u32 {
    ($($t:ty),*) => {$(
        impl From<$t> for u32 {
            #[inline]
            fn from(s: $t) -> u32 {
                s as u32
            }
        }
    )*};
}
to_u32!(
    DataStatus,
    CloseType,
    ConnectionEvent,
    ConnectionState,
    ReadDisableStatus,
    SocketOptionState,
    SocketOptionValueType
);

impl ConnectionEvent {
    /// The event a hook received, or `None` for a value this ABI does not define.
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::RemoteClose,
            1 => Self::LocalClose,
            2 => Self::Connected,
            3 => Self::ConnectedZeroRtt,
            _ => return None,
        })
    }
}

impl ConnectionState {
    /// The state a callback returned, or `None` for a value this ABI does not define.
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Open,
            1 => Self::Closing,
            2 => Self::Closed,
            _ => return None,
        })
    }
}

impl ReadDisableStatus {
    /// The status a callback returned, or `None` for a value this ABI does not define.
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::NoTransition,
            1 => Self::StillReadDisabled,
            2 => Self::TransitionedToReadEnabled,
            3 => Self::TransitionedToReadDisabled,
            _ => return None,
        })
    }
}

// Every callback Envoy 1.38.3 exports. Metric callbacks return a `super::metrics_result` value,
// `filter_http_callout` a `super::callout_init` value.
unsafe extern "C" {
    pub fn envoy_dynamic_module_callback_network_set_socket_option_int(
        filter: NetworkFilterEnvoyPtr,
        level: i64,
        name: i64,
        state: u32,
        value: i64,
    );
    pub fn envoy_dynamic_module_callback_network_set_socket_option_bytes(
        filter: NetworkFilterEnvoyPtr,
        level: i64,
        name: i64,
        state: u32,
        value: Buf,
    );
    pub fn envoy_dynamic_module_callback_network_get_socket_option_int(
        filter: NetworkFilterEnvoyPtr,
        level: i64,
        name: i64,
        state: u32,
        value_out: *mut i64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_get_socket_option_bytes(
        filter: NetworkFilterEnvoyPtr,
        level: i64,
        name: i64,
        state: u32,
        value_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_get_socket_options_size(
        filter: NetworkFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_network_get_socket_options(
        filter: NetworkFilterEnvoyPtr,
        options_out: *mut SocketOption,
    );
    pub fn envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks_size(
        filter: NetworkFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_network_filter_get_read_buffer_size(
        filter: NetworkFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks(
        filter: NetworkFilterEnvoyPtr,
        result_buffer_vector: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks_size(
        filter: NetworkFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_network_filter_get_write_buffer_size(
        filter: NetworkFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks(
        filter: NetworkFilterEnvoyPtr,
        result_buffer_vector: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_drain_read_buffer(
        filter: NetworkFilterEnvoyPtr,
        length: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_drain_write_buffer(
        filter: NetworkFilterEnvoyPtr,
        length: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_prepend_read_buffer(
        filter: NetworkFilterEnvoyPtr,
        data: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_append_read_buffer(
        filter: NetworkFilterEnvoyPtr,
        data: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_prepend_write_buffer(
        filter: NetworkFilterEnvoyPtr,
        data: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_append_write_buffer(
        filter: NetworkFilterEnvoyPtr,
        data: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_write(
        filter: NetworkFilterEnvoyPtr,
        data: Buf,
        end_stream: bool,
    );
    pub fn envoy_dynamic_module_callback_network_filter_inject_read_data(
        filter: NetworkFilterEnvoyPtr,
        data: Buf,
        end_stream: bool,
    );
    pub fn envoy_dynamic_module_callback_network_filter_inject_write_data(
        filter: NetworkFilterEnvoyPtr,
        data: Buf,
        end_stream: bool,
    );
    pub fn envoy_dynamic_module_callback_network_filter_continue_reading(
        filter: NetworkFilterEnvoyPtr,
    );
    pub fn envoy_dynamic_module_callback_network_filter_close(
        filter: NetworkFilterEnvoyPtr,
        close_type: u32,
    );
    pub fn envoy_dynamic_module_callback_network_filter_get_connection_id(
        filter: NetworkFilterEnvoyPtr,
    ) -> u64;
    pub fn envoy_dynamic_module_callback_network_filter_get_remote_address(
        filter: NetworkFilterEnvoyPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_local_address(
        filter: NetworkFilterEnvoyPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_is_ssl(
        filter: NetworkFilterEnvoyPtr,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_disable_close(
        filter: NetworkFilterEnvoyPtr,
        disabled: bool,
    );
    pub fn envoy_dynamic_module_callback_network_filter_close_with_details(
        filter: NetworkFilterEnvoyPtr,
        close_type: u32,
        details: Buf,
    );
    pub fn envoy_dynamic_module_callback_network_filter_get_requested_server_name(
        filter: NetworkFilterEnvoyPtr,
        result_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_direct_remote_address(
        filter: NetworkFilterEnvoyPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_ssl_uri_sans_size(
        filter: NetworkFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_network_filter_get_ssl_uri_sans(
        filter: NetworkFilterEnvoyPtr,
        sans_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_ssl_dns_sans_size(
        filter: NetworkFilterEnvoyPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_network_filter_get_ssl_dns_sans(
        filter: NetworkFilterEnvoyPtr,
        sans_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_ssl_subject(
        filter: NetworkFilterEnvoyPtr,
        result_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_set_filter_state_bytes(
        filter: NetworkFilterEnvoyPtr,
        key: Buf,
        value: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_get_filter_state_bytes(
        filter: NetworkFilterEnvoyPtr,
        key: Buf,
        value_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_set_filter_state_typed(
        filter: NetworkFilterEnvoyPtr,
        key: Buf,
        value: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_get_filter_state_typed(
        filter: NetworkFilterEnvoyPtr,
        key: Buf,
        value_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_set_dynamic_metadata_string(
        filter: NetworkFilterEnvoyPtr,
        filter_namespace: Buf,
        key: Buf,
        value: Buf,
    );
    pub fn envoy_dynamic_module_callback_network_get_dynamic_metadata_string(
        filter: NetworkFilterEnvoyPtr,
        filter_namespace: Buf,
        key: Buf,
        value_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_set_dynamic_metadata_number(
        filter: NetworkFilterEnvoyPtr,
        filter_namespace: Buf,
        key: Buf,
        value: f64,
    );
    pub fn envoy_dynamic_module_callback_network_get_dynamic_metadata_number(
        filter: NetworkFilterEnvoyPtr,
        filter_namespace: Buf,
        key: Buf,
        result: *mut f64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_set_dynamic_metadata_bool(
        filter: NetworkFilterEnvoyPtr,
        filter_namespace: Buf,
        key: Buf,
        value: bool,
    );
    pub fn envoy_dynamic_module_callback_network_get_dynamic_metadata_bool(
        filter: NetworkFilterEnvoyPtr,
        filter_namespace: Buf,
        key: Buf,
        result: *mut bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_http_callout(
        filter: NetworkFilterEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: Buf,
        headers: *const HeaderPair,
        headers_size: usize,
        body: Buf,
        timeout_milliseconds: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_config_define_counter(
        config: NetworkConfigEnvoyPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_increment_counter(
        filter: NetworkFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_config_define_gauge(
        config: NetworkConfigEnvoyPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_set_gauge(
        filter: NetworkFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_increment_gauge(
        filter: NetworkFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_decrement_gauge(
        filter: NetworkFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_config_define_histogram(
        config: NetworkConfigEnvoyPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_record_histogram_value(
        filter: NetworkFilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_get_cluster_host_count(
        filter: NetworkFilterEnvoyPtr,
        cluster_name: Buf,
        priority: u32,
        total_count: *mut usize,
        healthy_count: *mut usize,
        degraded_count: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_upstream_host_address(
        filter: NetworkFilterEnvoyPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_upstream_host_hostname(
        filter: NetworkFilterEnvoyPtr,
        hostname_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_upstream_host_cluster(
        filter: NetworkFilterEnvoyPtr,
        cluster_name_out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_has_upstream_host(
        filter: NetworkFilterEnvoyPtr,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_start_upstream_secure_transport(
        filter: NetworkFilterEnvoyPtr,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_connection_state(
        filter: NetworkFilterEnvoyPtr,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_read_disable(
        filter: NetworkFilterEnvoyPtr,
        disable: bool,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_read_enabled(
        filter: NetworkFilterEnvoyPtr,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_is_half_close_enabled(
        filter: NetworkFilterEnvoyPtr,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_enable_half_close(
        filter: NetworkFilterEnvoyPtr,
        enabled: bool,
    );
    pub fn envoy_dynamic_module_callback_network_filter_get_buffer_limit(
        filter: NetworkFilterEnvoyPtr,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_set_buffer_limits(
        filter: NetworkFilterEnvoyPtr,
        limit: u32,
    );
    pub fn envoy_dynamic_module_callback_network_filter_above_high_watermark(
        filter: NetworkFilterEnvoyPtr,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_scheduler_new(
        filter: NetworkFilterEnvoyPtr,
    ) -> NetworkSchedulerPtr;
    pub fn envoy_dynamic_module_callback_network_filter_scheduler_commit(
        scheduler: NetworkSchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_network_filter_scheduler_delete(
        scheduler: NetworkSchedulerPtr,
    );
    pub fn envoy_dynamic_module_callback_network_filter_config_scheduler_new(
        config: NetworkConfigEnvoyPtr,
    ) -> NetworkConfigSchedulerPtr;
    pub fn envoy_dynamic_module_callback_network_filter_config_scheduler_delete(
        scheduler: NetworkConfigSchedulerPtr,
    );
    pub fn envoy_dynamic_module_callback_network_filter_config_scheduler_commit(
        scheduler: NetworkConfigSchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_network_filter_get_worker_index(
        filter: NetworkFilterEnvoyPtr,
    ) -> u32;
}

/// A config-level metric update, `(config, id, value) -> metrics result` (1.39+).
pub(crate) type NetworkConfigMetricFn =
    unsafe extern "C" fn(NetworkConfigEnvoyPtr, usize, u64) -> u32;

late_table! {
    /// The network filter's callbacks newer than Envoy 1.38; `None` where this Envoy lacks one.
    NetworkLate, network_late;
    /// 1.39: config-level metrics (usable without a connection, e.g. from the main thread).
    config_increment_counter: NetworkConfigMetricFn =
        c"envoy_dynamic_module_callback_network_filter_config_increment_counter",
    /// 1.39.
    config_increment_gauge: NetworkConfigMetricFn =
        c"envoy_dynamic_module_callback_network_filter_config_increment_gauge",
    /// 1.39.
    config_decrement_gauge: NetworkConfigMetricFn =
        c"envoy_dynamic_module_callback_network_filter_config_decrement_gauge",
    /// 1.39.
    config_set_gauge: NetworkConfigMetricFn =
        c"envoy_dynamic_module_callback_network_filter_config_set_gauge",
    /// 1.39.
    config_record_histogram_value: NetworkConfigMetricFn =
        c"envoy_dynamic_module_callback_network_filter_config_record_histogram_value",
    /// 1.39: a string attribute (an `envoy_dynamic_module_type_attribute_id` value), pointing
    /// into Envoy's memory.
    get_attribute_string: unsafe extern "C" fn(NetworkFilterEnvoyPtr, u32, *mut Buf) -> bool =
        c"envoy_dynamic_module_callback_network_filter_get_attribute_string",
    /// 1.39: an integer attribute.
    get_attribute_int: unsafe extern "C" fn(NetworkFilterEnvoyPtr, u32, *mut u64) -> bool =
        c"envoy_dynamic_module_callback_network_filter_get_attribute_int",
    /// 1.39: a boolean attribute.
    get_attribute_bool: unsafe extern "C" fn(NetworkFilterEnvoyPtr, u32, *mut bool) -> bool =
        c"envoy_dynamic_module_callback_network_filter_get_attribute_bool",
    /// 1.39: the upstream connection's id (0: none yet).
    get_upstream_connection_id: unsafe extern "C" fn(NetworkFilterEnvoyPtr) -> u64 =
        c"envoy_dynamic_module_callback_network_filter_get_upstream_connection_id",
    /// 1.39: several string metadata values under one namespace (key/value pairs).
    set_dynamic_metadata_string_batch:
        unsafe extern "C" fn(NetworkFilterEnvoyPtr, Buf, *const HeaderPair, usize) =
        c"envoy_dynamic_module_callback_network_set_dynamic_metadata_string_batch",
    /// 1.40: switch the downstream connection to TLS (`false`: the transport socket cannot).
    start_downstream_secure_transport: unsafe extern "C" fn(NetworkFilterEnvoyPtr) -> bool =
        c"envoy_dynamic_module_callback_network_filter_start_downstream_secure_transport",
}

/// The hooks Envoy looks up in the module for network filters (`envoy_dynamic_module_on_*`),
/// as the types of the functions the module exports. Envoy looks them up when a network filter
/// config names the module.
pub(crate) mod hooks {
    #![allow(non_camel_case_types)]

    use super::*;

    /// Main thread, when a filter config naming the module loads: `(config, filter name,
    /// config bytes)`. Returns the module's config; null rejects the config.
    pub(crate) type envoy_dynamic_module_on_network_filter_config_new =
        unsafe extern "C" fn(NetworkConfigEnvoyPtr, Buf, Buf) -> NetworkConfigModulePtr;
    /// Main thread, when Envoy drops the config (after all its filters are gone).
    pub(crate) type envoy_dynamic_module_on_network_filter_config_destroy =
        unsafe extern "C" fn(NetworkConfigModulePtr);
    /// Worker thread, once per accepted connection: `(module config, Envoy filter)`. Returns
    /// the module's filter; null closes the connection.
    pub(crate) type envoy_dynamic_module_on_network_filter_new =
        unsafe extern "C" fn(
            NetworkConfigModulePtr,
            NetworkFilterEnvoyPtr,
        ) -> NetworkFilterModulePtr;
    /// When the connection is set up (before any data). Returns a `DataStatus`: `StopIteration`
    /// holds the filter chain until `filter_continue_reading`.
    pub(crate) type envoy_dynamic_module_on_network_filter_new_connection =
        unsafe extern "C" fn(NetworkFilterEnvoyPtr, NetworkFilterModulePtr) -> u32;
    /// Bytes read from the client: `(.., bytes in the read buffer, end of stream)`. Returns a
    /// `DataStatus`; with `StopIteration` the bytes stay in the buffer.
    pub(crate) type envoy_dynamic_module_on_network_filter_read =
        unsafe extern "C" fn(NetworkFilterEnvoyPtr, NetworkFilterModulePtr, usize, bool) -> u32;
    /// Bytes about to be written to the client: `(.., bytes in the write buffer, end of
    /// stream)`. Returns a `DataStatus`.
    pub(crate) type envoy_dynamic_module_on_network_filter_write =
        unsafe extern "C" fn(NetworkFilterEnvoyPtr, NetworkFilterModulePtr, usize, bool) -> u32;
    /// A connection event (a `ConnectionEvent` value); after a close event no data hook runs.
    pub(crate) type envoy_dynamic_module_on_network_filter_event =
        unsafe extern "C" fn(NetworkFilterEnvoyPtr, NetworkFilterModulePtr, u32);
    /// An HTTP callout the filter started ended: `(.., callout id, result, headers, header
    /// count, body chunks, chunk count)`, the result an `abi::callout_result` value; the arrays
    /// are Envoy's, valid during the call, null when there is no answer.
    pub(crate) type envoy_dynamic_module_on_network_filter_http_callout_done =
        unsafe extern "C" fn(
            NetworkFilterEnvoyPtr,
            NetworkFilterModulePtr,
            u64,
            u32,
            *const HeaderPair,
            usize,
            *const Buf,
            usize,
        );
    /// On the connection's worker, after `filter_scheduler_commit(.., event id)`.
    pub(crate) type envoy_dynamic_module_on_network_filter_scheduled =
        unsafe extern "C" fn(NetworkFilterEnvoyPtr, NetworkFilterModulePtr, u64);
    /// On the main thread, after `filter_config_scheduler_commit(.., event id)`.
    pub(crate) type envoy_dynamic_module_on_network_filter_config_scheduled =
        unsafe extern "C" fn(NetworkConfigModulePtr, u64);
    /// The connection's write buffer went above its high watermark (time to stop producing).
    pub(crate) type envoy_dynamic_module_on_network_filter_above_write_buffer_high_watermark =
        unsafe extern "C" fn(NetworkFilterEnvoyPtr, NetworkFilterModulePtr);
    /// The write buffer drained below its low watermark (producing may resume).
    pub(crate) type envoy_dynamic_module_on_network_filter_below_write_buffer_low_watermark =
        unsafe extern "C" fn(NetworkFilterEnvoyPtr, NetworkFilterModulePtr);
    /// The filter is destroyed (the connection is gone); the module frees its filter. No
    /// callback may use the Envoy filter after this.
    pub(crate) type envoy_dynamic_module_on_network_filter_destroy =
        unsafe extern "C" fn(NetworkFilterModulePtr);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers Envoy's ABI gives each value (checked against Envoy 1.38–1.40).
    #[test]
    fn values_have_the_abi_numbers() {
        assert_eq!(
            [DataStatus::Continue, DataStatus::StopIteration].map(u32::from),
            [0, 1]
        );
        let close = [
            CloseType::FlushWrite,
            CloseType::NoFlush,
            CloseType::FlushWriteAndDelay,
            CloseType::Abort,
            CloseType::AbortReset,
        ];
        assert_eq!(close.map(u32::from), [0, 1, 2, 3, 4]);
        for v in 0..4 {
            assert_eq!(ConnectionEvent::from_u32(v).map(u32::from), Some(v));
            assert_eq!(ReadDisableStatus::from_u32(v).map(u32::from), Some(v));
        }
        assert_eq!(ConnectionEvent::from_u32(4), None);
        assert_eq!(ReadDisableStatus::from_u32(4), None);
        for v in 0..3 {
            assert_eq!(ConnectionState::from_u32(v).map(u32::from), Some(v));
        }
        assert_eq!(ConnectionState::from_u32(3), None);
        assert_eq!(
            [
                SocketOptionState::Prebind,
                SocketOptionState::Bound,
                SocketOptionState::Listening
            ]
            .map(u32::from),
            [0, 1, 2]
        );
        // level, name, state + value type, int value, byte value: the C layout on 64-bit.
        assert_eq!(core::mem::size_of::<SocketOption>(), 48);
        assert_eq!(core::mem::offset_of!(SocketOption, byte_value), 32);
    }

    #[test]
    fn newer_callbacks_resolve_to_none_outside_envoy() {
        let late = network_late();
        assert!(
            late.get_attribute_string.is_none() && late.start_downstream_secure_transport.is_none()
        );
        assert_eq!(NetworkLate::NAMES.len(), 11);
    }
}
