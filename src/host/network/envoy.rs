//! The real host of a network filter: Envoy's callbacks on its filter pointer.

use super::{Addr, Close, Committer, ConnHost, MetaValue, Side, SockOpt, UpstreamText};
use crate::abi::ffi::Buf;
use crate::abi::network as abi;
use crate::abi::network::{NetworkConfigEnvoyPtr, NetworkFilterEnvoyPtr};
use crate::host::{ConfigHost, MetricKind, MetricOp};
use core::ffi::c_void;
use std::cell::RefCell;

/// A connection's host for one hook: Envoy's filter pointer.
pub(crate) struct EnvoyConn {
    filter: NetworkFilterEnvoyPtr,
}

impl EnvoyConn {
    /// # Safety
    /// `filter` is the network filter pointer Envoy passed to the running hook, which stays
    /// valid while the value is used (it is made per hook and dropped before the hook returns).
    pub(crate) unsafe fn new(filter: NetworkFilterEnvoyPtr) -> EnvoyConn {
        EnvoyConn { filter }
    }
}

thread_local! {
    /// Chunk arrays longer than the stack's (rare: a buffer of many slices), reused.
    static CHUNKS: RefCell<Vec<Buf>> = const { RefCell::new(Vec::new()) };
}

/// Most chunks read onto the stack.
const STACK_CHUNKS: usize = 16;

impl EnvoyConn {
    /// Runs `f` over `side`'s chunks (Envoy's memory, valid until the buffer changes).
    fn with_chunks<R>(&self, side: Side, f: impl FnOnce(&[Buf]) -> R) -> R {
        let (size, get): (unsafe extern "C" fn(NetworkFilterEnvoyPtr) -> usize, _) = match side {
            Side::Read => (
                abi::envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks_size
                    as unsafe extern "C" fn(NetworkFilterEnvoyPtr) -> usize,
                abi::envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks
                    as unsafe extern "C" fn(NetworkFilterEnvoyPtr, *mut Buf) -> bool,
            ),
            Side::Write => (
                abi::envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks_size
                    as unsafe extern "C" fn(NetworkFilterEnvoyPtr) -> usize,
                abi::envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks
                    as unsafe extern "C" fn(NetworkFilterEnvoyPtr, *mut Buf) -> bool,
            ),
        };
        // SAFETY: live filter pointer (constructor contract).
        let n = unsafe { size(self.filter) };
        if n == 0 {
            return f(&[]);
        }
        if n <= STACK_CHUNKS {
            let mut arr = [Buf::EMPTY; STACK_CHUNKS];
            // SAFETY: live filter pointer; `arr` has room for the `n` chunks Envoy writes.
            let ok = unsafe { get(self.filter, arr.as_mut_ptr()) };
            return f(if ok { &arr[..n] } else { &[] });
        }
        CHUNKS.with(|c| {
            let mut v = c.take();
            v.clear();
            v.resize(n, Buf::EMPTY);
            // SAFETY: live filter pointer; `v` has room for the `n` chunks Envoy writes.
            let ok = unsafe { get(self.filter, v.as_mut_ptr()) };
            let r = f(if ok { &v[..] } else { &[] });
            c.replace(v);
            r
        })
    }
}

/// Copies an Envoy-owned string out-parameter into `out`.
///
/// # Safety
/// `b` was written by Envoy during the current call and points at `b.len` readable bytes.
unsafe fn copy_out(b: Buf, out: &mut [u8]) -> usize {
    // SAFETY: per the caller.
    let s = unsafe { crate::host::abi_bytes(b.ptr, b.len) };
    let n = s.len().min(out.len());
    out[..n].copy_from_slice(&s[..n]);
    n
}

impl ConnHost for EnvoyConn {
    fn len(&self, side: Side) -> usize {
        // SAFETY: live filter pointer.
        unsafe {
            match side {
                Side::Read => {
                    abi::envoy_dynamic_module_callback_network_filter_get_read_buffer_size(
                        self.filter,
                    )
                }
                Side::Write => {
                    abi::envoy_dynamic_module_callback_network_filter_get_write_buffer_size(
                        self.filter,
                    )
                }
            }
        }
    }

    fn copy(&self, side: Side, out: &mut [u8]) -> usize {
        self.with_chunks(side, |chunks| {
            let mut at = 0;
            for c in chunks {
                if at == out.len() {
                    break;
                }
                // SAFETY: Envoy's chunk of the buffer, unchanged during this copy (no call into
                // Envoy happens before it ends).
                let bytes = unsafe { crate::host::abi_bytes(c.ptr, c.len) };
                let n = bytes.len().min(out.len() - at);
                out[at..at + n].copy_from_slice(&bytes[..n]);
                at += n;
            }
            at
        })
    }

    fn chunks(&self, side: Side, f: &mut dyn FnMut(&[u8]) -> bool) {
        self.with_chunks(side, |chunks| {
            for c in chunks {
                // SAFETY: Envoy's chunk of the buffer, unchanged while `f` runs: `f` gets no
                // way to call into Envoy on this connection that changes the buffer (the API
                // hands the views to a closure under a shared borrow of the connection, and
                // every buffer-changing call takes it mutably).
                let bytes = unsafe { crate::host::abi_bytes(c.ptr, c.len) };
                if !bytes.is_empty() && !f(bytes) {
                    break;
                }
            }
        })
    }

    fn drain(&self, side: Side, n: usize) {
        // SAFETY: live filter pointer; Envoy drains at most what the buffer holds.
        unsafe {
            match side {
                Side::Read => abi::envoy_dynamic_module_callback_network_filter_drain_read_buffer(
                    self.filter,
                    n,
                ),
                Side::Write => {
                    abi::envoy_dynamic_module_callback_network_filter_drain_write_buffer(
                        self.filter,
                        n,
                    )
                }
            }
        };
    }

    fn inject_read(&self, data: &[u8], end: bool) {
        // SAFETY: live filter pointer; Envoy copies `data` during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_network_filter_inject_read_data(
                self.filter,
                Buf::of(data),
                end,
            )
        }
    }

    fn inject_write(&self, data: &[u8], end: bool) {
        // SAFETY: live filter pointer; Envoy copies `data` during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_network_filter_inject_write_data(
                self.filter,
                Buf::of(data),
                end,
            )
        }
    }

    fn continue_reading(&self) {
        // SAFETY: live filter pointer.
        unsafe { abi::envoy_dynamic_module_callback_network_filter_continue_reading(self.filter) }
    }

    fn read_disable(&self, disable: bool) {
        // SAFETY: live filter pointer.
        unsafe {
            abi::envoy_dynamic_module_callback_network_filter_read_disable(self.filter, disable)
        };
    }

    fn close(&self, how: Close, details: &[u8]) {
        let kind = match how {
            Close::Flush => abi::CloseType::FlushWrite as u32,
            Close::Reset => abi::CloseType::AbortReset as u32,
        };
        // SAFETY: live filter pointer; Envoy copies `details`.
        unsafe {
            abi::envoy_dynamic_module_callback_network_filter_close_with_details(
                self.filter,
                kind,
                Buf::of(details),
            )
        }
    }

    fn connection_id(&self) -> u64 {
        // SAFETY: live filter pointer.
        unsafe { abi::envoy_dynamic_module_callback_network_filter_get_connection_id(self.filter) }
    }

    fn address(&self, which: Addr, out: &mut [u8]) -> Option<(usize, u32)> {
        let mut b = Buf::EMPTY;
        let mut port = 0u32;
        let f = match which {
            Addr::Remote => abi::envoy_dynamic_module_callback_network_filter_get_remote_address,
            Addr::Local => abi::envoy_dynamic_module_callback_network_filter_get_local_address,
            Addr::DirectRemote => {
                abi::envoy_dynamic_module_callback_network_filter_get_direct_remote_address
            }
            Addr::Upstream => {
                // SAFETY: live filter pointer.
                if !unsafe {
                    abi::envoy_dynamic_module_callback_network_filter_has_upstream_host(self.filter)
                } {
                    return None;
                }
                abi::envoy_dynamic_module_callback_network_filter_get_upstream_host_address
            }
        };
        // SAFETY: live filter pointer; both out-parameters are valid for the call.
        let ok = unsafe { f(self.filter, &mut b, &mut port) };
        // SAFETY: Envoy wrote `b` during the call (it is only read when `ok`).
        ok.then(|| (unsafe { copy_out(b, out) }, port))
    }

    fn server_name(&self, out: &mut [u8]) -> Option<usize> {
        let mut b = Buf::EMPTY;
        // SAFETY: live filter pointer; the out-parameter is valid for the call.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_network_filter_get_requested_server_name(
                self.filter,
                &mut b,
            )
        };
        // SAFETY: Envoy wrote `b` during the call (it is only read when `ok`).
        (ok && b.len > 0).then(|| unsafe { copy_out(b, out) })
    }

    fn is_tls(&self) -> bool {
        // SAFETY: live filter pointer.
        unsafe { abi::envoy_dynamic_module_callback_network_filter_is_ssl(self.filter) }
    }

    fn set_metadata(&self, namespace: &[u8], key: &[u8], value: &[u8]) {
        // SAFETY: live filter pointer; Envoy copies the three buffers.
        unsafe {
            abi::envoy_dynamic_module_callback_network_set_dynamic_metadata_string(
                self.filter,
                Buf::of(namespace),
                Buf::of(key),
                Buf::of(value),
            )
        }
    }

    fn metric(&self, op: MetricOp, id: usize, value: u64) -> u32 {
        let f = match op {
            MetricOp::CounterAdd => {
                abi::envoy_dynamic_module_callback_network_filter_increment_counter
            }
            MetricOp::GaugeAdd => abi::envoy_dynamic_module_callback_network_filter_increment_gauge,
            MetricOp::GaugeSub => abi::envoy_dynamic_module_callback_network_filter_decrement_gauge,
            MetricOp::GaugeSet => abi::envoy_dynamic_module_callback_network_filter_set_gauge,
            MetricOp::HistogramRecord => {
                abi::envoy_dynamic_module_callback_network_filter_record_histogram_value
            }
        };
        // SAFETY: live filter pointer; Envoy checks the id and answers with a result code.
        unsafe { f(self.filter, id, value) }
    }

    fn set_filter_state(&self, key: &[u8], value: &[u8]) -> bool {
        // SAFETY: live filter pointer; Envoy copies both buffers.
        unsafe {
            abi::envoy_dynamic_module_callback_network_set_filter_state_bytes(
                self.filter,
                Buf::of(key),
                Buf::of(value),
            )
        }
    }

    fn filter_state(&self, key: &[u8], out: &mut [u8]) -> Option<usize> {
        let mut b = Buf::EMPTY;
        // SAFETY: live filter pointer; the key is read during the call; `b` is written.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_network_get_filter_state_bytes(
                self.filter,
                Buf::of(key),
                &mut b,
            )
        };
        if !ok {
            return None;
        }
        // SAFETY: Envoy wrote `b` during the call; the object lives while the connection
        // does, and it is copied at once.
        unsafe { copy_out(b, out) };
        Some(b.len)
    }

    fn peer_sans(&self, dns: bool, f: &mut dyn FnMut(&[u8])) {
        let (size, get): (unsafe extern "C" fn(NetworkFilterEnvoyPtr) -> usize, _) = if dns {
            (
                abi::envoy_dynamic_module_callback_network_filter_get_ssl_dns_sans_size
                    as unsafe extern "C" fn(NetworkFilterEnvoyPtr) -> usize,
                abi::envoy_dynamic_module_callback_network_filter_get_ssl_dns_sans
                    as unsafe extern "C" fn(NetworkFilterEnvoyPtr, *mut Buf) -> bool,
            )
        } else {
            (
                abi::envoy_dynamic_module_callback_network_filter_get_ssl_uri_sans_size
                    as unsafe extern "C" fn(NetworkFilterEnvoyPtr) -> usize,
                abi::envoy_dynamic_module_callback_network_filter_get_ssl_uri_sans
                    as unsafe extern "C" fn(NetworkFilterEnvoyPtr, *mut Buf) -> bool,
            )
        };
        // SAFETY: live filter pointer.
        let n = unsafe { size(self.filter) };
        if n == 0 {
            return;
        }
        CHUNKS.with(|c| {
            let mut v = c.take();
            v.clear();
            v.resize(n, Buf::EMPTY);
            // SAFETY: live filter pointer; `v` has room for the `n` names Envoy counted.
            if unsafe { get(self.filter, v.as_mut_ptr()) } {
                for b in &v {
                    // SAFETY: Envoy's strings of the peer certificate, read during this call.
                    f(unsafe { crate::host::abi_bytes(b.ptr, b.len) });
                }
            }
            c.replace(v);
        });
    }

    fn peer_subject(&self, out: &mut [u8]) -> Option<usize> {
        let mut b = Buf::EMPTY;
        // SAFETY: live filter pointer; `b` is written during the call.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_network_filter_get_ssl_subject(self.filter, &mut b)
        };
        // On a TLS connection without a peer certificate (none sent, or the handshake not done
        // yet) Envoy answers `true` with an empty subject: that is "none" too.
        if !ok || b.len == 0 {
            return None;
        }
        // SAFETY: Envoy wrote `b` during the call.
        unsafe { copy_out(b, out) };
        Some(b.len)
    }

    fn start_upstream_tls(&self) -> bool {
        // SAFETY: live filter pointer.
        unsafe {
            abi::envoy_dynamic_module_callback_network_filter_start_upstream_secure_transport(
                self.filter,
            )
        }
    }

    fn set_metadata_value(&self, namespace: &[u8], key: &[u8], value: MetaValue) {
        match value {
            // SAFETY: live filter pointer; Envoy copies both buffers.
            MetaValue::Number(n) => unsafe {
                abi::envoy_dynamic_module_callback_network_set_dynamic_metadata_number(
                    self.filter,
                    Buf::of(namespace),
                    Buf::of(key),
                    n,
                )
            },
            // SAFETY: as above.
            MetaValue::Bool(b) => unsafe {
                abi::envoy_dynamic_module_callback_network_set_dynamic_metadata_bool(
                    self.filter,
                    Buf::of(namespace),
                    Buf::of(key),
                    b,
                )
            },
        }
    }

    fn metadata_str(&self, namespace: &[u8], key: &[u8], out: &mut [u8]) -> Option<usize> {
        let mut b = Buf::EMPTY;
        // SAFETY: live filter pointer; the names are read during the call; `b` is written.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_network_get_dynamic_metadata_string(
                self.filter,
                Buf::of(namespace),
                Buf::of(key),
                &mut b,
            )
        };
        if !ok {
            return None;
        }
        // SAFETY: Envoy wrote `b` during the call: the metadata's own string, copied at once.
        unsafe { copy_out(b, out) };
        Some(b.len)
    }

    fn metadata_value(&self, namespace: &[u8], key: &[u8], want: MetaValue) -> Option<MetaValue> {
        match want {
            MetaValue::Number(_) => {
                let mut n = 0f64;
                // SAFETY: live filter pointer; the names are read during the call; `n` is
                // written.
                let ok = unsafe {
                    abi::envoy_dynamic_module_callback_network_get_dynamic_metadata_number(
                        self.filter,
                        Buf::of(namespace),
                        Buf::of(key),
                        &mut n,
                    )
                };
                ok.then_some(MetaValue::Number(n))
            }
            MetaValue::Bool(_) => {
                let mut v = false;
                // SAFETY: as above.
                let ok = unsafe {
                    abi::envoy_dynamic_module_callback_network_get_dynamic_metadata_bool(
                        self.filter,
                        Buf::of(namespace),
                        Buf::of(key),
                        &mut v,
                    )
                };
                ok.then_some(MetaValue::Bool(v))
            }
        }
    }

    fn upstream_text(&self, which: UpstreamText, out: &mut [u8]) -> Option<usize> {
        // SAFETY: live filter pointer.
        if !unsafe {
            abi::envoy_dynamic_module_callback_network_filter_has_upstream_host(self.filter)
        } {
            return None;
        }
        let f = match which {
            UpstreamText::Hostname => {
                abi::envoy_dynamic_module_callback_network_filter_get_upstream_host_hostname
            }
            UpstreamText::Cluster => {
                abi::envoy_dynamic_module_callback_network_filter_get_upstream_host_cluster
            }
        };
        let mut b = Buf::EMPTY;
        // SAFETY: live filter pointer; `b` is written during the call.
        if !unsafe { f(self.filter, &mut b) } {
            return Some(0);
        }
        // SAFETY: Envoy wrote `b` during the call: the host's own string, copied at once.
        unsafe { copy_out(b, out) };
        Some(b.len)
    }

    fn set_upstream_socket_option(&self, level: i64, name: i64, value: SockOpt<'_>) {
        let state = abi::SocketOptionState::Prebind as u32;
        match value {
            // SAFETY: live filter pointer; a valid state; Envoy stores the option.
            SockOpt::Int(v) => unsafe {
                abi::envoy_dynamic_module_callback_network_set_socket_option_int(
                    self.filter,
                    level,
                    name,
                    state,
                    v,
                )
            },
            // SAFETY: as above; Envoy copies the bytes.
            SockOpt::Bytes(b) => unsafe {
                abi::envoy_dynamic_module_callback_network_set_socket_option_bytes(
                    self.filter,
                    level,
                    name,
                    state,
                    Buf::of(b),
                )
            },
        }
    }

    fn buffer_limit(&self) -> u32 {
        // SAFETY: live filter pointer.
        unsafe { abi::envoy_dynamic_module_callback_network_filter_get_buffer_limit(self.filter) }
    }

    fn set_buffer_limit(&self, limit: u32) {
        // SAFETY: live filter pointer.
        unsafe {
            abi::envoy_dynamic_module_callback_network_filter_set_buffer_limits(self.filter, limit)
        }
    }

    fn worker_index(&self) -> u32 {
        // SAFETY: live filter pointer.
        unsafe { abi::envoy_dynamic_module_callback_network_filter_get_worker_index(self.filter) }
    }

    fn start_downstream_tls(&self) -> Option<bool> {
        let f = abi::network_late().start_downstream_secure_transport?;
        // SAFETY: Envoy's exported callback of that name (resolved by name, signature per the
        // ABI); live filter pointer.
        Some(unsafe { f(self.filter) })
    }

    fn callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let mut id = 0u64;
        let rc = crate::host::envoy::with_pairs(headers, |ptr, n| {
            // SAFETY: live filter pointer; the cluster, header and body buffers are valid for
            // the call and copied by Envoy.
            unsafe {
                abi::envoy_dynamic_module_callback_network_filter_http_callout(
                    self.filter,
                    &mut id,
                    Buf::of(cluster),
                    ptr,
                    n,
                    Buf::of(body),
                    timeout_ms,
                )
            }
        });
        if rc == crate::abi::callout_init::SUCCESS {
            Ok(id)
        } else {
            Err(rc)
        }
    }

    fn new_scheduler(&self) -> Option<Committer> {
        // SAFETY: live filter pointer.
        let ptr =
            unsafe { abi::envoy_dynamic_module_callback_network_filter_scheduler_new(self.filter) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: Envoy's network scheduler may be committed from any thread until it is
        // deleted; the committer deletes it exactly once, on drop.
        Some(unsafe { Committer::new(ptr, commit, delete) })
    }

    fn log_enabled(&self, level: u32) -> bool {
        crate::host::envoy::global_log_enabled(level)
    }

    fn log(&self, level: u32, line: &[u8]) {
        crate::host::envoy::global_log(level, line)
    }
}

/// Commits an event on a connection's scheduler.
///
/// # Safety
/// `ptr` came from `network_filter_scheduler_new` and was not deleted.
unsafe fn commit(ptr: *mut c_void, event: u64) {
    // SAFETY: per the caller; Envoy allows commits from any thread.
    unsafe { abi::envoy_dynamic_module_callback_network_filter_scheduler_commit(ptr, event) }
}

/// Deletes a connection's scheduler.
///
/// # Safety
/// `ptr` came from `network_filter_scheduler_new`; called once.
unsafe fn delete(ptr: *mut c_void) {
    // SAFETY: per the caller.
    unsafe { abi::envoy_dynamic_module_callback_network_filter_scheduler_delete(ptr) }
}

/// A network filter config's host while it loads (Envoy's main thread).
pub(crate) struct EnvoyNetConfigHost {
    config: NetworkConfigEnvoyPtr,
}

impl EnvoyNetConfigHost {
    /// # Safety
    /// `config` is the config pointer Envoy passed to `on_network_filter_config_new`, used only
    /// during that hook.
    pub(crate) unsafe fn new(config: NetworkConfigEnvoyPtr) -> EnvoyNetConfigHost {
        EnvoyNetConfigHost { config }
    }
}

impl ConfigHost for EnvoyNetConfigHost {
    /// Network filter metrics have no labels in Envoy's ABI: a labelled one is refused.
    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[&str]) -> Result<usize, u32> {
        if !labels.is_empty() {
            return Err(crate::abi::metrics_result::INVALID_LABELS);
        }
        let f = match kind {
            MetricKind::Counter => {
                abi::envoy_dynamic_module_callback_network_filter_config_define_counter
            }
            MetricKind::Gauge => {
                abi::envoy_dynamic_module_callback_network_filter_config_define_gauge
            }
            MetricKind::Histogram => {
                abi::envoy_dynamic_module_callback_network_filter_config_define_histogram
            }
        };
        let mut id = 0usize;
        // SAFETY: live config pointer during config creation; `id` valid for the call.
        let rc = unsafe { f(self.config, Buf::of(name.as_bytes()), &mut id) };
        if rc == crate::abi::metrics_result::SUCCESS {
            Ok(id)
        } else {
            Err(rc)
        }
    }

    fn log_enabled(&self, level: u32) -> bool {
        crate::host::envoy::global_log_enabled(level)
    }

    fn log(&self, level: u32, msg: &[u8]) {
        crate::host::envoy::global_log(level, msg)
    }

    fn log_at(&self, level: u32, msg: &[u8], file: &str, line: u32) {
        crate::host::envoy::global_log_at(level, msg, file, line)
    }

    fn process_log(&self) -> Option<fn(u32, &[u8])> {
        Some(crate::host::envoy::global_log)
    }

    fn secret(&self, _handle: u64) -> Option<Vec<u8>> {
        None
    }

    /// Work owned by a network config has no scheduler of its own yet: an inert one.
    fn new_scheduler(&self) -> Committer {
        Committer::inert()
    }

    fn metric(&self, _op: MetricOp, _id: usize, _labels: &[&[u8]], _value: u64) -> Option<u32> {
        None
    }
}

// Network filter configs make no outbound calls while loading.
crate::host::no_outbound!(EnvoyNetConfigHost);
