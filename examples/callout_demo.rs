//! `callout_demo`: HTTP callouts awaited from handlers, per-route configs, filter state and the
//! upstream host override.
//!
//! - `callout`: before the request goes upstream, sends `GET <path>` to `<cluster>` (with the
//!   caller's `authorization` header, if any) and waits for the answer. `filter_config` is JSON
//!   `{"cluster": "svc", "path": "/auth", "timeout_ms": 1000}` (`path` defaults to `/`,
//!   `timeout_ms` to 1000). A route can override any of the three fields with a per-route config
//!   named `callout` (same JSON, every field optional, unknown fields refused).
//!   - Answered (any status): the request goes on with `x-callout-status`, `x-callout-ms`
//!     (time the callout took), `x-callout-server` (the `"server"` field of a JSON answer, if
//!     any) and `x-user` copied from the answer's `x-auth-user` header. Metadata
//!     `callout:status`. An info line `callout_demo: <cluster><path> answered <status> in <ms>
//!     ms` goes to Envoy's log through the `log` crate. A non-2xx answer whose body is not the
//!     JSON echo also forwards `x-callout-detail`: the first line of the answer's body.
//!   - Failed: a local `503` with header `x-callout-error: <kind>` (`cluster_not_found`,
//!     `timeout`, `reset`, `unavailable` when the service could not be reached and Envoy
//!     answered for it, ...), body `callout failed: <message>` and details `callout_<kind>`;
//!     metadata `callout:error`.
//! - `parallel`: two callouts in flight at once with [`jisr::join`]; `filter_config` is
//!   `{"cluster": "svc", "path": "/delay/300"}`. Forwards `x-parallel-ms` (time for both),
//!   `x-a-status` and `x-b-status`.
//! - `state_set` / `state_get`: the first stores the request's `x-state-in` (or `none`) in
//!   Envoy's filter state under `jisr.demo`; the second, a later filter in the same chain,
//!   reads it back into request header `x-state`.
//! - `override`: asks the router for upstream host `filter_config` `{"host": "127.0.0.1:<port>",
//!   "strict": true}` and forwards `x-override-accepted: true|false` (what Envoy answered).

use jisr::buffer::json;
use jisr::{
    ConfigError, ConfigHandle, Registry, Request, ResponseWriter,
    callout::{CalloutError, CalloutRequest},
    join,
};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Callout target: filter-wide settings.
struct Target {
    cluster: String,
    path: String,
    timeout: Duration,
}

/// Per-route overrides (route config `callout`).
#[derive(Default)]
struct TargetOverride {
    cluster: Option<String>,
    path: Option<String>,
    timeout: Option<Duration>,
}

fn parse_object(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, ConfigError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ConfigError::new(format!("invalid JSON: {e}")))?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ConfigError::new("config must be a JSON object")),
    }
}

fn string_field(
    m: &serde_json::Map<String, Value>,
    k: &str,
) -> Result<Option<String>, ConfigError> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(ConfigError::new(format!(
            "\"{k}\" must be a non-empty string"
        ))),
    }
}

fn parse_override(bytes: &[u8]) -> Result<TargetOverride, ConfigError> {
    let m = parse_object(bytes)?;
    if let Some(k) = m
        .keys()
        .find(|k| !["cluster", "path", "timeout_ms"].contains(&k.as_str()))
    {
        return Err(ConfigError::new(format!(
            "unknown field \"{k}\" (expected cluster, path, timeout_ms)"
        )));
    }
    let timeout = match m.get("timeout_ms") {
        None => None,
        Some(v) => Some(Duration::from_millis(v.as_u64().ok_or_else(|| {
            ConfigError::new("\"timeout_ms\" must be a whole number of milliseconds")
        })?)),
    };
    Ok(TargetOverride {
        cluster: string_field(&m, "cluster")?,
        path: string_field(&m, "path")?,
        timeout,
    })
}

fn load_target(cfg: &mut ConfigHandle<'_>) -> Result<Target, ConfigError> {
    let o = parse_override(cfg.config())?;
    Ok(Target {
        cluster: o
            .cluster
            .ok_or_else(|| ConfigError::new("missing field \"cluster\""))?,
        path: o.path.unwrap_or_else(|| "/".into()),
        timeout: o.timeout.unwrap_or(Duration::from_millis(1000)),
    })
}

fn kind(e: CalloutError) -> &'static str {
    match e {
        CalloutError::MissingRequiredHeaders => "missing_required_headers",
        CalloutError::ClusterNotFound => "cluster_not_found",
        CalloutError::DuplicateCalloutId => "duplicate_callout_id",
        CalloutError::CannotCreateRequest => "cannot_create_request",
        CalloutError::Reset => "reset",
        CalloutError::ResponseTooLarge => "response_too_large",
        CalloutError::Timeout => "timeout",
        CalloutError::TooManyInFlight => "too_many_in_flight",
        CalloutError::Detached => "detached",
        CalloutError::Invalid(_) => "invalid_request",
        CalloutError::Unavailable(_) => "unavailable",
    }
}

async fn callout(t: &Target, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let over = req.route_config::<TargetOverride>();
    let cluster = over
        .and_then(|o| o.cluster.as_deref())
        .unwrap_or(&t.cluster);
    let path = over.and_then(|o| o.path.as_deref()).unwrap_or(&t.path);
    let timeout = over.and_then(|o| o.timeout).unwrap_or(t.timeout);
    let mut call = CalloutRequest::get(cluster, path, cluster).timeout(timeout);
    if let Some(auth) = req.header("authorization") {
        call = call.header("authorization", auth);
    }
    let mut body = Vec::new();
    let started = Instant::now();
    let result = w.callout(call, &mut body).await;
    let ms = started.elapsed().as_millis().to_string();
    match result {
        Ok(resp) => {
            log::info!(
                "callout_demo: {cluster}{path} answered {} in {ms} ms",
                resp.status
            );
            let server = json::find(&body, &["server"]).and_then(json::string_body);
            let status = resp.status.to_string();
            let _ = req.set_header("x-callout-status", &status);
            let _ = req.set_header("x-callout-ms", &ms);
            if let Some(s) = server {
                let _ = req.set_header("x-callout-server", s);
            }
            if let Some(user) = resp.headers.get("x-auth-user") {
                let _ = req.set_header("x-user", user);
            }
            if !(200..300).contains(&resp.status) && server.is_none() {
                let _ = req.set_header("x-callout-detail", first_line(&body));
            }
            w.set_metadata_str("callout", "status", &status);
        }
        Err(e) => {
            log::info!("callout_demo: {cluster}{path} failed after {ms} ms: {e}");
            let k = kind(e);
            w.set_metadata_str("callout", "error", k);
            w.send_with(
                503,
                &[
                    ("x-callout-error", k.as_bytes()),
                    ("x-callout-ms", ms.as_bytes()),
                ],
                format!("callout failed: {e}\n").as_bytes(),
                &format!("callout_{k}"),
            );
        }
    }
}

/// The first line of `body`, printable ASCII only, at most 160 bytes (fit for a header).
fn first_line(body: &[u8]) -> &[u8] {
    let end = body
        .iter()
        .take(160)
        .position(|b| !(b' '..=b'~').contains(b))
        .unwrap_or(body.len().min(160));
    &body[..end]
}

async fn parallel(t: &Target, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let (ra, rb) = join(
        w.callout(
            CalloutRequest::get(&t.cluster, &t.path, &t.cluster).timeout(t.timeout),
            &mut a,
        ),
        w.callout(
            CalloutRequest::get(&t.cluster, &t.path, &t.cluster).timeout(t.timeout),
            &mut b,
        ),
    )
    .await;
    let ms = started.elapsed().as_millis().to_string();
    let status = |r: Result<jisr::callout::CalloutResponse, CalloutError>| match r {
        Ok(r) => r.status.to_string(),
        Err(e) => kind(e).to_string(),
    };
    let _ = req.set_header("x-parallel-ms", ms);
    let _ = req.set_header("x-a-status", status(ra));
    let _ = req.set_header("x-b-status", status(rb));
}

const STATE_KEY: &str = "jisr.demo";

async fn state_set(mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let value = req.header("x-state-in").unwrap_or(b"none");
    let stored = w.set_filter_state(STATE_KEY, value);
    w.set_metadata_bool("callout", "state_stored", stored);
}

async fn state_get(mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let mut value = Vec::new();
    if w.filter_state(STATE_KEY, &mut value).is_some() {
        let _ = req.set_header("x-state", value);
    }
}

struct Override {
    host: String,
    strict: bool,
}

fn load_override(cfg: &mut ConfigHandle<'_>) -> Result<Override, ConfigError> {
    let m = parse_object(cfg.config())?;
    Ok(Override {
        host: string_field(&m, "host")?
            .ok_or_else(|| ConfigError::new("missing field \"host\""))?,
        strict: m.get("strict").and_then(Value::as_bool).unwrap_or(false),
    })
}

async fn override_host(o: &Override, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let accepted = w.set_upstream_override_host(&o.host, o.strict);
    let _ = req.set_header(
        "x-override-accepted",
        if accepted { "true" } else { "false" },
    );
}

/// Streaming callout: sends the request body to the target in three chunks, then reads the
/// answer as it arrives; forwards what it saw as `x-stream-*` request headers.
async fn stream(t: &Target, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    match stream_exchange(t, &w).await {
        Ok((status, reads, body)) => {
            let _ = req.set_header("x-stream-status", status.to_string());
            let _ = req.set_header("x-stream-reads", reads.to_string());
            let _ = req.set_header("x-stream-body-len", body.len().to_string());
            // The echo target reports what it received; keep its `body_len` for the test.
            if let Some(n) = jisr::buffer::json::find(&body, &["body_len"]) {
                let _ = req.set_header("x-stream-sent-len", n);
            }
        }
        Err(e) => w.send_with(
            503,
            &[("x-callout-error", kind(e).as_bytes())],
            b"",
            "callout_failed",
        ),
    }
}

/// The exchange itself: the answer's status, how many reads it took, and its body.
async fn stream_exchange(
    t: &Target,
    w: &ResponseWriter<'_>,
) -> Result<(u16, u32, Vec<u8>), CalloutError> {
    let call = CalloutRequest::new(&t.cluster, "POST", &t.path, "svc")
        .header("content-type", b"text/plain")
        .timeout(t.timeout);
    let mut s = w.stream_callout(call, false)?;
    for part in [&b"alpha-"[..], b"beta-", b"gamma"] {
        s.send(part, false)?;
    }
    s.send(b"", true)?;
    let head = s.head().await?;
    let mut body = Vec::new();
    let mut reads = 0u32;
    while s.read(&mut body).await? > 0 {
        reads += 1;
    }
    Ok((head.status, reads, body))
}

fn register(r: &mut Registry) {
    r.filter("stream").state(load_target).handle(stream);
    r.filter("callout").state(load_target).handle(callout);
    r.route_config("callout", parse_override);
    r.filter("parallel").state(load_target).handle(parallel);
    r.register("state_set", state_set);
    r.register("state_get", state_get);
    r.filter("override")
        .state(load_override)
        .handle(override_host);
}

jisr::export!(register);
