//! The background runtime of a filter config or a server extension, driven from their
//! main-thread hooks: polling its ready tasks, and copying what Envoy delivers to them.

use crate::executor::background::{CalloutOutcome, OwnedHeaders, Runtime};
use crate::host::current::enter_config;
use crate::host::log::Level;
use crate::host::{ChunkArray, ConfigHost, HeaderArray};
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
            Level::Error as u32,
            format!("jisr: {owner}: a background task panicked and was dropped: {msg}").as_bytes(),
        );
    }
}

/// Copies headers Envoy passed to a hook.
pub(crate) fn owned(h: HeaderArray<'_>) -> OwnedHeaders {
    h.iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec()))
        .collect()
}

/// Records a callout's answer for `rt`'s tasks (the caller polls them next).
pub(crate) fn deliver_callout(
    rt: &Arc<Runtime>,
    id: u64,
    result: u32,
    headers: HeaderArray<'_>,
    chunks: ChunkArray<'_>,
) {
    let outcome: CalloutOutcome = if result == crate::abi::callout_result::SUCCESS {
        let status = headers
            .iter()
            .find(|(k, _)| *k == b":status")
            .and_then(|(_, v)| core::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        let mut body = Vec::new();
        for c in chunks.iter() {
            body.extend_from_slice(c);
        }
        Ok((status, owned(headers), body))
    } else {
        Err(result)
    };
    rt.callout_done(id, outcome);
}
