//! `{{project-name}}`: an Envoy HTTP filter written with jisr.
//!
//! Filter `{{crate_name}}` asks an authorization service (an HTTP callout to the cluster its
//! config names) whether a request may pass, except under the public path prefixes:
//!
//! - authorized (the service answers 200): the request goes upstream with `x-greeting` set;
//! - refused (the service answers 401 or 403): the client gets a 403;
//! - anything else (the service is unreachable, times out, answers 5xx): the client gets a
//!   503. An unreachable service is `Err(CalloutError::Unavailable)`, never an answer, and only
//!   the statuses the service itself uses for "no" count as a refusal.
//!
//! Config (`filter_config`, JSON):
//! `{"authz_cluster": "authz", "authz_path": "/check", "public_prefixes": ["/public/"],
//! "greeting": "hello"}`.
//!
//! Counter `{{crate_name}}_requests_total{result=public|allowed|denied|error}`, shown by Envoy
//! as `dynamicmodulescustom.{{crate_name}}_requests_total.result.<value>` in `/stats`.

use jisr::callout::CalloutRequest;
use jisr::{ConfigError, ConfigHandle, Counter, Level, Registry, Request, ResponseWriter};
use serde::Deserialize;
use std::time::Duration;

/// The filter's config, parsed once per Envoy filter config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The cluster of the authorization service.
    pub authz_cluster: String,
    /// The path asked on it.
    #[serde(default = "default_authz_path")]
    pub authz_path: String,
    /// Paths starting with one of these pass without asking.
    #[serde(default)]
    pub public_prefixes: Vec<String>,
    /// The value of `x-greeting` on authorized requests.
    pub greeting: String,
}

fn default_authz_path() -> String {
    "/check".to_string()
}

/// Per-config state: the config and the metric handles, shared by all requests.
pub struct Filter {
    config: Config,
    requests: Counter,
}

/// Builds the state from the config; an error refuses the config, with the message in Envoy's
/// log.
fn load(cfg: &mut ConfigHandle<'_>) -> Result<Filter, ConfigError> {
    // An error names the bad field: `filter_config: at `greeting`: invalid type: ...`.
    let config: Config = cfg.json()?;
    let requests = cfg.counter("{{crate_name}}_requests_total", &["result"])?;
    Ok(Filter { config, requests })
}

async fn authorize(f: &Filter, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let path = req.path().unwrap_or("/");
    if f.config
        .public_prefixes
        .iter()
        .any(|p| path.starts_with(p.as_str()))
    {
        let _ = w.counter_inc(f.requests, &["public"]);
        return;
    }
    let credentials = req.header("authorization").unwrap_or_default();
    let call = CalloutRequest::get(&f.config.authz_cluster, &f.config.authz_path, "authz")
        .header("authorization", credentials)
        .timeout(Duration::from_secs(2));
    let mut body = Vec::new();
    let answer = w.callout(call, &mut body).await;
    match answer {
        Ok(r) if r.status == 200 => {
            let _ = w.counter_inc(f.requests, &["allowed"]);
            let _ = req.set_header("x-greeting", &f.config.greeting);
        }
        Ok(r) if r.status == 401 || r.status == 403 => {
            let _ = w.counter_inc(f.requests, &["denied"]);
            w.send_with(
                403,
                &[("content-type", b"text/plain")],
                b"forbidden\n",
                "authz_denied",
            );
        }
        other => {
            let _ = w.counter_inc(f.requests, &["error"]);
            let why = match other {
                Ok(r) => format!("status {}", r.status),
                Err(e) => e.to_string(),
            };
            w.log(
                Level::Warn,
                format_args!("authorization service unavailable: {why}"),
            );
            w.send_with(
                503,
                &[("content-type", b"text/plain")],
                b"authorization unavailable\n",
                "authz_unavailable",
            );
        }
    }
}

/// The filters this module offers, by `filter_name`.
pub fn register(r: &mut Registry) {
    r.filter("{{crate_name}}").state(load).handle(authorize);
}

jisr::export!(register);
