//! Sleeps and timeouts in handlers, through the simulated stream (the process-wide timers are
//! driven by their fallback thread here: no server extension runs).

mod common;

use common::{Forever, GET};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use jisr::raw::HeadersStatus;
use jisr::testing::TestFilter;
use jisr::time::{Elapsed, interval, sleep, timeout};
use jisr::{Registry, Request, ResponseWriter};
use std::time::{Duration, Instant};

async fn sleepy(_req: Request<'_>, w: ResponseWriter<'_>) {
    let t = Instant::now();
    sleep(Duration::from_millis(40)).await;
    w.send(200, format!("{}", t.elapsed().as_millis() >= 40).as_bytes());
}

async fn bounded(_req: Request<'_>, w: ResponseWriter<'_>) {
    let slow = timeout(Duration::from_millis(20), Forever).await;
    let quick = timeout(Duration::from_secs(5), async { 7 }).await;
    w.send(200, format!("{slow:?} {quick:?}").as_bytes());
}

/// Sleeps polled by a combinator that polls only the woken child.
async fn many(_req: Request<'_>, w: ResponseWriter<'_>) {
    let mut set: FuturesUnordered<_> = [30u64, 10, 20]
        .into_iter()
        .map(|ms| async move {
            sleep(Duration::from_millis(ms)).await;
            ms
        })
        .collect();
    let mut order = Vec::new();
    while let Some(ms) = set.next().await {
        order.push(ms);
    }
    let mut tick = interval(Duration::from_millis(5));
    for _ in 0..3 {
        tick.tick().await;
    }
    w.send(200, format!("{order:?}").as_bytes());
}

async fn forever_asleep(_req: Request<'_>, _w: ResponseWriter<'_>) {
    sleep(Duration::from_secs(3600)).await;
}

/// Reads the body under a timeout of `Duration::MAX`: no limit, not a panic.
async fn unbounded(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let mut body = Vec::new();
    let read = timeout(Duration::MAX, req.read_to_end(&mut body)).await;
    w.send(200, format!("{:?}", read.map(|r| r.is_ok())).as_bytes());
}

fn register(r: &mut Registry) {
    r.register("unbounded", unbounded);
    r.register("sleepy", sleepy);
    r.register("bounded", bounded);
    r.register("many", many);
    r.register("forever", forever_asleep);
}

/// Drives a stream until it replied (or 5 s pass).
fn reply_of(f: &TestFilter) -> String {
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let until = Instant::now() + Duration::from_secs(5);
    while s.local_reply().is_none() && Instant::now() < until {
        s.wait_scheduled(Duration::from_millis(200));
        s.run_scheduled();
    }
    String::from_utf8(s.local_reply().expect("a reply within 5 s").body).unwrap()
}

#[test]
fn a_handler_sleeps_without_blocking_and_resumes_on_its_stream() {
    let f = TestFilter::new(register, "sleepy", b"").unwrap();
    assert_eq!(reply_of(&f), "true");
}

#[test]
fn timeout_cuts_a_pending_future_and_passes_a_ready_one() {
    let f = TestFilter::new(register, "bounded", b"").unwrap();
    assert_eq!(reply_of(&f), format!("{:?} Ok(7)", Err::<(), _>(Elapsed)));
}

#[test]
fn sleeps_under_a_waker_precise_combinator_all_complete_in_deadline_order() {
    let f = TestFilter::new(register, "many", b"").unwrap();
    assert_eq!(reply_of(&f), "[10, 20, 30]");
}

#[test]
fn a_sleep_cancelled_by_the_stream_end_is_forgotten() {
    let f = TestFilter::new(register, "forever", b"").unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    s.complete();
    drop(s);
    // The slot is clean and reusable: the dropped sleep left nothing that could wake it.
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    s.complete();
}

/// `sleep(Duration::MAX)` used to panic (`Instant` overflow), so a handler's
/// `timeout(Duration::MAX, f)` answered 500. A huge duration is "no deadline".
#[test]
fn a_huge_timeout_waits_for_its_future() {
    let f = TestFilter::new(register, "unbounded", b"").unwrap();
    let mut s = f.stream();
    assert_eq!(
        s.request_headers(&[(":method", "POST"), (":path", "/")], false),
        HeadersStatus::StopIteration
    );
    assert!(s.local_reply().is_none(), "waiting for the body");
    s.request_body(b"abc", true);
    s.run_scheduled();
    let reply = s.local_reply().expect("a reply");
    assert_eq!(
        reply.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.body, b"Ok(true)");
}

#[test]
fn a_sleep_without_deadline_stays_pending_and_cancels_cleanly() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let mut forever = std::pin::pin!(sleep(Duration::MAX));
    assert_eq!(forever.deadline(), None);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(forever.as_mut().poll(&mut cx).is_pending());
    assert!(forever.as_mut().poll(&mut cx).is_pending());
    let far = sleep(Duration::from_secs(u64::MAX));
    assert_eq!(far.deadline(), None);
    let mut tick = interval(Duration::MAX);
    let mut t = std::pin::pin!(tick.tick());
    assert!(t.as_mut().poll(&mut cx).is_pending());
}
