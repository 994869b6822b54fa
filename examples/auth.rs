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

use jisr::{ConfigError, ConfigHandle, Counter, Registry, Request, ResponseWriter, bind};

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

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Auth, ConfigError> {
    let keys = parse_keys(cfg.config_str()?).map_err(ConfigError::new)?;
    let requests = cfg.counter("auth_requests_total", &["result"])?;
    Ok(Auth { keys, requests })
}

async fn authorize(state: &Auth, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let (result, user) = match req.header("x-api-key") {
        None => ("missing", None),
        Some(key) => match state.keys.iter().find(|(k, _)| k.as_bytes() == key) {
            Some((_, user)) => ("allowed", Some(user.as_str())),
            None => ("unknown", None),
        },
    };
    let _ = w.counter_inc(state.requests, &[result]);
    match user {
        Some(user) => {
            req.remove_header("x-api-key");
            req.set_header("x-user-id", user);
        }
        None => {
            let body: &[u8] = if result == "missing" {
                br#"{"error":"missing api key"}"#
            } else {
                br#"{"error":"unknown api key"}"#
            };
            let details = if result == "missing" {
                "jisr_auth_missing_key"
            } else {
                "jisr_auth_unknown_key"
            };
            w.send_with(401, &[("content-type", b"application/json")], body, details);
        }
    }
}

fn register(r: &mut Registry) {
    // The factory runs once per Envoy filter config and returns the handler bound to that
    // config's own state.
    r.register_factory("auth", |cfg| Ok(bind(load(cfg)?, authorize)));
}

jisr::export!(register);
