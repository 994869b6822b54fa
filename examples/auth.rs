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
//! The keys can instead come from an SDS generic secret (Envoy 1.40), so they rotate without a
//! restart: `{"keys_secret": {"name": "api-keys", "path": "/etc/envoy/keys.yaml"}}` subscribes
//! to secret `name` in that watched file (its value: keys separated by commas or newlines; the
//! user id is again the key's position). The secret is read per request, so a rewrite of the
//! file takes effect on the next request. Older Envoys refuse that config, naming the secret.
//!
//! `raw_auth` is the same check written against Envoy's hooks ([`jisr::raw::RawFilter`]), for the
//! load comparison in BENCHMARKS.md: same config, same decision, same 401 replies and details,
//! same header changes; its counter is `raw_auth_requests_total{result=...}`.

use jisr::{
    ConfigError, ConfigHandle, Counter, Registry, Request, ResponseWriter, Secret,
    raw::{HeadersStatus, RawFactory, RawFilter, RawStream},
};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

struct Auth {
    keys: Keys,
    requests: Counter,
}

enum Keys {
    /// Allowed keys with the user id each maps to.
    Listed(Vec<(String, String)>),
    /// Keys read from an SDS secret on each request.
    Secret(Secret),
}

/// The config, parsed with [`ConfigHandle::json`] (feature `serde`): an error names the field,
/// e.g. `filter_config: at `allowed_keys[1]`: invalid type: integer `7`, expected a string`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthConfig {
    /// Allowed keys; the user id is the key's 1-based position.
    allowed_keys: Option<Vec<String>>,
    /// Or: keys read from an SDS generic secret in a watched file.
    keys_secret: Option<SecretSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSource {
    name: String,
    path: String,
}

fn load(cfg: &mut ConfigHandle<'_>, counter: &str) -> Result<Auth, ConfigError> {
    let config: AuthConfig = cfg.json()?;
    let keys = match (config.allowed_keys, config.keys_secret) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "filter_config: `allowed_keys` and `keys_secret` exclude each other",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                "filter_config: `allowed_keys` or `keys_secret` is required",
            ));
        }
        (Some(list), None) => Keys::Listed(
            list.into_iter()
                .enumerate()
                .map(|(i, k)| (k, format!("user-{}", i + 1)))
                .collect(),
        ),
        (None, Some(SecretSource { name, path })) => {
            let source = serde_json::json!({
                "path_config_source": { "path": path },
                "resource_api_version": "V3",
            });
            Keys::Secret(cfg.sds_secret(&name, &source.to_string())?)
        }
    };
    let requests = cfg.counter(counter, &["result"])?;
    Ok(Auth { keys, requests })
}

/// A user id `user-<n>`, formatted without allocating.
type UserId = arrayvec::ArrayString<24>;

/// The decision: counter label and, if allowed, the user id. `secret` is the current value of
/// the keys secret (when the config uses one).
fn check(
    state: &Auth,
    key: Option<&[u8]>,
    secret: Option<&[u8]>,
) -> (&'static str, Option<UserId>) {
    let Some(key) = key else {
        return ("missing", None);
    };
    let position = match &state.keys {
        Keys::Listed(keys) => keys.iter().position(|(k, _)| k.as_bytes() == key),
        Keys::Secret(_) => secret.and_then(|all| {
            all.split(|b| *b == b',' || *b == b'\n')
                .map(<[u8]>::trim_ascii)
                .filter(|k| !k.is_empty())
                .position(|k| k == key)
        }),
    };
    match position {
        Some(i) => {
            let mut user = UserId::new();
            let _ = write!(user, "user-{}", i + 1);
            ("allowed", Some(user))
        }
        None => ("unknown", None),
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
    let secret = match &state.keys {
        Keys::Secret(s) => w.secret(*s),
        Keys::Listed(_) => None,
    };
    let (result, user) = check(state, req.header("x-api-key"), secret);
    let _ = w.counter_inc(state.requests, &[result]);
    match user {
        Some(user) => {
            let _ = req.remove_header("x-api-key");
            let _ = req.set_header("x-user-id", user.as_str());
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
        let (result, user) = check(&self.0, s.request_header("x-api-key"), None);
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
        let auth = load(cfg, "raw_auth_requests_total")?;
        if matches!(auth.keys, Keys::Secret(_)) {
            return Err(ConfigError::new("raw_auth takes \"allowed_keys\" only"));
        }
        Ok(RawAuthFactory(Arc::new(auth)))
    });
}

jisr::export!(register);
