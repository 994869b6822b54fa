//! The per-datagram step of a UDP listener filter, and its per-worker filter instance.
//!
//! The rules (the API docs in `jisr::udp` say the same to users):
//!
//! - Envoy makes one filter per UDP listener and worker (`on_udp_listener_filter_new`) and
//!   calls `on_data` once per datagram, synchronously: the datagram exists only during that
//!   call, and the ABI offers no scheduler to resume later. So the handler is a plain function
//!   that runs to completion inside `on_data`; there is no future to hold.
//! - Before the handler runs, the datagram is copied into the worker's buffer (reused: no
//!   allocation once it has grown to the largest datagram seen).
//! - The handler's decision is the status: [`Decision::Pass`] → `Continue` (the filters after
//!   this one see the datagram, as the handler left it), [`Decision::Stop`] → `StopIteration`
//!   (they never see it: it was answered or dropped).
//! - A handler that panics drops the datagram (`StopIteration`, fail closed) and an error is
//!   logged; the worker's filter stays usable for the next datagram.
//! - A filter that cannot be made (its config was refused, or making it panicked) is
//!   [`DropAll`]: Envoy lets every datagram pass a filter the module did not make, so jisr
//!   makes one that drops them all instead.

use crate::abi::udp::FilterStatus;
use crate::executor::catch;
use crate::host::udp::UdpHost;
use std::cell::RefCell;
use std::sync::Arc;

/// What a handler decided for one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The filters after this one see the datagram.
    Pass,
    /// The datagram ends here (answered or dropped).
    Stop,
}

/// One datagram, as the API sees it: the host of the running `on_data` and the worker's copy
/// of the datagram's bytes.
pub(crate) struct DatagramCore<'d> {
    pub(crate) host: &'d dyn UdpHost,
    pub(crate) data: &'d mut Vec<u8>,
}

/// What a registered UDP listener filter runs for each datagram.
pub(crate) trait UdpTask: Send + Sync + 'static {
    /// Handles one datagram.
    fn datagram(&self, dg: DatagramCore<'_>) -> Decision;
}

/// A UDP listener filter config: the task and what its workers share.
pub(crate) struct UdpConfig<T: UdpTask> {
    pub(crate) task: T,
    pub(crate) name: Arc<str>,
}

/// What the entry layer calls on a config, whatever its task type.
pub(crate) trait UdpConfigHooks: Send + Sync {
    /// A new filter for one worker. The config must outlive it (Envoy destroys a config after
    /// its filters).
    fn new_filter<'c>(&'c self) -> Box<dyn UdpHooks + 'c>;
}

/// What the entry layer calls on a worker's filter, whatever its task type.
pub(crate) trait UdpHooks {
    /// `on_udp_listener_filter_on_data`: the status for the current datagram.
    fn on_data(&self, host: &dyn UdpHost) -> FilterStatus;
}

/// One worker's filter: the config and the reused datagram buffer.
struct UdpWorker<'c, T: UdpTask> {
    cfg: &'c UdpConfig<T>,
    buf: RefCell<Vec<u8>>,
}

impl<T: UdpTask> UdpConfigHooks for UdpConfig<T> {
    fn new_filter<'c>(&'c self) -> Box<dyn UdpHooks + 'c> {
        Box::new(UdpWorker {
            cfg: self,
            buf: RefCell::new(Vec::new()),
        })
    }
}

/// Writes an error line through `host` (formatted only when errors are logged).
fn log_error(host: &dyn UdpHost, args: core::fmt::Arguments<'_>) {
    if host.log_enabled(4) {
        crate::host::log::with_line(|s| core::fmt::write(s, args), |l| host.log(4, l));
    }
}

impl<T: UdpTask> UdpHooks for UdpWorker<'_, T> {
    fn on_data(&self, host: &dyn UdpHost) -> FilterStatus {
        let cfg = self.cfg;
        // Envoy never calls `on_data` of a filter inside another of its hooks; were it to,
        // the datagram is dropped rather than the buffer shared.
        let Ok(mut buf) = self.buf.try_borrow_mut() else {
            log_error(
                host,
                format_args!(
                    "jisr: udp filter '{}': datagram during another: dropped",
                    cfg.name
                ),
            );
            return FilterStatus::StopIteration;
        };
        host.read(&mut buf);
        let decided = catch(|| {
            cfg.task.datagram(DatagramCore {
                host,
                data: &mut buf,
            })
        });
        match decided {
            Ok(Decision::Pass) => FilterStatus::Continue,
            Ok(Decision::Stop) => FilterStatus::StopIteration,
            Err(msg) => {
                log_error(
                    host,
                    format_args!(
                        "jisr: udp filter '{}': handler panicked: {msg}; datagram dropped",
                        cfg.name
                    ),
                );
                FilterStatus::StopIteration
            }
        }
    }
}

/// The filter of a config that could not be made: drops every datagram (fail closed).
pub(crate) struct DropAll;

impl UdpHooks for DropAll {
    fn on_data(&self, _host: &dyn UdpHost) -> FilterStatus {
        FilterStatus::StopIteration
    }
}
