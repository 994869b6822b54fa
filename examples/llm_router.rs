//! `llm_router`: routes LLM API requests to a provider cluster by the `model` of the JSON body.
//!
//! Filter `llm_router` (response mode [`ResponseMode::Observe`]):
//!
//! - **Request.** Reads at most the first 8 KiB of the body into a fixed buffer (the whole body
//!   still goes upstream, unbuffered past that prefix) and finds the top-level `"model"` with
//!   the path-exact [`jisr::buffer::json`] scanner, which also works on a prefix cut anywhere.
//!   `gpt-*`, `o1*` and `o3*` go to cluster `openai`, `claude-*` to `anthropic`, anything else
//!   (no body, no `model`, `model` past the first 8 KiB, not JSON) to `default`. The handler
//!   sets request header `x-cluster: <cluster>` and calls `clear_route_cache()`, so a route
//!   with `cluster_header: x-cluster` picks the cluster after the body was read. Metadata
//!   `llm_router:cluster` and `llm_router:model` (the latter only when a model was found);
//!   counter `llm_router_requests_total{cluster}`.
//! - **Optional auth callout.** With `filter_config` `{"auth_cluster": "<name>"}`, the filter
//!   first sends `GET /auth` to that cluster with the caller's `authorization` (or, if absent,
//!   `x-api-key`) header. A 2xx answer lets the request on; a failed callout (unknown cluster,
//!   timeout, reset, or no answer at all: `CalloutError::Unavailable` when the connection was
//!   refused or reset and Envoy answered for the service) or a 5xx from the service itself is
//!   a local `503` (details `llm_router_auth_unavailable`): the verdict is missing, not
//!   negative; any other answer is a local `403` (details `llm_router_denied`). An empty
//!   `filter_config` means no auth.
//! - **Response.** The request handler hands the cluster and its start time to the response
//!   handler. Histogram `llm_router_ttfb_ms{cluster}` records the time from the request's
//!   headers to the response's headers (it includes the auth callout and the body prefix
//!   read). A `text/event-stream` response is fed, chunk by chunk as it passes, to a
//!   [`UsageTracker`] (OpenAI Chat Completions / Responses, Anthropic Messages, Gemini); at
//!   the end of the stream counters `llm_router_input_tokens{cluster}` and
//!   `llm_router_output_tokens{cluster}` grow by the usage the stream reported (a count it did
//!   not report adds 0). Trackers read events of any size in constant memory and never
//!   allocate; they are pooled per worker thread and reused. A stream cut short still counts
//!   what it reported before the cut.
//!
//! What the Go version got wrong and this one does not: the body prefix is read into a fixed
//! buffer (no per-request allocation, no buffering of large bodies), `model` is found only at
//! the top level (never inside a message's text), the route cache is cleared so the new
//! `x-cluster` is honoured, and response-phase metrics are applied.

use jisr::buffer::{UsageTracker, json};
use jisr::{
    ConfigError, ConfigHandle, Counter, Histogram, Registry, Request, Response, ResponseMode,
    ResponseWriter, callout::CalloutRequest,
};
use std::cell::RefCell;
use std::time::Instant;

/// Bytes of the request body the router looks at.
const PREFIX: usize = 8192;

struct Router {
    auth_cluster: Option<String>,
    requests: Counter,
    ttfb: Histogram,
    input_tokens: Counter,
    output_tokens: Counter,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Router, ConfigError> {
    let text = cfg.config_str()?.trim();
    let auth_cluster = if text.is_empty() {
        None
    } else {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ConfigError::new(format!("invalid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ConfigError::new("config must be a JSON object"))?;
        if let Some(k) = obj.keys().find(|k| *k != "auth_cluster") {
            return Err(ConfigError::new(format!(
                "unknown field \"{k}\" (expected auth_cluster)"
            )));
        }
        match obj.get("auth_cluster") {
            None => None,
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => {
                return Err(ConfigError::new(
                    "\"auth_cluster\" must be a non-empty string",
                ));
            }
        }
    };
    Ok(Router {
        auth_cluster,
        requests: cfg.counter("llm_router_requests_total", &["cluster"])?,
        ttfb: cfg.histogram("llm_router_ttfb_ms", &["cluster"])?,
        input_tokens: cfg.counter("llm_router_input_tokens", &["cluster"])?,
        output_tokens: cfg.counter("llm_router_output_tokens", &["cluster"])?,
    })
}

/// The provider cluster for a model name.
fn cluster_for(model: &[u8]) -> &'static str {
    if model.starts_with(b"gpt-") || model.starts_with(b"o1") || model.starts_with(b"o3") {
        "openai"
    } else if model.starts_with(b"claude-") {
        "anthropic"
    } else {
        "default"
    }
}

/// What the request handler hands to the response handler.
struct Routed {
    cluster: &'static str,
    started: Instant,
}

/// Runs the auth callout; `false` when the request was answered locally.
async fn authorized(cluster: &str, req: &Request<'_>, w: &ResponseWriter<'_>) -> bool {
    let mut call = CalloutRequest::get(cluster, "/auth", cluster);
    if let Some(v) = req.header("authorization") {
        call = call.header("authorization", v);
    } else if let Some(v) = req.header("x-api-key") {
        call = call.header("x-api-key", v);
    }
    // The auth answer's body is not used; an empty Vec only allocates if the service sends one.
    let mut body = Vec::new();
    match w.callout(call, &mut body).await {
        Ok(r) if (200..300).contains(&r.status) => true,
        // The service answered but failed: no verdict, not "denied". (When it could not be
        // reached at all, the callout is `Err(CalloutError::Unavailable)`, below.)
        Ok(r) if r.status >= 500 => {
            w.send_with(
                503,
                &[("content-type", b"text/plain")],
                format!("auth service unavailable ({})\n", r.status).as_bytes(),
                "llm_router_auth_unavailable",
            );
            false
        }
        Ok(r) => {
            w.send_with(
                403,
                &[("content-type", b"text/plain")],
                format!("denied by auth service ({})\n", r.status).as_bytes(),
                "llm_router_denied",
            );
            false
        }
        Err(e) => {
            w.send_with(
                503,
                &[("content-type", b"text/plain")],
                format!("auth service unavailable: {e}\n").as_bytes(),
                "llm_router_auth_unavailable",
            );
            false
        }
    }
}

async fn route(r: &Router, mut req: Request<'_>, w: ResponseWriter<'_>) -> Option<Routed> {
    let started = Instant::now();
    if let Some(auth) = &r.auth_cluster {
        if !authorized(auth, &req, &w).await {
            return None;
        }
    }
    req.limit_body(PREFIX);
    let mut buf = [0u8; PREFIX];
    let mut n = 0;
    while n < PREFIX {
        match req.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None, // client gone
        }
    }
    let model = json::find(&buf[..n], &["model"]).and_then(json::string_body);
    let cluster = model.map_or("default", cluster_for);
    if let Some(m) = model.and_then(|m| std::str::from_utf8(m).ok()) {
        w.set_metadata_str("llm_router", "model", m);
    }
    w.set_metadata_str("llm_router", "cluster", cluster);
    let _ = req.set_header("x-cluster", cluster);
    w.clear_route_cache();
    let _ = w.counter_inc(r.requests, &[cluster]);
    Some(Routed { cluster, started })
}

thread_local! {
    /// Idle usage trackers of this worker thread.
    static TRACKERS: RefCell<Vec<UsageTracker>> = const { RefCell::new(Vec::new()) };
}

/// A tracker borrowed from this worker's pool; returned (reset) on drop.
struct PooledTracker(Option<UsageTracker>);

impl PooledTracker {
    fn take() -> PooledTracker {
        let t = TRACKERS.with(|p| p.borrow_mut().pop());
        PooledTracker(Some(t.unwrap_or_default()))
    }

    fn get(&mut self) -> &mut UsageTracker {
        self.0.get_or_insert_with(UsageTracker::new)
    }
}

impl Drop for PooledTracker {
    fn drop(&mut self) {
        if let Some(mut t) = self.0.take() {
            t.reset();
            // `try_with`: the thread may be exiting; then the tracker is simply freed.
            let _ = TRACKERS.try_with(|p| p.borrow_mut().push(t));
        }
    }
}

async fn observe(
    r: &Router,
    routed: Option<Routed>,
    mut resp: Response<'_>,
    w: ResponseWriter<'_>,
) {
    let Some(Routed { cluster, started }) = routed else {
        resp.skip_body();
        return;
    };
    let ttfb = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let _ = w.histogram_record(r.ttfb, &[cluster], ttfb);
    let sse = resp
        .header("content-type")
        .is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"));
    if !sse {
        resp.skip_body();
        return;
    }
    let mut tracker = PooledTracker::take();
    let mut buf = [0u8; 4096];
    loop {
        match resp.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => tracker.get().feed(&buf[..n]),
        }
    }
    if let Some(u) = tracker.get().usage() {
        let _ = w.counter_add(r.input_tokens, &[cluster], u.input_tokens.unwrap_or(0));
        let _ = w.counter_add(r.output_tokens, &[cluster], u.output_tokens.unwrap_or(0));
    }
}

fn register(r: &mut Registry) {
    r.filter("llm_router")
        .state(load)
        .respond(ResponseMode::Observe, route, observe);
}

jisr::export!(register);
