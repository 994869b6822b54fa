//! What a registered HTTP filter config says about its streams: its name, its response
//! mode, its introspection counters and its Envoy metrics; and the list of live configs
//! introspection reads.

use crate::executor::pool::StatsSource;
use crate::filter::http::envoy_stats::EnvoyStats;
pub(crate) use crate::filter::http::stats::FilterStats;
use crate::filter::http::stats::FilterStatsSnapshot;
use std::sync::{Arc, Mutex, Weak};

/// Facts about one registered filter config, shared by its streams.
pub(crate) struct FilterMeta {
    pub(crate) name: String,
    /// How the response handler sees the response.
    pub(crate) mode: ResponseMode,
    pub(crate) stats: FilterStats,
    /// Envoy metrics mirroring the stats (absent when opted out, and for raw filters).
    pub(crate) envoy: Option<EnvoyStats>,
    /// The process-wide log of the host that loaded the config, for lines written when no
    /// hook (so no stream host) is running, e.g. while a stream is destroyed.
    pub(crate) process_log: Option<fn(u32, &[u8])>,
}

/// How a filter's response handler sees the response; fixed at registration.
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{Registry, Request, Response, ResponseMode, ResponseWriter};
///
/// async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}
/// async fn shout(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
///     let mut body = Vec::new();
///     if resp.read_to_end(&mut body).await.is_ok() {
///         let _ = resp.replace_body(&body.to_ascii_uppercase()); // Buffer mode only
///     }
/// }
/// fn register(r: &mut Registry) { r.filter("shout").respond(ResponseMode::Buffer, pass, shout); }
///
/// let f = TestFilter::new(register, "shout", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// s.response_headers(&[(":status", "200")], false);
/// s.response_body(b"hello", true);
/// assert_eq!(s.forwarded_response_body(), b"HELLO");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMode {
    /// Response headers are held while the handler runs (it may change them); the body is not
    /// given to the handler ([`Response::read`](crate::Response::read) returns end of body at once) and is not
    /// forwarded before the handler is done.
    Passthrough,
    /// Headers and body flow to the client immediately. The handler reads body chunks as they
    /// pass: each chunk is readable during the hook that delivers it, and bytes the handler has
    /// not read by then are skipped (a handler that stops reading never stalls the stream).
    /// Headers can no longer be changed.
    Observe,
    /// Headers and body are held until the handler is done; the handler can read the whole body,
    /// change headers and replace the body (content-length is kept right).
    Buffer,
}

struct Live {
    meta: Weak<FilterMeta>,
    pool: Weak<dyn StatsSource>,
}

static LIVE: Mutex<Vec<Live>> = Mutex::new(Vec::new());

/// Records a filter config so introspection can find it (until it is destroyed).
pub(crate) fn register_live(meta: &Arc<FilterMeta>, pool: Arc<dyn StatsSource>) {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|l| l.meta.strong_count() > 0);
    live.push(Live {
        meta: Arc::downgrade(meta),
        pool: Arc::downgrade(&pool),
    });
}

/// The figures of every live filter config of this module, by filter name (a name appears once
/// per Envoy filter config using it).
pub fn filter_stats() -> Vec<(String, FilterStatsSnapshot)> {
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.iter()
        .filter_map(|l| {
            let (meta, pool) = (l.meta.upgrade()?, l.pool.upgrade()?);
            Some((
                meta.name.clone(),
                FilterStatsSnapshot::new(pool.stats(), &meta.stats),
            ))
        })
        .collect()
}
