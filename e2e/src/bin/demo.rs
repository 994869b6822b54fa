//! The README demo: the jisr example modules in real Envoy, in front of an echo upstream.
//!
//! `cargo run -p jisr-e2e --bin demo [-- --serve <seconds>]`. Exits 0 when every check passed,
//! 1 when a check failed, and panics (non-zero, with Envoy's log) when Envoy fails to start.

use jisr_e2e::client::{self, Response};
use jisr_e2e::upstream::{fnv1a64, pattern};
use jisr_e2e::{
    Envoy, EnvoyConfig, Listener, Upstream, envoy_bin, envoy_version, module_filter, module_path,
};
use std::time::{Duration, Instant};

const MODULES: [&str; 3] = ["hello", "auth", "async_demo"];
const AUTH_CONFIG: &str = r#"{"allowed_keys":["key-1","key-2"]}"#;

struct Demo {
    failed: usize,
}

impl Demo {
    fn check(&mut self, ok: bool, what: &str) {
        println!("    {} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            self.failed += 1;
        }
    }

    fn send(
        &mut self,
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<Response> {
        let shown: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!();
        println!(
            "  > {method} {path}{}{}",
            if shown.is_empty() {
                String::new()
            } else {
                format!("  [{}]", shown.join(", "))
            },
            if body.is_empty() {
                String::new()
            } else {
                format!("  ({} body bytes)", body.len())
            }
        );
        let t = Instant::now();
        match client::try_request(port, method, path, headers, body) {
            Ok(r) => {
                println!("  < {} in {:?}", r.status, t.elapsed());
                for h in ["content-type", "x-user-id", "x-hello", "www-authenticate"] {
                    if let Some(v) = r.header(h) {
                        println!("  < {h}: {v}");
                    }
                }
                let text = r.text();
                let shown = if text.chars().count() > 400 {
                    let head: String = text.chars().take(400).collect();
                    format!("{head}... ({} bytes)", text.len())
                } else {
                    text
                };
                println!("  < {shown}");
                Some(r)
            }
            Err(e) => {
                println!("  < error: {e}");
                self.failed += 1;
                None
            }
        }
    }
}

fn upstream_header(r: &Option<Response>, name: &str) -> Option<String> {
    let r = r.as_ref()?;
    r.try_json()?["headers"][name].as_str().map(str::to_string)
}

fn status(r: &Option<Response>) -> u16 {
    r.as_ref().map_or(0, |r| r.status)
}

fn main() {
    let serve_secs: u64 = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => 0,
        [flag, secs] if flag == "--serve" => secs.parse().expect("--serve <seconds>"),
        _ => {
            eprintln!("usage: demo [--serve <seconds>]");
            std::process::exit(2);
        }
    };

    println!("== jisr demo: example modules in Envoy {}", envoy_version());
    let t = Instant::now();
    let bin = envoy_bin();
    println!("   envoy: {} ({:?})", bin.display(), t.elapsed());
    let t = Instant::now();
    let dir = jisr_e2e::modules_dir();
    println!("   modules: {} ({:?})", dir.display(), t.elapsed());
    let missing: Vec<&str> = MODULES
        .iter()
        .copied()
        .filter(|m| !module_path(m).is_file())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "missing example modules: {missing:?} (expected lib<name>.so in {})",
            dir.display()
        );
        std::process::exit(1);
    }

    let up = Upstream::start("demo-upstream");
    let cfg = EnvoyConfig::new()
        .listener(Listener::new("hello").filter(module_filter("hello", "hello", None)))
        .listener(
            Listener::new("auth")
                .filter(module_filter("auth", "auth", Some(AUTH_CONFIG)))
                .log_field("user", "%REQ(x-user-id)%"),
        )
        .listener(
            Listener::new("async")
                .filter(module_filter("async_demo", "wait", None))
                .filter(module_filter("async_demo", "body", None)),
        )
        .listener(Listener::new("body").filter(module_filter("async_demo", "body", None)))
        .upstream(up.port());
    let envoy = Envoy::start(&cfg);
    println!(
        "   envoy ready in {:?}; admin 127.0.0.1:{}, log {}",
        envoy.ready_after(),
        envoy.admin_port(),
        envoy.log_path().display()
    );
    println!("   upstream (echo) 127.0.0.1:{}", up.port());

    let mut d = Demo { failed: 0 };

    let port = envoy.listener_port("hello");
    println!(
        "\n== hello (127.0.0.1:{port}): adds x-hello to the request; the upstream echoes what it got"
    );
    let r = d.send(port, "GET", "/greet", &[], b"");
    d.check(status(&r) == 200, "200 from the upstream");
    d.check(
        upstream_header(&r, "x-hello").as_deref() == Some("from-jisr"),
        "upstream saw x-hello: from-jisr",
    );

    let port = envoy.listener_port("auth");
    println!("\n== auth (127.0.0.1:{port}): config {AUTH_CONFIG}");
    let r = d.send(port, "GET", "/private", &[], b"");
    d.check(status(&r) == 401, "no key: 401 from the filter");
    d.check(
        up.requests().iter().all(|q| q.path != "/private"),
        "no key: the upstream never saw it",
    );
    let r = d.send(port, "GET", "/private", &[("x-api-key", "key-9")], b"");
    d.check(status(&r) == 401, "unknown key: 401");
    let r = d.send(port, "GET", "/private", &[("x-api-key", "key-1")], b"");
    d.check(status(&r) == 200, "known key: 200 from the upstream");
    d.check(
        upstream_header(&r, "x-user-id").is_some(),
        "upstream saw x-user-id",
    );

    let port = envoy.listener_port("async");
    println!(
        "\n== async_demo (127.0.0.1:{port}): `wait` awaits a value from another thread, `body` reads the body"
    );
    let r = d.send(port, "GET", "/wait", &[], b"");
    d.check(
        status(&r) == 200,
        "wait: 200 after the other thread answered",
    );
    let body = vec![b'x'; 4096];
    let r = d.send(
        port,
        "POST",
        "/upload",
        &[("content-type", "text/plain")],
        &body,
    );
    d.check(status(&r) == 200, "body: small body passes");
    d.check(
        r.as_ref()
            .and_then(|r| r.try_json())
            .and_then(|j| j["body_len"].as_u64())
            == Some(4096),
        "upstream got all 4096 bytes",
    );
    let port = envoy.listener_port("body");
    println!(
        "\n== body alone (127.0.0.1:{port}): reads the first 1024 bytes, forwards the whole body"
    );
    let big = pattern(0, 1024 * 1024);
    let r = d.send(
        port,
        "POST",
        "/upload",
        &[("content-type", "application/octet-stream")],
        &big,
    );
    d.check(status(&r) == 200, "body: 1 MiB upload passes");
    let echo = r.as_ref().and_then(|r| r.try_json());
    d.check(
        echo.as_ref().and_then(|j| j["body_len"].as_u64()) == Some(big.len() as u64)
            && echo
                .as_ref()
                .and_then(|j| j["body_fnv"].as_str().map(str::to_string))
                == Some(format!("{:016x}", fnv1a64(&big))),
        "upstream got the 1 MiB body intact (length and FNV-1a match)",
    );
    d.check(
        upstream_header(&r, "x-body-seen").as_deref() == Some("1024"),
        "the handler read 1024 bytes (x-body-seen)",
    );

    println!("\n== access log");
    for l in envoy.wait_for_access_lines(7, Duration::from_secs(3)) {
        println!("   {l}");
    }
    println!("\n== module log lines (dynamic_modules)");
    for l in envoy
        .log()
        .lines()
        .filter(|l| l.contains("[dynamic_modules]"))
        .take(40)
    {
        println!("   {l}");
    }

    if serve_secs > 0 {
        println!(
            "\n== serving for {serve_secs} s: hello :{}, auth :{}, async :{}, body :{} (Ctrl-C to stop)",
            envoy.listener_port("hello"),
            envoy.listener_port("auth"),
            envoy.listener_port("async"),
            envoy.listener_port("body")
        );
        std::thread::sleep(Duration::from_secs(serve_secs));
    }

    drop(envoy);
    if d.failed == 0 {
        println!("\n== demo OK");
    } else {
        println!("\n== demo: {} check(s) failed", d.failed);
        std::process::exit(1);
    }
}
