//! The real host of a UDP listener filter: Envoy's callbacks on its filter pointer.

use super::{Addr, UdpHost};
use crate::abi::ffi::Buf;
use crate::abi::udp as abi;
use crate::abi::udp::{UdpConfigEnvoyPtr, UdpFilterEnvoyPtr};
use crate::executor::sched::Committer;
use crate::host::{ConfigHost, MetricKind, MetricOp};
use std::cell::RefCell;

/// A datagram's host for one `on_data`: Envoy's filter pointer.
pub(crate) struct EnvoyUdp {
    filter: UdpFilterEnvoyPtr,
}

impl EnvoyUdp {
    /// # Safety
    /// `filter` is the UDP listener filter pointer Envoy passed to the running `on_data`,
    /// which stays valid while the value is used (it is made per hook and dropped before the
    /// hook returns).
    pub(crate) unsafe fn new(filter: UdpFilterEnvoyPtr) -> EnvoyUdp {
        EnvoyUdp { filter }
    }
}

thread_local! {
    /// Chunk arrays longer than the stack's (rare: a datagram in many slices), reused.
    static CHUNKS: RefCell<Vec<Buf>> = const { RefCell::new(Vec::new()) };
}

/// Most chunks read onto the stack.
const STACK_CHUNKS: usize = 8;

/// Appends the bytes of Envoy's `chunks` to `out`.
fn append(chunks: &[Buf], out: &mut Vec<u8>) {
    for c in chunks {
        // SAFETY: Envoy's slice of the current datagram, unchanged while we copy (no call into
        // Envoy happens before the copy ends).
        out.extend_from_slice(unsafe { crate::host::abi_bytes(c.ptr, c.len) });
    }
}

impl UdpHost for EnvoyUdp {
    fn read(&self, out: &mut Vec<u8>) {
        out.clear();
        // SAFETY: live filter pointer (constructor contract).
        let n = unsafe {
            abi::envoy_dynamic_module_callback_udp_listener_filter_get_datagram_data_chunks_size(
                self.filter,
            )
        };
        if n == 0 {
            return;
        }
        if n <= STACK_CHUNKS {
            let mut arr = [Buf::EMPTY; STACK_CHUNKS];
            // SAFETY: live filter pointer; `arr` has room for the `n` chunks Envoy writes.
            let ok = unsafe {
                abi::envoy_dynamic_module_callback_udp_listener_filter_get_datagram_data_chunks(
                    self.filter,
                    arr.as_mut_ptr(),
                )
            };
            if ok {
                append(&arr[..n], out);
            }
            return;
        }
        CHUNKS.with(|c| {
            let mut v = c.take();
            v.clear();
            v.resize(n, Buf::EMPTY);
            // SAFETY: live filter pointer; `v` has room for the `n` chunks Envoy writes.
            let ok = unsafe {
                abi::envoy_dynamic_module_callback_udp_listener_filter_get_datagram_data_chunks(
                    self.filter,
                    v.as_mut_ptr(),
                )
            };
            if ok {
                append(&v, out);
            }
            c.replace(v);
        });
    }

    fn replace(&self, data: &[u8]) -> bool {
        // SAFETY: live filter pointer; Envoy copies `data` during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_udp_listener_filter_set_datagram_data(
                self.filter,
                Buf::of(data),
            )
        }
    }

    fn address(&self, which: Addr, out: &mut [u8]) -> Option<(usize, u32)> {
        let mut b = Buf::EMPTY;
        let mut port = 0u32;
        let f = match which {
            Addr::Peer => abi::envoy_dynamic_module_callback_udp_listener_filter_get_peer_address,
            Addr::Local => abi::envoy_dynamic_module_callback_udp_listener_filter_get_local_address,
        };
        // SAFETY: live filter pointer; both out-parameters are valid for the call.
        if !unsafe { f(self.filter, &mut b, &mut port) } {
            return None;
        }
        // SAFETY: Envoy wrote `b` during the call: the address text it owns, valid until the
        // datagram ends; copied at once.
        let s = unsafe { crate::host::abi_bytes(b.ptr, b.len) };
        let n = s.len().min(out.len());
        out[..n].copy_from_slice(&s[..n]);
        Some((n, port))
    }

    fn send(&self, data: &[u8], ip: &[u8], port: u32) -> bool {
        // SAFETY: live filter pointer; Envoy copies `data` and parses `ip` during the call (an
        // empty `ip` means the current datagram's peer).
        unsafe {
            abi::envoy_dynamic_module_callback_udp_listener_filter_send_datagram(
                self.filter,
                Buf::of(data),
                Buf::of(ip),
                port,
            )
        }
    }

    fn worker_index(&self) -> u32 {
        // SAFETY: live filter pointer.
        unsafe {
            abi::envoy_dynamic_module_callback_udp_listener_filter_get_worker_index(self.filter)
        }
    }

    fn metric(&self, op: MetricOp, id: usize, value: u64) -> u32 {
        let f = match op {
            MetricOp::CounterAdd => {
                abi::envoy_dynamic_module_callback_udp_listener_filter_increment_counter
            }
            MetricOp::GaugeAdd => {
                abi::envoy_dynamic_module_callback_udp_listener_filter_increment_gauge
            }
            MetricOp::GaugeSub => {
                abi::envoy_dynamic_module_callback_udp_listener_filter_decrement_gauge
            }
            MetricOp::GaugeSet => abi::envoy_dynamic_module_callback_udp_listener_filter_set_gauge,
            MetricOp::HistogramRecord => {
                abi::envoy_dynamic_module_callback_udp_listener_filter_record_histogram_value
            }
        };
        // SAFETY: live filter pointer; Envoy checks the id.
        unsafe { f(self.filter, id, value) }
    }

    fn log_enabled(&self, level: u32) -> bool {
        crate::host::envoy::global_log_enabled(level)
    }

    fn log(&self, level: u32, line: &[u8]) {
        crate::host::envoy::global_log(level, line)
    }
}

/// A UDP listener filter config's host while it loads (Envoy's main thread).
pub(crate) struct EnvoyUdpConfigHost {
    config: UdpConfigEnvoyPtr,
}

impl EnvoyUdpConfigHost {
    /// # Safety
    /// `config` is the config pointer Envoy passed to `on_udp_listener_filter_config_new`,
    /// used only during that hook.
    pub(crate) unsafe fn new(config: UdpConfigEnvoyPtr) -> EnvoyUdpConfigHost {
        EnvoyUdpConfigHost { config }
    }
}

impl ConfigHost for EnvoyUdpConfigHost {
    /// UDP listener filter metrics have no labels in Envoy's ABI: a labelled one is refused.
    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[&str]) -> Result<usize, u32> {
        if !labels.is_empty() {
            return Err(crate::abi::metrics_result::INVALID_LABELS);
        }
        let f = match kind {
            MetricKind::Counter => {
                abi::envoy_dynamic_module_callback_udp_listener_filter_config_define_counter
            }
            MetricKind::Gauge => {
                abi::envoy_dynamic_module_callback_udp_listener_filter_config_define_gauge
            }
            MetricKind::Histogram => {
                abi::envoy_dynamic_module_callback_udp_listener_filter_config_define_histogram
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

    /// A UDP config has no scheduler: an inert one.
    fn new_scheduler(&self) -> Committer {
        Committer::inert()
    }

    fn metric(&self, _op: MetricOp, _id: usize, _labels: &[&[u8]], _value: u64) -> Option<u32> {
        None
    }
}

// UDP listener filter configs make no outbound calls while loading.
crate::host::no_outbound!(EnvoyUdpConfigHost);
