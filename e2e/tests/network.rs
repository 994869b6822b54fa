//! Network (L4) filters in real Envoy: `examples/tcp_gate.rs` in front of `tcp_proxy` and a
//! TCP echo server: what reaches upstream, what the client gets back, close details, and a
//! handler that relays both directions, and a raw network filter (`net_fixture.raw_*`).itself.

use jisr_e2e::{Cluster, Envoy, EnvoyConfig, Listener, access_field, echo_server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

fn gate_envoy(echo: u16) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::tcp(
                "gate",
                "tcp_gate",
                "tcp_gate",
                "alpha\nbeta",
                "echo",
            ))
            .listener(Listener::tcp(
                "watch",
                "tcp_gate",
                "tcp_gate",
                "watch\nalpha",
                "echo",
            ))
            .cluster(Cluster::new("echo", echo)),
    )
}

/// Reads until `want` bytes arrived (or the peer closed, or 5 s passed).
fn read_n(s: &mut TcpStream, want: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want && start.elapsed() < WAIT {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    out
}

/// Reads until the peer closes (or 5 s passed).
fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < WAIT {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => {}
        }
    }
    (out, false)
}

#[test]
fn a_good_key_opens_the_connection_and_the_rest_flows_untouched() {
    let envoy = gate_envoy(echo_server());
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("gate"))).unwrap();
    // The AUTH line in pieces, with the first payload bytes in the same write as its end.
    s.write_all(b"AU").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"TH be").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"ta\r\nhello ").unwrap();
    assert_eq!(read_n(&mut s, 11), b"+OK\r\nhello ");
    // The handler returned: Envoy passes the rest on its own.
    let big = vec![b'z'; 300_000];
    s.write_all(&big).unwrap();
    let back = read_n(&mut s, big.len());
    assert_eq!(back.len(), big.len());
    assert!(back.iter().all(|b| *b == b'z'));
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (rest, closed) = read_to_close(&mut s);
    assert!(rest.is_empty() && closed);
}

#[test]
fn a_bad_key_gets_an_error_and_the_connection_closed_with_details() {
    let envoy = gate_envoy(echo_server());
    let port = envoy.listener_port("gate");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"AUTH gamma\r\nsecret payload").unwrap();
    let (got, closed) = read_to_close(&mut s);
    assert_eq!(got, b"-ERR denied\r\n", "nothing of the payload came back");
    assert!(closed, "Envoy closed the connection");
    // A first line that never ends is bounded: 256 bytes, then an error.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&[b'A'; 1000]).unwrap();
    let (got, closed) = read_to_close(&mut s);
    assert_eq!(got, b"-ERR first line too long\r\n");
    assert!(closed);
    let start = Instant::now();
    let details = loop {
        let lines = envoy.access_log_lines();
        let d: Vec<String> = lines
            .iter()
            .filter(|l| l.contains("listener=gate"))
            .filter_map(|l| access_field(l, "details").map(str::to_string))
            .collect();
        if d.len() >= 2 || start.elapsed() > WAIT {
            break d;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        details.iter().any(|d| d == "tcp_gate_denied"),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d == "tcp_gate_line_too_long"),
        "{details:?}"
    );
    // Counted by the filter's own metric, defined at config load (no labels).
    assert_eq!(
        envoy.counter("dynamicmodulescustom.tcp_gate_denied"),
        Some(1),
        "{}",
        envoy
            .stats()
            .lines()
            .filter(|l| l.contains("dynamicmodules"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_handler_can_relay_both_directions_itself() {
    let envoy = gate_envoy(echo_server());
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("watch"))).unwrap();
    s.write_all(b"AUTH alpha\nping").unwrap();
    assert_eq!(read_n(&mut s, 11), b"+OK\r\n> ping");
    s.write_all(b"pong").unwrap();
    assert_eq!(read_n(&mut s, 6), b"> pong");
    // The client half-closes: the handler ends upstream, the echo server ends back, and the
    // handler ends toward the client.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (rest, closed) = read_to_close(&mut s);
    assert!(rest.is_empty() && closed, "{rest:?} {closed}");
    assert!(!envoy.log().contains("panicked"));
}

#[test]
fn a_handler_asks_an_http_service_before_the_connection_goes_on() {
    let authz = jisr_e2e::Upstream::start("authz");
    let echo = echo_server();
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::tcp(
                "asks",
                "net_callout_fixture",
                "net_authz",
                "authz",
                "echo",
            ))
            .listener(Listener::tcp(
                "nowhere",
                "net_callout_fixture",
                "net_authz",
                "no_such_cluster",
                "echo",
            ))
            .cluster(Cluster::new("echo", echo))
            .cluster(Cluster::new("authz", authz.port())),
    );
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("asks"))).unwrap();
    // Sent before the answer: held, then passed once the handler returns.
    s.write_all(b"hello").unwrap();
    // The answer line, then the held bytes echoed back (one read may bring both).
    let got = read_until(&mut s, b"hello");
    assert!(
        got.starts_with(b"ok {") && got.ends_with(b"\nhello"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let seen = authz.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/check");
    assert!(
        seen[0]
            .headers
            .iter()
            .any(|(k, v)| k == "x-peer" && v == "127.0.0.1"),
        "{:?}",
        seen[0].headers
    );
    // An unknown cluster: the callout cannot start, the connection is reset.
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("nowhere"))).unwrap();
    let _ = s.write_all(b"hello");
    let (got, closed) = read_to_close(&mut s);
    assert!(got.is_empty() && closed);
    let start = Instant::now();
    while start.elapsed() < WAIT
        && !envoy
            .access_log_lines()
            .iter()
            .any(|l| l.contains("authz_failed"))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        envoy
            .access_log_lines()
            .iter()
            .any(|l| l.contains("listener=nowhere") && l.contains("authz_failed")),
        "{:?}",
        envoy.access_log_lines()
    );
}

#[test]
fn close_details_from_the_client_cannot_forge_an_access_log_line() {
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::tcp(
                "details",
                "net_callout_fixture",
                "echo_details",
                "",
                "echo",
            ))
            .cluster(Cluster::new("echo", echo_server())),
    );
    let port = envoy.listener_port("details");
    let closes = |line: &[u8]| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(line).unwrap();
        let (got, closed) = read_to_close(&mut s);
        assert!(got.is_empty() && closed, "{got:?} {closed}");
    };
    closes(b"client_said_bye\n");
    // The payload would end the access-log line and start a forged one.
    closes(b"x\r\nlistener=forged details=forged\n");
    closes(b"reset nul\0byte\n");
    closes(b"two words=forged\n");
    let mut details = Vec::new();
    let all_in = jisr_e2e::wait_until(WAIT, || {
        details = envoy
            .access_log_lines()
            .iter()
            .filter(|l| l.contains("listener=details"))
            .filter_map(|l| access_field(l, "details").map(str::to_string))
            .collect();
        details.len() >= 4
    });
    assert!(all_in, "{details:?}");
    details.sort();
    assert_eq!(
        details,
        [
            "client_said_bye",
            "jisr_invalid_close_details",
            "jisr_invalid_close_details",
            "jisr_invalid_close_details",
        ],
        "{:?}",
        envoy.access_log_lines()
    );
    let lines = envoy.access_log_lines();
    assert!(
        !lines.iter().any(|l| l.contains("forged")),
        "a forged line or field: {lines:?}"
    );
    assert!(
        !envoy.log().contains("listener=forged"),
        "the raw bytes reached Envoy's output"
    );
    // Envoy raised the close event inside each close call: right after it, the handler saw
    // the connection closed and a read ended at once.
    let log = envoy.log();
    assert_eq!(
        log.matches("echo_details: after close: closed=true read=0")
            .count(),
        4,
        "{log}"
    );
    // The reason is in Envoy's log, escaped.
    assert!(
        envoy
            .log()
            .contains("close details refused (close details: byte 0x0d at 1 is not allowed)"),
        "{}",
        envoy.log()
    );
}

/// Reads until the bytes read end with `tail` (or 5 s passed).
fn read_until(s: &mut TcpStream, tail: &[u8]) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(tail) && start.elapsed() < WAIT {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    out
}

/// The established TCP connections toward `port` on 127.0.0.1 (Envoy's upstream side), with
/// the kernel's active timer of each (`/proc/net/tcp`: 0 none, 1 retransmit, 2 keepalive).
fn upstream_timers(port: u16) -> Vec<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let want = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // rem_address, state 01 = ESTABLISHED, tr:tm->when
            (f.get(2) == Some(&want.as_str()) && f.get(3) == Some(&"01"))
                .then(|| u32::from_str_radix(f[5].split(':').next()?, 16).ok())
                .flatten()
        })
        .collect()
}

#[test]
fn a_handler_reads_the_upstream_host_and_sets_upstream_socket_options_and_limits() {
    let (echo_a, echo_b) = (echo_server(), echo_server());
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::tcp(
                "keepalive",
                "net_callout_fixture",
                "conn_info",
                "keepalive",
                "echo_a",
            ))
            .listener(Listener::tcp(
                "plain",
                "net_callout_fixture",
                "conn_info",
                "",
                "echo_b",
            ))
            .cluster(Cluster::new("echo_a", echo_a))
            .cluster(Cluster::new("echo_b", echo_b)),
    );
    let ask = |listener: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port(listener))).unwrap();
        s.write_all(b"hi").unwrap();
        let got = read_until(&mut s, b"\n");
        (s, String::from_utf8_lossy(&got).into_owned())
    };
    let (mut a, line_a) = ask("keepalive");
    let peer = a.local_addr().unwrap();
    // Envoy runs two workers here; either may take the connection.
    assert!(
        line_a.contains(" worker=0 ") || line_a.contains(" worker=1 "),
        "{line_a}"
    );
    let line_a = line_a.replace(" worker=1 ", " worker=0 ");
    assert_eq!(
        line_a,
        format!(
            "hiupstream=Some(127.0.0.1:{echo_a}) hostname=Some(\"\") cluster=Some(\"echo_a\") \
             peer=Some({peer}) direct=Some({peer}) worker=0 limit=65536 \
             who=Some(\"conn_info\") n=Some(42.5) ok=Some(true) n_as_bool=None\n"
        )
    );
    let (b, line_b) = ask("plain");
    assert!(
        line_b.contains(&format!("upstream=Some(127.0.0.1:{echo_b})"))
            && line_b.contains("cluster=Some(\"echo_b\")")
            // Envoy's default `per_connection_buffer_limit_bytes`.
            && line_b.contains("limit=1048576"),
        "{line_b}"
    );
    // The returned handler let the rest flow.
    a.write_all(b"more").unwrap();
    assert_eq!(read_n(&mut a, 4), b"more");
    // SO_KEEPALIVE reached the upstream socket tcp_proxy made: its keepalive timer runs once
    // the connection is idle; the other listener's upstream connection has none.
    let mut timers = (Vec::new(), Vec::new());
    let idle = jisr_e2e::wait_until(WAIT, || {
        timers = (upstream_timers(echo_a), upstream_timers(echo_b));
        timers.0 == [2] && timers.1 == [0]
    });
    assert!(
        idle,
        "timers (keepalive listener, plain listener): {timers:?}"
    );
    drop((a, b));
}

/// A filter that cannot be made (its factory panics) refuses its connection: jisr answers
/// Envoy's `filter_new` with null, and Envoy closes the connection before any byte reaches the
/// upstream or comes back (unlike UDP listener filters, where a null filter lets datagrams
/// pass: `udp::a_refused_config_never_lets_a_datagram_pass`).
#[test]
fn a_network_filter_that_cannot_be_made_refuses_its_connection() {
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::tcp(
                "refuse",
                "net_fixture",
                "raw_refuse",
                "",
                "echo",
            ))
            .listener(Listener::tcp("ctl", "net_fixture", "raw_ctl", "", "echo"))
            .cluster(Cluster::new("echo", echo_server())),
    );
    for i in 0..3 {
        let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("refuse"))).unwrap();
        // The write may fail: Envoy may have closed the connection already.
        let _ = s.write_all(format!("secret {i}\n").as_bytes());
        let (rest, closed) = read_to_close(&mut s);
        assert!(
            rest.is_empty() && closed,
            "connection {i}: echoed {:?}, closed {closed}\n{}",
            String::from_utf8_lossy(&rest),
            envoy.log()
        );
    }
    assert!(
        envoy.wait_for_log("raw_refuse: no filter for this connection", WAIT),
        "{}",
        envoy.log()
    );
    // Other listeners keep serving.
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("ctl"))).unwrap();
    s.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut s, 4), b"ping");
}

#[test]
fn a_raw_network_filter_forwards_closes_and_fails_closed() {
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::tcp(
                "lines",
                "net_fixture",
                "raw_lines",
                "",
                "echo",
            ))
            .listener(Listener::tcp("ctl", "net_fixture", "raw_ctl", "", "echo"))
            .cluster(Cluster::new("echo", echo_server())),
    );
    // Each read is copied out of Envoy's buffer, drained and injected upstream by the filter.
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("lines"))).unwrap();
    for i in 0..20 {
        let msg = format!("line {i}\n");
        s.write_all(msg.as_bytes()).unwrap();
        assert_eq!(read_n(&mut s, msg.len()), msg.as_bytes());
    }
    // The client's half-close goes on with the last injection.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (rest, closed) = read_to_close(&mut s);
    assert!(rest.is_empty() && closed, "{rest:?} {closed}");

    // A close from inside the read hook: the close event reaches the filter once that hook
    // returned (not lost while the filter was busy).
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("ctl"))).unwrap();
    s.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut s, 4), b"ping");
    s.write_all(b"QUIT").unwrap();
    let (rest, closed) = read_to_close(&mut s);
    assert!(rest.is_empty() && closed, "{rest:?} {closed}");
    assert!(
        envoy.wait_for_log("raw_ctl: LocalClose (inside close: false)", WAIT),
        "{}",
        envoy.log()
    );

    // A panic in a hook resets the connection; Envoy keeps serving.
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("ctl"))).unwrap();
    s.write_all(b"BOOM").unwrap();
    let (rest, closed) = read_to_close(&mut s);
    assert!(rest.is_empty() && closed, "{rest:?} {closed}");
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port("ctl"))).unwrap();
    s.write_all(b"still here").unwrap();
    assert_eq!(read_n(&mut s, 10), b"still here");
    assert!(
        envoy
            .log()
            .contains("raw network filter 'raw_ctl' panicked")
    );

    let start = Instant::now();
    let details = loop {
        let d: Vec<String> = envoy
            .access_log_lines()
            .iter()
            .filter(|l| l.contains("listener=ctl"))
            .filter_map(|l| access_field(l, "details").map(str::to_string))
            .collect();
        if d.len() >= 2 || start.elapsed() > WAIT {
            break d;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(details.iter().any(|d| d == "raw_ctl_quit"), "{details:?}");
    assert!(
        details.iter().any(|d| d == "jisr_network_handler_panic"),
        "{details:?}"
    );
}
