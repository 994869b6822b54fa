//! The background runtime of an HTTP filter config, driven from its config-level hooks.

use crate::executor::background::StreamEvent;
use crate::filter::background::{deliver_callout, owned, poll};
use crate::filter::http::hooks::ConfigHooks;
use crate::host::{ChunkArray, ConfigHost, HeaderArray};

/// Polls the config's ready background tasks with `host` current (main thread).
pub(crate) fn run(config: &dyn ConfigHooks, host: &dyn ConfigHost) {
    if let Some(rt) = config.background() {
        poll(rt, host, &format!("filter '{}'", config.name()));
    }
}

/// A config callout finished (ABI result, headers and body chunks Envoy passed to the hook):
/// record a copy, then poll what it woke.
pub(crate) fn callout_done(
    config: &dyn ConfigHooks,
    host: &dyn ConfigHost,
    id: u64,
    result: u32,
    headers: HeaderArray<'_>,
    chunks: ChunkArray<'_>,
) {
    if let Some(rt) = config.background() {
        deliver_callout(rt, id, result, headers, chunks);
        poll(rt, host, &format!("filter '{}'", config.name()));
    }
}

/// What Envoy reported on a config streaming callout (views valid during the hook).
pub(crate) enum ConfigStreamEvent<'h> {
    Headers(HeaderArray<'h>, bool),
    Data(ChunkArray<'h>, bool),
    Trailers(HeaderArray<'h>),
    Complete,
    Reset,
}

/// Records a copy of a config stream event, then polls what it woke.
pub(crate) fn config_stream_event(
    config: &dyn ConfigHooks,
    host: &dyn ConfigHost,
    id: u64,
    ev: ConfigStreamEvent<'_>,
) {
    let ev = match ev {
        ConfigStreamEvent::Headers(h, end) => {
            let status = h
                .iter()
                .find(|(k, _)| *k == b":status")
                .and_then(|(_, v)| core::str::from_utf8(v).ok()?.parse().ok())
                .unwrap_or(0);
            StreamEvent::Headers(status, owned(h), end)
        }
        ConfigStreamEvent::Data(chunks, end) => {
            let mut data = Vec::new();
            for c in chunks.iter() {
                data.extend_from_slice(c);
            }
            StreamEvent::Data(data, end)
        }
        ConfigStreamEvent::Trailers(t) => StreamEvent::Trailers(owned(t)),
        ConfigStreamEvent::Complete => StreamEvent::Complete,
        ConfigStreamEvent::Reset => StreamEvent::Reset,
    };
    stream_event(config, host, id, ev);
}

/// An event of a config streaming callout: record it, then poll what it woke.
pub(crate) fn stream_event(
    config: &dyn ConfigHooks,
    host: &dyn ConfigHost,
    id: u64,
    ev: StreamEvent,
) {
    if let Some(rt) = config.background() {
        rt.stream_event(id, ev);
        poll(rt, host, &format!("filter '{}'", config.name()));
    }
}
