//! A bounded parser for a PROXY protocol header (version 1 text or version 2 binary, as
//! HAProxy's specification defines them) at the start of a connection.
//!
//! It never allocates and never reads past the slice it is given. Version 1 lines are at most
//! 107 bytes; a version 2 header's length is its own 16-bit field, bounded by what the caller
//! peeks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What the start of a connection says about a PROXY header.
#[derive(Debug, PartialEq, Eq)]
pub enum Proxy {
    /// A prefix of a PROXY header: more bytes are needed.
    NeedMore,
    /// No PROXY header: the connection starts with its own bytes.
    Absent,
    /// A PROXY header that breaks the specification.
    Invalid(&'static str),
    /// A complete header of `len` bytes; `addrs` are the client's and the destination's
    /// addresses (`None` for `UNKNOWN`, `LOCAL`, or a non-IP family).
    Header {
        /// The header's length, to drain.
        len: usize,
        /// 1 or 2.
        version: u8,
        /// Source (the client) and destination.
        addrs: Option<(SocketAddr, SocketAddr)>,
    },
}

const V1: &[u8] = b"PROXY ";
/// The longest version 1 header, CRLF included.
const V1_MAX: usize = 107;
const V2: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Reads a PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Proxy {
    let starts = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    if buf.is_empty() {
        return Proxy::NeedMore;
    }
    if starts(V2) {
        return if buf.len() < V2.len() {
            Proxy::NeedMore
        } else {
            v2(buf)
        };
    }
    if starts(V1) {
        return if buf.len() < V1.len() {
            Proxy::NeedMore
        } else {
            v1(buf)
        };
    }
    Proxy::Absent
}

fn v1(buf: &[u8]) -> Proxy {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        return if window.len() == V1_MAX {
            Proxy::Invalid("version 1 line too long")
        } else if window
            .iter()
            .any(|b| *b == b'\n' || !(b.is_ascii_graphic() || *b == b' ' || *b == b'\r'))
        {
            Proxy::Invalid("version 1 line has a stray byte")
        } else {
            Proxy::NeedMore
        };
    };
    let len = cr + 2;
    let Ok(line) = core::str::from_utf8(&buf[V1.len()..cr]) else {
        return Proxy::Invalid("version 1 line is not text");
    };
    let mut parts = line.split(' ');
    let family = parts.next().unwrap_or("");
    if family == "UNKNOWN" {
        return Proxy::Header {
            len,
            version: 1,
            addrs: None,
        };
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Proxy::Invalid("version 1 family"),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Proxy::Invalid("version 1 fields");
    };
    let ip = |s: &str| -> Option<IpAddr> {
        if v6 {
            s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        }
    };
    let port = |s: &str| -> Option<u16> {
        let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
        let no_leading_zero = s == "0" || !s.starts_with('0');
        if digits && no_leading_zero {
            s.parse().ok()
        } else {
            None
        }
    };
    match (ip(src), ip(dst), port(sport), port(dport)) {
        (Some(s), Some(d), Some(sp), Some(dp)) => Proxy::Header {
            len,
            version: 1,
            addrs: Some((SocketAddr::new(s, sp), SocketAddr::new(d, dp))),
        },
        _ => Proxy::Invalid("version 1 address or port"),
    }
}

fn v2(buf: &[u8]) -> Proxy {
    let Some(head) = buf.get(..16) else {
        return Proxy::NeedMore;
    };
    let (ver_cmd, fam) = (head[12], head[13]);
    if ver_cmd >> 4 != 2 {
        return Proxy::Invalid("version 2 version");
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Proxy::Invalid("version 2 command"),
    };
    let len = 16 + usize::from(u16::from_be_bytes([head[14], head[15]]));
    let Some(body) = buf.get(16..len) else {
        return Proxy::NeedMore;
    };
    let header = |addrs| Proxy::Header {
        len,
        version: 2,
        addrs,
    };
    if local {
        return header(None);
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match fam {
        // TCP or UDP over IPv4.
        0x11 | 0x12 => {
            let Some(a) = body.get(..12) else {
                return Proxy::Invalid("version 2 addresses too short");
            };
            let src = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let dst = Ipv4Addr::new(a[4], a[5], a[6], a[7]);
            header(Some((
                SocketAddr::new(src.into(), port(&a[8..10])),
                SocketAddr::new(dst.into(), port(&a[10..12])),
            )))
        }
        // TCP or UDP over IPv6.
        0x21 | 0x22 => {
            let Some(a) = body.get(..36) else {
                return Proxy::Invalid("version 2 addresses too short");
            };
            let ip = |b: &[u8]| {
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            header(Some((
                SocketAddr::new(ip(&a[..16]), port(&a[32..34])),
                SocketAddr::new(ip(&a[16..32]), port(&a[34..36])),
            )))
        }
        // Unspecified, or Unix sockets: nothing to restore.
        0x00 | 0x31 | 0x32 => header(None),
        _ => Proxy::Invalid("version 2 family"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A version 2 PROXY header for `src` → `dst` (both of one family), with `tlv` extra bytes.
    pub(crate) fn v2_header(src: SocketAddr, dst: SocketAddr, tlv: usize) -> Vec<u8> {
        let mut addr = Vec::new();
        let fam = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                addr.extend(s.octets());
                addr.extend(d.octets());
                0x11
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                addr.extend(s.octets());
                addr.extend(d.octets());
                0x21
            }
            _ => panic!("mixed families"),
        };
        addr.extend(src.port().to_be_bytes());
        addr.extend(dst.port().to_be_bytes());
        addr.extend(std::iter::repeat_n(0u8, tlv));
        let mut h = V2.to_vec();
        h.extend([0x21, fam]);
        h.extend((addr.len() as u16).to_be_bytes());
        h.extend(addr);
        h
    }

    pub(crate) fn v1_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
        format!(
            "PROXY {fam} {} {} {} {}\r\n",
            src.ip(),
            dst.ip(),
            src.port(),
            dst.port()
        )
        .into_bytes()
    }

    #[test]
    fn reads_both_versions() {
        let src: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let dst: SocketAddr = "198.51.100.2:443".parse().unwrap();
        let mut h = v1_header(src, dst);
        let n = h.len();
        h.extend(b"\x16\x03\x01");
        assert_eq!(
            parse(&h),
            Proxy::Header {
                len: n,
                version: 1,
                addrs: Some((src, dst))
            }
        );
        let h = v2_header(src, dst, 5);
        assert_eq!(
            parse(&h),
            Proxy::Header {
                len: h.len(),
                version: 2,
                addrs: Some((src, dst))
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Proxy::Header {
                len: 15,
                version: 1,
                addrs: None
            }
        );
    }

    #[test]
    fn anything_else_is_absent_and_bad_headers_are_invalid() {
        assert_eq!(parse(b"\x16\x03\x01"), Proxy::Absent);
        assert_eq!(parse(b"GET / HTTP/1.1"), Proxy::Absent);
        assert_eq!(parse(b"PROX"), Proxy::NeedMore);
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"),
            Proxy::Invalid("version 1 address or port")
        );
        assert_eq!(
            parse(b"PROXY TCP4 ::1 ::1 1 2\r\n"),
            Proxy::Invalid("version 1 address or port")
        );
        assert_eq!(
            parse(b"PROXY TCP5 a b 1 2\r\n"),
            Proxy::Invalid("version 1 family")
        );
        assert_eq!(
            parse(b"PROXY x\n"),
            Proxy::Invalid("version 1 line has a stray byte")
        );
        let long = [&b"PROXY "[..], &[b'1'; 200]].concat();
        assert_eq!(parse(&long), Proxy::Invalid("version 1 line too long"));
        let mut v2 = V2.to_vec();
        v2.extend([0x21, 0x11, 0, 0]);
        assert_eq!(parse(&v2), Proxy::Invalid("version 2 addresses too short"));
        v2[12] = 0x25;
        assert_eq!(parse(&v2), Proxy::Invalid("version 2 command"));
    }

    fn addr_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
        prop_oneof![
            (
                any::<[u8; 4]>(),
                any::<u16>(),
                any::<[u8; 4]>(),
                any::<u16>()
            )
                .prop_map(|(a, p, b, q)| (
                    SocketAddr::new(Ipv4Addr::from(a).into(), p),
                    SocketAddr::new(Ipv4Addr::from(b).into(), q)
                )),
            (
                any::<[u8; 16]>(),
                any::<u16>(),
                any::<[u8; 16]>(),
                any::<u16>()
            )
                .prop_map(|(a, p, b, q)| (
                    SocketAddr::new(Ipv6Addr::from(a).into(), p),
                    SocketAddr::new(Ipv6Addr::from(b).into(), q)
                )),
        ]
    }

    proptest! {
        #[test]
        fn every_prefix_needs_more_and_the_whole_is_read(
            (src, dst) in addr_pair(),
            tlv in 0usize..64,
            v2 in any::<bool>(),
        ) {
            let h = if v2 { v2_header(src, dst, tlv) } else { v1_header(src, dst) };
            for cut in 0..h.len() {
                prop_assert_eq!(parse(&h[..cut]), Proxy::NeedMore, "cut {}", cut);
            }
            prop_assert_eq!(parse(&h), Proxy::Header {
                len: h.len(),
                version: if v2 { 2 } else { 1 },
                addrs: Some((src, dst)),
            });
        }

        #[test]
        fn garbage_never_panics_and_a_header_fits_the_slice(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Proxy::Header { len, .. } = parse(&bytes) {
                prop_assert!(len <= bytes.len());
            }
        }

        #[test]
        fn garbage_after_a_signature_never_panics(
            v2 in any::<bool>(),
            rest in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut b = if v2 { V2.to_vec() } else { V1.to_vec() };
            b.extend(rest);
            if let Proxy::Header { len, .. } = parse(&b) {
                prop_assert!(len <= b.len());
            }
        }
    }
}
