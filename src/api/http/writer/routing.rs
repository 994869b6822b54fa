//! `ResponseWriter`: Routing and the upstream: route-cache clearing, host override, cluster facts, buffer limits.

use super::*;

/// Routing and the upstream: route-cache clearing, host override, cluster facts, buffer limits.
impl<'a> ResponseWriter<'a> {
    /// Overrides the upstream host the router picks (`ip:port`); with `strict`, fails the
    /// request when that host is not available instead of falling back to load balancing.
    pub fn set_upstream_override_host(&self, host: &str, strict: bool) -> bool {
        self.core
            .with_host(|h| h.set_upstream_override_host(host.as_bytes(), strict))
            .unwrap_or(false)
    }

    /// Makes Envoy pick the route again (call it after changing a header the route matches on).
    pub fn clear_route_cache(&self) {
        self.core.with_host(|h| h.clear_route_cache());
    }

    /// Makes Envoy pick the route's cluster again, keeping the route: a route whose cluster a
    /// cluster specifier plugin (e.g. `matcher`) or `weighted_clusters` chose re-runs that choice
    /// on the current headers. A plain `cluster_header` route keeps its pick; call
    /// [`clear_route_cache`](Self::clear_route_cache) for that.
    pub fn clear_route_cluster_cache(&self) {
        self.core.with_host(|h| h.clear_route_cluster_cache());
    }

    /// The name of the cluster the stream is routed to, copied into the stream's arena; `None`
    /// when the route has no cluster (e.g. a direct response) or no route matched.
    ///
    /// ```
    /// use jisr::{Request, ResponseWriter};
    ///
    /// async fn tag(_req: Request<'_>, w: ResponseWriter<'_>) {
    ///     if let Some(cluster) = w.cluster_name() {
    ///         w.set_metadata_str("tag", "cluster", cluster);
    ///     }
    /// }
    /// # let _ = tag;
    /// ```
    pub fn cluster_name(&self) -> Option<&str> {
        let core = self.core;
        let bytes = core
            .with_host(|h| h.cluster_name().map(|raw| raw.keep_in(&core.arena)))
            .flatten()?;
        core::str::from_utf8(bytes).ok()
    }

    /// Host counts of the routed cluster at `priority` (0 is the highest); `None` without a
    /// routed cluster or when the cluster has no such priority.
    pub fn cluster_hosts(&self, priority: u32) -> Option<ClusterHosts> {
        let [total, healthy, degraded] = self
            .core
            .with_host(|h| h.cluster_host_count(priority))
            .flatten()?;
        Some(ClusterHosts {
            total,
            healthy,
            degraded,
        })
    }

    /// The stream's buffer limit in bytes: how much Envoy buffers for it before flow control
    /// (or a 413 when a filter buffers a whole body). Envoy starts from the listener's
    /// `per_connection_buffer_limit_bytes` (1 MiB by default).
    pub fn buffer_limit(&self) -> u64 {
        self.core.with_host(|h| h.buffer_limit()).unwrap_or(0)
    }

    /// Sets the stream's buffer limit in bytes (see [`buffer_limit`](Self::buffer_limit)), e.g.
    /// raising it for one route whose handler buffers large bodies.
    pub fn set_buffer_limit(&self, bytes: u64) {
        self.core.with_host(|h| h.set_buffer_limit(bytes));
    }
}
