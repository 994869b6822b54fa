//! The default echo handler and the helpers tests use to check its answers.

use super::{ResponseWriter, UpstreamRequest};
use crate::json::quote;
use std::time::Duration;

/// 64-bit FNV-1a of `data` (the echo's `body_fnv`, as `{:016x}`).
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `n` bytes of the deterministic pattern served by `/bytes/<n>` and `/stream`, starting at
/// offset `from` of the infinite pattern.
pub fn pattern(from: usize, n: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (from..from + n)
        .map(|i| ALPHABET[i % ALPHABET.len()])
        .collect()
}

/// The echo JSON for `req` as served by `server`: `server`, `method`, `path`, `headers` (each
/// name once, in arrival order, repeated values joined with `,`), `body_len` and `body_fnv`.
pub fn echo_json(server: &str, req: &UpstreamRequest) -> String {
    let mut names: Vec<&str> = Vec::new();
    for (k, _) in &req.headers {
        if !names.contains(&k.as_str()) {
            names.push(k);
        }
    }
    let headers: Vec<String> = names
        .iter()
        .map(|name| {
            let joined: Vec<&str> = req
                .headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect();
            format!("{}:{}", quote(name), quote(&joined.join(",")))
        })
        .collect();
    format!(
        "{{\"server\":{},\"method\":{},\"path\":{},\"headers\":{{{}}},\"body_len\":{},\"body_fnv\":\"{:016x}\"}}",
        quote(server),
        quote(&req.method),
        quote(&req.path),
        headers.join(","),
        req.body.len(),
        fnv1a64(&req.body)
    )
}

fn send_echo(req: &UpstreamRequest, w: &mut ResponseWriter, server: &str) {
    w.header("content-type", "application/json");
    w.send(echo_json(server, req).as_bytes());
}

/// The default handler. Paths:
/// - `/delay/<ms>`: sleep, then echo;
/// - `/status/<code>`: echo with that status;
/// - `/bytes/<n>`: `n` bytes of [`pattern`];
/// - `/stream?chunks=N&delay_ms=D&size=S`: N chunks of S pattern bytes, D ms apart
///   (defaults 3, 100, 16);
/// - anything else: 200 `application/json` echo (see [`echo_json`]).
pub fn echo(req: &UpstreamRequest, w: &mut ResponseWriter) {
    let server = w.server_name().to_string();
    let path = req.path_only();
    let num = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
    };
    if let Some(ms) = num("/delay/") {
        w.sleep(Duration::from_millis(ms.min(60_000)));
        send_echo(req, w, &server);
    } else if let Some(code) = num("/status/") {
        w.status(code.clamp(100, 999) as u16);
        send_echo(req, w, &server);
    } else if let Some(n) = num("/bytes/") {
        w.header("content-type", "application/octet-stream");
        w.send(&pattern(0, n as usize));
    } else if path == "/stream" {
        let q = |k: &str, d: u64| req.query(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let (chunks, delay, size) = (q("chunks", 3), q("delay_ms", 100), q("size", 16) as usize);
        w.header("content-type", "application/octet-stream");
        w.start_chunked();
        for i in 0..chunks as usize {
            if i > 0 {
                w.sleep(Duration::from_millis(delay.min(60_000)));
            }
            w.chunk(&pattern(i * size, size));
            if w.is_closed() {
                return;
            }
        }
        w.finish();
    } else {
        send_echo(req, w, &server);
    }
}
