//! `keys_refresh`: API keys fetched in the background, checked per request without a lock.
//!
//! Server extension `keys_refresh` (Envoy's bootstrap extension; config JSON
//! `{"cluster": "keys", "path": "/keys", "every_ms": 1000, "init_timeout_ms": 5000}`) runs a
//! task on Envoy's main thread: every `every_ms` it GETs `path` from `cluster` (one key per line
//! or comma-separated) and publishes the set. Envoy does not serve until the first fetch
//! succeeded (or `init_timeout_ms` passed; Envoy then starts with no keys and logs it). When a
//! fetch fails the last good set stays. Counter `keys_refresh_total{result=ok|failed}` and gauge
//! `keys_refresh_keys` show what happened.
//!
//! HTTP filter `keys_auth` answers 401 unless `x-api-key` is in the current set; the check reads
//! the published set without a lock and without allocating.

use jisr::callout::CalloutRequest;
use jisr::server::{Published, ServerSetup};
use jisr::{ConfigError, ConfigHandle, Registry, Request, ResponseWriter};
use std::sync::OnceLock;
use std::time::Duration;

/// The allowed keys, sorted (binary search per request).
fn keys() -> &'static Published<Vec<String>> {
    static KEYS: OnceLock<Published<Vec<String>>> = OnceLock::new();
    KEYS.get_or_init(|| Published::new(Vec::new()))
}

struct Settings {
    cluster: String,
    path: String,
    every: Duration,
    init_timeout: Duration,
}

fn settings(text: &str) -> Result<Settings, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("\"{k}\" must be a string"))
    };
    let ms = |k: &str, default: u64| match v.get(k) {
        None => Ok(Duration::from_millis(default)),
        Some(x) => x
            .as_u64()
            .filter(|n| *n > 0)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("\"{k}\" must be a positive number of milliseconds")),
    };
    Ok(Settings {
        cluster: s("cluster")?,
        path: s("path")?,
        every: ms("every_ms", 1000)?,
        init_timeout: ms("init_timeout_ms", 5000)?,
    })
}

fn parse_keys(body: &[u8]) -> Vec<String> {
    let mut keys: Vec<String> = String::from_utf8_lossy(body)
        .split([',', '\n'])
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn setup(cfg: &mut ConfigHandle<'_>, srv: &mut ServerSetup) -> Result<(), ConfigError> {
    let s = settings(cfg.config_str()?).map_err(ConfigError::new)?;
    let results = cfg.counter("keys_refresh_total", &["result"])?;
    let size = cfg.gauge("keys_refresh_keys", &[])?;
    let bg = cfg.background();
    let mut ready = Some(srv.hold_init(s.init_timeout));
    let task_bg = bg.clone();
    bg.spawn(async move {
        let bg = task_bg;
        loop {
            let req = CalloutRequest::get(&s.cluster, &s.path, "keys.local")
                .timeout(Duration::from_secs(2));
            match bg.callout(req).await {
                Ok(r) if r.status == 200 => {
                    let set = parse_keys(&r.body);
                    let _ = bg.gauge_set(size, &[], set.len() as u64);
                    keys().publish(set);
                    let _ = bg.counter_inc(results, &["ok"]);
                    // The first good set lets Envoy serve.
                    drop(ready.take());
                }
                _ => {
                    let _ = bg.counter_inc(results, &["failed"]);
                }
            }
            jisr::time::sleep(s.every).await;
        }
    });
    Ok(())
}

async fn keys_auth(req: Request<'_>, w: ResponseWriter<'_>) {
    let allowed = keys().get();
    let ok = req
        .header_str("x-api-key")
        .is_some_and(|k| allowed.binary_search_by(|a| a.as_str().cmp(k)).is_ok());
    if !ok {
        w.send_with(
            401,
            &[("content-type", b"text/plain")],
            b"unknown api key\n",
            "keys_refresh_unknown_key",
        );
    }
}

fn register(r: &mut Registry) {
    r.server("keys_refresh", setup);
    r.register("keys_auth", keys_auth);
}

jisr::export!(register);
