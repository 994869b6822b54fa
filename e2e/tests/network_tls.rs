//! Network filters' TLS calls in real Envoy (`e2e/fixtures/examples/net_tls_fixture.rs`), with
//! certificates made by `openssl` at test time (a CA, a server certificate, two client
//! certificates with DNS and URI SANs) and Python's `ssl` as the TLS peer:
//!
//! - mutual TLS: `is_tls`, `server_name`, the peer's SANs and subject as Envoy's TLS transport
//!   socket reports them, and a gate on the URI SAN in front of `tcp_proxy` to an echo server;
//! - STARTTLS toward the client (`start_downstream_tls`) behind Envoy's `starttls` transport
//!   socket: clear text first, TLS after the filter's call, or clear text all along;
//! - STARTTLS toward upstream (`start_upstream_tls`) on a cluster with the `starttls`
//!   transport socket, to a Python server that greets, then switches to TLS after `STARTTLS`.

use jisr_e2e::install::python;
use jisr_e2e::paths::log_dir;
use jisr_e2e::{Cluster, Envoy, EnvoyConfig, Listener, access_field, echo_server, wait_until};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// The test PKI, made once per test process.
struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    rogue: (PathBuf, PathBuf),
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(jisr_e2e::peers::openssl_bin())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A leaf certificate `<name>.pem`/`<name>.key` signed by the CA, with `subject` and `sans`
/// (an `openssl` `subjectAltName` value).
fn leaf(dir: &Path, name: &str, subject: &str, sans: &str) -> (PathBuf, PathBuf) {
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"),
    )
    .unwrap();
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
    (dir.join(pem), dir.join(key))
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = log_dir().join(format!("network-tls-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=jisr test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        Pki {
            ca: dir.join("ca.pem"),
            server: leaf(&dir, "server", "/CN=server.test", "DNS:server.test"),
            client: leaf(
                &dir,
                "client",
                "/O=jisr-e2e/OU=payments/CN=client-7",
                "DNS:client.test,DNS:alt.client.test,URI:spiffe://jisr.test/ns/payments/sa/client",
            ),
            rogue: leaf(
                &dir,
                "rogue",
                "/CN=rogue",
                "DNS:rogue.test,URI:spiffe://other.test/sa/rogue",
            ),
        }
    })
}

fn tls_context(client_ca: bool) -> String {
    let p = pki();
    let mut y = format!(
        "common_tls_context:
  tls_certificates:
  - certificate_chain: {{ filename: \"{}\" }}
    private_key: {{ filename: \"{}\" }}
",
        p.server.0.display(),
        p.server.1.display()
    );
    if client_ca {
        // A client certificate is asked for and checked against the CA, but not required: a
        // client without one reaches the filter, which decides.
        y.push_str(&format!(
            "  validation_context:\n    trusted_ca: {{ filename: \"{}\" }}\nrequire_client_certificate: false\n",
            p.ca.display()
        ));
    }
    y
}

fn indented(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// The TLS peers, in Python (`ssl`): each prints one JSON object with what it received.
const PEERS_PY: &str = r#"
import json, socket, ssl, sys, time

def read_until(s, want, limit=5.0):
    got, end = b"", time.time() + limit
    s.settimeout(0.2)
    while time.time() < end and not (want and got.endswith(want)):
        try:
            b = s.recv(4096)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (ConnectionResetError, ssl.SSLError):
            return got, True
        if not b:
            return got, True
        got += b
    return got, False

def client_ctx(ca, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx

cmd = sys.argv[1]
if cmd == "tls":
    # tls <port> <ca> <sni> <cert|-> <key|-> <send> <until>
    port, ca, sni, cert, key, send, until = sys.argv[2:9]
    ctx = client_ctx(ca, None if cert == "-" else cert, None if key == "-" else key)
    raw = socket.create_connection(("127.0.0.1", int(port)))
    s = ctx.wrap_socket(raw, server_hostname=sni)
    s.sendall(send.encode())
    got, closed = read_until(s, until.encode())
    print(json.dumps({"version": s.version(), "got": got.decode("latin-1"), "closed": closed}))
elif cmd == "starttls":
    # starttls <port> <ca> [handshake timeout]: clear text `STARTTLS`, then TLS on the same
    # socket.
    port, ca = sys.argv[2:4]
    raw = socket.create_connection(("127.0.0.1", int(port)))
    raw.sendall(b"STARTTLS\r\n")
    pre, _ = read_until(raw, b"\r\n")
    out = {"pre": pre.decode("latin-1")}
    if pre == b"OK\r\n":
        raw.settimeout(float(sys.argv[4]) if len(sys.argv) > 4 else 5)
        try:
            s = client_ctx(ca).wrap_socket(raw, server_hostname="server.test")
        except (OSError, ssl.SSLError) as e:
            out["handshake"] = type(e).__name__
            print(json.dumps(out))
            sys.exit(0)
        out["version"] = s.version()
        got, _ = read_until(s, b"\r\n")
        out["first"] = got.decode("latin-1")
        s.sendall(b"secret over tls\n")
        got, closed = read_until(s, b"secret over tls\n")
        out["post"] = got.decode("latin-1")
        s.sendall(b"second\n")
        got, closed = read_until(s, b"second\n")
        out["post2"] = got.decode("latin-1")
    print(json.dumps(out))
elif cmd == "eager":
    # eager <port> <ca>: `STARTTLS`, nothing comes in clear text; a handshake started anyway
    # completes and the first bytes inside TLS are the answer.
    port, ca = sys.argv[2:4]
    raw = socket.create_connection(("127.0.0.1", int(port)))
    raw.sendall(b"STARTTLS\r\n")
    pre, _ = read_until(raw, b"\r\n", 0.3)
    raw.settimeout(5)
    s = client_ctx(ca).wrap_socket(raw, server_hostname="server.test")
    inner, _ = read_until(s, b"->true\r\n")
    print(json.dumps({"pre": pre.decode("latin-1"), "inner": inner.decode("latin-1")}))
elif cmd == "plain":
    # plain <port> <send> [until]: a clear-text client that never upgrades; reads until it
    # got `until` (default: what it sent; empty: until the peer closes).
    port, send = sys.argv[2:4]
    until = sys.argv[4] if len(sys.argv) > 4 else send
    s = socket.create_connection(("127.0.0.1", int(port)))
    s.sendall(send.encode())
    got, closed = read_until(s, until.encode())
    print(json.dumps({"got": got.decode("latin-1"), "closed": closed}))
elif cmd == "upstream":
    # upstream <cert> <key>: a server that greets, reads `STARTTLS\r\n` in clear text, answers
    # `OK\r\n`, switches to TLS and answers each read with what it saw of the session.
    cert, key = sys.argv[2:4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    seen = {}
    ctx.sni_callback = lambda sock, name, c: seen.__setitem__("sni", name)
    l = socket.socket()
    l.bind(("127.0.0.1", 0))
    l.listen(8)
    print(l.getsockname()[1], flush=True)
    while True:
        c, _ = l.accept()
        c.settimeout(5)
        try:
            c.sendall(b"220 jisr-test ready\r\n")
            line = b""
            while not line.endswith(b"\n"):
                b = c.recv(1)
                if not b:
                    break
                line += b
            if line != b"STARTTLS\r\n":
                c.sendall(b"-ERR want STARTTLS, got " + line)
                c.close()
                continue
            c.sendall(b"OK\r\n")
            s = ctx.wrap_socket(c, server_side=True)
            while True:
                b = s.recv(4096)
                if not b:
                    break
                s.sendall(("[%s sni=%s] " % (s.version(), seen.get("sni"))).encode() + b)
            s.close()
        except Exception as e:
            print("upstream error:", repr(e), file=sys.stderr, flush=True)
            c.close()
"#;

fn run_py(args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(PEERS_PY)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn details(envoy: &Envoy, listener: &str, n: usize) -> Vec<String> {
    let mut d = Vec::new();
    wait_until(WAIT, || {
        d = envoy
            .access_log_lines()
            .iter()
            .filter(|l| l.contains(&format!("listener={listener} ")))
            .filter_map(|l| access_field(l, "details").map(str::to_string))
            .collect();
        d.len() >= n
    });
    d
}

#[test]
fn peer_certificate_sans_and_subject_reach_the_filter_after_the_handshake() {
    let p = pki();
    let ts = format!(
        "name: envoy.transport_sockets.tls
typed_config:
  \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
{}",
        indented(&tls_context(true), 2)
    );
    let gate = |name: &str| {
        Listener::tcp(
            name,
            "net_tls_fixture",
            "peer_gate",
            "spiffe://jisr.test/",
            "echo",
        )
        .transport_socket(&ts)
    };
    let echo = echo_server();
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(gate("mtls").listener_filter(
                "- name: envoy.filters.listener.tls_inspector
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
",
            ))
            .listener(gate("bare"))
            .cluster(Cluster::new("echo", echo)),
    );
    let port = envoy.listener_port("mtls").to_string();
    let ca = path(&p.ca);

    // The client certificate's SANs and subject, as Envoy reports them, once the first bytes
    // came; before them (in `on_new_connection`, before the handshake) the connection is TLS
    // but no peer certificate is known yet.
    let ok = run_py(&[
        "tls",
        &port,
        ca,
        "server.test",
        path(&p.client.0),
        path(&p.client.1),
        "ping\n",
        "ping\n",
    ]);
    assert_eq!(
        ok["got"].as_str().unwrap(),
        "+OK tls=true sni=server.test dns=client.test,alt.client.test \
         uri=spiffe://jisr.test/ns/payments/sa/client subject=CN=client-7,OU=payments,O=jisr-e2e \
         | before tls=true sni=server.test dns=- uri=- subject=-\r\nping\n",
        "{ok}"
    );
    assert!(!ok["closed"].as_bool().unwrap(), "{ok}");

    // A certificate from the same CA without the wanted URI SAN: refused by the filter.
    let rogue = run_py(&[
        "tls",
        &port,
        ca,
        "server.test",
        path(&p.rogue.0),
        path(&p.rogue.1),
        "ping\n",
        "",
    ]);
    assert_eq!(
        rogue["got"].as_str().unwrap(),
        "-ERR tls=true sni=server.test dns=rogue.test uri=spiffe://other.test/sa/rogue \
         subject=CN=rogue\r\n",
        "{rogue}"
    );
    assert!(rogue["closed"].as_bool().unwrap(), "{rogue}");

    // No client certificate (allowed by the TLS context): no SANs, no subject, refused.
    let anon = run_py(&["tls", &port, ca, "server.test", "-", "-", "ping\n", ""]);
    assert_eq!(
        anon["got"].as_str().unwrap(),
        "-ERR tls=true sni=server.test dns=- uri=- subject=-\r\n",
        "{anon}"
    );
    assert!(anon["closed"].as_bool().unwrap(), "{anon}");

    // The server name is what `tls_inspector` found: without that listener filter there is
    // none, though the handshake had one.
    let bare = run_py(&[
        "tls",
        &envoy.listener_port("bare").to_string(),
        ca,
        "server.test",
        path(&p.client.0),
        path(&p.client.1),
        "ping\n",
        "ping\n",
    ]);
    assert!(
        bare["got"]
            .as_str()
            .unwrap()
            .starts_with("+OK tls=true sni=- dns=client.test,alt.client.test "),
        "{bare}"
    );

    let d = details(&envoy, "mtls", 3);
    assert_eq!(
        d.iter().filter(|d| *d == "peer_gate_denied").count(),
        2,
        "{d:?}"
    );
}

#[test]
fn starttls_switches_the_client_connection_to_tls_after_the_answer() {
    let p = pki();
    let ts = format!(
        "name: envoy.transport_sockets.starttls
typed_config:
  \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.starttls.v3.StartTlsConfig
  cleartext_socket_config: {{}}
  tls_socket_config:
{}",
        indented(&tls_context(false), 4)
    );
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::tcp("starttls", "net_tls_fixture", "starttls", "", "echo")
                    .transport_socket(&ts),
            )
            .listener(
                Listener::tcp("at_once", "net_tls_fixture", "starttls", "at_once", "echo")
                    .transport_socket(&ts),
            )
            .listener(
                Listener::tcp("no_hold", "net_tls_fixture", "starttls", "no_hold", "echo")
                    .transport_socket(&ts),
            )
            .cluster(Cluster::new("echo", echo_server())),
    );
    let port = envoy.listener_port("starttls").to_string();

    if jisr_e2e::envoy_minor() < (1, 40) {
        // No `start_downstream_secure_transport` before 1.40: `Unsupported`, after the answer
        // the fixture already sent.
        let r = run_py(&["plain", &port, "STARTTLS\r\n", ""]);
        assert_eq!(
            r["got"].as_str().unwrap(),
            "OK\r\n-ERR unsupported\r\n",
            "{r}"
        );
        assert!(r["closed"].as_bool().unwrap(), "{r}");
        let d = details(&envoy, "starttls", 1);
        assert_eq!(d, ["starttls_unsupported"]);
        return;
    }

    let up = run_py(&["starttls", &port, path(&p.ca)]);
    assert_eq!(up["pre"].as_str().unwrap(), "OK\r\n", "{up}");
    assert_eq!(up["version"].as_str().unwrap(), "TLSv1.3", "{up}");
    assert_eq!(
        up["first"].as_str().unwrap(),
        "is_tls false->true\r\n",
        "{up}"
    );
    assert_eq!(up["post"].as_str().unwrap(), "secret over tls\n", "{up}");
    assert_eq!(up["post2"].as_str().unwrap(), "second\n", "{up}");

    // A client that never upgrades stays in clear text: its first line goes on to the echo.
    let plain = run_py(&["plain", &port, "HELLO\r\nplain data\n"]);
    assert_eq!(
        plain["got"].as_str().unwrap(),
        "HELLO\r\nplain data\n",
        "{plain}"
    );
    assert!(!plain["closed"].as_bool().unwrap(), "{plain}");

    // Switching right after `send_downstream`: Envoy had not written the answer yet, so it
    // went through TLS, held until a handshake the waiting client would never start.
    let eager = run_py(&[
        "eager",
        &envoy.listener_port("at_once").to_string(),
        path(&p.ca),
    ]);
    assert_eq!(eager["pre"].as_str().unwrap(), "", "{eager}");
    assert_eq!(
        eager["inner"].as_str().unwrap(),
        "OK\r\nis_tls false->true\r\n",
        "{eager}"
    );

    // Reading left on while the answer is written: the client's handshake reaches the filter
    // as clear-text bytes before the switch, and the TLS socket never sees it.
    let lost = run_py(&[
        "starttls",
        &envoy.listener_port("no_hold").to_string(),
        path(&p.ca),
        "1",
    ]);
    assert_eq!(lost["pre"].as_str().unwrap(), "OK\r\n", "{lost}");
    // Python 3.10+ names `socket.timeout` `TimeoutError`.
    assert!(
        matches!(lost["handshake"].as_str(), Some("TimeoutError" | "timeout")),
        "{lost}"
    );
    assert!(!envoy.log().contains("panicked"));
}

/// The Python STARTTLS upstream, killed on drop.
struct StartTlsUpstream {
    child: Child,
    port: u16,
}

impl StartTlsUpstream {
    fn start() -> StartTlsUpstream {
        let p = pki();
        let mut child = Command::new(python())
            .arg("-c")
            .arg(PEERS_PY)
            .args(["upstream", path(&p.server.0), path(&p.server.1)])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the python upstream");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the upstream prints its port");
        StartTlsUpstream { child, port }
    }
}

impl Drop for StartTlsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn starttls_switches_the_upstream_connection_to_tls_after_its_answer() {
    let p = pki();
    let upstream = StartTlsUpstream::start();
    let ts = format!(
        "transport_socket:
  name: envoy.transport_sockets.starttls
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.starttls.v3.UpstreamStartTlsConfig
    cleartext_socket_config: {{}}
    tls_socket_config:
      sni: server.test
      common_tls_context:
        validation_context:
          trusted_ca: {{ filename: \"{}\" }}
",
        p.ca.display()
    );
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::tcp(
                "up",
                "net_tls_fixture",
                "upstream_starttls",
                "",
                "tls_upstream",
            ))
            .listener(Listener::tcp(
                "early",
                "net_tls_fixture",
                "early_send",
                "",
                "echo",
            ))
            .cluster(Cluster::new("tls_upstream", upstream.port).raw_yaml(&ts))
            .cluster(Cluster::new("echo", echo_server())),
    );
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("up"))).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"hello\n").unwrap();
    // TLS 1.2: the most Envoy's upstream TLS offers by default.
    let want = b"[TLSv1.2 sni=server.test] hello\n";
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < want.len() {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    drop(s);

    // Why the fixture waits for the greeting: bytes sent upstream in `on_new_connection`,
    // before `tcp_proxy` has its connection, never reach the server (the echo returns only
    // the client's bytes, in order).
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("early"))).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    for part in [&b"x\n"[..], b"y\n"] {
        s.write_all(part).unwrap();
        while !got.ends_with(part) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), "x\ny\n");
    assert!(!envoy.log().contains("panicked"));
}
