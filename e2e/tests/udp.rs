//! UDP listener filters in real Envoy: `examples/dns_answer` before `udp_proxy` and a DNS
//! resolver, asked by a real DNS client (dnspython): configured names are answered by the
//! filter, the rest by the resolver, garbage is dropped or gets FORMERR, and a refused config
//! never lets a datagram through.

use jisr_e2e::dns::{RESOLVER_ADDRESS, RESOLVER_TTL, Resolver, dns_queries, question_name};
use jisr_e2e::{Cluster, Envoy, EnvoyConfig, Listener, envoy_minor};
use serde_json::Value;
use std::net::UdpSocket;
use std::time::Duration;

const CONFIG: &str = "ttl 30\ngate.internal 10.0.0.1\ndb.internal 10.0.0.2 10.0.0.3\n";

fn dns_envoy(resolver: &Resolver, config: &str) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::udp(
                "dns",
                "dns_answer",
                "dns_answer",
                config,
                "resolver",
            ))
            .cluster(Cluster::new("resolver", resolver.port())),
    )
}

fn addresses(r: &Value) -> Vec<(String, u64)> {
    r["answers"]
        .as_array()
        .unwrap_or_else(|| panic!("no answers in {r}"))
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap().to_string(),
                a["ttl"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Sends `bytes` to the listener from a fresh socket; the answer, if one came within 700 ms.
fn raw(port: u16, bytes: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    s.send_to(bytes, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 2048];
    s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

/// The stat of the filter's counter `name` (Envoy puts module metrics under a prefix that
/// depends on the version; the name ends the same way).
fn counter(envoy: &Envoy, name: &str) -> Option<u64> {
    let suffix = format!("dns_answer.{name}: ");
    envoy
        .stats()
        .lines()
        .find(|l| l.starts_with("dynamicmodulescustom.") && l.contains(&suffix))
        .and_then(|l| l.rsplit(": ").next()?.trim().parse().ok())
}

#[test]
fn configured_names_come_from_the_filter_and_the_rest_from_the_resolver() {
    let resolver = Resolver::start();
    let envoy = dns_envoy(&resolver, CONFIG);
    let port = envoy.listener_port("dns");
    let r = dns_queries(
        port,
        &[
            ("gate.internal", "A"),
            ("DB.Internal.", "A"),
            ("example.com", "A"),
            ("gate.internal", "AAAA"),
            ("other.internal", "A"),
        ],
    );
    let who = |i: usize| format!("{}", r[i]);
    // The filter: authoritative, its addresses, its TTL.
    assert_eq!(r[0]["rcode"], "NOERROR", "{}", who(0));
    assert_eq!(r[0]["aa"], true, "{}", who(0));
    assert_eq!(addresses(&r[0]), [("10.0.0.1".to_string(), 30)]);
    assert_eq!(
        addresses(&r[1]),
        [("10.0.0.2".to_string(), 30), ("10.0.0.3".to_string(), 30)],
        "{}",
        who(1)
    );
    // Another type of a configured name: the filter's "no data".
    assert_eq!(r[3]["rcode"], "NOERROR", "{}", who(3));
    assert_eq!(r[3]["aa"], true, "{}", who(3));
    assert!(addresses(&r[3]).is_empty(), "{}", who(3));
    // The resolver, through udp_proxy: its address and TTL, not authoritative.
    for i in [2, 4] {
        assert_eq!(r[i]["rcode"], "NOERROR", "{}", who(i));
        assert_eq!(r[i]["aa"], false, "{}", who(i));
        assert_eq!(
            addresses(&r[i]),
            [(RESOLVER_ADDRESS.to_string(), u64::from(RESOLVER_TTL))],
            "{}",
            who(i)
        );
    }
    // Only the names the filter passed reached the resolver.
    let seen: Vec<String> = resolver
        .wait_seen(2, Duration::from_secs(2))
        .iter()
        .filter_map(|q| question_name(q))
        .collect();
    assert_eq!(seen, ["example.com", "other.internal"]);
    // The filter's counters, in Envoy's stats.
    let start = std::time::Instant::now();
    while counter(&envoy, "answered") != Some(3) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        counter(&envoy, "answered"),
        Some(3),
        "{}",
        envoy
            .stats()
            .lines()
            .filter(|l| l.contains("dns_answer"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(counter(&envoy, "passed"), Some(2));
}

#[test]
fn garbage_is_dropped_or_answered_with_formerr() {
    let resolver = Resolver::start();
    let envoy = dns_envoy(&resolver, CONFIG);
    let port = envoy.listener_port("dns");
    // Shorter than a DNS header: dropped (nothing to answer with), never forwarded.
    assert_eq!(raw(port, b"hello"), None);
    assert_eq!(raw(port, b""), None);
    // A response sent to the listener: dropped.
    let mut resp = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
    resp.extend_from_slice(&[4, b'g', b'a', b't', b'e', 0, 0, 1, 0, 1]);
    assert_eq!(raw(port, &resp), None);
    // A header, then a truncated question: FORMERR with the query's id.
    let bad = [
        0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 9, b'g', b'a',
    ];
    assert_eq!(
        raw(port, &bad),
        Some(vec![0xab, 0xcd, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0])
    );
    // A pointer loop in the question: FORMERR too.
    let mut looped = vec![0x00, 0x07, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(raw(port, &looped).map(|a| a[3] & 0xf), Some(1));
    // None of it reached the resolver, and Envoy answers as before.
    assert!(resolver.seen().is_empty(), "{:?}", resolver.seen());
    let r = dns_queries(port, &[("gate.internal", "A"), ("example.com", "A")]);
    assert_eq!(addresses(&r[0]), [("10.0.0.1".to_string(), 30)]);
    assert_eq!(
        addresses(&r[1]),
        [(RESOLVER_ADDRESS.to_string(), u64::from(RESOLVER_TTL))]
    );
    envoy.assert_ready();
}

#[test]
fn a_refused_config_never_lets_a_datagram_pass() {
    let resolver = Resolver::start();
    // No names: the filter's config is refused.
    let cfg = EnvoyConfig::new()
        .listener(Listener::udp(
            "dns",
            "dns_answer",
            "dns_answer",
            "# nothing here",
            "resolver",
        ))
        .cluster(Cluster::new("resolver", resolver.port()));
    let refusal = "jisr: udp filter 'dns_answer': no names";
    if envoy_minor() >= (1, 40) {
        // Envoy 1.40 refuses a UDP listener filter whose module config is null: it does not
        // start.
        let (_, log) = Envoy::start_expect_failure(&cfg);
        assert!(log.contains(refusal), "{log}");
        assert!(
            log.contains("Failed to initialize dynamic module UDP listener filter"),
            "{log}"
        );
        return;
    }
    // Older Envoys run the listener without the module's config: jisr's filter for it drops
    // every datagram, so none reaches the resolver.
    let envoy = Envoy::start(&cfg);
    assert!(envoy.log().contains(refusal), "{}", envoy.log());
    let r = dns_queries(envoy.listener_port("dns"), &[("example.com", "A")]);
    assert!(r[0]["error"].is_string(), "no answer expected: {}", r[0]);
    assert!(
        resolver.wait_seen(1, Duration::from_millis(500)).is_empty(),
        "a datagram passed the refused filter"
    );
}

/// A UDP echo server on a free port: each datagram goes back to its sender.
fn udp_echo() -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind echo");
    let port = sock.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    port
}

#[test]
fn a_replaced_datagram_reaches_upstream_an_answer_sees_both_addresses_a_panic_drops() {
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::udp("probe", "udp_fixture", "probe", "", "echo"))
            .cluster(Cluster::new("echo", udp_echo())),
    );
    let port = envoy.listener_port("probe");
    // Passed untouched through udp_proxy to the echo server and back.
    assert_eq!(raw(port, b"plain").as_deref(), Some(&b"plain"[..]));
    // Replaced before udp_proxy: the echo server got (and sent back) the new bytes.
    assert_eq!(raw(port, b"up:shout").as_deref(), Some(&b"SHOUT"[..]));
    // Answered by the filter from the listener's socket, with the client's real address.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.send_to(b"ask", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 512];
    let (n, from) = s.recv_from(&mut buf).expect("an answer");
    assert_eq!(from.port(), port, "sent from the listener's socket");
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    let want = format!(
        "peer={} local=127.0.0.1:{port} worker=",
        s.local_addr().unwrap()
    );
    assert!(line.starts_with(&want), "{line} vs {want}");
    // A panicking handler: the datagram is dropped (no echo), Envoy logs it and goes on.
    assert_eq!(raw(port, b"boom"), None);
    assert!(
        envoy.wait_for_log("udp fixture exploded", Duration::from_secs(5)),
        "{}",
        envoy.log()
    );
    assert!(
        envoy
            .log()
            .contains("jisr: udp filter 'probe': handler panicked")
    );
    assert_eq!(raw(port, b"after").as_deref(), Some(&b"after"[..]));
    envoy.assert_ready();
}
