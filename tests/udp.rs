//! UDP listener filters on simulated datagrams: what passes, what is rewritten, what is
//! answered, and how failures end.

use jisr::testing::TestUdpFilter;
use jisr::udp::{Datagram, DatagramError, MAX_DATAGRAM, Verdict};
use jisr::{ConfigError, ConfigHandle, Counter, Gauge, Histogram, Level, Registry};
use std::net::SocketAddr;

/// `up:` prefix: uppercased and passed on; `ask`: answered with the peer and the listener;
/// `fwd <addr>`: sent to that address instead; `big`: tries to answer more than a datagram;
/// `boom`: panics; empty: dropped; anything else passes untouched.
fn probe(dg: &mut Datagram<'_>) -> Verdict {
    let data = dg.data();
    if data.is_empty() {
        return Verdict::Stop;
    }
    if let Some(rest) = data.strip_prefix(b"up:") {
        let up = rest.to_ascii_uppercase();
        dg.set_data(&up).unwrap();
        return Verdict::Continue;
    }
    if data == b"ask" {
        let line = format!("{:?} {:?} w{}", dg.peer(), dg.local(), dg.worker());
        dg.answer(line.as_bytes()).unwrap();
        return Verdict::Stop;
    }
    if let Some(addr) = data.strip_prefix(b"fwd ") {
        let to: SocketAddr = std::str::from_utf8(addr).unwrap().parse().unwrap();
        dg.send_to(to, b"forwarded").unwrap();
        return Verdict::Stop;
    }
    if data == b"big" {
        let too_big = vec![0u8; MAX_DATAGRAM + 1];
        let a = dg.answer(&too_big);
        let s = dg.set_data(&too_big);
        let fits = dg.answer(&too_big[..MAX_DATAGRAM]);
        let line = format!("{a:?} {s:?} {fits:?}");
        dg.answer(line.as_bytes()).unwrap();
        return Verdict::Stop;
    }
    if data == b"boom" {
        panic!("probe exploded");
    }
    Verdict::Continue
}

fn register(r: &mut Registry) {
    r.udp("probe").handle(probe);
    r.udp("counted").state(load_counted).handle(counted);
    r.udp("strict").state(load_strict).handle(probe_with_state);
}

#[test]
fn a_datagram_passes_untouched_or_rewritten() {
    let f = TestUdpFilter::new(register, "probe", b"").unwrap();
    let mut w = f.worker();
    assert_eq!(w.receive(b"hello"), Verdict::Continue);
    assert_eq!(w.data(), b"hello");
    assert_eq!(w.receive(b"up:shout"), Verdict::Continue);
    assert_eq!(w.data(), b"SHOUT", "the next filter sees the new bytes");
    assert!(w.sent().is_empty());
}

#[test]
fn an_empty_datagram_is_dropped() {
    let f = TestUdpFilter::new(register, "probe", b"").unwrap();
    let mut w = f.worker();
    assert_eq!(w.receive(b""), Verdict::Stop);
    assert!(w.sent().is_empty());
}

#[test]
fn an_answer_goes_to_the_peer_with_both_addresses() {
    let f = TestUdpFilter::new(register, "probe", b"").unwrap();
    let mut w = f.worker();
    w.set_local("[::1]:53".parse().unwrap());
    w.set_worker_index(3);
    let v4: SocketAddr = "198.51.100.4:4242".parse().unwrap();
    assert_eq!(w.receive_from(v4, b"ask"), Verdict::Stop);
    let v6: SocketAddr = "[2001:db8::1]:5353".parse().unwrap();
    assert_eq!(w.receive_from(v6, b"ask"), Verdict::Stop);
    assert_eq!(
        w.take_sent(),
        [
            (v4, b"Some(198.51.100.4:4242) Some([::1]:53) w3".to_vec()),
            (v6, b"Some([2001:db8::1]:5353) Some([::1]:53) w3".to_vec()),
        ]
    );
    assert!(w.sent().is_empty());
}

#[test]
fn a_datagram_can_be_sent_elsewhere() {
    let f = TestUdpFilter::new(register, "probe", b"").unwrap();
    let mut w = f.worker();
    assert_eq!(w.receive(b"fwd [2001:db8::53]:53"), Verdict::Stop);
    assert_eq!(
        w.take_sent(),
        [("[2001:db8::53]:53".parse().unwrap(), b"forwarded".to_vec())]
    );
}

#[test]
fn more_than_one_datagram_is_refused_and_nothing_changes() {
    let f = TestUdpFilter::new(register, "probe", b"").unwrap();
    let mut w = f.worker();
    assert_eq!(w.receive(b"big"), Verdict::Stop);
    let sent = w.take_sent();
    assert_eq!(sent.len(), 2, "only the one that fits, and the report");
    assert_eq!(sent[0].1.len(), MAX_DATAGRAM);
    let tl = DatagramError::TooLarge {
        len: MAX_DATAGRAM + 1,
    };
    assert_eq!(
        String::from_utf8(sent[1].1.clone()).unwrap(),
        format!("Err({tl:?}) Err({tl:?}) Ok(())")
    );
    assert_eq!(w.data(), b"big", "the refused replacement changed nothing");
    assert!(tl.to_string().contains("65507"));
}

#[test]
fn a_panicking_handler_drops_the_datagram_and_the_worker_goes_on() {
    let f = TestUdpFilter::new(register, "probe", b"").unwrap();
    let mut w = f.worker();
    assert_eq!(w.receive(b"boom"), Verdict::Stop, "fails closed");
    assert!(w.sent().is_empty());
    let logs = w.logs();
    assert!(
        logs.iter().any(|(l, s)| *l == Level::Error
            && s.contains("udp filter 'probe'")
            && s.contains("probe exploded")
            && s.contains("dropped")),
        "{logs:?}"
    );
    // The same worker's filter handles the next datagram as usual.
    assert_eq!(w.receive(b"up:after"), Verdict::Continue);
    assert_eq!(w.data(), b"AFTER");
}

#[test]
fn a_garbage_flood_is_bounded() {
    // Every byte pattern up to a few hundred bytes: the handler's verdict, never a hang or
    // growth beyond the largest datagram.
    let f = TestUdpFilter::new(register, "probe", b"").unwrap();
    let mut w = f.worker();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for n in 0..2000usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed as usize) % 300;
        let bytes: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
        let v = w.receive(&bytes);
        assert_eq!(v, probe_expected(&bytes), "datagram {n}: {bytes:?}");
        w.clear_sent();
    }
}

fn probe_expected(bytes: &[u8]) -> Verdict {
    if bytes.is_empty()
        || bytes == b"ask"
        || bytes == b"big"
        || bytes == b"boom"
        || bytes.starts_with(b"fwd ")
    {
        Verdict::Stop
    } else {
        Verdict::Continue
    }
}

struct Counted {
    seen: Counter,
    size: Histogram,
    last: Gauge,
}

fn load_counted(cfg: &mut ConfigHandle<'_>) -> Result<Counted, ConfigError> {
    Ok(Counted {
        seen: cfg.counter("datagrams", &[])?,
        size: cfg.histogram("datagram_bytes", &[])?,
        last: cfg.gauge("last_bytes", &[])?,
    })
}

fn counted(c: &Counted, dg: &mut Datagram<'_>) -> Verdict {
    let n = dg.data().len() as u64;
    dg.counter_inc(c.seen, &[]).unwrap();
    dg.histogram_record(c.size, &[], n).unwrap();
    dg.gauge_set(c.last, &[], n).unwrap();
    // UDP metrics take no labels: a label value is refused, not applied.
    assert!(dg.counter_inc(c.seen, &["x"]).is_err());
    Verdict::Continue
}

#[test]
fn metrics_defined_at_load_count_datagrams_of_every_worker() {
    let f = TestUdpFilter::new(register, "counted", b"").unwrap();
    let mut a = f.worker();
    let mut b = f.worker();
    assert_eq!(a.receive(b"12345"), Verdict::Continue);
    assert_eq!(b.receive(b"12"), Verdict::Continue);
    assert_eq!(f.metric("datagrams"), Some(2));
    assert_eq!(f.metric("last_bytes"), Some(2));
    assert_eq!(f.histogram("datagram_bytes"), [5, 2]);
}

fn labelled(cfg: &mut ConfigHandle<'_>) -> Result<Counter, ConfigError> {
    cfg.counter("by_peer", &["peer"])
}

fn never(_: &Counter, _: &mut Datagram<'_>) -> Verdict {
    Verdict::Continue
}

#[test]
fn a_labelled_metric_refuses_the_config() {
    fn reg(r: &mut Registry) {
        r.udp("labelled").state(labelled).handle(never);
    }
    let err = TestUdpFilter::new(reg, "labelled", b"").err().unwrap();
    assert!(err.contains("udp filter 'labelled'"), "{err}");
}

struct Strict {
    allowed: Vec<u8>,
}

fn load_strict(cfg: &mut ConfigHandle<'_>) -> Result<Strict, ConfigError> {
    let s = cfg.config_str()?.trim();
    if s.is_empty() {
        return Err(ConfigError::new("give the allowed first bytes"));
    }
    Ok(Strict {
        allowed: s.as_bytes().to_vec(),
    })
}

fn probe_with_state(s: &Strict, dg: &mut Datagram<'_>) -> Verdict {
    match dg.data().first() {
        Some(b) if s.allowed.contains(b) => Verdict::Continue,
        _ => Verdict::Stop,
    }
}

#[test]
fn state_is_loaded_once_and_a_bad_config_is_refused_with_its_reason() {
    let f = TestUdpFilter::new(register, "strict", b"ab").unwrap();
    let mut w = f.worker();
    assert_eq!(w.receive(b"apple"), Verdict::Continue);
    assert_eq!(w.receive(b"cherry"), Verdict::Stop);
    let err = TestUdpFilter::new(register, "strict", b"  ").err().unwrap();
    assert!(err.contains("give the allowed first bytes"), "{err}");
    let err = TestUdpFilter::new(register, "nope", b"").err().unwrap();
    assert!(err.contains("no udp filter named 'nope'"), "{err}");
}

#[test]
fn logs_are_written_only_at_the_level_envoy_asks_for() {
    fn chatty(dg: &mut Datagram<'_>) -> Verdict {
        dg.log(Level::Debug, format_args!("debug {}", dg.data().len()));
        dg.log(Level::Warn, format_args!("warn {}", dg.data().len()));
        Verdict::Continue
    }
    fn reg(r: &mut Registry) {
        r.udp("chatty").handle(chatty);
    }
    let f = TestUdpFilter::new(reg, "chatty", b"").unwrap();
    let mut w = f.worker();
    w.set_log_level(Level::Info);
    let _ = w.receive(b"abc");
    assert_eq!(w.logs(), [(Level::Warn, "warn 3".to_string())]);
}

#[test]
fn a_registration_under_the_same_name_replaces_the_earlier_one() {
    fn first(_: &mut Datagram<'_>) -> Verdict {
        Verdict::Continue
    }
    fn second(_: &mut Datagram<'_>) -> Verdict {
        Verdict::Stop
    }
    fn reg(r: &mut Registry) {
        r.udp("x").handle(first);
        r.udp("x").handle(second);
    }
    let f = TestUdpFilter::new(reg, "x", b"").unwrap();
    assert_eq!(f.worker().receive(b"1"), Verdict::Stop);
}
