//! jisr's own admin endpoints (`/jisr/healthz`, `/jisr/stats`, `/jisr/version`,
//! `/jisr/streams`), served by any jisr server extension and reporting on every kind: filter
//! configs, their waiting streams, and server extensions.

use crate::api::server::{ServerShared, lock};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

/// Live server extensions, for `/jisr/streams`.
pub(crate) static SERVERS: Mutex<Vec<std::sync::Weak<ServerShared>>> = Mutex::new(Vec::new());

/// jisr's own admin paths on Envoy's admin listener.
pub(crate) fn builtin_admin(shared: &ServerShared) {
    // From now on `/jisr/streams` can list waiting streams: register them.
    crate::filter::http::live::enable();
    let mut admin = lock(&shared.admin);
    let json = |body: String| (200u16, body.into_bytes());
    admin.push((
        "/jisr/healthz".into(),
        "jisr: liveness".into(),
        Box::new(|_| (200, b"ok\n".to_vec())),
    ));
    admin.push((
        "/jisr/stats".into(),
        "jisr: figures of every filter config".into(),
        Box::new(move |_| json(crate::api::http::stats::stats_json())),
    ));
    admin.push((
        "/jisr/version".into(),
        "jisr: versions".into(),
        Box::new(move |_| json(crate::api::http::stats::version_json())),
    ));
    admin.push((
        "/jisr/streams".into(),
        "jisr: streams per filter, each waiting stream, tasks per server".into(),
        Box::new(move |_| json(streams_json())),
    ));
}

/// Live streams per filter config and tasks per server extension, as JSON.
fn streams_json() -> String {
    use std::fmt::Write as _;
    let mut body = String::from("{\"filters\":[");
    for (i, (name, s)) in crate::api::http::stats::filter_stats().iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{{\"filter\":\"{}\",\"in_flight\":{},\"streams\":{},\"polls\":{},\"wakes_inline\":{},\"wakes_scheduled\":{}}}",
            name.escape_default(),
            s.in_flight,
            s.streams,
            s.polls,
            s.wakes_inline,
            s.wakes_scheduled
        );
    }
    body.push_str("],\"waiting\":[");
    // Streams whose handler is waiting (pended at least once), up to 1000.
    for (i, w) in crate::filter::http::live::snapshot()
        .iter()
        .take(1000)
        .enumerate()
    {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{{\"filter\":\"{}\",\"phase\":\"{}\",\"age_ms\":{},\"polls\":{},\"wakes_inline\":{},\"wakes_scheduled\":{}}}",
            w.filter.name.escape_default(),
            w.phase,
            w.since.elapsed().as_millis(),
            w.polls,
            w.wakes_inline,
            w.wakes_scheduled
        );
    }
    body.push_str("],\"servers\":[");
    let servers: Vec<_> = lock(&SERVERS)
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    for (i, s) in servers.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{{\"server\":\"{}\",\"tasks\":{},\"task_panics\":{},\"draining\":{}}}",
            s.name.escape_default(),
            s.runtime.live_tasks(),
            s.runtime.panics(),
            s.life.draining.load(Ordering::Acquire)
        );
    }
    body.push_str("]}\n");
    body
}
