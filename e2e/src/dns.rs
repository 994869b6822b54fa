//! DNS peers for the UDP filter tests: a real DNS client (`dnspython`, installed with pip into
//! `target/e2e-dns-py/` on first use; a failed install is a test failure, never a skip) and a
//! tiny upstream resolver on a Rust thread whose answers are easy to tell apart from a
//! filter's.

use crate::install::{pip_install_once, python};
use crate::paths::{target_dir, workspace_root};
use serde_json::Value;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The DNS client library, pinned.
const DNSPYTHON: &str = "dnspython==2.9.2";

/// The address the [`Resolver`] answers every `A` query with.
pub const RESOLVER_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// The TTL of the [`Resolver`]'s answers.
pub const RESOLVER_TTL: u32 = 7;

fn python_path() -> PathBuf {
    let deps = target_dir().join("e2e-dns-py");
    pip_install_once(&deps, &[DNSPYTHON], "dnspython", &|d| d.join("dns"));
    deps
}

/// Asks each `(name, type)` of `queries` (e.g. `("gate.internal", "A")`) of the DNS server on
/// 127.0.0.1:`port` with dnspython, one UDP query each; one JSON result per query (see
/// `e2e/py/dns_client.py`: `rcode`, `aa`, `answers` or `error`).
pub fn dns_queries(port: u16, queries: &[(&str, &str)]) -> Vec<Value> {
    let out = Command::new(python())
        .arg(
            workspace_root()
                .join("e2e")
                .join("py")
                .join("dns_client.py"),
        )
        .arg(port.to_string())
        .args(queries.iter().map(|(n, t)| format!("{n}:{t}")))
        .env("PYTHONPATH", python_path())
        .output()
        .expect("run dns_client.py");
    assert!(
        out.status.success(),
        "dns_client.py failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(v)) => v,
        _ => panic!(
            "dns_client.py printed no JSON list: {}",
            String::from_utf8_lossy(&out.stdout)
        ),
    }
}

/// An upstream DNS resolver on 127.0.0.1: answers every query it can read with one `A`
/// record, [`RESOLVER_ADDRESS`] with TTL [`RESOLVER_TTL`], not authoritative; remembers every
/// datagram it received.
pub struct Resolver {
    port: u16,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Resolver {
    /// Starts the resolver thread (it runs until the test process ends).
    pub fn start() -> Resolver {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the resolver");
        let port = sock.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                log.lock().unwrap().push(buf[..n].to_vec());
                if let Some(answer) = answer(&buf[..n]) {
                    let _ = sock.send_to(&answer, from);
                }
            }
        });
        Resolver { port, seen }
    }

    /// Its UDP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The datagrams it received so far.
    pub fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits up to `wait` for at least `n` datagrams; what it received.
    pub fn wait_seen(&self, n: usize, wait: Duration) -> Vec<Vec<u8>> {
        let start = std::time::Instant::now();
        loop {
            let s = self.seen();
            if s.len() >= n || start.elapsed() > wait {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The question name of a plain query (no compression), as dotted lowercase text.
pub fn question_name(query: &[u8]) -> Option<String> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let l = usize::from(*query.get(at)?);
        if l == 0 {
            return Some(labels.join("."));
        }
        if l > 63 {
            return None;
        }
        let label = query.get(at + 1..at + 1 + l)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += 1 + l;
    }
}

/// The resolver's answer to `query`: its id and question, one `A` record.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut at = 12;
    while *query.get(at)? != 0 {
        at += 1 + usize::from(query[at]);
    }
    let question = query.get(12..at + 5)?;
    let mut a = Vec::with_capacity(64);
    a.extend_from_slice(&query[..2]);
    a.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    a.extend_from_slice(question);
    a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    a.extend_from_slice(&RESOLVER_TTL.to_be_bytes());
    a.extend_from_slice(&[0, 4]);
    a.extend_from_slice(&RESOLVER_ADDRESS.octets());
    Some(a)
}
