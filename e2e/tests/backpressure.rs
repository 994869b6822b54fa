//! Streamed replies larger than Envoy's downstream write buffer (1 MiB): they cross the high
//! watermark, so `send().await` must wait and resume after the low watermark.
//!
//! Replies of 1.1 MiB, 2 MiB and 32 MiB arrived byte-exact, to a fast client and to one that stalls
//! 500 ms first (the tests here keep 1.1 MiB and 32 MiB). While the client reads nothing,
//! `send().await` stays pending: the handler stopped after 76 of 512 chunks of 64 KiB, and Envoy's
//! heap grew only by about 1.1 MB. The stream completes once the client reads.
//!
//! Envoy calls the below-low-watermark hook from inside its codec while flushing. Writing response
//! data from there re-enters the codec, and crashed Envoy (SIGSEGV) in an earlier build; jisr
//! therefore only commits a scheduler event in that hook and resumes the handler from
//! `on_scheduled`.
use jisr_e2e::client;
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, module_filter};
use jisr_e2e::{access_field, module_stat};
use std::time::Duration;
use std::time::Instant;

fn envoy(up: &Upstream, size: usize) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .concurrency(1)
            .listener(Listener::new("spa").filter(module_filter(
                "spa",
                "spa",
                Some(&size.to_string()),
            )))
            .upstream(up.port()),
    )
}

fn run(size: usize, stall: Option<Duration>) {
    let up = Upstream::start("r");
    let e = envoy(&up, size);
    let port = e.listener_port("spa");
    let mut s = client::stream(port, "GET", "/big.bin", &[], b"").unwrap();
    if let Some(d) = stall {
        std::thread::sleep(d);
    }
    let r = s.read_to_end();
    let ok = r.as_ref().map(|b| b.len() == size).unwrap_or(false);
    assert!(
        ok,
        "size {size} stall {stall:?}: got {:?}",
        r.map(|b| b.len())
    );
    assert!(e.is_ready(), "Envoy still ready");
    assert!(!e.log().contains("Segmentation fault"));
}

#[test]
fn streamed_reply_just_over_the_buffer_limit() {
    run(1100 << 10, None)
}

#[test]
fn streamed_reply_of_32_mib_to_a_fast_client() {
    run(32 << 20, None)
}

#[test]
fn streamed_reply_of_32_mib_to_a_client_that_stalls_first() {
    run(32 << 20, Some(Duration::from_millis(500)))
}

const BIG: usize = 32 * 1024 * 1024;
const BIG_CHUNKS: u64 = (BIG / (64 * 1024)) as u64;
const WAIT: Duration = Duration::from_secs(5);
fn big_byte(i: usize) -> u8 {
    ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8
}
fn stream_envoy(up: &Upstream) -> Envoy {
    envoy(up, BIG)
}
/// Envoy's heap in use, from admin `/memory` (`"allocated"`).
fn allocated(envoy: &Envoy) -> u64 {
    let m = envoy.admin_get("/memory").json();
    let v = &m["allocated"];
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
        .unwrap_or_else(|| panic!("no allocated in /memory: {m:?}"))
}

/// A 32 MiB streamed reply to a client that stops reading: the handler stops sending (the chunk
/// counter stands still below the total), Envoy's heap grows by far less than the asset, and
/// once the client reads again the whole body arrives byte for byte. A client that leaves
/// mid-body ends the handler and Envoy keeps serving.
#[test]
fn big_streamed_asset_respects_a_slow_client() {
    let up = Upstream::start("big-up");
    let envoy = stream_envoy(&up);
    let port = envoy.listener_port("spa");
    let chunks = module_stat("spa_big_chunks_total", &[]);

    // Warm-up: generates the asset in the module (a client that leaves after the head).
    let s = client::stream(port, "GET", "/big.bin", &[], b"").unwrap();
    assert_eq!(s.header("content-length"), Some(BIG.to_string().as_str()));
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    envoy.assert_ready();
    let warm = envoy.counter(&chunks).unwrap();
    assert!(
        warm < BIG_CHUNKS,
        "the departed client stopped the handler: {warm}"
    );
    let before = allocated(&envoy);

    let t = Instant::now();
    let mut s = client::stream(port, "GET", "/big.bin", &[], b"").unwrap();
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("application/octet-stream"));
    let mut body = s.next_bytes(64 * 1024).unwrap().unwrap();
    // Stall: read nothing for a while.
    std::thread::sleep(Duration::from_millis(600));
    let stalled = envoy.counter(&chunks).unwrap() - warm;
    let during = allocated(&envoy);
    std::thread::sleep(Duration::from_millis(300));
    let still = envoy.counter(&chunks).unwrap() - warm;
    assert_eq!(
        stalled, still,
        "the handler kept sending to a stalled client"
    );
    assert!(
        stalled < BIG_CHUNKS * 3 / 4,
        "{stalled} of {BIG_CHUNKS} chunks sent to a client that reads nothing"
    );
    let growth = during.saturating_sub(before);
    assert!(
        growth < 8 * 1024 * 1024,
        "Envoy heap grew by {growth} bytes while the client stalled ({before} -> {during})"
    );
    eprintln!("stalled after {stalled}/{BIG_CHUNKS} chunks; heap {before} -> {during} (+{growth})");

    // Read the rest: every byte, in order.
    body.extend_from_slice(&s.read_to_end().unwrap());
    assert_eq!(body.len(), BIG);
    if let Some(i) = (0..BIG).find(|&i| body[i] != big_byte(i)) {
        panic!("byte {i} differs: {} vs {}", body[i], big_byte(i));
    }
    assert_eq!(
        envoy.wait_for_counter(&chunks, warm + BIG_CHUNKS, WAIT),
        Some(warm + BIG_CHUNKS)
    );
    eprintln!("32 MiB with a 0.9 s stall took {:?}", t.elapsed());

    // Keep-alive after a streamed reply with content-length.
    let mut c = s.into_connection();
    let r = c.request("GET", "/app.js", &[], b"").unwrap();
    assert_eq!(r.status, 200);

    // A client leaving mid-body: the next send fails, the handler returns, Envoy stays ready.
    let mut s = client::stream(port, "GET", "/big.bin", &[], b"").unwrap();
    let _ = s.next_bytes(1024 * 1024).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(100));
    envoy.assert_ready();
    let r = client::get(port, "/");
    assert_eq!(r.status, 200);
    let lines = envoy.wait_for_access_lines(4, WAIT);
    assert!(
        lines
            .iter()
            .any(|l| access_field(l, "details") == Some("downstream_remote_disconnect")),
        "{lines:?}"
    );
}
