//! A bounded parser for the start of a TLS connection: the first record, holding the
//! client's ClientHello, read for its server name (SNI) and ALPN list.
//!
//! It never allocates and never reads past the slice it is given; every length is checked
//! against what the enclosing structure declared. A ClientHello split over several records
//! (rare: only a hello larger than 16 KiB needs it) is reported as [`Hello::Unsupported`].

/// What the first bytes of a connection are.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello<'a> {
    /// A prefix of something that may be a ClientHello: more bytes are needed.
    NeedMore,
    /// Not a TLS handshake record (plain text, another protocol, random bytes).
    NotTls,
    /// A TLS handshake record whose content breaks the protocol.
    Invalid(&'static str),
    /// A well-formed start this parser does not read (a ClientHello over several records).
    Unsupported(&'static str),
    /// A complete ClientHello.
    Found(ClientHello<'a>),
}

/// What a ClientHello asked for.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct ClientHello<'a> {
    /// The host name of the `server_name` extension (letters, digits, `-`, `_`, `.`).
    pub server_name: Option<&'a str>,
    /// The `application_layer_protocol_negotiation` list, as sent (checked well-formed).
    alpn: &'a [u8],
}

impl<'a> ClientHello<'a> {
    /// The ALPN protocol names, in the client's order.
    pub fn alpn(&self) -> Alpn<'a> {
        Alpn { rest: self.alpn }
    }
}

/// The ALPN names of a [`ClientHello`].
pub struct Alpn<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Alpn<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (&n, rest) = self.rest.split_first()?;
        let (name, rest) = rest.split_at_checked(usize::from(n))?;
        self.rest = rest;
        Some(name)
    }
}

/// The largest TLS record payload (RFC 8446, 5.1).
const MAX_RECORD: usize = 1 << 14;
const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;

/// A cursor over a slice; every read is bounds-checked.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.b.split_at_checked(n)?;
        self.b = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A vector with a `u8` length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    /// A vector with a `u16` length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
}

/// Reads the start of a connection.
pub fn parse(buf: &[u8]) -> Hello<'_> {
    // The record header: type, legacy version 3.x, length.
    match buf {
        [] => return Hello::NeedMore,
        [t, ..] if *t != HANDSHAKE => return Hello::NotTls,
        [_] => return Hello::NeedMore,
        [_, major, ..] if *major != 3 => return Hello::NotTls,
        [_, _] => return Hello::NeedMore,
        [_, _, minor, ..] if *minor > 4 => return Hello::NotTls,
        _ => {}
    }
    let Some(header) = buf.get(..5) else {
        return Hello::NeedMore;
    };
    let record_len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if record_len == 0 || record_len > MAX_RECORD {
        return Hello::Invalid("record length");
    }
    let record = &buf[5..buf.len().min(5 + record_len)];
    // The handshake header: type, 24-bit length.
    if let Some(&t) = record.first() {
        if t != CLIENT_HELLO {
            return Hello::Invalid("first handshake message is not a ClientHello");
        }
    }
    let Some(hs) = record.get(..4) else {
        return if record.len() < record_len {
            Hello::NeedMore
        } else {
            Hello::Invalid("record shorter than a handshake header")
        };
    };
    let hello_len = (usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]);
    if 4 + hello_len > record_len {
        return Hello::Unsupported("ClientHello over several records");
    }
    let Some(body) = record.get(4..4 + hello_len) else {
        return Hello::NeedMore;
    };
    match client_hello(body) {
        Ok(h) => Hello::Found(h),
        Err(why) => Hello::Invalid(why),
    }
}

fn client_hello(body: &[u8]) -> Result<ClientHello<'_>, &'static str> {
    let mut r = Reader { b: body };
    r.take(2 + 32).ok_or("truncated version or random")?;
    let session = r.vec8().ok_or("truncated session id")?;
    if session.len() > 32 {
        return Err("session id longer than 32 bytes");
    }
    let suites = r.vec16().ok_or("truncated cipher suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err("bad cipher suite list");
    }
    let compression = r.vec8().ok_or("truncated compression methods")?;
    if compression.is_empty() {
        return Err("no compression method");
    }
    let mut hello = ClientHello {
        server_name: None,
        alpn: &[],
    };
    if r.is_empty() {
        return Ok(hello); // no extensions
    }
    let mut exts = Reader {
        b: r.vec16().ok_or("truncated extensions")?,
    };
    if !r.is_empty() {
        return Err("bytes after the extensions");
    }
    let (mut seen_sni, mut seen_alpn) = (false, false);
    while !exts.is_empty() {
        let kind = exts.u16().ok_or("truncated extension type")?;
        let data = exts.vec16().ok_or("truncated extension")?;
        match kind {
            EXT_SERVER_NAME => {
                if std::mem::replace(&mut seen_sni, true) {
                    return Err("two server_name extensions");
                }
                hello.server_name = server_name(data)?;
            }
            EXT_ALPN => {
                if std::mem::replace(&mut seen_alpn, true) {
                    return Err("two ALPN extensions");
                }
                hello.alpn = alpn(data)?;
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// The host name of a `server_name` extension (RFC 6066, 3).
fn server_name(data: &[u8]) -> Result<Option<&str>, &'static str> {
    let mut r = Reader { b: data };
    let mut list = Reader {
        b: r.vec16().ok_or("truncated server name list")?,
    };
    if !r.is_empty() || list.is_empty() {
        return Err("bad server name list");
    }
    let mut host = None;
    while !list.is_empty() {
        let kind = list.u8().ok_or("truncated server name")?;
        let name = list.vec16().ok_or("truncated server name")?;
        if kind != 0 {
            continue; // only host_name is defined
        }
        if host.is_some() {
            return Err("two host names");
        }
        host = Some(host_name(name).ok_or("bad host name")?);
    }
    Ok(host)
}

/// `name` if it is a DNS host name: 1 to 255 bytes of letters, digits, `-`, `_` and `.`.
fn host_name(name: &[u8]) -> Option<&str> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        core::str::from_utf8(name).ok()
    } else {
        None
    }
}

/// The protocol name list of an ALPN extension (RFC 7301, 3.1): at least one name, none empty.
fn alpn(data: &[u8]) -> Result<&[u8], &'static str> {
    let mut r = Reader { b: data };
    let list = r.vec16().ok_or("truncated ALPN list")?;
    if !r.is_empty() || list.is_empty() {
        return Err("bad ALPN list");
    }
    let mut names = Reader { b: list };
    while !names.is_empty() {
        let name = names.vec8().ok_or("truncated ALPN name")?;
        if name.is_empty() {
            return Err("empty ALPN name");
        }
    }
    Ok(list)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A ClientHello record as a client writes it, with the given SNI, ALPN names and extra
    /// (unknown) extensions.
    pub(crate) fn record(sni: Option<&str>, alpn: &[&[u8]], padding: usize) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(name) = sni {
            let mut entry = vec![0u8];
            entry.extend((name.len() as u16).to_be_bytes());
            entry.extend(name.as_bytes());
            let mut data = (entry.len() as u16).to_be_bytes().to_vec();
            data.extend(entry);
            exts.extend(EXT_SERVER_NAME.to_be_bytes());
            exts.extend((data.len() as u16).to_be_bytes());
            exts.extend(data);
        }
        if !alpn.is_empty() {
            let mut list = Vec::new();
            for p in alpn {
                list.push(p.len() as u8);
                list.extend(*p);
            }
            let mut data = (list.len() as u16).to_be_bytes().to_vec();
            data.extend(list);
            exts.extend(EXT_ALPN.to_be_bytes());
            exts.extend((data.len() as u16).to_be_bytes());
            exts.extend(data);
        }
        // An unknown extension (padding, 21) of `padding` bytes.
        exts.extend(21u16.to_be_bytes());
        exts.extend((padding as u16).to_be_bytes());
        exts.extend(std::iter::repeat_n(0u8, padding));
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(32);
        body.extend([9u8; 32]);
        body.extend([0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend([1, 0]);
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![CLIENT_HELLO];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut rec = vec![HANDSHAKE, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn reads_sni_and_alpn() {
        let r = record(Some("alpha.test"), &[b"h2", b"http/1.1"], 10);
        let Hello::Found(h) = parse(&r) else {
            panic!("{:?}", parse(&r))
        };
        assert_eq!(h.server_name, Some("alpha.test"));
        assert_eq!(h.alpn().collect::<Vec<_>>(), [&b"h2"[..], b"http/1.1"]);
        // Bytes after the record (the client's next flight) do not matter.
        let mut more = r.clone();
        more.extend(b"\x14\x03\x03");
        assert_eq!(parse(&more), parse(&r));
    }

    #[test]
    fn plain_text_and_other_protocols_are_not_tls() {
        for b in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x16\x02",
            b"\x16\x03\x09",
            b"\0\0\0",
        ] {
            assert_eq!(parse(b), Hello::NotTls, "{b:?}");
        }
        assert_eq!(parse(b"\x16\x03"), Hello::NeedMore);
    }

    #[test]
    fn broken_handshakes_are_invalid() {
        assert_eq!(
            parse(b"\x16\x03\x01\x00\x00"),
            Hello::Invalid("record length")
        );
        assert_eq!(
            parse(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00"),
            Hello::Invalid("first handshake message is not a ClientHello")
        );
        let mut r = record(Some("bad name.test"), &[], 0);
        assert_eq!(parse(&r), Hello::Invalid("bad host name"));
        r = record(None, &[b""], 0);
        assert_eq!(parse(&r), Hello::Invalid("empty ALPN name"));
    }

    #[test]
    fn a_hello_longer_than_its_record_is_unsupported() {
        let mut r = record(Some("a.test"), &[], 0);
        // Claim a longer hello than the record holds.
        r[6] = 0x01;
        assert!(matches!(parse(&r), Hello::Unsupported(_)));
    }

    fn host() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9.-]{0,60}"
    }

    proptest! {
        #[test]
        fn every_prefix_needs_more_and_the_whole_is_found(
            sni in proptest::option::of(host()),
            alpn in proptest::collection::vec(proptest::collection::vec(33u8..127, 1..12), 0..5),
            padding in 0usize..300,
        ) {
            let names: Vec<&[u8]> = alpn.iter().map(|v| v.as_slice()).collect();
            let r = record(sni.as_deref(), &names, padding);
            for cut in 0..r.len() {
                prop_assert_eq!(parse(&r[..cut]), Hello::NeedMore, "cut {}", cut);
            }
            let Hello::Found(h) = parse(&r) else { panic!("{:?}", parse(&r)) };
            prop_assert_eq!(h.server_name, sni.as_deref());
            prop_assert_eq!(h.alpn().collect::<Vec<_>>(), names);
        }

        #[test]
        fn garbage_never_panics_and_answers_within_the_slice(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Hello::Found(h) = parse(&bytes) {
                let base = bytes.as_ptr_range();
                if let Some(s) = h.server_name {
                    prop_assert!(base.contains(&s.as_ptr()));
                }
                for name in h.alpn() {
                    prop_assert!(!name.is_empty());
                }
            }
        }

        #[test]
        fn corrupting_a_valid_hello_never_panics(
            sni in host(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut r = record(Some(&sni), &[b"h2"], 3);
            let i = at.index(r.len());
            r[i] = byte;
            let _ = parse(&r);
        }
    }
}
