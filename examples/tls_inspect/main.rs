//! A listener filter in the manner of Envoy's `tls_inspector` and `proxy_protocol` together:
//! it reads an optional PROXY protocol header (version 1 or 2) and the TLS ClientHello that
//! follows, and sets what filter-chain matching sees.
//!
//! - A PROXY header is drained from the socket (the connection never sees it); its source
//!   becomes the client's address and its destination the restored local address.
//! - A ClientHello sets the transport protocol `tls`, the server name (SNI) and the ALPN list;
//!   they are also put in the dynamic metadata under `tls_inspect` (`sni`, `alpn` comma-joined,
//!   `transport`, `proxy` = `v1`/`v2`) for access logs.
//! - Bytes that are not a TLS handshake record (plain text, another protocol, random bytes)
//!   set the transport protocol `raw_buffer`: the socket goes to the chain for plain traffic.
//! - A broken PROXY header, a TLS record whose ClientHello is malformed, or a hello that does
//!   not fit in the filter's 16 KiB closes the socket, with termination details
//!   `tls_inspect_bad_proxy_header`, `tls_inspect_bad_client_hello` or
//!   `tls_inspect_client_hello_too_large` (and the reason in the metadata key `error`).
//!
//! Both parsers are bounded (see `client_hello.rs` and `proxy_header.rs`); a client that sends
//! a prefix and then nothing is left to the listener's `listener_filters_timeout`.
//!
//! The filter config may be `hold_ms=<n>`: the handler then waits `n` ms after deciding and
//! before letting the socket go on (or closing it), as a filter awaiting a lookup would; the
//! socket resumes through Envoy's scheduler.

mod client_hello;
mod proxy_header;

use client_hello::Hello;
use jisr::listener::Socket;
use jisr::{ConfigError, ConfigHandle, Registry};
use proxy_header::Proxy;
use std::time::Duration;

/// How many bytes Envoy peeks: a PROXY header and a ClientHello in one TLS record.
const MAX_READ: usize = 16 << 10;
const NS: &str = "tls_inspect";

/// The filter config.
struct Inspect {
    /// How long to wait after deciding.
    hold: Duration,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Inspect, ConfigError> {
    let text = cfg.config_str()?.trim();
    let hold = match text.strip_prefix("hold_ms=") {
        _ if text.is_empty() => 0,
        Some(ms) => ms
            .parse()
            .map_err(|e| ConfigError::new(format!("hold_ms: {e}")))?,
        None => return Err(ConfigError::new("expected nothing or hold_ms=<n>")),
    };
    Ok(Inspect {
        hold: Duration::from_millis(hold),
    })
}

async fn inspect(cfg: &Inspect, mut s: Socket<'_>) {
    decide(&mut s).await;
    if !cfg.hold.is_zero() {
        // A close already took effect; a decision to go on waits.
        jisr::time::sleep(cfg.hold).await;
    }
}

async fn decide(s: &mut Socket<'_>) {
    let mut buf = [0u8; MAX_READ];
    let mut proxy_done = false;
    loop {
        let p = s.peek(&mut buf).await;
        let bytes = &buf[..p.len()];
        if !proxy_done {
            match proxy_header::parse(bytes) {
                Proxy::NeedMore if !p.is_end() => continue,
                Proxy::NeedMore => return fail(s, "truncated PROXY header", "proxy"),
                Proxy::Invalid(why) => return fail(s, why, "proxy"),
                Proxy::Absent => proxy_done = true,
                Proxy::Header {
                    len,
                    version,
                    addrs,
                } => {
                    if let Some((src, dst)) = addrs {
                        s.set_peer_addr(src);
                        s.restore_local_addr(dst);
                    }
                    s.set_metadata(NS, "proxy", if version == 1 { "v1" } else { "v2" });
                    if !s.drain(len) {
                        return fail(s, "could not drain the PROXY header", "proxy");
                    }
                    proxy_done = true;
                    continue; // what follows is peeked again from the new start
                }
            }
        }
        match client_hello::parse(bytes) {
            Hello::NeedMore if !p.is_end() => continue,
            Hello::NeedMore if bytes.len() >= s.max_read_bytes() => {
                s.set_metadata(NS, "error", "ClientHello larger than the peek buffer");
                s.close("tls_inspect_client_hello_too_large");
                return;
            }
            Hello::NeedMore => return fail(s, "truncated ClientHello", "tls"),
            Hello::NotTls => {
                s.set_transport_protocol("raw_buffer");
                s.set_metadata(NS, "transport", "raw_buffer");
                return;
            }
            Hello::Invalid(why) => return fail(s, why, "tls"),
            Hello::Unsupported(why) => {
                // Well-formed TLS this parser does not read: TLS without SNI or ALPN.
                s.set_transport_protocol("tls");
                s.set_metadata(NS, "transport", "tls");
                s.set_metadata(NS, "error", why);
                return;
            }
            Hello::Found(hello) => {
                s.set_transport_protocol("tls");
                s.set_metadata(NS, "transport", "tls");
                if let Some(name) = hello.server_name {
                    let mut lower = [0u8; 255];
                    let lower = &mut lower[..name.len()];
                    lower.copy_from_slice(name.as_bytes());
                    lower.make_ascii_lowercase();
                    let lower = core::str::from_utf8(lower).unwrap_or(name);
                    s.set_server_name(lower);
                    s.set_metadata(NS, "sni", lower);
                }
                let mut names = [&[][..]; 16];
                let mut n = 0;
                for name in hello.alpn().take(names.len()) {
                    names[n] = name;
                    n += 1;
                }
                if n > 0 && s.set_application_protocols(&names[..n]) {
                    let mut joined = String::new();
                    for (i, name) in names[..n].iter().enumerate() {
                        if i > 0 {
                            joined.push(',');
                        }
                        joined.push_str(&String::from_utf8_lossy(name));
                    }
                    s.set_metadata(NS, "alpn", &joined);
                }
                return;
            }
        }
    }
}

/// Closes the socket for a protocol violation in `what` (`proxy` or `tls`).
fn fail(s: &mut Socket<'_>, why: &str, what: &str) {
    s.set_metadata(NS, "error", why);
    s.close(if what == "proxy" {
        "tls_inspect_bad_proxy_header"
    } else {
        "tls_inspect_bad_client_hello"
    });
}

fn register(r: &mut Registry) {
    r.listener("tls_inspect")
        .state(load)
        .max_read_bytes(MAX_READ)
        .handle(inspect);
}

jisr::export!(register);

#[cfg(test)]
mod tests {
    use super::client_hello::tests::record;
    use super::proxy_header::tests::{v1_header, v2_header};
    use jisr::testing::{SocketOutcome, TestListenerFilter};

    fn filter() -> TestListenerFilter {
        TestListenerFilter::new(super::register, "tls_inspect", b"").unwrap()
    }

    #[test]
    fn a_hold_resumes_the_socket_through_the_scheduler() {
        assert!(TestListenerFilter::new(super::register, "tls_inspect", b"hold=1").is_err());
        let f = TestListenerFilter::new(super::register, "tls_inspect", b"hold_ms=20").unwrap();
        let mut s = f.accept();
        s.client_sends(&record(Some("alpha.test"), &[], 0));
        assert_eq!(s.outcome(), SocketOutcome::Waiting, "decided, holding");
        assert_eq!(s.server_name().as_deref(), Some("alpha.test"));
        let start = std::time::Instant::now();
        while s.outcome() == SocketOutcome::Waiting && start.elapsed().as_secs() < 5 {
            s.run_scheduled();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(s.outcome(), SocketOutcome::WentOn);
        assert!(start.elapsed() >= std::time::Duration::from_millis(10));
    }

    #[test]
    fn a_client_hello_in_pieces_sets_sni_alpn_and_tls() {
        let f = filter();
        let mut s = f.accept();
        let hello = record(Some("Beta.Test"), &[b"h2", b"http/1.1"], 100);
        for chunk in hello.chunks(7) {
            assert_eq!(s.outcome(), SocketOutcome::Waiting);
            s.client_sends(chunk);
        }
        assert_eq!(s.outcome(), SocketOutcome::WentOn);
        assert_eq!(s.server_name().as_deref(), Some("beta.test"));
        assert_eq!(s.application_protocols(), ["h2", "http/1.1"]);
        assert_eq!(s.transport_protocol().as_deref(), Some("tls"));
        assert_eq!(
            s.metadata("tls_inspect", "alpn").as_deref(),
            Some("h2,http/1.1")
        );
        assert_eq!(
            s.remaining(),
            hello,
            "the hello stays for the TLS handshake"
        );
    }

    #[test]
    fn a_proxy_header_is_drained_and_its_addresses_applied() {
        let f = filter();
        for v2 in [false, true] {
            let src = "192.0.2.10:40001".parse().unwrap();
            let dst = "198.51.100.20:8443".parse().unwrap();
            let h = if v2 {
                v2_header(src, dst, 8)
            } else {
                v1_header(src, dst)
            };
            let hello = record(Some("alpha.test"), &[], 0);
            let mut s = f.accept();
            // The header and the hello in one segment.
            s.client_sends(&[h.clone(), hello.clone()].concat());
            assert_eq!(s.outcome(), SocketOutcome::WentOn);
            assert_eq!(s.drained(), h);
            assert_eq!(s.remaining(), hello);
            assert_eq!(s.peer(), ("192.0.2.10".into(), 40001));
            assert_eq!(s.local(), ("198.51.100.20".into(), 8443, true));
            assert_eq!(s.server_name().as_deref(), Some("alpha.test"));
            let want = if v2 { "v2" } else { "v1" };
            assert_eq!(s.metadata("tls_inspect", "proxy").as_deref(), Some(want));
        }
    }

    #[test]
    fn plain_bytes_go_to_the_raw_chain_and_broken_tls_is_closed() {
        let f = filter();
        let mut s = f.accept();
        s.client_sends(b"hello there\n");
        assert_eq!(s.outcome(), SocketOutcome::WentOn);
        assert_eq!(s.transport_protocol().as_deref(), Some("raw_buffer"));
        let mut s = f.accept();
        s.client_sends(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00");
        assert_eq!(
            s.outcome(),
            SocketOutcome::Closed("tls_inspect_bad_client_hello".into())
        );
        let mut s = f.accept();
        s.client_sends(b"PROXY TCP4 nope\r\n");
        assert_eq!(
            s.outcome(),
            SocketOutcome::Closed("tls_inspect_bad_proxy_header".into())
        );
    }

    #[test]
    fn a_hello_bigger_than_the_peek_buffer_is_closed_not_waited_on() {
        let f = filter();
        let mut s = f.accept();
        // A record header announcing 16 KiB, then 16 KiB of hello that never completes.
        let mut big = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc];
        big.resize(super::MAX_READ + 100, 0);
        s.client_sends(&big);
        assert_eq!(
            s.outcome(),
            SocketOutcome::Closed("tls_inspect_client_hello_too_large".into())
        );
    }
}
