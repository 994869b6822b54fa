//! Introspection: what each filter config is doing, for operators and tests.
//!
//! Every jisr filter config keeps counts in its slot pool (no extra atomics per request). They
//! are reachable three ways: [`filter_stats`] in code, the built-in `jisr_introspection` filter
//! (`/jisr/healthz`, `/jisr/version`, `/jisr/stats` answered from local replies, meant for an
//! admin listener), and Envoy stats (`dynamicmodulescustom.jisr_*{filter=…}`, handed to Envoy
//! by its main thread at most one second after a change, never on the request path; every 16
//! finished streams on Envoy 1.38; opt out with
//! [`Registry::envoy_stats`](crate::Registry::envoy_stats)).

use crate::api::http::request::Request;
use crate::api::http::writer::ResponseWriter;
pub use crate::filter::http::meta::filter_stats;
pub use crate::filter::http::stats::FilterStatsSnapshot;
use std::fmt::Write as _;

/// Every filter config's figures as JSON (`{"filters":[...]}`), for `/jisr/stats`.
pub(crate) fn stats_json() -> String {
    let mut body = String::from("{\"filters\":[");
    for (i, (name, s)) in filter_stats().iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{{\"filter\":\"{}\",\"streams\":{},\"in_flight\":{},\"polls\":{},\"slots_allocated\":{},\"idle_slots\":{},\"panics\":{},\"wakes_inline\":{},\"wakes_scheduled\":{},\"drop_panics\":{},\"internal_failures\":{},\"slots_leaked\":{}}}",
            name.escape_default(),
            s.streams,
            s.in_flight,
            s.polls,
            s.slots_allocated,
            s.idle_slots,
            s.panics,
            s.wakes_inline,
            s.wakes_scheduled,
            s.drop_panics,
            s.internal_failures,
            s.slots_leaked
        );
    }
    body.push_str("]}\n");
    body
}

/// The version document of `/jisr/version`.
pub(crate) fn version_json() -> String {
    format!(
        "{{\"jisr\":\"{}\",\"envoy_abi\":\"{}\"}}\n",
        env!("CARGO_PKG_VERSION"),
        crate::abi::ABI_VERSION.to_str().unwrap_or("")
    )
}

/// Name of the built-in introspection filter.
pub const INTROSPECTION_FILTER: &str = "jisr_introspection";

/// The built-in introspection filter: answers `/jisr/healthz`, `/jisr/version` and
/// `/jisr/stats` with local replies; other paths pass.
pub(crate) async fn introspection(req: Request<'_>, w: ResponseWriter<'_>) {
    let path = req.path().unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    match path {
        "/jisr/healthz" => w.send_with(
            200,
            &[("content-type", b"text/plain")],
            b"ok\n",
            INTROSPECTION_FILTER,
        ),
        "/jisr/version" => {
            let body = version_json();
            w.send_with(
                200,
                &[("content-type", b"application/json")],
                body.as_bytes(),
                INTROSPECTION_FILTER,
            )
        }
        "/jisr/stats" => {
            let body = stats_json();
            w.send_with(
                200,
                &[("content-type", b"application/json")],
                body.as_bytes(),
                INTROSPECTION_FILTER,
            )
        }
        _ => {}
    }
}
