//! The real host of a listener filter: Envoy's callbacks on its listener filter pointer.

use super::{Committer, SockAddr, SocketHost};
use crate::abi::ffi::Buf;
use crate::abi::listener as abi;
use crate::abi::listener::{ListenerConfigEnvoyPtr, ListenerFilterEnvoyPtr};
use crate::host::{ConfigHost, MetricKind, MetricOp};
use core::ffi::c_void;

/// A socket's host for one hook: Envoy's listener filter pointer.
pub(crate) struct EnvoySocket {
    filter: ListenerFilterEnvoyPtr,
}

impl EnvoySocket {
    /// # Safety
    /// `filter` is the listener filter pointer Envoy passed to the running hook, which stays
    /// valid while the value is used (it is made per hook and dropped before the hook returns).
    pub(crate) unsafe fn new(filter: ListenerFilterEnvoyPtr) -> EnvoySocket {
        EnvoySocket { filter }
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

/// Most ALPN names passed on the stack.
const STACK_PROTOCOLS: usize = 16;

impl SocketHost for EnvoySocket {
    fn peeked(&self, out: &mut Vec<u8>) -> bool {
        let mut b = Buf::EMPTY;
        // SAFETY: live filter pointer; the out-parameter is valid for the call.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_get_buffer_chunk(self.filter, &mut b)
        };
        if !ok {
            return false;
        }
        // SAFETY: Envoy's peek buffer, valid during this `on_data` hook and unchanged while we
        // copy (no call into Envoy happens before the copy ends).
        let bytes = unsafe { crate::host::abi_bytes(b.ptr, b.len) };
        out.clear();
        out.extend_from_slice(bytes);
        true
    }

    fn drain(&self, n: usize) -> bool {
        // SAFETY: live filter pointer; Envoy checks that a buffer is being inspected.
        unsafe { abi::envoy_dynamic_module_callback_listener_filter_drain_buffer(self.filter, n) }
    }

    fn set_transport_protocol(&self, proto: &[u8]) {
        // SAFETY: live filter pointer; Envoy copies the bytes.
        unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_set_detected_transport_protocol(
                self.filter,
                Buf::of(proto),
            )
        }
    }

    fn set_server_name(&self, name: &[u8]) {
        // SAFETY: live filter pointer; Envoy copies the bytes.
        unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_set_requested_server_name(
                self.filter,
                Buf::of(name),
            )
        }
    }

    fn set_application_protocols(&self, protos: &[&[u8]]) {
        let call = |bufs: &[Buf]| {
            // SAFETY: live filter pointer; `bufs` and the bytes they view are alive during
            // the call, and Envoy copies them.
            unsafe {
                abi::envoy_dynamic_module_callback_listener_filter_set_requested_application_protocols(
                    self.filter,
                    bufs.as_ptr(),
                    bufs.len(),
                )
            }
        };
        if protos.len() <= STACK_PROTOCOLS {
            let mut arr = [Buf::EMPTY; STACK_PROTOCOLS];
            for (b, p) in arr.iter_mut().zip(protos) {
                *b = Buf::of(p);
            }
            call(&arr[..protos.len()]);
        } else {
            let v: Vec<Buf> = protos.iter().map(|p| Buf::of(p)).collect();
            call(&v);
        }
    }

    fn set_metadata(&self, namespace: &[u8], key: &[u8], value: &[u8]) {
        // SAFETY: live filter pointer; Envoy copies the three buffers.
        unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_set_dynamic_metadata_string(
                self.filter,
                Buf::of(namespace),
                Buf::of(key),
                Buf::of(value),
            )
        }
    }

    fn set_metadata_number(&self, namespace: &[u8], key: &[u8], value: f64) {
        // SAFETY: live filter pointer; Envoy copies both buffers.
        unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_set_dynamic_metadata_number(
                self.filter,
                Buf::of(namespace),
                Buf::of(key),
                value,
            )
        }
    }

    fn address(&self, which: SockAddr, out: &mut [u8]) -> Option<(usize, u32)> {
        let mut b = Buf::EMPTY;
        let mut port = 0u32;
        let f = match which {
            SockAddr::Remote => {
                abi::envoy_dynamic_module_callback_listener_filter_get_remote_address
            }
            SockAddr::DirectRemote => {
                abi::envoy_dynamic_module_callback_listener_filter_get_direct_remote_address
            }
            SockAddr::Local => abi::envoy_dynamic_module_callback_listener_filter_get_local_address,
        };
        // SAFETY: live filter pointer; both out-parameters are valid for the call.
        let ok = unsafe { f(self.filter, &mut b, &mut port) };
        // SAFETY: Envoy wrote `b` during the call (it is only read when `ok`).
        ok.then(|| (unsafe { copy_out(b, out) }, port))
    }

    fn set_remote_address(&self, ip: &[u8], port: u32, v6: bool) -> bool {
        // SAFETY: live filter pointer; Envoy parses (copies) the text during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_set_remote_address(
                self.filter,
                Buf::of(ip),
                port,
                v6,
            )
        }
    }

    fn restore_local_address(&self, ip: &[u8], port: u32, v6: bool) -> bool {
        // SAFETY: live filter pointer; Envoy parses (copies) the text during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_restore_local_address(
                self.filter,
                Buf::of(ip),
                port,
                v6,
            )
        }
    }

    fn metric(&self, op: MetricOp, id: usize, value: u64) -> u32 {
        let f = match op {
            MetricOp::CounterAdd => {
                abi::envoy_dynamic_module_callback_listener_filter_increment_counter
            }
            MetricOp::GaugeAdd => {
                abi::envoy_dynamic_module_callback_listener_filter_increment_gauge
            }
            MetricOp::GaugeSub => {
                abi::envoy_dynamic_module_callback_listener_filter_decrement_gauge
            }
            MetricOp::GaugeSet => abi::envoy_dynamic_module_callback_listener_filter_set_gauge,
            MetricOp::HistogramRecord => {
                abi::envoy_dynamic_module_callback_listener_filter_record_histogram_value
            }
        };
        // SAFETY: live filter pointer; Envoy checks the id and answers with a result code.
        unsafe { f(self.filter, id, value) }
    }

    fn set_filter_state(&self, key: &[u8], value: &[u8]) -> bool {
        // SAFETY: live filter pointer; Envoy copies both buffers.
        unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_set_filter_state(
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
            abi::envoy_dynamic_module_callback_listener_filter_get_filter_state(
                self.filter,
                Buf::of(key),
                &mut b,
            )
        };
        if !ok {
            return None;
        }
        // SAFETY: Envoy wrote `b` during the call; the object lives while the socket does,
        // and it is copied at once.
        unsafe { copy_out(b, out) };
        Some(b.len)
    }

    fn callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        // Envoy 1.38 (recognised by the callback only it exports) keeps a listener callout's
        // filter through a shared reference its listener filters do not have: making that
        // reference aborts Envoy 1.38.3 at the first listener callout. Refused before Envoy is
        // asked.
        if abi::listener_late().set_dynamic_metadata.is_some() {
            return Err(crate::abi::callout_init::CANNOT_CREATE_REQUEST);
        }
        let mut id = 0u64;
        let rc = crate::host::envoy::with_pairs(headers, |ptr, n| {
            // SAFETY: live filter pointer; the cluster, header and body buffers are valid for
            // the call and copied by Envoy.
            unsafe {
                abi::envoy_dynamic_module_callback_listener_filter_http_callout(
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

    fn continue_chain(&self, success: bool) {
        // SAFETY: live filter pointer; the filter stopped iteration earlier (the caller's
        // state machine calls this only then).
        unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_continue_filter_chain(
                self.filter,
                success,
            )
        }
    }

    fn write(&self, data: &[u8]) -> Option<usize> {
        // SAFETY: live filter pointer; Envoy copies `data` into its own buffer for the write.
        let n = unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_write_to_socket(
                self.filter,
                Buf::of(data),
            )
        };
        usize::try_from(n).ok()
    }

    fn fingerprint(&self, ja4: bool, out: &mut [u8]) -> Option<usize> {
        let get = if ja4 {
            abi::envoy_dynamic_module_callback_listener_filter_get_ja4_hash
        } else {
            abi::envoy_dynamic_module_callback_listener_filter_get_ja3_hash
        };
        let mut b = Buf::EMPTY;
        // SAFETY: live filter pointer; `b` is written during the call.
        if !unsafe { get(self.filter, &mut b) } {
            return None;
        }
        // SAFETY: Envoy wrote `b` during the call, a view of the hash the socket keeps; it is
        // copied at once.
        unsafe { copy_out(b, out) };
        Some(b.len)
    }

    fn set_socket_option(&self, level: i64, name: i64, value: i64) -> bool {
        // SAFETY: live filter pointer; plain values.
        unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_set_socket_option_int(
                self.filter,
                level,
                name,
                value,
            )
        }
    }

    fn socket_option(&self, level: i64, name: i64) -> Option<i64> {
        let mut v = 0i64;
        // SAFETY: live filter pointer; `v` is written during the call.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_get_socket_option_int(
                self.filter,
                level,
                name,
                &mut v,
            )
        };
        ok.then_some(v)
    }

    fn close(&self, details: &[u8]) {
        // SAFETY: live filter pointer; Envoy copies `details`.
        unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_close_socket(
                self.filter,
                Buf::of(details),
            )
        }
    }

    fn new_scheduler(&self) -> Option<Committer> {
        // SAFETY: live filter pointer.
        let ptr = unsafe {
            abi::envoy_dynamic_module_callback_listener_filter_scheduler_new(self.filter)
        };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: Envoy's listener scheduler may be committed from any thread until it is
        // deleted (it holds a weak reference to the filter); the committer deletes it exactly
        // once, on drop.
        Some(unsafe { Committer::new(ptr, commit, delete) })
    }

    fn log_enabled(&self, level: u32) -> bool {
        crate::host::envoy::global_log_enabled(level)
    }

    fn log(&self, level: u32, line: &[u8]) {
        crate::host::envoy::global_log(level, line)
    }
}

/// Commits an event on a socket's scheduler.
///
/// # Safety
/// `ptr` came from `listener_filter_scheduler_new` and was not deleted.
unsafe fn commit(ptr: *mut c_void, event: u64) {
    // SAFETY: per the caller; Envoy allows commits from any thread.
    unsafe { abi::envoy_dynamic_module_callback_listener_filter_scheduler_commit(ptr, event) }
}

/// Deletes a socket's scheduler.
///
/// # Safety
/// `ptr` came from `listener_filter_scheduler_new`; called once.
unsafe fn delete(ptr: *mut c_void) {
    // SAFETY: per the caller.
    unsafe { abi::envoy_dynamic_module_callback_listener_filter_scheduler_delete(ptr) }
}

/// A listener filter config's host while it loads (Envoy's main thread).
pub(crate) struct EnvoyListenerConfigHost {
    config: ListenerConfigEnvoyPtr,
}

impl EnvoyListenerConfigHost {
    /// # Safety
    /// `config` is the config pointer Envoy passed to `on_listener_filter_config_new`, used
    /// only during that hook.
    pub(crate) unsafe fn new(config: ListenerConfigEnvoyPtr) -> EnvoyListenerConfigHost {
        EnvoyListenerConfigHost { config }
    }
}

impl ConfigHost for EnvoyListenerConfigHost {
    /// Listener filter metrics have no labels in Envoy's ABI: a labelled one is refused.
    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[&str]) -> Result<usize, u32> {
        if !labels.is_empty() {
            return Err(crate::abi::metrics_result::INVALID_LABELS);
        }
        let f = match kind {
            MetricKind::Counter => {
                abi::envoy_dynamic_module_callback_listener_filter_config_define_counter
            }
            MetricKind::Gauge => {
                abi::envoy_dynamic_module_callback_listener_filter_config_define_gauge
            }
            MetricKind::Histogram => {
                abi::envoy_dynamic_module_callback_listener_filter_config_define_histogram
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

    /// Work owned by a listener config has no scheduler of its own yet: an inert one.
    fn new_scheduler(&self) -> Committer {
        Committer::inert()
    }

    fn metric(&self, _op: MetricOp, _id: usize, _labels: &[&[u8]], _value: u64) -> Option<u32> {
        None
    }
}

// Listener filter configs make no outbound calls while loading.
crate::host::no_outbound!(EnvoyListenerConfigHost);
