//! Network (L4) filter callbacks and statuses.

use super::ffi::Buf;
use core::ffi::c_void;

/// Envoy's network filter object: valid from `on_network_filter_new` until
/// `on_network_filter_destroy` returns.
pub type NetFilterPtr = *mut c_void;
/// Envoy's network filter config object.
pub type NetConfigPtr = *mut c_void;

/// What a read or write hook returns (`on_network_filter_data_status`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataStatus {
    /// The data goes on to the next filters.
    Continue = 0,
    /// The next filters are not called; data left in the buffer stays there.
    StopIteration = 1,
}

/// How a connection is closed (`network_connection_close_type`).
pub(crate) mod close_type {
    /// Write what is pending first.
    pub(crate) const FLUSH_WRITE: u32 = 0;
    /// Drop pending data and reset the socket.
    pub(crate) const ABORT_RESET: u32 = 4;
}

/// Connection events (`network_connection_event`).
pub(crate) mod event {
    /// The peer closed.
    pub(crate) const REMOTE_CLOSE: u32 = 0;
    /// Envoy closed.
    pub(crate) const LOCAL_CLOSE: u32 = 1;
}

unsafe extern "C" {
    pub fn envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks_size(
        filter: NetFilterPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_network_filter_get_read_buffer_size(
        filter: NetFilterPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks(
        filter: NetFilterPtr,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks_size(
        filter: NetFilterPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_network_filter_get_write_buffer_size(
        filter: NetFilterPtr,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks(
        filter: NetFilterPtr,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_drain_read_buffer(
        filter: NetFilterPtr,
        len: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_drain_write_buffer(
        filter: NetFilterPtr,
        len: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_inject_read_data(
        filter: NetFilterPtr,
        data: Buf,
        end_stream: bool,
    );
    pub fn envoy_dynamic_module_callback_network_filter_inject_write_data(
        filter: NetFilterPtr,
        data: Buf,
        end_stream: bool,
    );
    pub fn envoy_dynamic_module_callback_network_filter_continue_reading(filter: NetFilterPtr);
    pub fn envoy_dynamic_module_callback_network_filter_close_with_details(
        filter: NetFilterPtr,
        close_type: u32,
        details: Buf,
    );
    pub fn envoy_dynamic_module_callback_network_filter_read_disable(
        filter: NetFilterPtr,
        disable: bool,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_get_connection_id(
        filter: NetFilterPtr,
    ) -> u64;
    pub fn envoy_dynamic_module_callback_network_filter_get_remote_address(
        filter: NetFilterPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_local_address(
        filter: NetFilterPtr,
        address_out: *mut Buf,
        port_out: *mut u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_get_requested_server_name(
        filter: NetFilterPtr,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_is_ssl(filter: NetFilterPtr) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_scheduler_new(
        filter: NetFilterPtr,
    ) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_network_filter_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_network_filter_scheduler_delete(scheduler: *mut c_void);
    pub fn envoy_dynamic_module_callback_network_filter_config_define_counter(
        config: NetConfigPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_config_define_gauge(
        config: NetConfigPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_config_define_histogram(
        config: NetConfigPtr,
        name: Buf,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_set_dynamic_metadata_string(
        filter: NetFilterPtr,
        namespace: Buf,
        key: Buf,
        value: Buf,
    );
}
