//! Soak: many requests through the example modules in one Envoy, from a small pool of client
//! threads (one keep-alive `ureq` client each), checking every answer, Envoy's memory and the
//! streams left in flight. Used by the `soak` binary and `tests/soak.rs`.
//!
//! The mix, by client thread (`thread % 5`): `hello` (header injection + middleware log line),
//! `auth` (allowed and unknown keys alternating: 200 / 401), `body` (`async_demo` reading a
//! 2 KiB POST body), `wait` (`async_demo`, woken from another thread after 0–1 ms), and `tap`
//! (`resp_tap` Observe-mode counting a 4 KiB response body).

use crate::client::{Client, DEFAULT_TIMEOUT, Response};
use crate::config::{EnvoyConfig, Listener, module_filter};
use crate::envoy::{Envoy, wait_until};
use crate::upstream::{Upstream, pattern};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The request kinds, one listener each.
pub const KINDS: [&str; 5] = ["hello", "auth", "body", "wait", "tap"];

/// How to run a soak.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Requests in the measured run (after warm-up).
    pub requests: u64,
    /// Requests in the warm-up run (not in the RSS comparison).
    pub warmup: u64,
    /// Client threads, one keep-alive client each.
    pub concurrency: usize,
    /// Envoy worker threads.
    pub envoy_workers: usize,
}

impl SoakOptions {
    /// `requests` measured requests from `concurrency` clients; warm-up is a tenth of that
    /// (at least 2000), Envoy has 2 workers.
    pub fn new(requests: u64, concurrency: usize) -> SoakOptions {
        SoakOptions {
            requests,
            warmup: (requests / 10).max(2000),
            concurrency: concurrency.max(1),
            envoy_workers: 2,
        }
    }
}

/// What a soak measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// Requests answered and checked in the measured run.
    pub requests: u64,
    /// Requests in the warm-up run.
    pub warmup: u64,
    /// Failed requests (I/O error or a wrong answer), warm-up included.
    pub errors: u64,
    /// The first few error messages.
    pub first_errors: Vec<String>,
    /// Requests per kind (measured run), in [`KINDS`] order.
    pub per_kind: [u64; 5],
    /// Envoy's RSS (KiB) once ready, before any request.
    pub rss_start_kib: u64,
    /// Envoy's RSS (KiB) after the warm-up.
    pub rss_before_kib: u64,
    /// Envoy's RSS (KiB) after the measured run.
    pub rss_after_kib: u64,
    /// Sum of `downstream_rq_active` over the soak listeners after the run (and up to 5 s for
    /// closing connections to settle).
    pub in_flight_end: u64,
    /// Duration of the measured run.
    pub elapsed: Duration,
    /// Envoy still ready at the end.
    pub ready_at_end: bool,
}

impl SoakReport {
    /// RSS growth over the measured run, in percent of the post-warm-up RSS.
    pub fn rss_growth_pct(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) * 100.0
            / (self.rss_before_kib.max(1) as f64)
    }

    /// Measured requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A few lines for humans.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = KINDS
            .iter()
            .zip(self.per_kind)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        format!(
            "requests: {} (+{} warm-up) in {:.1} s, {:.0} req/s; mix {}\n\
             errors: {}{}\n\
             Envoy RSS: {} KiB at start, {} KiB after warm-up, {} KiB after the run ({:+.2}%)\n\
             in flight at the end: {}; ready: {}",
            self.requests,
            self.warmup,
            self.elapsed.as_secs_f64(),
            self.rate(),
            kinds.join(" "),
            self.errors,
            if self.first_errors.is_empty() {
                String::new()
            } else {
                format!(" (first: {})", self.first_errors.join(" | "))
            },
            self.rss_start_kib,
            self.rss_before_kib,
            self.rss_after_kib,
            self.rss_growth_pct(),
            self.in_flight_end,
            self.ready_at_end
        )
    }
}

/// The Envoy config of the soak: one listener per kind, all to `upstream_port`.
/// Each access line also has the upstream host, response flags, duration, bytes received from
/// the client and wire bytes sent to / received from the upstream, so a failed request can be
/// placed (held in a filter, or stuck upstream).
pub fn soak_config(upstream_port: u16, workers: usize) -> EnvoyConfig {
    let l = |name: &str| {
        Listener::new(name)
            .log_field("up", "%UPSTREAM_HOST%")
            .log_field("flags", "%RESPONSE_FLAGS%")
            .log_field("ms", "%DURATION%")
            .log_field("rx", "%BYTES_RECEIVED%")
            .log_field("up_tx", "%UPSTREAM_WIRE_BYTES_SENT%")
            .log_field("up_rx", "%UPSTREAM_WIRE_BYTES_RECEIVED%")
    };
    EnvoyConfig::new()
        .concurrency(workers)
        .listener(l("hello").filter(module_filter("hello", "hello", None)))
        .listener(l("auth").filter(module_filter(
            "auth",
            "auth",
            Some(r#"{"allowed_keys":["key-1","key-2"]}"#),
        )))
        .listener(l("body").filter(module_filter("async_demo", "body", Some("4096"))))
        .listener(l("wait").filter(module_filter("async_demo", "wait", None)))
        .listener(l("tap").filter(module_filter("resp_tap", "tap", None)))
        .upstream(upstream_port)
}

struct Errors {
    count: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl Errors {
    fn add(&self, msg: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() < 5 {
            f.push(msg);
        }
    }
}

/// One request of `kind` (the `i`-th overall) to `port` through `c`; `Err` says what was wrong.
fn one(c: &Client, port: u16, kind: usize, i: u64, body: &[u8]) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", KINDS[kind]);
    let check = |r: &Response, status: u16, needle: &str| -> Result<(), String> {
        let found =
            needle.is_empty() || r.body.windows(needle.len()).any(|w| w == needle.as_bytes());
        if r.status != status || !found {
            return Err(format!(
                "{}: status {} (want {status}) body {:?}",
                KINDS[kind],
                r.status,
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
            ));
        }
        Ok(())
    };
    match kind {
        0 => {
            let r = c.request(port, "GET", "/soak", &[], b"").map_err(io)?;
            check(&r, 200, "\"x-hello\":\"from-jisr\"")
        }
        1 if i.is_multiple_of(2) => {
            let r = c
                .request(port, "GET", "/soak", &[("x-api-key", "key-2")], b"")
                .map_err(io)?;
            check(&r, 200, "\"x-user-id\":\"user-2\"")
        }
        1 => {
            let r = c
                .request(port, "GET", "/soak", &[("x-api-key", "nope")], b"")
                .map_err(io)?;
            check(&r, 401, "")
        }
        2 => {
            let r = c.request(port, "POST", "/soak", &[], body).map_err(io)?;
            check(&r, 200, "\"x-body-seen\":\"2048\"")
        }
        3 => {
            let delay = if i.is_multiple_of(2) { "0" } else { "1" };
            let r = c
                .request(port, "GET", "/soak", &[("x-delay-ms", delay)], b"")
                .map_err(io)?;
            check(&r, 200, "\"x-async-value\":\"100")
        }
        _ => {
            let r = c
                .request(port, "GET", "/bytes/4096", &[], b"")
                .map_err(io)?;
            if r.status != 200 || r.body.len() != 4096 {
                return Err(format!("tap: status {} len {}", r.status, r.body.len()));
            }
            Ok(())
        }
    }
}

/// `total` requests from `clients` threads; returns requests per kind.
fn drive(envoy: &Envoy, total: u64, clients: usize, errors: &Arc<Errors>) -> [u64; 5] {
    let ports: Vec<u16> = KINDS.iter().map(|k| envoy.listener_port(k)).collect();
    let next = Arc::new(AtomicU64::new(0));
    let body: Arc<[u8]> = pattern(0, 2048).into();
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let (next, errors, body) = (next.clone(), errors.clone(), body.clone());
            let kind = t % KINDS.len();
            let port = ports[kind];
            std::thread::Builder::new()
                .name(format!("soak-{t}"))
                .spawn(move || {
                    let mut done = 0u64;
                    // One connection, kept alive between requests; ureq opens a new one after
                    // Envoy closed it (a `connection: close` answer) or after an error.
                    let c = Client::keep_alive(DEFAULT_TIMEOUT);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        match one(&c, port, kind, i, &body) {
                            Ok(()) => done += 1,
                            Err(e) => errors.add(e),
                        }
                    }
                    (kind, done)
                })
                .expect("spawn soak client")
        })
        .collect();
    let mut per_kind = [0u64; 5];
    for t in threads {
        let (kind, done) = t.join().expect("soak client panicked");
        per_kind[kind] += done;
    }
    per_kind
}

/// Runs a soak: starts an echo upstream and Envoy with [`soak_config`], warms up, measures.
pub fn run(opts: &SoakOptions) -> SoakReport {
    let up = Upstream::start("soak-up");
    up.stop_recording();
    let envoy = Envoy::start(&soak_config(up.port(), opts.envoy_workers));
    let rss = |e: &Envoy| e.rss_kib().expect("read Envoy's VmRSS");
    let rss_start_kib = rss(&envoy);
    let errors = Arc::new(Errors {
        count: AtomicU64::new(0),
        first: Mutex::new(Vec::new()),
    });
    drive(&envoy, opts.warmup, opts.concurrency, &errors);
    let rss_before_kib = rss(&envoy);
    let t = Instant::now();
    let per_kind = drive(&envoy, opts.requests, opts.concurrency, &errors);
    let elapsed = t.elapsed();
    let mut in_flight_end = u64::MAX;
    wait_until(Duration::from_secs(5), || {
        in_flight_end = KINDS
            .iter()
            .map(|k| envoy.in_flight(k).unwrap_or(u64::MAX / 8))
            .sum();
        in_flight_end == 0
    });
    let rss_after_kib = rss(&envoy);
    let first_errors = errors
        .first
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    SoakReport {
        requests: per_kind.iter().sum(),
        warmup: opts.warmup,
        errors: errors.count.load(Ordering::Relaxed),
        first_errors,
        per_kind,
        rss_start_kib,
        rss_before_kib,
        rss_after_kib,
        in_flight_end,
        elapsed,
        ready_at_end: envoy.is_ready(),
    }
}
