//! `ResponseWriter`: The connections under the stream: socket options, addresses, upstream attempts, timing, stream control.

use super::*;
use crate::api::Unsupported;
use crate::api::http::control::SocketOption;
use crate::api::http::info::{Timing, unsupported};
use crate::host::http::context::Addr;

/// The connections under the stream: socket options, addresses, upstream attempts, timing, stream control.
impl<'w> ResponseWriter<'w> {
    /// Sets an integer socket option (see [`SocketOption`]); `false` when Envoy refused it
    /// (e.g. `setsockopt` failed on the client's socket).
    pub fn set_socket_option_int(&self, opt: SocketOption, value: i64) -> bool {
        self.core
            .with_host(|h| h.set_socket_option_int(opt.abi(), value))
            .unwrap_or(false)
    }

    /// Sets a bytes socket option (e.g. `TCP_CONGESTION`); `false` when Envoy refused it.
    pub fn set_socket_option_bytes(&self, opt: SocketOption, value: &[u8]) -> bool {
        self.core
            .with_host(|h| h.set_socket_option_bytes(opt.abi(), value))
            .unwrap_or(false)
    }

    /// The integer value this stream's filters set for `opt` (Envoy keeps what was set; it
    /// does not read the socket); `None` when none was set.
    pub fn socket_option_int(&self, opt: SocketOption) -> Option<i64> {
        self.core
            .with_host(|h| h.socket_option_int(opt.abi()))
            .flatten()
    }

    /// The bytes value set for `opt`, copied into the stream's arena; `None` when none was set.
    pub fn socket_option_bytes(&self, opt: SocketOption) -> Option<&[u8]> {
        let core = self.core;
        core.with_host(|h| {
            h.socket_option_bytes(opt.abi())
                .map(|raw| raw.keep_in(&core.arena))
        })
        .flatten()
    }

    /// Sends GOAWAY (HTTP/2 and HTTP/3) and closes the client's connection: at once, or, with
    /// `graceful`, after a drain period in which streams already open may finish. Like a
    /// reply, it takes effect when the handler's current poll ends, after a reply staged in
    /// the same poll. The request itself goes on unless the handler also replies.
    ///
    /// ```
    /// use jisr::{Request, ResponseWriter};
    ///
    /// async fn shed(_req: Request<'_>, w: ResponseWriter<'_>) {
    ///     w.send(503, b"draining\n");
    ///     w.goaway_and_close(true); // this client should reconnect elsewhere
    /// }
    /// # let _ = shed;
    /// ```
    pub fn goaway_and_close(&self, graceful: bool) {
        if self.core.with_host(|_| ()).is_some() {
            self.core.goaway.set(Some(graceful));
        }
    }

    /// Restarts the request through the whole filter chain and routing, with its current
    /// headers (change `:path` or a routing header first): Envoy's internal redirect. Like a
    /// reply it takes effect when the handler's current poll ends, and it is the stream's
    /// answer (a later `send` is ignored). The new pass runs every filter again, this one
    /// included, so mark the request (e.g. a header) to avoid a loop.
    ///
    /// Envoy recreates only a request that is complete and has no body; it refuses otherwise,
    /// and jisr then answers 500 (details `jisr_recreate_refused`) and logs a warning, rather
    /// than forward a request the handler meant to restart. Returns `false` (and does nothing)
    /// when the stream was already answered or is over.
    pub fn recreate_stream(&self) -> bool {
        let core = self.core;
        if core.st().replied() || core.st().response_sent() || core.with_host(|_| ()).is_none() {
            return false;
        }
        let Ok(mut reply) = core.reply.try_borrow_mut() else {
            return false;
        };
        reply.stage_recreate();
        core.update(StreamState::reply);
        true
    }

    /// Envoy's timing of this stream (e.g. time to first upstream byte, from Envoy's clock).
    ///
    /// ```
    /// use jisr::info::TimingPoint;
    /// use jisr::{Response, ResponseWriter};
    ///
    /// async fn ttfb(_resp: Response<'_>, w: ResponseWriter<'_>) {
    ///     if let Ok(t) = w.timing() {
    ///         if let Some(d) = t.since_start(TimingPoint::FirstUpstreamRxByteReceived) {
    ///             w.set_metadata_num("acme", "ttfb_ms", d.as_secs_f64() * 1000.0);
    ///         }
    ///     }
    /// }
    /// # let _ = ttfb;
    /// ```
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40 (and when the stream is over).
    pub fn timing(&self) -> Result<Timing, Unsupported> {
        self.core
            .with_host(|h| h.timing())
            .flatten()
            .map(|raw| Timing { raw })
            .ok_or(unsupported(
                "envoy_dynamic_module_callback_http_get_timing_info",
            ))
    }

    /// The address (`ip:port`) of the peer of the client's connection itself (not derived
    /// from `x-forwarded-for`), copied into the stream's arena.
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40.
    pub fn downstream_direct_remote_address(&self) -> Result<Option<&str>, Unsupported> {
        self.address(
            Addr::DownstreamDirectRemote,
            "envoy_dynamic_module_callback_http_get_downstream_direct_remote_address",
        )
    }

    /// The upstream host's address (`ip:port`), copied into the stream's arena; `None` before
    /// Envoy picked one (e.g. in the request phase).
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40.
    pub fn upstream_remote_address(&self) -> Result<Option<&str>, Unsupported> {
        self.address(
            Addr::UpstreamRemote,
            "envoy_dynamic_module_callback_http_get_upstream_remote_address",
        )
    }

    /// The id of the upstream connection that carried the request; `None` before there is
    /// one.
    ///
    /// # Errors
    /// [`Unsupported`] on Envoy 1.38 (it exists from 1.39 on).
    pub fn upstream_connection_id(&self) -> Result<Option<u64>, Unsupported> {
        let id = self
            .core
            .with_host(|h| h.upstream_connection_id())
            .flatten()
            .ok_or(unsupported(
                "envoy_dynamic_module_callback_http_get_upstream_connection_id",
            ))?;
        Ok((id != 0).then_some(id))
    }

    /// The upstream hosts (`ip:port`) Envoy tried for this request, in order (more than one
    /// after retries), each copied into the stream's arena.
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40.
    pub fn upstream_hosts_attempted(&self) -> Result<MetadataNames<'_>, Unsupported> {
        let core = self.core;
        let mut names = MetadataNames::default();
        let ok = core
            .with_host(|h| {
                h.upstream_hosts_attempted(&mut |raw| {
                    if let Ok(s) = core::str::from_utf8(raw.keep_in(&core.arena)) {
                        names.push(s);
                    }
                })
            })
            .unwrap_or(false);
        if ok {
            Ok(names)
        } else {
            Err(unsupported(
                "envoy_dynamic_module_callback_http_get_upstream_hosts_attempted",
            ))
        }
    }

    /// The ids of the upstream connections Envoy tried for this request, in order (this
    /// allocates the returned vector).
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40.
    pub fn upstream_connection_ids_attempted(&self) -> Result<Vec<u64>, Unsupported> {
        let mut ids = Vec::new();
        let ok = self
            .core
            .with_host(|h| h.upstream_connection_ids_attempted(&mut |id| ids.push(id)))
            .unwrap_or(false);
        if ok {
            Ok(ids)
        } else {
            Err(unsupported(
                "envoy_dynamic_module_callback_http_get_upstream_connection_ids_attempted",
            ))
        }
    }
}

/// The connections under the stream: socket options, addresses, upstream attempts, timing, stream control.
impl<'w> ResponseWriter<'w> {
    /// An address of the stream's connections (Envoy 1.40), copied into the stream's arena.
    pub(crate) fn address(
        &self,
        which: Addr,
        callback: &'static str,
    ) -> Result<Option<&str>, Unsupported> {
        let core = self.core;
        let got = core
            .with_host(|h| {
                h.address(which)
                    .map(|a| a.map(|raw| raw.keep_in(&core.arena)))
            })
            .flatten()
            .ok_or(unsupported(callback))?;
        Ok(got.and_then(|b| core::str::from_utf8(b).ok()))
    }
}
