//! Running real Envoy: start with a config, wait for readiness, inspect log/stats, stop on drop.

use crate::client;
use crate::config::{ACCESS_MARKER, EnvoyConfig};
use crate::install::envoy_bin;
use crate::modules::modules_dir;
use crate::paths::log_dir;
use std::collections::HashMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long Envoy may take to report `LIVE` on `/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How much of the log a failure message prints (the tail).
const LOG_TAIL: usize = 24 * 1024;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A running Envoy. Dropping it stops Envoy (and prints its log if the thread is panicking).
pub struct Envoy {
    child: Mutex<Child>,
    admin_port: u16,
    ports: HashMap<String, u16>,
    log_path: PathBuf,
    config_path: PathBuf,
    started: Instant,
    ready_after: Duration,
}

struct Launched {
    child: Child,
    admin_port: u16,
    ports: HashMap<String, u16>,
    log_path: PathBuf,
    config_path: PathBuf,
    started: Instant,
}

/// An unused loopback port (bound, read, released; Envoy binds it moments later).
pub fn free_port() -> u16 {
    // The kernel may hand the same ephemeral port out again once it is released, so two
    // listeners of one config could get the same port (Envoy then refuses the config with
    // "duplicate address"). Never give out a port twice in one test process.
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("pick a free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

fn label() -> String {
    let t = std::thread::current();
    let name = t.name().unwrap_or("envoy");
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean
        .chars()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

fn launch(cfg: &EnvoyConfig) -> Launched {
    let bin = envoy_bin();
    let admin_port = free_port();
    let ports: HashMap<String, u16> = cfg
        .listeners
        .iter()
        .map(|l| (l.name.clone(), free_port()))
        .collect();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let stem = format!("{}-{pid}-{seq}", label());
    let dir = log_dir();
    let config_path = dir.join(format!("{stem}.yaml"));
    let log_path = dir.join(format!("{stem}.log"));
    std::fs::write(&config_path, cfg.render(admin_port, &ports)).expect("write envoy.yaml");
    let log = File::create(&log_path).expect("create envoy log");
    // Unique across concurrently running test processes and Envoys within one.
    let base_id = (pid % 1_000_000) * 100 + seq % 100;
    let mut cmd = Command::new(&bin);
    cmd.arg("-c")
        .arg(&config_path)
        .args(["--concurrency", &cfg.concurrency.to_string()])
        .args(["--base-id", &base_id.to_string()])
        .arg("--disable-hot-restart")
        .args(["--file-flush-interval-msec", "50"])
        .args(["-l", "info"])
        .args(["--component-log-level", "dynamic_modules:debug"])
        .args(&cfg.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log);
    if let Some(dir) = &cfg.modules_dir {
        cmd.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
    } else if cfg.uses_modules() {
        cmd.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", modules_dir());
    }
    for (k, v) in &cfg.env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start Envoy {}: {e}", bin.display()));
    Launched {
        child,
        admin_port,
        ports,
        log_path,
        config_path,
        started,
    }
}

fn tail(text: &str) -> &str {
    if text.len() <= LOG_TAIL {
        return text;
    }
    let mut i = text.len() - LOG_TAIL;
    while !text.is_char_boundary(i) {
        i += 1;
    }
    &text[i..]
}

fn admin_ready(port: u16) -> bool {
    static ADMIN: OnceLock<client::Client> = OnceLock::new();
    let c = ADMIN.get_or_init(|| client::Client::new(Duration::from_secs(2)));
    matches!(c.request(port, "GET", "/ready", &[], b""), Ok(r) if r.status == 200 && r.text().trim() == "LIVE")
}

impl Envoy {
    /// Starts Envoy with `cfg` and waits until admin `/ready` says `LIVE`. Builds the example
    /// modules first if `cfg` uses any and sets no [`EnvoyConfig::modules_dir`]. Panics with
    /// Envoy's log if Envoy exits or is not ready within [`READY_TIMEOUT`].
    /// A port taken between picking and Envoy binding it is retried with fresh ports (twice).
    pub fn start(cfg: &EnvoyConfig) -> Envoy {
        let mut attempt = 0;
        let mut l = launch(cfg);
        let deadline = l.started + READY_TIMEOUT;
        loop {
            if let Some(status) = l.child.try_wait().expect("poll envoy") {
                let log = std::fs::read_to_string(&l.log_path).unwrap_or_default();
                if (log.contains("Address already in use") || log.contains("duplicate address"))
                    && attempt < 2
                {
                    attempt += 1;
                    eprintln!(
                        "jisr-e2e: port clash, restarting Envoy with fresh ports ({})",
                        l.log_path.display()
                    );
                    l = launch(cfg);
                    continue;
                }
                panic!(
                    "Envoy exited during startup ({status}). config: {}\n--- Envoy log (tail) ---\n{}",
                    l.config_path.display(),
                    tail(&log)
                );
            }
            if admin_ready(l.admin_port) {
                break;
            }
            if Instant::now() > deadline {
                let _ = l.child.kill();
                let _ = l.child.wait();
                let log = std::fs::read_to_string(&l.log_path).unwrap_or_default();
                panic!(
                    "Envoy not ready after {READY_TIMEOUT:?}. config: {}\n--- Envoy log (tail) ---\n{}",
                    l.config_path.display(),
                    tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let ready_after = l.started.elapsed();
        Envoy {
            child: Mutex::new(l.child),
            admin_port: l.admin_port,
            ports: l.ports,
            log_path: l.log_path,
            config_path: l.config_path,
            started: l.started,
            ready_after,
        }
    }

    /// Starts Envoy with a config it is expected to refuse; returns its exit status and log.
    /// Panics if Envoy becomes ready instead, or keeps running for [`READY_TIMEOUT`].
    pub fn start_expect_failure(cfg: &EnvoyConfig) -> (ExitStatus, String) {
        let mut l = launch(cfg);
        let deadline = l.started + READY_TIMEOUT;
        loop {
            if let Some(status) = l.child.try_wait().expect("poll envoy") {
                let log = std::fs::read_to_string(&l.log_path).unwrap_or_default();
                return (status, log);
            }
            let ready = admin_ready(l.admin_port);
            if ready || Instant::now() > deadline {
                let _ = l.child.kill();
                let _ = l.child.wait();
                let log = std::fs::read_to_string(&l.log_path).unwrap_or_default();
                panic!(
                    "Envoy {} instead of refusing the config {}\n--- Envoy log (tail) ---\n{}",
                    if ready {
                        "became ready"
                    } else {
                        "kept running"
                    },
                    l.config_path.display(),
                    tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    /// Envoy's resident set size in KiB (`VmRSS` in `/proc/<pid>/status`), if readable.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Streams in flight on listener `name`: gauge `http.<name>.downstream_rq_active` (the
    /// harness uses the listener name as the HCM `stat_prefix`).
    pub fn in_flight(&self, listener: &str) -> Option<u64> {
        self.gauge(&format!("http.{listener}.downstream_rq_active"))
    }

    /// The admin port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The port of listener `name`; panics if there is no such listener.
    pub fn listener_port(&self, name: &str) -> u16 {
        *self
            .ports
            .get(name)
            .unwrap_or_else(|| panic!("no listener named {name:?}; have {:?}", self.ports.keys()))
    }

    /// Time from spawn to `/ready` = `LIVE`.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// Time since spawn.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Path of the file holding Envoy's stdout and stderr.
    pub fn log_path(&self) -> &PathBuf {
        &self.log_path
    }

    /// Path of the rendered envoy.yaml.
    pub fn config_path(&self) -> &PathBuf {
        &self.config_path
    }

    /// Envoy's whole output so far (stderr log and stdout access log, interleaved).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Polls the log until it contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Access-log lines so far, with the `ACCESS ` marker stripped.
    pub fn access_log_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.strip_prefix(ACCESS_MARKER))
            .map(str::to_string)
            .collect()
    }

    /// Polls until at least `n` access-log lines exist; returns them (maybe fewer after `timeout`).
    pub fn wait_for_access_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        wait_until(timeout, || {
            lines = self.access_log_lines();
            lines.len() >= n
        });
        lines
    }

    /// Admin `/stats` text. Panics if the admin endpoint does not answer.
    pub fn stats(&self) -> String {
        self.admin_get("/stats").text()
    }

    /// GET on the admin port.
    pub fn admin_get(&self, path: &str) -> client::Response {
        client::request(self.admin_port, "GET", path, &[], b"")
    }

    /// POST on the admin port.
    pub fn admin_post(&self, path: &str) -> client::Response {
        client::request(self.admin_port, "POST", path, &[], b"")
    }

    fn stat_value(&self, kind: &str, name: &str) -> Option<u64> {
        let text = self.admin_get(&format!("/stats?type={kind}")).text();
        stat_line(&text, name).and_then(|v| v.trim().parse().ok())
    }

    /// Counter `name` from `/stats` (module counters are `dynamicmodulescustom.<name>`,
    /// labelled ones `dynamicmodulescustom.<name>.<label>.<value>`; see [`module_stat`]).
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.stat_value("Counters", name)
    }

    /// Gauge `name` from `/stats`.
    pub fn gauge(&self, name: &str) -> Option<u64> {
        self.stat_value("Gauges", name)
    }

    /// The `/stats` line of histogram `name` (its value part), if present.
    pub fn histogram(&self, name: &str) -> Option<String> {
        let text = self.admin_get("/stats?type=Histograms").text();
        stat_line(&text, name).map(|v| v.trim().to_string())
    }

    /// True if histogram `name` appears in `/stats`.
    pub fn histogram_present(&self, name: &str) -> bool {
        self.histogram(name).is_some()
    }

    /// Polls counter `name` until it is at least `min`; returns the last value seen.
    pub fn wait_for_counter(&self, name: &str, min: u64, timeout: Duration) -> Option<u64> {
        let mut last = None;
        wait_until(timeout, || {
            last = self.counter(name);
            last.is_some_and(|v| v >= min)
        });
        last
    }

    /// The exit status if Envoy has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait()
            .ok()
            .flatten()
    }

    /// True if Envoy runs and admin `/ready` says `LIVE`.
    pub fn is_ready(&self) -> bool {
        self.exit_status().is_none() && admin_ready(self.admin_port)
    }

    /// Panics (with the log) unless Envoy is still running and ready, e.g. after a fault test.
    pub fn assert_ready(&self) {
        if let Some(s) = self.exit_status() {
            panic!(
                "Envoy exited ({s})\n--- Envoy log (tail) ---\n{}",
                tail(&self.log())
            );
        }
        assert!(
            admin_ready(self.admin_port),
            "Envoy runs but /ready is not LIVE\n--- Envoy log (tail) ---\n{}",
            tail(&self.log())
        );
    }

    /// Asks Envoy to exit (`/quitquitquit`), waits up to 5 s, then kills it. Returns the status.
    pub fn stop(&self) -> Option<ExitStatus> {
        if let Some(s) = self.exit_status() {
            return Some(s);
        }
        let _ = client::try_request(self.admin_port, "POST", "/quitquitquit", &[], b"");
        let mut status = None;
        wait_until(Duration::from_secs(5), || {
            status = self.exit_status();
            status.is_some()
        });
        if status.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            let _ = child.kill();
            status = child.wait().ok();
        }
        status
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.stop();
        if std::thread::panicking() {
            eprintln!(
                "=== Envoy log {} (config {}) ===\n{}\n=== end of Envoy log ===",
                self.log_path.display(),
                self.config_path.display(),
                tail(&self.log())
            );
        }
    }
}

/// Full stat name of a module metric: `dynamicmodulescustom.<name>` plus `.<label>.<value>` pairs.
pub fn module_stat(name: &str, labels: &[(&str, &str)]) -> String {
    let mut s = format!("dynamicmodulescustom.{name}");
    for (k, v) in labels {
        s.push('.');
        s.push_str(k);
        s.push('.');
        s.push_str(v);
    }
    s
}

/// Value of `key=value` in an access-log line (values must not contain spaces).
pub fn access_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn stat_line<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
}

/// Calls `cond` every 20 ms until it is true (returns true) or `timeout` passed (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
