//! What operators run beside Envoy: a local OpenTelemetry (OTLP/gRPC) receiver for Envoy's
//! `envoy.stat_sinks.open_telemetry` sink, a Prometheus text parser, and a recording
//! rate-limit service for Envoy's global rate-limit filter.
//!
//! Both are Python programs in `e2e/py/` run on maintained libraries (`grpcio` with
//! `opentelemetry-proto`; the Prometheus project's `prometheus_client` parser), which pip
//! installs into `target/e2e-py/` on first use, the way Envoy itself is installed. A failed
//! install is a test failure, never a skip.

use crate::install::{pip_install_once, python};
use crate::paths::{target_dir, workspace_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The Python packages, pinned.
const PACKAGES: [&str; 4] = [
    "grpcio==1.85.3",
    "opentelemetry-proto==1.45.2",
    "protobuf==7.36.2",
    "prometheus-client==0.26.0",
];

/// `target/e2e-py/`, with [`PACKAGES`] installed.
fn python_path() -> PathBuf {
    let deps = target_dir().join("e2e-py");
    pip_install_once(&deps, &PACKAGES, "the e2e Python packages", &|d| {
        d.join("prometheus_client")
    });
    deps
}

fn script(name: &str) -> PathBuf {
    workspace_root().join("e2e").join("py").join(name)
}

/// One sample of Prometheus text.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    /// The metric family (for counters, without the `_total` suffix).
    pub family: String,
    /// The family's `# TYPE`: `counter`, `gauge`, `histogram`, `summary` or `unknown`.
    pub kind: String,
    /// The sample's own name (e.g. a histogram's `..._bucket`, `..._sum`, `..._count`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Parses Prometheus text exposition (`/stats/prometheus`) with `prometheus_client`'s parser.
/// Panics with the parser's message if the text is not valid.
pub fn parse_prometheus(text: &str) -> Vec<PromSample> {
    let mut child = Command::new(python())
        .arg(script("prom_parse.py"))
        .env("PYTHONPATH", python_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start prom_parse.py: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("prom_parse.py output");
    writer
        .join()
        .expect("writer thread")
        .expect("writing to prom_parse.py");
    assert!(
        out.status.success(),
        "{}\n--- text ---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("prom_parse.py prints JSON");
            PromSample {
                family: v["family"].as_str().unwrap_or_default().to_owned(),
                kind: v["type"].as_str().unwrap_or_default().to_owned(),
                name: v["name"].as_str().unwrap_or_default().to_owned(),
                labels: v["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default(),
                value: v["value"].as_f64().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// A gRPC service from `e2e/py/` that prints `port <n>` when it serves and then one JSON
/// line per thing it received; killed on drop.
struct PyService {
    child: Child,
    port: u16,
    records: Arc<Mutex<Vec<Value>>>,
}

impl PyService {
    /// Installs the Python packages if needed and starts `e2e/py/<name>` on a free port.
    fn start(name: &str) -> PyService {
        let script = script(name);
        let mut child = Command::new(python())
            .arg(&script)
            .arg("0")
            .env("PYTHONPATH", python_path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("{name} exited before serving"));
        let port = first
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from {name}: {first:?}"));
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&records);
        let owner = name.to_owned();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("{owner} line {line:?}: {e}"));
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            }
        });
        PyService {
            child,
            port,
            records,
        }
    }

    fn records(&self) -> Vec<Value> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The latest record `matches` accepts, waiting up to `timeout` for one.
    fn wait_for(&self, timeout: Duration, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.records().into_iter().rev().find(|r| matches(r));
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PyService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running OTLP/gRPC metrics receiver (`e2e/py/otlp_receiver.py`); killed on drop. Each data
/// point it receives is kept as one JSON value.
pub struct OtlpReceiver(PyService);

impl OtlpReceiver {
    /// Installs the Python packages if needed and starts the receiver on a free port.
    pub fn start() -> OtlpReceiver {
        OtlpReceiver(PyService::start("otlp_receiver.py"))
    }

    /// The gRPC port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// Every data point received so far, oldest first.
    pub fn points(&self) -> Vec<Value> {
        self.0.records()
    }

    /// The latest data point named `name` whose attributes include all of `attrs`, waiting up
    /// to `timeout` for one to arrive (Envoy sends at each stats flush).
    pub fn wait_for(&self, name: &str, attrs: &[(&str, &str)], timeout: Duration) -> Option<Value> {
        self.0.wait_for(timeout, |p| {
            p["name"] == name && attrs.iter().all(|(k, v)| p["attributes"][*k] == *v)
        })
    }
}

/// A recording rate-limit service (`e2e/py/rls.py`, Envoy's `RateLimitService`): answers every
/// `ShouldRateLimit` call OK and keeps it as JSON (`domain`, `hits_addend`, `descriptors` with
/// their `entries` and `hits_addend`); killed on drop.
pub struct RateLimitService(PyService);

impl RateLimitService {
    /// Installs the Python packages if needed and starts the service on a free port.
    pub fn start() -> RateLimitService {
        RateLimitService(PyService::start("rls.py"))
    }

    /// The gRPC port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Value> {
        self.0.records()
    }

    /// The latest call `matches` accepts, waiting up to `timeout` for one.
    pub fn wait_for(&self, timeout: Duration, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        self.0.wait_for(timeout, matches)
    }
}
