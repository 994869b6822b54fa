//! Declarations of the Envoy dynamic-module C ABI used by jisr.
//!
//! Written from the project's ABI notes (types, enum values and signatures checked against
//! Envoy 1.38–1.40). Every callback declared here exists in Envoy 1.38.3 and later; the
//! `versions::every_callback_is_bound_and_the_table_matches_the_binary` e2e test keeps that
//! true. Newer callbacks are looked up at run time instead (`super::late`), because cdylibs
//! are linked with `BIND_NOW` and one missing symbol makes `dlopen` fail.

use core::ffi::c_void;

/// Envoy-owned filter object (`E` in the notes): valid from `on_http_filter_new` until
/// `on_http_filter_stream_complete` returns.
pub type EnvoyFilterPtr = *mut c_void;
/// Envoy-owned filter-config object, valid during `on_http_filter_config_new` and until
/// `on_http_filter_config_destroy`.
pub type EnvoyConfigPtr = *mut c_void;
/// Envoy-allocated scheduler; the module frees it with `scheduler_delete`.
pub type SchedulerPtr = *mut c_void;

/// A pointer and a length; used both for Envoy-owned and module-owned bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Buf {
    /// First byte (may be null when `len` is 0).
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl Buf {
    /// The empty buffer (null pointer, zero length).
    pub const EMPTY: Buf = Buf {
        ptr: core::ptr::null(),
        len: 0,
    };

    /// A buffer viewing `bytes`; Envoy copies what it keeps.
    pub fn of(bytes: &[u8]) -> Buf {
        Buf {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

/// Envoy's timing facts of a stream (1.40's `timing_info_v2`): 19 nanosecond values, each with
/// a flag saying whether Envoy has it. Value 0 is the start as a Unix time; the others are
/// offsets from the start on Envoy's monotonic clock.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TimingInfo {
    /// The values, in the ABI's order (see `api::info::Timing`).
    pub ns: [i64; 19],
    /// Whether each value is known.
    pub has: [bool; 19],
}

impl TimingInfo {
    /// Nothing known (what Envoy writes when the stream has no info).
    pub const UNKNOWN: TimingInfo = TimingInfo {
        ns: [-1; 19],
        has: [false; 19],
    };
}

/// One header as four words: key pointer and length, value pointer and length.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HeaderPair {
    /// Key bytes.
    pub key_ptr: *const u8,
    /// Key length.
    pub key_len: usize,
    /// Value bytes.
    pub value_ptr: *const u8,
    /// Value length.
    pub value_len: usize,
}

impl HeaderPair {
    /// An empty pair, used to size arrays before Envoy fills them.
    pub const EMPTY: HeaderPair = HeaderPair {
        key_ptr: core::ptr::null(),
        key_len: 0,
        value_ptr: core::ptr::null(),
        value_len: 0,
    };

    /// A module-owned pair viewing `key` and `value`.
    pub fn of(key: &[u8], value: &[u8]) -> HeaderPair {
        HeaderPair {
            key_ptr: key.as_ptr(),
            key_len: key.len(),
            value_ptr: value.as_ptr(),
            value_len: value.len(),
        }
    }
}

unsafe extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: u32, message: Buf);
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: EnvoyConfigPtr,
        name: Buf,
        label_names: *const Buf,
        label_names_len: usize,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: EnvoyConfigPtr,
        name: Buf,
        label_names: *const Buf,
        label_names_len: usize,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: EnvoyConfigPtr,
        name: Buf,
        label_names: *const Buf,
        label_names_len: usize,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: EnvoyFilterPtr,
        id: usize,
        label_values: *const Buf,
        label_values_len: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_gauge(
        filter: EnvoyFilterPtr,
        id: usize,
        label_values: *const Buf,
        label_values_len: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_decrement_gauge(
        filter: EnvoyFilterPtr,
        id: usize,
        label_values: *const Buf,
        label_values_len: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter: EnvoyFilterPtr,
        id: usize,
        label_values: *const Buf,
        label_values_len: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: EnvoyFilterPtr,
        id: usize,
        label_values: *const Buf,
        label_values_len: usize,
        value: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: EnvoyFilterPtr,
        map: u32,
        key: Buf,
        out: *mut Buf,
        index: usize,
        count_out: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: EnvoyFilterPtr,
        map: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: EnvoyFilterPtr,
        map: u32,
        out: *mut HeaderPair,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: EnvoyFilterPtr,
        map: u32,
        key: Buf,
        value: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: EnvoyFilterPtr,
        map: u32,
        key: Buf,
        value: Buf,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: EnvoyFilterPtr,
        status: u32,
        headers: *const HeaderPair,
        headers_len: usize,
        body: Buf,
        details: Buf,
    );
    pub fn envoy_dynamic_module_callback_http_send_response_headers(
        filter: EnvoyFilterPtr,
        headers: *const HeaderPair,
        headers_len: usize,
        end_stream: bool,
    );
    pub fn envoy_dynamic_module_callback_http_send_response_data(
        filter: EnvoyFilterPtr,
        data: Buf,
        end_stream: bool,
    );
    pub fn envoy_dynamic_module_callback_http_send_response_trailers(
        filter: EnvoyFilterPtr,
        trailers: *const HeaderPair,
        trailers_len: usize,
    );

    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter: EnvoyFilterPtr,
        kind: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: EnvoyFilterPtr,
        kind: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: EnvoyFilterPtr,
        kind: u32,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter: EnvoyFilterPtr,
        kind: u32,
        data: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter: EnvoyFilterPtr,
        kind: u32,
        n: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: EnvoyFilterPtr,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_received_buffered_response_body(
        filter: EnvoyFilterPtr,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_number(
        filter: EnvoyFilterPtr,
        ns: Buf,
        key: Buf,
        value: f64,
    );
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter: EnvoyFilterPtr,
        ns: Buf,
        key: Buf,
        value: Buf,
    );
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_bool(
        filter: EnvoyFilterPtr,
        ns: Buf,
        key: Buf,
        value: bool,
    );
    pub fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter: EnvoyFilterPtr,
        source: u32,
        ns: Buf,
        key: Buf,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_metadata_number(
        filter: EnvoyFilterPtr,
        source: u32,
        ns: Buf,
        key: Buf,
        out: *mut f64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_metadata_bool(
        filter: EnvoyFilterPtr,
        source: u32,
        ns: Buf,
        key: Buf,
        out: *mut bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_add_dynamic_metadata_list_string(
        filter: EnvoyFilterPtr,
        ns: Buf,
        key: Buf,
        value: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_add_dynamic_metadata_list_number(
        filter: EnvoyFilterPtr,
        ns: Buf,
        key: Buf,
        value: f64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_add_dynamic_metadata_list_bool(
        filter: EnvoyFilterPtr,
        ns: Buf,
        key: Buf,
        value: bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_metadata_keys_count(
        filter: EnvoyFilterPtr,
        source: u32,
        ns: Buf,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_metadata_keys(
        filter: EnvoyFilterPtr,
        source: u32,
        ns: Buf,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_metadata_namespaces_count(
        filter: EnvoyFilterPtr,
        source: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_metadata_namespaces(
        filter: EnvoyFilterPtr,
        source: u32,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_metadata_list_size(
        filter: EnvoyFilterPtr,
        source: u32,
        ns: Buf,
        key: Buf,
        out: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_metadata_list_string(
        filter: EnvoyFilterPtr,
        source: u32,
        ns: Buf,
        key: Buf,
        index: usize,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_metadata_list_number(
        filter: EnvoyFilterPtr,
        source: u32,
        ns: Buf,
        key: Buf,
        index: usize,
        out: *mut f64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_metadata_list_bool(
        filter: EnvoyFilterPtr,
        source: u32,
        ns: Buf,
        key: Buf,
        index: usize,
        out: *mut bool,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: EnvoyFilterPtr,
        key: Buf,
        value: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_filter_state_bytes(
        filter: EnvoyFilterPtr,
        key: Buf,
        out: *mut Buf,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: EnvoyFilterPtr,
    ) -> SchedulerPtr;
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: SchedulerPtr);

    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: EnvoyFilterPtr);
    pub fn envoy_dynamic_module_callback_http_clear_route_cluster_cache(filter: EnvoyFilterPtr);
    pub fn envoy_dynamic_module_callback_http_add_custom_flag(filter: EnvoyFilterPtr, flag: Buf);
    pub fn envoy_dynamic_module_callback_http_get_cluster_name(
        filter: EnvoyFilterPtr,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_cluster_host_count(
        filter: EnvoyFilterPtr,
        priority: u32,
        total: *mut usize,
        healthy: *mut usize,
        degraded: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_buffer_limit(filter: EnvoyFilterPtr) -> u64;
    pub fn envoy_dynamic_module_callback_http_set_buffer_limit(filter: EnvoyFilterPtr, limit: u64);

    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: EnvoyFilterPtr,
        id: u32,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: EnvoyFilterPtr,
        id: u32,
        out: *mut u64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_bool(
        filter: EnvoyFilterPtr,
        id: u32,
        out: *mut bool,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: EnvoyFilterPtr);
    pub fn envoy_dynamic_module_callback_http_filter_continue_encoding(filter: EnvoyFilterPtr);
    pub fn envoy_dynamic_module_callback_http_filter_get_worker_index(
        filter: EnvoyFilterPtr,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_reset_stream(
        filter: EnvoyFilterPtr,
        reason: u32,
        details: Buf,
    );

    pub fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: EnvoyFilterPtr,
        id_out: *mut u64,
        cluster: Buf,
        headers: *const HeaderPair,
        headers_len: usize,
        body: Buf,
        timeout_ms: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_get_most_specific_route_config(
        filter: EnvoyFilterPtr,
    ) -> *const core::ffi::c_void;
    pub fn envoy_dynamic_module_callback_http_set_upstream_override_host(
        filter: EnvoyFilterPtr,
        host: Buf,
        strict: bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_start_http_stream(
        filter: EnvoyFilterPtr,
        id_out: *mut u64,
        cluster: Buf,
        headers: *const HeaderPair,
        headers_len: usize,
        body: Buf,
        end_stream: bool,
        timeout_ms: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_stream_send_data(
        filter: EnvoyFilterPtr,
        id: u64,
        data: Buf,
        end_stream: bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_stream_send_trailers(
        filter: EnvoyFilterPtr,
        id: u64,
        trailers: *const HeaderPair,
        trailers_len: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_reset_http_stream(
        filter: EnvoyFilterPtr,
        id: u64,
    );

    // Tracing (Envoy 1.38+). A span pointer from `get_active_span` lives as long as the stream;
    // a child span is the module's until `child_span_finish`. Strings Envoy returns live in a
    // thread-local buffer until the next tracing call on the thread.
    pub fn envoy_dynamic_module_callback_http_get_active_span(
        filter: EnvoyFilterPtr,
    ) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_http_span_set_tag(span: *mut c_void, key: Buf, value: Buf);
    pub fn envoy_dynamic_module_callback_http_span_set_operation(span: *mut c_void, op: Buf);
    pub fn envoy_dynamic_module_callback_http_span_log(
        filter: EnvoyFilterPtr,
        span: *mut c_void,
        event: Buf,
    );
    pub fn envoy_dynamic_module_callback_http_span_set_sampled(span: *mut c_void, sampled: bool);
    pub fn envoy_dynamic_module_callback_http_span_get_baggage(
        span: *mut c_void,
        key: Buf,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_span_set_baggage(
        span: *mut c_void,
        key: Buf,
        value: Buf,
    );
    pub fn envoy_dynamic_module_callback_http_span_get_trace_id(
        span: *mut c_void,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_span_get_span_id(
        span: *mut c_void,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_span_spawn_child(
        filter: EnvoyFilterPtr,
        span: *mut c_void,
        op: Buf,
    ) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_http_child_span_finish(span: *mut c_void);

    // Socket options (Envoy 1.38+): state 0 prebind, 1 bound, 2 listening; direction 0
    // upstream, 1 downstream.
    pub fn envoy_dynamic_module_callback_http_get_socket_option_int(
        filter: EnvoyFilterPtr,
        level: i64,
        name: i64,
        state: u32,
        direction: u32,
        out: *mut i64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_socket_option_bytes(
        filter: EnvoyFilterPtr,
        level: i64,
        name: i64,
        state: u32,
        direction: u32,
        out: *mut Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_socket_option_int(
        filter: EnvoyFilterPtr,
        level: i64,
        name: i64,
        state: u32,
        direction: u32,
        value: i64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_socket_option_bytes(
        filter: EnvoyFilterPtr,
        level: i64,
        name: i64,
        state: u32,
        direction: u32,
        value: Buf,
    ) -> bool;

    // Stream control that may end the stream inside the call (staged by jisr).
    pub fn envoy_dynamic_module_callback_http_filter_send_go_away_and_close(
        filter: EnvoyFilterPtr,
        graceful: bool,
    );
    pub fn envoy_dynamic_module_callback_http_filter_recreate_stream(
        filter: EnvoyFilterPtr,
        headers: *const HeaderPair,
        headers_len: usize,
    ) -> bool;

    // Filter state through the object factory registered for the key (Envoy 1.38+).
    pub fn envoy_dynamic_module_callback_http_set_filter_state_typed(
        filter: EnvoyFilterPtr,
        key: Buf,
        value: Buf,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_filter_state_typed(
        filter: EnvoyFilterPtr,
        key: Buf,
        out: *mut Buf,
    ) -> bool;

    // Config-level (Envoy 1.38+): run on the main thread, on behalf of a filter config.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: EnvoyConfigPtr,
    ) -> SchedulerPtr;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: SchedulerPtr,
        event: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: SchedulerPtr,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: EnvoyConfigPtr,
        id_out: *mut u64,
        cluster: Buf,
        headers: *const HeaderPair,
        headers_len: usize,
        body: Buf,
        timeout_ms: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_start_http_stream(
        config: EnvoyConfigPtr,
        id_out: *mut u64,
        cluster: Buf,
        headers: *const HeaderPair,
        headers_len: usize,
        body: Buf,
        end_stream: bool,
        timeout_ms: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_stream_send_data(
        config: EnvoyConfigPtr,
        id: u64,
        data: Buf,
        end_stream: bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_config_stream_send_trailers(
        config: EnvoyConfigPtr,
        id: u64,
        trailers: *const HeaderPair,
        trailers_len: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_config_reset_http_stream(
        config: EnvoyConfigPtr,
        id: u64,
    );

    // Bootstrap extension (Envoy 1.38+): main-thread work of the module, not tied to a filter.
    // `bc` is the bootstrap extension config's Envoy pointer, `be` the extension's.
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_new(
        bc: *mut c_void,
    ) -> SchedulerPtr;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_delete(
        scheduler: SchedulerPtr,
    );
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_commit(
        scheduler: SchedulerPtr,
        event: u64,
    );
    pub fn envoy_dynamic_module_callback_bootstrap_extension_http_callout(
        bc: *mut c_void,
        id_out: *mut u64,
        cluster: Buf,
        headers: *const HeaderPair,
        headers_len: usize,
        body: Buf,
        timeout_ms: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_signal_init_complete(
        bc: *mut c_void,
    );
    pub fn envoy_dynamic_module_callback_bootstrap_extension_get_counter_value(
        be: *mut c_void,
        name: Buf,
        out: *mut u64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_get_gauge_value(
        be: *mut c_void,
        name: Buf,
        out: *mut u64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_timer_new(
        bc: *mut c_void,
    ) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_timer_enable(
        timer: *mut c_void,
        ms: u64,
    );
    pub fn envoy_dynamic_module_callback_bootstrap_extension_timer_delete(timer: *mut c_void);
    pub fn envoy_dynamic_module_callback_bootstrap_extension_file_watcher_add_watch(
        bc: *mut c_void,
        path: Buf,
        events: u32,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_admin_set_response(
        bc: *mut c_void,
        body: Buf,
    );
    pub fn envoy_dynamic_module_callback_bootstrap_extension_register_admin_handler(
        bc: *mut c_void,
        path_prefix: Buf,
        help: Buf,
        removable: bool,
        mutates_server_state: bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_define_counter(
        bc: *mut c_void,
        name: Buf,
        labels: *const Buf,
        n: usize,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_define_gauge(
        bc: *mut c_void,
        name: Buf,
        labels: *const Buf,
        n: usize,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_define_histogram(
        bc: *mut c_void,
        name: Buf,
        labels: *const Buf,
        n: usize,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_increment_counter(
        bc: *mut c_void,
        id: usize,
        labels: *const Buf,
        n: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_increment_gauge(
        bc: *mut c_void,
        id: usize,
        labels: *const Buf,
        n: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_decrement_gauge(
        bc: *mut c_void,
        id: usize,
        labels: *const Buf,
        n: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_set_gauge(
        bc: *mut c_void,
        id: usize,
        labels: *const Buf,
        n: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_record_histogram_value(
        bc: *mut c_void,
        id: usize,
        labels: *const Buf,
        n: usize,
        value: u64,
    ) -> u32;
}
