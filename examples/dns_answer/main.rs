//! A UDP listener filter in front of a DNS resolver: it answers `A` queries for the names in
//! its config itself and passes every other query on (to `udp_proxy` and the resolver).
//!
//! Config (`filter_config`), one name per line with up to 8 IPv4 addresses; `ttl <seconds>`
//! sets the answers' TTL (default 60); `#` starts a comment:
//!
//! ```text
//! ttl 30
//! gate.internal 10.0.0.1
//! db.internal   10.0.0.2 10.0.0.3
//! ```
//!
//! What each datagram gets:
//!
//! | datagram | verdict |
//! |---|---|
//! | a query (class IN) for a configured name, type `A` | answered: its addresses, authoritative |
//! | the same for another type (`AAAA`, `MX`, ...) | answered: no records (NOERROR, "no data") |
//! | a query for any other name, another class, or another opcode | passed on to the resolver |
//! | a header, then a malformed question (bad or truncated name, pointer loop, not exactly one question) | answered: FORMERR |
//! | shorter than a DNS header, or a response (QR set) | dropped: there is nothing to answer, and answering answers invites loops and reflection |

mod dns;

use dns::{Error, Name};
use jisr::udp::{Datagram, Verdict};
use jisr::{ConfigError, ConfigHandle, Counter, Registry};
use std::collections::HashMap;
use std::net::Ipv4Addr;

struct Table {
    /// Lowercased wire-form names → their addresses.
    names: HashMap<Box<[u8]>, Vec<Ipv4Addr>>,
    ttl: u32,
    answered: Counter,
    passed: Counter,
    formerr: Counter,
    dropped: Counter,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Table, ConfigError> {
    let text = cfg.config_str()?.to_string();
    let mut names: HashMap<Box<[u8]>, Vec<Ipv4Addr>> = HashMap::new();
    let mut ttl = 60;
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let bad = |what: String| ConfigError::new(format!("line {}: {what}", i + 1));
        if first == "ttl" {
            ttl = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| bad("ttl needs a number of seconds".into()))?;
            continue;
        }
        let name = Name::from_text(first).ok_or_else(|| bad(format!("bad name {first:?}")))?;
        let addrs = names.entry(name.wire().into()).or_default();
        for w in words {
            let a = w
                .parse()
                .map_err(|_| bad(format!("{w:?} is not an IPv4 address")))?;
            addrs.push(a);
        }
        if addrs.is_empty() || addrs.len() > dns::MAX_ADDRS {
            return Err(bad(format!(
                "{first}: give 1 to {} addresses",
                dns::MAX_ADDRS
            )));
        }
    }
    if names.is_empty() {
        return Err(ConfigError::new("no names: give `<name> <ipv4>...` lines"));
    }
    Ok(Table {
        names,
        ttl,
        answered: cfg.counter("answered", &[])?,
        passed: cfg.counter("passed", &[])?,
        formerr: cfg.counter("formerr", &[])?,
        dropped: cfg.counter("dropped", &[])?,
    })
}

fn answer(t: &Table, dg: &mut Datagram<'_>) -> Verdict {
    let mut out = [0u8; dns::MAX_ANSWER];
    let (n, counter) = match dns::parse_query(dg.data()) {
        Err(Error::Short | Error::NotAQuery) => {
            let _ = dg.counter_inc(t.dropped, &[]);
            return Verdict::Stop;
        }
        Err(Error::Opcode(_)) => {
            let _ = dg.counter_inc(t.passed, &[]);
            return Verdict::Continue;
        }
        Err(_) => {
            // A header came: its id and flags are the first four bytes.
            let d = dg.data();
            let id = u16::from_be_bytes([d[0], d[1]]);
            let flags = u16::from_be_bytes([d[2], d[3]]);
            (
                dns::write_error(id, flags, dns::FORMERR, &mut out),
                t.formerr,
            )
        }
        Ok(q) => {
            let found = (q.qclass == dns::CLASS_IN)
                .then(|| t.names.get(q.name.lowercase().wire()))
                .flatten();
            let Some(addrs) = found else {
                let _ = dg.counter_inc(t.passed, &[]);
                return Verdict::Continue;
            };
            let addrs: &[Ipv4Addr] = if q.qtype == dns::TYPE_A { addrs } else { &[] };
            (dns::write_answer(&q, t.ttl, addrs, &mut out), t.answered)
        }
    };
    let _ = dg.answer(&out[..n]);
    let _ = dg.counter_inc(counter, &[]);
    Verdict::Stop
}

fn register(r: &mut Registry) {
    r.udp("dns_answer").state(load).handle(answer);
}

jisr::export!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use jisr::testing::TestUdpFilter;

    const CONFIG: &[u8] =
        b"ttl 30\ngate.internal 10.0.0.1 # the gate\nDB.internal. 10.0.0.2 10.0.0.3\n";

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(Name::from_text(name).unwrap().wire());
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    #[test]
    fn configured_names_are_answered_and_others_pass() {
        let f = TestUdpFilter::new(register, "dns_answer", CONFIG).unwrap();
        let mut w = f.worker();
        assert_eq!(w.receive(&query(5, "db.INTERNAL", 1)), Verdict::Stop);
        let sent = w.take_sent();
        let a = &sent[0].1;
        assert_eq!(&a[..2], [0, 5]);
        assert_eq!(&a[6..8], [0, 2], "two records");
        assert!(a.ends_with(&[0, 0, 0, 30, 0, 4, 10, 0, 0, 3]));
        assert_eq!(w.receive(&query(6, "gate.internal", 28)), Verdict::Stop);
        assert_eq!(&w.take_sent()[0].1[6..8], [0, 0], "AAAA: no data");
        assert_eq!(w.receive(&query(7, "example.com", 1)), Verdict::Continue);
        assert_eq!(w.data(), query(7, "example.com", 1), "passed unchanged");
        assert!(w.sent().is_empty());
        assert_eq!(f.metric("answered"), Some(2));
        assert_eq!(f.metric("passed"), Some(1));
    }

    #[test]
    fn garbage_is_dropped_or_gets_formerr() {
        let f = TestUdpFilter::new(register, "dns_answer", CONFIG).unwrap();
        let mut w = f.worker();
        assert_eq!(w.receive(b"hello"), Verdict::Stop);
        assert!(w.sent().is_empty(), "no header: dropped");
        let mut resp = query(9, "gate.internal", 1);
        resp[2] |= 0x80;
        assert_eq!(w.receive(&resp), Verdict::Stop);
        assert!(w.sent().is_empty(), "a response: dropped");
        let mut bad = query(0x0a0b, "gate.internal", 1);
        bad.truncate(20);
        assert_eq!(w.receive(&bad), Verdict::Stop);
        assert_eq!(
            w.take_sent()[0].1,
            [0x0a, 0x0b, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(f.metric("dropped"), Some(2));
        assert_eq!(f.metric("formerr"), Some(1));
    }

    #[test]
    fn a_bad_config_is_refused_with_the_line() {
        for (cfg, want) in [
            (&b""[..], "no names"),
            (b"a.b 1.2.3.4\nc..d 1.1.1.1", "line 2: bad name"),
            (b"a.b 1.2.3", "line 1: \"1.2.3\" is not an IPv4 address"),
            (b"a.b", "line 1: a.b: give 1 to 8"),
            (b"ttl x\na 1.1.1.1", "line 1: ttl needs"),
        ] {
            let err = TestUdpFilter::new(register, "dns_answer", cfg)
                .err()
                .unwrap();
            assert!(err.contains(want), "{err}");
        }
    }
}
