//! Zero allocations per connection and per read on the network filter's core paths, measured
//! with a counting allocator on a reused simulated socket (`TestNetworkFilter::connect_on`):
//! after a warm-up, every allocation counted comes from jisr or the handler. The same for raw
//! network filters (`Registry::network_raw`).

use jisr::Registry;
use jisr::network::{Connection, RawConnection, RawFilter, Status, Traffic};
use jisr::testing::{Socket, TestNetworkFilter};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static MEASURE: Cell<bool> = const { Cell::new(false) };
}

fn measuring() -> bool {
    MEASURE.try_with(|m| m.get()).unwrap_or(false)
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if measuring() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if measuring() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn count(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.load(Ordering::Relaxed);
    MEASURE.with(|m| m.set(true));
    f();
    MEASURE.with(|m| m.set(false));
    ALLOCS.load(Ordering::Relaxed) - before
}

async fn passes(_conn: Connection<'_>) {}

/// Reads 16-byte frames and forwards each, until the client ends.
async fn frames(mut conn: Connection<'_>) {
    let mut buf = [0u8; 16];
    loop {
        let n = conn.read(&mut buf).await;
        if n == 0 {
            return;
        }
        conn.send_upstream(&buf[..n]);
    }
}

/// Relays both ways with a yield in between (an inline re-poll).
async fn relay(mut conn: Connection<'_>) {
    let mut buf = [0u8; 64];
    loop {
        match conn.read_any(&mut buf).await {
            Traffic::Client(n) => conn.send_upstream(&buf[..n]),
            Traffic::Upstream(n) => conn.send_downstream(&buf[..n]),
            Traffic::ClientEnd => conn.end_upstream(),
            Traffic::UpstreamEnd => conn.end_downstream(),
            Traffic::Closed => return,
        }
        YieldOnce(false).await;
    }
}

struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Raw: takes each read out of Envoy's buffer (chunk views and a copy), counts its newlines
/// and sends it on; each write likewise toward the client.
struct RawRelay {
    buf: [u8; 64],
    lines: usize,
}

impl RawFilter for RawRelay {
    fn on_read(&mut self, c: &mut RawConnection<'_>, end_stream: bool) -> Status {
        let mut seen = 0;
        c.read_chunks(|chunk| {
            seen += chunk.len();
            true
        });
        assert_eq!(seen, c.read_len());
        loop {
            let n = c.copy_read(&mut self.buf);
            if n == 0 {
                break;
            }
            c.drain_read(n);
            self.lines += self.buf[..n].iter().filter(|b| **b == b'\n').count();
            c.inject_read(&self.buf[..n], false);
        }
        if end_stream {
            c.inject_read(&[], true);
        }
        Status::StopIteration
    }

    fn on_write(&mut self, c: &mut RawConnection<'_>, end_stream: bool) -> Status {
        let n = c.copy_write(&mut self.buf);
        c.drain_write(n);
        c.inject_write(&self.buf[..n], end_stream);
        Status::StopIteration
    }
}

/// Raw with the defaults: everything passes.
struct RawPass;
impl RawFilter for RawPass {}

fn register(r: &mut Registry) {
    r.network("passes").handle(passes);
    r.network("frames").handle(frames);
    r.network("relay").handle(relay);
    r.network_raw("raw_relay", |_cfg| {
        Ok(|| RawRelay {
            buf: [0; 64],
            lines: 0,
        })
    });
    r.network_raw("raw_pass", |_cfg| Ok(|| RawPass));
}

const DATA: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef";

fn run(name: &str, f: &TestNetworkFilter, socket: &Socket) {
    let mut c = f.connect_on(socket);
    for _ in 0..4 {
        c.client_sends(DATA);
        c.upstream_sends(DATA);
    }
    c.client_ends();
    c.upstream_ends();
    assert_eq!(c.upstream_len(), 4 * DATA.len(), "{name}");
    assert_eq!(c.client_len(), 4 * DATA.len(), "{name}");
}

#[test]
fn connections_and_reads_allocate_nothing_once_warm() {
    for name in ["passes", "frames", "relay", "raw_relay", "raw_pass"] {
        let f = TestNetworkFilter::new(register, name, b"").unwrap();
        let socket = Socket::default();
        for _ in 0..100 {
            run(name, &f, &socket);
        }
        let n = count(|| {
            for _ in 0..10_000 {
                run(name, &f, &socket);
            }
        });
        assert_eq!(n, 0, "{name}: {n} allocations over 10,000 connections");
    }
}
