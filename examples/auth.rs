//! `auth`: API-key check with per-config state built by a factory.
//!
//! `filter_config` (a `google.protobuf.StringValue`) is JSON: `{"allowed_keys": ["key-1", ...]}`.
//! A request without `x-api-key`, or with a key not in the list, gets a 401 JSON reply (details
//! `jisr_auth_missing_key` / `jisr_auth_unknown_key`). An allowed request goes upstream with
//! `x-user-id: user-<n>` (the key's 1-based position in the list) and without `x-api-key`.
//! Counter `auth_requests_total{result=allowed|missing|unknown}`.
//!
//! Each Envoy filter config gets its own key set: two listeners can share this `.so` with
//! different keys. A malformed config is refused at load with the parse error.
//!
//! `raw_auth` is the same check written against Envoy's hooks ([`jisr::raw::RawFilter`]), for the
//! load comparison in BENCHMARKS.md: same config, same decision, same 401 replies and details,
//! same header changes; its counter is `raw_auth_requests_total{result=...}`.

use jisr::{
    ConfigError, ConfigHandle, Counter, Registry, Request, ResponseWriter,
    raw::{HeadersStatus, RawFactory, RawFilter, RawStream},
};
use std::sync::Arc;

struct Auth {
    /// Allowed keys with the user id each maps to.
    keys: Vec<(String, String)>,
    requests: Counter,
}

fn parse_keys(text: &str) -> Result<Vec<(String, String)>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let list = v
        .get("allowed_keys")
        .ok_or("missing field \"allowed_keys\"")?
        .as_array()
        .ok_or("\"allowed_keys\" must be an array of strings")?;
    list.iter()
        .enumerate()
        .map(|(i, k)| {
            k.as_str()
                .map(|k| (k.to_string(), format!("user-{}", i + 1)))
                .ok_or_else(|| format!("\"allowed_keys\"[{i}] must be a string"))
        })
        .collect()
}

fn load(cfg: &mut ConfigHandle<'_>, counter: &str) -> Result<Auth, ConfigError> {
    let keys = parse_keys(cfg.config_str()?).map_err(ConfigError::new)?;
    let requests = cfg.counter(counter, &["result"])?;
    Ok(Auth { keys, requests })
}

/// The decision: counter label and, if allowed, the user id.
fn check<'a>(state: &'a Auth, key: Option<&[u8]>) -> (&'static str, Option<&'a str>) {
    match key {
        None => ("missing", None),
        Some(key) => match state.keys.iter().find(|(k, _)| k.as_bytes() == key) {
            Some((_, user)) => ("allowed", Some(user.as_str())),
            None => ("unknown", None),
        },
    }
}

/// Body and response details of the 401 for `result` (`missing` or `unknown`).
fn rejection(result: &str) -> (&'static [u8], &'static str) {
    if result == "missing" {
        (br#"{"error":"missing api key"}"#, "jisr_auth_missing_key")
    } else {
        (br#"{"error":"unknown api key"}"#, "jisr_auth_unknown_key")
    }
}

async fn authorize(state: &Auth, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let (result, user) = check(state, req.header("x-api-key"));
    let _ = w.counter_inc(state.requests, &[result]);
    match user {
        Some(user) => {
            req.remove_header("x-api-key");
            req.set_header("x-user-id", user);
        }
        None => {
            let (body, details) = rejection(result);
            w.send_with(401, &[("content-type", b"application/json")], body, details);
        }
    }
}

/// `raw_auth`: one per stream, sharing its config's key set.
struct RawAuth(Arc<Auth>);

impl RawFilter for RawAuth {
    fn on_request_headers(&mut self, s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
        let (result, user) = check(&self.0, s.request_header("x-api-key"));
        let _ = s.counter_add(self.0.requests, &[result], 1);
        match user {
            Some(user) => {
                s.set_header(false, "x-api-key", None);
                s.set_header(false, "x-user-id", Some(user.as_bytes()));
                HeadersStatus::Continue
            }
            None => {
                let (body, details) = rejection(result);
                s.send_response(401, &[("content-type", b"application/json")], body, details);
                HeadersStatus::StopIteration
            }
        }
    }
}

struct RawAuthFactory(Arc<Auth>);

impl RawFactory for RawAuthFactory {
    type Filter = RawAuth;
    fn new_filter(&self) -> RawAuth {
        RawAuth(self.0.clone())
    }
}

fn register(r: &mut Registry) {
    // The state function is the filter's factory: it runs once per Envoy filter config, and
    // `authorize` receives that config's own state.
    r.filter("auth")
        .state(|cfg| load(cfg, "auth_requests_total"))
        .handle(authorize);
    r.register_raw("raw_auth", |cfg| {
        Ok(RawAuthFactory(Arc::new(load(
            cfg,
            "raw_auth_requests_total",
        )?)))
    });
}

jisr::export!(register);
