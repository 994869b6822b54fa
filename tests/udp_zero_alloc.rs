//! Zero allocations per datagram on a UDP listener filter's paths (pass, rewrite and pass,
//! answer, send elsewhere, drop), measured with a counting allocator over 10,000 datagrams
//! after a warm-up, through the allocation-free simulated worker of `jisr::testing`.

use jisr::testing::TestUdpFilter;
use jisr::udp::{Datagram, Verdict};
use jisr::{ConfigError, ConfigHandle, Counter, Level, Registry};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

struct Counting;

thread_local! {
    // Per thread, so tests running side by side do not count each other's allocations.
    static MEASURE: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = MEASURE.try_with(|m| {
        if m.get() {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARMUP: usize = 200;
const DATAGRAMS: usize = 10_000;

/// Runs `one` WARMUP times, then DATAGRAMS times while counting; returns allocations per
/// datagram.
fn measure(mut one: impl FnMut()) -> f64 {
    for _ in 0..WARMUP {
        one();
    }
    let before = ALLOCS.with(Cell::get);
    MEASURE.with(|m| m.set(true));
    for _ in 0..DATAGRAMS {
        one();
    }
    MEASURE.with(|m| m.set(false));
    (ALLOCS.with(Cell::get) - before) as f64 / DATAGRAMS as f64
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Counter, ConfigError> {
    cfg.counter("datagrams", &[])
}

/// `p`: pass; `r`: rewrite (reversed) and pass; `a`: answer with the peer's port; `s`: send
/// to a fixed address; else drop. Every datagram is counted and logged at debug.
fn handler(seen: &Counter, dg: &mut Datagram<'_>) -> Verdict {
    let _ = dg.counter_inc(*seen, &[]);
    dg.log(Level::Debug, format_args!("{} bytes", dg.data().len()));
    match dg.data().first() {
        Some(b'p') => Verdict::Continue,
        Some(b'r') => {
            let mut buf = [0u8; 512];
            let n = dg.data().len().min(buf.len());
            buf[..n].copy_from_slice(&dg.data()[..n]);
            buf[..n].reverse();
            let _ = dg.set_data(&buf[..n]);
            Verdict::Continue
        }
        Some(b'a') => {
            let port = dg.peer().map_or(0, |p| p.port()).to_be_bytes();
            let _ = dg.answer(&port);
            Verdict::Stop
        }
        Some(b's') => {
            let to = SocketAddr::from(([192, 0, 2, 1], 53));
            let _ = dg.send_to(to, dg.data());
            Verdict::Stop
        }
        _ => Verdict::Stop,
    }
}

fn register(r: &mut Registry) {
    r.udp("zero").state(load).handle(handler);
}

#[test]
fn no_allocation_per_datagram_once_warm() {
    let f = TestUdpFilter::new(register, "zero", b"").unwrap();
    let mut w = f.worker();
    // The logger at info, as in production: the handler's debug line is checked and skipped
    // (the simulated log itself stores lines in `String`s, so it is kept out of the count).
    w.set_log_level(Level::Info);
    let peer: SocketAddr = "[2001:db8::7]:40001".parse().unwrap();
    w.set_peer(peer);
    let big = [b'r'; 1400];
    let paths: [(&str, &[u8], Verdict); 5] = [
        ("pass", b"pass me on", Verdict::Continue),
        ("rewrite", &big, Verdict::Continue),
        ("answer", b"ask", Verdict::Stop),
        ("send elsewhere", b"send", Verdict::Stop),
        ("drop", b"xxxx", Verdict::Stop),
    ];
    for (name, bytes, want) in paths {
        let per = measure(|| {
            assert_eq!(w.receive(bytes), want);
            w.clear_sent();
        });
        assert_eq!(per, 0.0, "{name}: {per} allocations per datagram");
    }
    assert_eq!(f.metric("datagrams"), Some(5 * (WARMUP + DATAGRAMS) as u64));
}

#[test]
fn a_panicking_handler_costs_only_its_own_message() {
    // The panic path allocates (the panic payload and the log line); it is counted here so a
    // regression that makes it grow without bound shows.
    fn boom(_: &mut Datagram<'_>) -> Verdict {
        // Not `panic!`: the default hook would print 10,000 messages.
        std::panic::resume_unwind(Box::new("boom"))
    }
    fn reg(r: &mut Registry) {
        r.udp("boom").handle(boom);
    }
    let f = TestUdpFilter::new(reg, "boom", b"").unwrap();
    let mut w = f.worker();
    w.set_log_level(Level::Critical);
    let per = measure(|| assert_eq!(w.receive(b"x"), Verdict::Stop));
    assert!(per < 8.0, "{per} allocations per panicking datagram");
}
