//! `wasm-auth`: the API-key check of `examples/auth.rs` as a proxy-wasm filter, for the `wasm`
//! variant of the real-Envoy load comparison (`scripts/load.sh`, `e2e/src/bin/load.rs`).
//!
//! The plugin configuration is the same JSON as `auth.auth`'s `filter_config`:
//! `{"allowed_keys": ["key-1", ...]}`. A request without `x-api-key`, or with a key not in the
//! list, gets a 401 `application/json` reply (`{"error":"missing api key"}` /
//! `{"error":"unknown api key"}`). An allowed request goes on with `x-user-id: user-<n>` (the
//! key's 1-based position in the list) and without `x-api-key`. The 401's response details
//! are `wasm_auth_missing_key` / `wasm_auth_unknown_key` (`auth.auth`: `jisr_auth_...`). One
//! counter increment per request: `wasmcustom.wasm_auth_requests_total.<allowed|missing|unknown>`
//! (proxy-wasm metrics have no labels, so the result is part of the name). A malformed
//! configuration is refused at load. There is no SDS-backed key list.
//!
//! Build (from this directory):
//! `cargo +nightly build -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown --release`.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { config: None }) });
}}

/// One plugin configuration, shared by the streams of its VM.
struct Config {
    /// The 401's headers, serialized for the ABI once.
    reply_headers: Vec<u8>,
    /// Allowed keys with the user id each maps to.
    keys: Vec<(Vec<u8>, String)>,
    /// Counter ids for `allowed`, `missing`, `unknown`.
    allowed: u32,
    missing: u32,
    unknown: u32,
}

struct Root {
    config: Option<Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = self.get_plugin_configuration().unwrap_or_default();
        let keys = match std::str::from_utf8(&text)
            .map_err(|e| format!("configuration is not UTF-8: {e}"))
            .and_then(parse_keys)
        {
            Ok(keys) => keys,
            Err(e) => {
                let _ = proxy_wasm::hostcalls::log(LogLevel::Error, &format!("wasm-auth: {e}"));
                return false;
            }
        };
        let counter = |result: &str| {
            proxy_wasm::hostcalls::define_metric(
                MetricType::Counter,
                &format!("wasm_auth_requests_total.{result}"),
            )
        };
        match (counter("allowed"), counter("missing"), counter("unknown")) {
            (Ok(allowed), Ok(missing), Ok(unknown)) => {
                self.config = Some(Rc::new(Config {
                    reply_headers: serialize_headers(&[("content-type", "application/json")]),
                    keys,
                    allowed,
                    missing,
                    unknown,
                }));
                true
            }
            _ => {
                let _ = proxy_wasm::hostcalls::log(
                    LogLevel::Error,
                    "wasm-auth: cannot define the request counters",
                );
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(Auth { config }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One per stream.
struct Auth {
    config: Rc<Config>,
}

impl Context for Auth {}

impl HttpContext for Auth {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let c = &*self.config;
        let (counter, body, details) = match self.get_http_request_header_bytes("x-api-key") {
            None => (
                c.missing,
                r#"{"error":"missing api key"}"#,
                "wasm_auth_missing_key",
            ),
            Some(key) => match c.keys.iter().find(|(k, _)| *k == key) {
                Some((_, user)) => {
                    let _ = proxy_wasm::hostcalls::increment_metric(c.allowed, 1);
                    self.set_http_request_header("x-api-key", None);
                    self.set_http_request_header("x-user-id", Some(user));
                    return Action::Continue;
                }
                None => (
                    c.unknown,
                    r#"{"error":"unknown api key"}"#,
                    "wasm_auth_unknown_key",
                ),
            },
        };
        let _ = proxy_wasm::hostcalls::increment_metric(counter, 1);
        send_local_response(401, details, body.as_bytes(), &c.reply_headers);
        Action::Pause
    }
}

/// The ABI's local reply, called directly: the SDK's `send_http_response` passes no response
/// details, while `auth.auth` sets them.
fn send_local_response(status: u32, details: &str, body: &[u8], headers: &[u8]) {
    // SAFETY: every pointer/length pair describes a live byte slice for the call's duration;
    // `headers` is in the ABI's map encoding (`serialize_headers`).
    let status = unsafe {
        abi::proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    if status != 0 {
        let _ = proxy_wasm::hostcalls::log(
            LogLevel::Error,
            &format!("wasm-auth: proxy_send_local_response returned {status}"),
        );
    }
}

mod abi {
    // The same host function the SDK imports.
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub fn proxy_send_local_response(
            status_code: u32,
            status_code_details_data: *const u8,
            status_code_details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
    }
}

/// The proxy-wasm map encoding: pair count, then each pair's name and value lengths (all u32,
/// little-endian), then each name and value followed by a NUL byte.
fn serialize_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// `{"allowed_keys": [..]}` into (key, `user-<n>`) pairs; other fields are ignored. The same
/// JSON and the same rules as `examples/auth.rs`, read with the same library.
fn parse_keys(text: &str) -> Result<Vec<(Vec<u8>, String)>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let fields = v.as_object().ok_or("configuration must be a JSON object")?;
    let list = fields
        .get("allowed_keys")
        .ok_or("missing field \"allowed_keys\"")?
        .as_array()
        .ok_or("\"allowed_keys\" must be an array of strings")?;
    list.iter()
        .enumerate()
        .map(|(i, k)| match k.as_str() {
            Some(k) => Ok((k.as_bytes().to_vec(), format!("user-{}", i + 1))),
            None => Err(format!("\"allowed_keys\"[{i}] must be a string")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{parse_keys, serialize_headers};

    #[test]
    fn header_encoding() {
        assert_eq!(
            serialize_headers(&[("ab", "c")]),
            [1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, b'a', b'b', 0, b'c', 0]
        );
    }

    #[test]
    fn keys_and_users() {
        let keys = parse_keys(
            r#" {"other": [1, true, null, {"x": "y"}], "allowed_keys": ["key-1", "k\u00e9y\"2"]} "#,
        )
        .unwrap();
        assert_eq!(
            keys,
            vec![
                (b"key-1".to_vec(), "user-1".to_string()),
                ("kéy\"2".as_bytes().to_vec(), "user-2".to_string()),
            ]
        );
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"allowed_keys": "key-1"}"#,
            r#"{"allowed_keys": [1]}"#,
            r#"{"allowed_keys": ["a"] x"#,
            r#"{"allowed_keys": ["a]}"#,
        ] {
            assert!(parse_keys(bad).is_err(), "{bad:?}");
        }
    }
}
