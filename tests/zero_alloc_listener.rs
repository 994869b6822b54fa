//! Zero allocations per accepted socket on the listener filter's core paths, measured with a
//! counting allocator on a reused simulated socket (`TestListenerFilter::accept_on`): after a
//! warm-up, every allocation counted comes from jisr or the handler. A handler that allocates
//! is measured too, to show the count sees it.

use jisr::Registry;
use jisr::listener::{Peeked, Socket};
use jisr::testing::{AcceptedSocket, SocketOutcome, TestListenerFilter};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Whether this thread counts, and its count: per thread, as the tests run side by side.
    static MEASURE: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if MEASURE.try_with(|m| m.get()).unwrap_or(false) {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn count(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    MEASURE.with(|m| m.set(true));
    f();
    MEASURE.with(|m| m.set(false));
    ALLOCS.with(Cell::get) - before
}

/// What the client sends: a name line the handlers read, in three parts.
const PARTS: [&[u8]; 3] = [b"NAME:api.exa", b"mple.com\n", b"GET / HTTP/1.1\r\n"];

/// Peeks once, as many bytes as came, and sets the SNI from the line (or a default).
async fn peeks_and_sets_sni(mut s: Socket<'_>) {
    let mut buf = [0u8; 64];
    let p = s.peek(&mut buf).await;
    let got = &buf[..p.len()];
    let name = got
        .strip_prefix(b"NAME:")
        .and_then(|rest| core::str::from_utf8(rest).ok())
        .and_then(|rest| rest.split('\n').next())
        .unwrap_or("api.example.com");
    s.set_server_name(name);
    s.set_transport_protocol("named");
}

/// Waits for more bytes until the whole line is there (the second `on_data` hook), then sets
/// it.
async fn waits_for_the_line(mut s: Socket<'_>) {
    let mut buf = [0u8; 64];
    loop {
        let p = s.peek(&mut buf).await;
        let got = &buf[..p.len()];
        if let Some(end) = got.iter().position(|b| *b == b'\n') {
            if let Some(name) = got[..end]
                .strip_prefix(b"NAME:")
                .and_then(|n| core::str::from_utf8(n).ok())
            {
                s.set_server_name(name);
            }
            return;
        }
        if let Peeked::End(_) = p {
            s.close("no_line");
            return;
        }
    }
}

/// Copies the name into a fresh `String` first: one allocation per socket at least.
async fn allocates(mut s: Socket<'_>) {
    let mut buf = [0u8; 64];
    let n = loop {
        let p = s.peek(&mut buf).await;
        if p.is_end() || buf[..p.len()].contains(&b'\n') {
            break p.len();
        }
    };
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    let name = line
        .strip_prefix("NAME:")
        .and_then(|r| r.split('\n').next())
        .unwrap_or("x");
    s.set_server_name(name);
}

fn register(r: &mut Registry) {
    r.listener("peeks")
        .max_read_bytes(64)
        .handle(peeks_and_sets_sni);
    r.listener("waits")
        .max_read_bytes(64)
        .handle(waits_for_the_line);
    r.listener("allocates").max_read_bytes(64).handle(allocates);
}

/// One socket: the name line comes in parts. `peeks` decides on the first part (and sets
/// the name cut short), the others once the line is whole.
fn run(name: &str, f: &TestListenerFilter, socket: &AcceptedSocket) {
    let mut s = f.accept_on(socket);
    for part in PARTS {
        s.client_sends(part);
    }
    assert!(s.outcome() == SocketOutcome::WentOn, "{name}");
    let sni = if name == "peeks" {
        "api.exa"
    } else {
        "api.example.com"
    };
    assert!(s.server_name_is(sni), "{name}");
}

const SOCKETS: u64 = 10_000;

fn allocations_over_many_sockets(name: &str) -> u64 {
    let f = TestListenerFilter::new(register, name, b"").unwrap();
    let socket = AcceptedSocket::default();
    for _ in 0..100 {
        run(name, &f, &socket);
    }
    count(|| {
        for _ in 0..SOCKETS {
            run(name, &f, &socket);
        }
    })
}

#[test]
fn sockets_allocate_nothing_once_warm() {
    for name in ["peeks", "waits"] {
        let n = allocations_over_many_sockets(name);
        assert_eq!(n, 0, "{name}: {n} allocations over {SOCKETS} sockets");
    }
}

/// The count is not blind: a handler that allocates shows at least one allocation per socket
/// (10,000 here, one `String` each), so `sockets_allocate_nothing_once_warm` fails for it.
#[test]
fn a_handler_that_allocates_is_counted() {
    let n = allocations_over_many_sockets("allocates");
    assert!(
        n >= SOCKETS,
        "allocates: {n} allocations over {SOCKETS} sockets"
    );
}
