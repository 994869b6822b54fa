//! `keys_refresh`: API keys fetched in the background, checked per request without a lock.
//!
//! Server extension `keys_refresh` (Envoy's bootstrap extension; config JSON
//! `{"cluster": "keys", "path": "/keys", "every_ms": 1000, "init_timeout_ms": 5000}`, optional
//! `"max_body_bytes"`, default 1 MiB) runs a task on Envoy's main thread: every `every_ms` it
//! GETs `path` from `cluster` and, when the answer is a valid key set, publishes it. Envoy does
//! not serve until the first valid set is in (or `init_timeout_ms` passed; Envoy then starts
//! with no keys, refuses every request and logs it).
//!
//! HTTP filter `keys_auth` answers 401 unless `x-api-key` is in the current set; the check reads
//! the published set without a lock and without allocating.
//!
//! # What the key server must answer
//!
//! Status 200 and exactly one JSON object with one field, `keys`, an array of strings:
//!
//! ```json
//! {"keys": ["k1", "k2"]}
//! ```
//!
//! Each key is 1 to 256 visible ASCII characters (`!` to `~`: what an `x-api-key` header can
//! carry once HTTP has trimmed its spaces). The order does not matter; duplicates count once.
//! `{"keys": []}` is a valid answer: it means **refuse everyone**, and it is the only way to
//! say so. Everything else is rejected and the last good set stays: another status, a
//! transport error or timeout, a body over `max_body_bytes`, an empty body, a truncated body
//! (`{"keys": ["k1", "k2"`), text that is not JSON or has anything after the object, another
//! shape (`{"keys": "k1"}`, `["k1"]`, a missing, repeated or unknown field), or one invalid key
//! (a single bad key rejects the whole answer: a half-applied set is how a corrupted answer
//! would lock users out). A refresh that is rejected never replaces anything, so the worst a
//! broken key server can do is keep yesterday's keys.
//!
//! # Metrics
//!
//! - `keys_refresh_total{result=ok|rejected}`: every refresh, by outcome.
//! - `keys_refresh_rejected_total{reason}`: rejected refreshes, with `reason` one of
//!   `unreachable` (no answer: transport error, reset, timeout), `status` (not 200),
//!   `too_large`, `empty`, `truncated`, `not_json`, `wrong_shape`, `bad_key`. Alert on its
//!   rate: while it rises, key changes are not taking effect.
//! - `keys_refresh_keys`: the size of the set in use.
//!
//! Each rejection is also logged (`warn`) with its reason and the parser's message.

use jisr::callout::{CalloutError, CalloutRequest};
use jisr::server::{Published, ServerSetup};
use jisr::{ConfigError, ConfigHandle, Registry, Request, ResponseWriter};
use serde::Deserialize;
use std::sync::OnceLock;
use std::time::Duration;

/// The allowed keys, sorted (binary search per request).
fn keys() -> &'static Published<Vec<String>> {
    static KEYS: OnceLock<Published<Vec<String>>> = OnceLock::new();
    KEYS.get_or_init(|| Published::new(Vec::new()))
}

/// The longest key accepted.
const MAX_KEY_LEN: usize = 256;

struct Settings {
    cluster: String,
    path: String,
    every: Duration,
    init_timeout: Duration,
    max_body: usize,
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
    let positive = |k: &str, default: u64| match v.get(k) {
        None => Ok(default),
        Some(x) => x
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("\"{k}\" must be a positive integer")),
    };
    Ok(Settings {
        cluster: s("cluster")?,
        path: s("path")?,
        every: Duration::from_millis(positive("every_ms", 1000)?),
        init_timeout: Duration::from_millis(positive("init_timeout_ms", 5000)?),
        max_body: usize::try_from(positive("max_body_bytes", 1 << 20)?)
            .map_err(|_| "\"max_body_bytes\" is too large".to_string())?,
    })
}

/// The one shape the key server may answer with. `deny_unknown_fields` and serde's own
/// duplicate-field check make a typo or a second `keys` an error instead of a guess.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    keys: Vec<String>,
}

/// Why a refresh was rejected: the `reason` label of `keys_refresh_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rejected {
    Unreachable,
    Status,
    TooLarge,
    Empty,
    Truncated,
    NotJson,
    WrongShape,
    BadKey,
}

impl Rejected {
    fn label(self) -> &'static str {
        match self {
            Rejected::Unreachable => "unreachable",
            Rejected::Status => "status",
            Rejected::TooLarge => "too_large",
            Rejected::Empty => "empty",
            Rejected::Truncated => "truncated",
            Rejected::NotJson => "not_json",
            Rejected::WrongShape => "wrong_shape",
            Rejected::BadKey => "bad_key",
        }
    }
}

/// Parses a whole 200 answer into a sorted, deduplicated key set, or says why not. Nothing
/// partial comes out: either every byte of `body` is one valid answer, or it is rejected.
fn parse_keys(body: &[u8], max_body: usize) -> Result<Vec<String>, (Rejected, String)> {
    if body.len() > max_body {
        return Err((
            Rejected::TooLarge,
            format!("{} bytes, limit {max_body}", body.len()),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err((Rejected::Empty, "empty body".to_string()));
    }
    // `from_slice` reads the whole input: trailing text after the object is an error too.
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        let reason = match e.classify() {
            serde_json::error::Category::Eof => Rejected::Truncated,
            serde_json::error::Category::Data => Rejected::WrongShape,
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                Rejected::NotJson
            }
        };
        (reason, e.to_string())
    })?;
    let mut keys = answer.keys;
    if let Some(bad) = keys.iter().position(|k| !valid_key(k)) {
        return Err((
            Rejected::BadKey,
            format!("key {bad} is empty, longer than {MAX_KEY_LEN} bytes or not visible ASCII"),
        ));
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

fn valid_key(k: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
}

/// One fetch: the new key set, or why there is none.
fn check_answer(
    answer: Result<jisr::background::BackgroundResponse, CalloutError>,
    max_body: usize,
) -> Result<Vec<String>, (Rejected, String)> {
    match answer {
        Err(CalloutError::ResponseTooLarge) => {
            Err((Rejected::TooLarge, "over Envoy's buffer limit".to_string()))
        }
        Err(e) => Err((Rejected::Unreachable, e.to_string())),
        Ok(r) if r.status != 200 => Err((Rejected::Status, format!("status {}", r.status))),
        Ok(r) => parse_keys(&r.body, max_body),
    }
}

fn setup(cfg: &mut ConfigHandle<'_>, srv: &mut ServerSetup) -> Result<(), ConfigError> {
    let s = settings(cfg.config_str()?).map_err(ConfigError::new)?;
    let results = cfg.counter("keys_refresh_total", &["result"])?;
    let rejected = cfg.counter("keys_refresh_rejected_total", &["reason"])?;
    let size = cfg.gauge("keys_refresh_keys", &[])?;
    let bg = cfg.background();
    let mut ready = Some(srv.hold_init(s.init_timeout));
    let task_bg = bg.clone();
    bg.spawn(async move {
        let bg = task_bg;
        loop {
            let req = CalloutRequest::get(&s.cluster, &s.path, "keys.local")
                .timeout(Duration::from_secs(2));
            match check_answer(bg.callout(req).await, s.max_body) {
                Ok(set) => {
                    let _ = bg.gauge_set(size, &[], set.len() as u64);
                    keys().publish(set);
                    let _ = bg.counter_inc(results, &["ok"]);
                    // The first valid set (even an empty one) lets Envoy serve.
                    drop(ready.take());
                }
                Err((reason, detail)) => {
                    log::warn!(
                        "keys_refresh: answer from {}{} rejected ({}): {detail}; keeping the last good key set",
                        s.cluster,
                        s.path,
                        reason.label()
                    );
                    let _ = bg.counter_inc(results, &["rejected"]);
                    let _ = bg.counter_inc(rejected, &[reason.label()]);
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

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn reason(body: &str) -> Rejected {
        parse_keys(body.as_bytes(), MAX).unwrap_err().0
    }

    #[test]
    fn a_whole_answer_gives_a_sorted_set_without_duplicates() {
        assert_eq!(
            parse_keys(br#" {"keys": ["k2", "k1", "k2"]} "#, MAX).unwrap(),
            ["k1", "k2"]
        );
    }

    #[test]
    fn an_explicit_empty_set_is_accepted_and_refuses_everyone() {
        assert_eq!(
            parse_keys(br#"{"keys": []}"#, MAX).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_truncated_answer_is_rejected_whole() {
        assert_eq!(reason(r#"{"keys": ["k1", "k2""#), Rejected::Truncated);
        assert_eq!(reason(r#"{"keys": ["k1", "k2"]"#), Rejected::Truncated);
        assert_eq!(reason(r#"{"keys": ["k1", "k"#), Rejected::Truncated);
    }

    #[test]
    fn an_empty_answer_is_not_an_empty_set() {
        assert_eq!(reason(""), Rejected::Empty);
        assert_eq!(reason(" \r\n"), Rejected::Empty);
    }

    #[test]
    fn other_shapes_are_rejected() {
        for body in [
            r#"{"keys": "k1"}"#,
            r#"["k1"]"#,
            r#"{"keys": [1]}"#,
            r#"{"keys": null}"#,
            r#"{}"#,
            r#"{"keys": ["k1"], "keys": ["k2"]}"#,
            r#"{"keys": ["k1"], "version": 3}"#,
            r#""k1""#,
        ] {
            assert_eq!(reason(body), Rejected::WrongShape, "{body}");
        }
    }

    #[test]
    fn text_that_is_not_one_json_object_is_rejected() {
        for body in [
            "k1\nk2",
            "k1,k2",
            r#"{"keys": ["k1"]} {"keys": ["k2"]}"#,
            r#"{"keys": ["k1"]}x"#,
            r#"{"keys": ["k1",]}"#,
        ] {
            assert_eq!(reason(body), Rejected::NotJson, "{body}");
        }
    }

    #[test]
    fn one_bad_key_rejects_the_whole_answer() {
        let long = format!(r#"{{"keys": ["k1", "{}"]}}"#, "k".repeat(MAX_KEY_LEN + 1));
        for body in [
            r#"{"keys": ["k1", ""]}"#,
            r#"{"keys": ["k1", "two words"]}"#,
            r#"{"keys": ["k1", "tab\tkey"]}"#,
            r#"{"keys": ["k1", "k\u00e9"]}"#,
            &long,
        ] {
            assert_eq!(reason(body), Rejected::BadKey, "{body}");
        }
        let longest = format!(r#"{{"keys": ["{}"]}}"#, "k".repeat(MAX_KEY_LEN));
        assert!(parse_keys(longest.as_bytes(), MAX).is_ok());
    }

    #[test]
    fn a_body_over_the_limit_is_rejected_before_parsing() {
        let body = br#"{"keys": ["k1"]}"#;
        assert_eq!(parse_keys(body, body.len()).unwrap(), ["k1"]);
        assert_eq!(
            parse_keys(body, body.len() - 1).unwrap_err().0,
            Rejected::TooLarge
        );
    }

    #[test]
    fn no_answer_and_other_statuses_are_rejected() {
        let answer = |status, body: &[u8]| {
            Ok(jisr::background::BackgroundResponse {
                status,
                headers: Vec::new(),
                body: body.to_vec(),
            })
        };
        let ok = br#"{"keys": ["k1"]}"#;
        assert_eq!(check_answer(answer(200, ok), MAX).unwrap(), ["k1"]);
        for status in [201, 204, 304, 404, 503] {
            assert_eq!(
                check_answer(answer(status, ok), MAX).unwrap_err().0,
                Rejected::Status
            );
        }
        assert_eq!(
            check_answer(Err(CalloutError::Timeout), MAX).unwrap_err().0,
            Rejected::Unreachable
        );
        assert_eq!(
            check_answer(Err(CalloutError::Reset), MAX).unwrap_err().0,
            Rejected::Unreachable
        );
        assert_eq!(
            check_answer(Err(CalloutError::ResponseTooLarge), MAX)
                .unwrap_err()
                .0,
            Rejected::TooLarge
        );
    }
}
