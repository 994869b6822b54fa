//! A filter config's background runtime, driven from the config-level hooks.

use crate::abi::ffi::{Buf, HeaderPair};
use crate::executor::background::{CalloutOutcome, OwnedHeaders, Runtime, StreamEvent};
use crate::filter::http::hooks::{ConfigHooks, pairs};
use crate::host::current::enter_config;
use crate::host::{ConfigHost, Raw};
use std::sync::Arc;

/// The runtime a config owns (if it asked for one); closed when the config is dropped.
#[derive(Default)]
pub(crate) struct BackgroundSlot(pub(crate) Option<Arc<Runtime>>);

impl Drop for BackgroundSlot {
    fn drop(&mut self) {
        if let Some(rt) = &self.0 {
            rt.close();
        }
    }
}

/// Polls `rt`'s ready tasks with `host` current (main thread), then logs the tasks that
/// panicked (each was dropped; tasks are not restarted) as `owner`'s.
pub(crate) fn poll(rt: &Arc<Runtime>, host: &dyn ConfigHost, owner: &str) {
    enter_config(host, || rt.run());
    for msg in rt.take_panics() {
        host.log(
            crate::Level::Error as u32,
            format!("jisr: {owner}: a background task panicked and was dropped: {msg}").as_bytes(),
        );
    }
}

/// Polls the config's ready background tasks with `host` current (main thread).
pub(crate) fn run(config: &dyn ConfigHooks, host: &dyn ConfigHost) {
    if let Some(rt) = config.background() {
        poll(rt, host, &format!("filter '{}'", config.name()));
    }
}

fn owned(h: &[HeaderPair]) -> OwnedHeaders {
    pairs(h, &())
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec()))
        .collect()
}

/// A config callout finished (ABI result, headers and body chunks Envoy passed to the hook):
/// record a copy, then poll what it woke.
pub(crate) fn callout_done(
    config: &dyn ConfigHooks,
    host: &dyn ConfigHost,
    id: u64,
    result: u32,
    headers: &[HeaderPair],
    chunks: &[Buf],
) {
    if let Some(rt) = config.background() {
        deliver_callout(rt, id, result, headers, chunks);
        poll(rt, host, &format!("filter '{}'", config.name()));
    }
}

/// Records a callout's answer for `rt`'s tasks (the caller polls them next).
pub(crate) fn deliver_callout(
    rt: &Arc<Runtime>,
    id: u64,
    result: u32,
    headers: &[HeaderPair],
    chunks: &[Buf],
) {
    let outcome: CalloutOutcome = if result == 0 {
        let status = pairs(headers, &())
            .find(|(k, _)| *k == b":status")
            .and_then(|(_, v)| core::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        let mut body = Vec::new();
        for c in chunks {
            body.extend_from_slice(Raw::new(c.ptr, c.len).view(&()));
        }
        Ok((status, owned(headers), body))
    } else {
        Err(result)
    };
    rt.callout_done(id, outcome);
}

/// What Envoy reported on a config streaming callout (views valid during the hook).
pub(crate) enum ConfigStreamEvent<'h> {
    Headers(&'h [HeaderPair], bool),
    Data(&'h [Buf], bool),
    Trailers(&'h [HeaderPair]),
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
            let status = pairs(h, &())
                .find(|(k, _)| *k == b":status")
                .and_then(|(_, v)| core::str::from_utf8(v).ok()?.parse().ok())
                .unwrap_or(0);
            StreamEvent::Headers(status, owned(h), end)
        }
        ConfigStreamEvent::Data(chunks, end) => {
            let mut data = Vec::new();
            for c in chunks {
                data.extend_from_slice(Raw::new(c.ptr, c.len).view(&()));
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
