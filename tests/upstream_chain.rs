//! Streams that Envoy destroys without completing them first, as it does for every stream of
//! a filter in a cluster's upstream filter chain (`HttpProtocolOptions.http_filters`): the
//! handler is dropped, the slot goes back to the pool and jisr's own Envoy stats are still
//! reported.

use jisr::testing::TestFilter;
use jisr::{Registry, Request, ResponseWriter};
use std::sync::atomic::{AtomicUsize, Ordering};

static DROPPED: AtomicUsize = AtomicUsize::new(0);

struct CountsDrop;
impl Drop for CountsDrop {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// Stamps the request, then waits for the whole request body (which never comes here).
async fn stamp_and_read(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    let _guard = CountsDrop;
    let _ = req.set_header("x-upstream-filter", "jisr");
    let mut body = Vec::new();
    let _ = req.read_body(1024, &mut body).await;
}

fn register(r: &mut Registry) {
    r.register("upstream_stamp", stamp_and_read);
}

const GET: &[(&str, &str)] = &[(":method", "POST"), (":path", "/")];

/// Opens 17 streams that Envoy destroys without completing them.
fn seventeen_uncompleted(f: &TestFilter, dropped_before: usize) {
    for i in 0..17 {
        let mut s = f.stream();
        s.request_headers(GET, false);
        assert_eq!(
            s.request_header("x-upstream-filter").as_deref(),
            Some("jisr")
        );
        s.destroy_without_completion();
        // The handler, blocked in a body read, was dropped with the stream.
        assert_eq!(DROPPED.load(Ordering::SeqCst), dropped_before + i + 1);
    }
    // One slot, reused by every stream, idle again.
    let st = f.stats();
    assert_eq!((st.streams, st.in_flight), (17, 0));
    assert_eq!((st.slots_allocated, st.idle_slots), (1, 1));
}

#[test]
fn streams_destroyed_without_completion_end_and_are_counted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = TestFilter::new(register, "upstream_stamp", b"").unwrap();
    seventeen_uncompleted(&f, DROPPED.load(Ordering::SeqCst));
    // The main-thread flush counts every stream, with no later stream needed.
    f.flush_envoy_stats();
    assert_eq!(f.metric("jisr_streams_total.upstream_stamp"), Some(17));
    assert_eq!(f.metric("jisr_streams_in_flight.upstream_stamp"), Some(0));
    assert_eq!(f.metric("jisr_idle_slots.upstream_stamp"), Some(1));
}

#[test]
fn on_envoy_1_38_the_report_waits_for_the_next_stream_start() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = TestFilter::new_on_envoy_1_38(register, "upstream_stamp", b"").unwrap();
    let streams = |f: &TestFilter| f.metric("jisr_streams_total.upstream_stamp");
    seventeen_uncompleted(&f, DROPPED.load(Ordering::SeqCst));
    // The 1st and the 17th ended streams made a report due (as a completed stream would have
    // sent one); the next stream start sends it, covering every stream ended before it.
    assert_eq!(streams(&f), Some(1));
    let mut s = f.stream();
    s.request_headers(GET, false);
    assert_eq!(streams(&f), Some(17));
    assert_eq!(f.metric("jisr_streams_in_flight.upstream_stamp"), Some(0));
    assert_eq!(f.metric("jisr_idle_slots.upstream_stamp"), Some(1));
    s.destroy_without_completion();
}

/// The tests count drops in one static.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
