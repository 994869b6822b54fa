//! Introspection: per-filter figures, the built-in filter, and the Envoy stats mirror.

mod common;

use common::{GET, Oneshot};
use jisr::testing::TestFilter;
use jisr::{Registry, Request, ResponseWriter, raw::HeadersStatus, stats::filter_stats};
use std::cell::RefCell;

thread_local! {
    static ONESHOT: RefCell<Option<Oneshot>> = const { RefCell::new(None) };
}

async fn waits(_req: Request<'_>, _w: ResponseWriter<'_>) {
    let o = ONESHOT.with(|o| o.borrow_mut().get_or_insert_with(Oneshot::default).clone());
    o.recv().await;
}

async fn boom(_req: Request<'_>, _w: ResponseWriter<'_>) {
    panic!("boom");
}

fn register(r: &mut Registry) {
    r.register("introspected_waits", waits);
    r.register("introspected_boom", boom);
}

#[test]
fn figures_count_streams_polls_wakes_slots_and_panics() {
    let f = TestFilter::new(register, "introspected_waits", b"").unwrap();
    for _ in 0..3 {
        ONESHOT.with(|o| *o.borrow_mut() = None);
        let mut s = f.stream();
        assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
        let tx = ONESHOT.with(|o| o.borrow().clone().unwrap());
        std::thread::spawn(move || tx.send(1)).join().unwrap();
        assert_eq!(s.run_scheduled(), 1);
    }
    let open = f.stream();
    let st = f.stats();
    assert_eq!(st.streams, 4);
    assert_eq!(st.in_flight, 1);
    assert_eq!(st.polls, 6, "two polls per finished stream");
    assert_eq!(st.wakes_scheduled, 3);
    assert_eq!(
        st.slots_allocated, 1,
        "one slot serves every stream, the open one included"
    );
    assert_eq!(st.idle_slots, 0);
    drop(open);
    assert_eq!(f.stats().idle_slots, 1);
    assert!(
        filter_stats()
            .iter()
            .any(|(n, s)| n == "introspected_waits" && s.streams == 4)
    );

    let b = TestFilter::new(register, "introspected_boom", b"").unwrap();
    let _ = b.stream().request_headers(GET, true);
    assert_eq!(b.stats().panics, 1);
}

#[test]
fn builtin_filter_answers_health_version_and_stats() {
    let f = TestFilter::new(register, jisr::stats::INTROSPECTION_FILTER, b"").unwrap();
    let _other = TestFilter::new(register, "introspected_boom", b"").unwrap();
    let ask = |path: &str| {
        let mut s = f.stream();
        let st = s.request_headers(&[(":method", "GET"), (":path", path)], true);
        (st, s.local_reply())
    };
    let (st, reply) = ask("/jisr/healthz");
    assert_eq!(st, HeadersStatus::StopIteration);
    assert_eq!(reply.unwrap().body, b"ok\n");
    let body = String::from_utf8(ask("/jisr/version").1.unwrap().body).unwrap();
    assert_eq!(
        body,
        format!(
            "{{\"jisr\":\"{}\",\"envoy_abi\":\"v0.2.0\"}}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let body = String::from_utf8(ask("/jisr/stats?x=1").1.unwrap().body).unwrap();
    assert!(body.starts_with("{\"filters\":["), "{body}");
    assert!(
        body.contains("{\"filter\":\"introspected_boom\",\"streams\":0,"),
        "{body}"
    );
    let (st, reply) = ask("/anything/else");
    assert_eq!((st, reply), (HeadersStatus::Continue, None));
}

#[test]
fn figures_reach_envoy_stats_from_the_main_thread_flush_not_from_the_streams() {
    let f = TestFilter::new(register, "introspected_boom", b"").unwrap();
    // Every series is listed at 0 as soon as the config loads.
    assert_eq!(f.metric("jisr_streams_total.introspected_boom"), Some(0));
    assert_eq!(
        f.metric("jisr_wakes_total.introspected_boom.scheduler"),
        Some(0)
    );
    assert_eq!(
        f.metric("jisr_streams_in_flight.introspected_boom"),
        Some(0)
    );
    let held = f.stream();
    for _ in 0..17 {
        let mut s = f.stream();
        s.request_headers(GET, true);
    }
    // The streams only counted in their lane: Envoy was not called.
    assert_eq!(f.metric("jisr_streams_total.introspected_boom"), Some(0));
    // The main thread's flush (its deadline fired) sends the sums.
    f.flush_envoy_stats();
    assert_eq!(f.metric("jisr_streams_total.introspected_boom"), Some(18));
    assert_eq!(f.metric("jisr_panics_total.introspected_boom"), Some(17));
    assert_eq!(
        f.metric("jisr_streams_in_flight.introspected_boom"),
        Some(1)
    );
    assert_eq!(f.metric("jisr_idle_slots.introspected_boom"), Some(1));
    // A flush that finds nothing new sends nothing: counters stay exact.
    f.flush_envoy_stats();
    assert_eq!(f.metric("jisr_streams_total.introspected_boom"), Some(18));
    drop(held);
    f.flush_envoy_stats();
    assert_eq!(
        f.metric("jisr_streams_in_flight.introspected_boom"),
        Some(0)
    );
    assert_eq!(f.metric("jisr_idle_slots.introspected_boom"), Some(2));
}

/// Without a test calling the flush: the deadline armed by the streams fires on jisr's timer
/// thread about one second later and commits the flush to the config's scheduler; the main
/// thread (here `run_background`) runs it.
#[test]
fn the_flush_deadline_fires_about_one_interval_after_the_streams() {
    let f = TestFilter::new(register, "introspected_boom", b"").unwrap();
    let start = std::time::Instant::now();
    for _ in 0..5 {
        f.stream().request_headers(GET, true);
    }
    assert!(
        f.wait_background(std::time::Duration::from_secs(10)),
        "the flush was committed"
    );
    let waited = start.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "{waited:?}"
    );
    assert_eq!(f.run_background(), 0, "not a background task's event");
    assert_eq!(f.metric("jisr_streams_total.introspected_boom"), Some(5));
    assert_eq!(f.metric("jisr_panics_total.introspected_boom"), Some(5));
    // The config goes away with the next deadline (the flush found changes) pending: it is
    // forgotten, nothing fires into the dropped config.
    drop(f);
    std::thread::sleep(std::time::Duration::from_millis(1300));
}

#[test]
fn on_envoy_1_38_workers_mirror_the_figures_every_16_streams() {
    let f = TestFilter::new_on_envoy_1_38(register, "introspected_boom", b"").unwrap();
    assert_eq!(f.metric("jisr_streams_total.introspected_boom"), None);
    for i in 0..17 {
        let mut s = f.stream();
        s.request_headers(GET, true);
        if i == 0 {
            drop(s);
            // Flushed by the worker at its 1st finished stream.
            assert_eq!(f.metric("jisr_streams_total.introspected_boom"), Some(1));
        }
    }
    // ... and at the 17th.
    assert_eq!(f.metric("jisr_streams_total.introspected_boom"), Some(17));
    assert_eq!(f.metric("jisr_panics_total.introspected_boom"), Some(17));
    assert_eq!(
        f.metric("jisr_streams_in_flight.introspected_boom"),
        Some(0)
    );
    assert_eq!(f.metric("jisr_idle_slots.introspected_boom"), Some(0));
    // The main-thread flush does nothing there.
    f.flush_envoy_stats();
    assert_eq!(f.metric("jisr_streams_total.introspected_boom"), Some(17));
}

async fn wait_forever(_req: jisr::Request<'_>, _w: jisr::ResponseWriter<'_>) {
    std::future::pending::<()>().await;
}

/// A worker's lane keeps at most 256 idle slots: a burst of 300 concurrent streams on one
/// thread leaves 256 for reuse and frees the rest.
#[test]
fn a_lane_keeps_a_bounded_number_of_idle_slots() {
    let f = jisr::testing::TestFilter::new(
        |r| {
            r.register("burst", wait_forever);
        },
        "burst",
        b"",
    )
    .unwrap();
    let mut streams: Vec<_> = (0..300).map(|_| f.stream()).collect();
    for s in &mut streams {
        s.request_headers(&[(":method", "GET"), (":path", "/")], true);
    }
    assert_eq!(f.stats().in_flight, 300);
    drop(streams);
    let st = f.stats();
    assert_eq!(
        (st.in_flight, st.slots_allocated, st.idle_slots),
        (0, 300, 256)
    );
}

async fn hello_header(mut req: jisr::Request<'_>, _w: jisr::ResponseWriter<'_>) {
    let _ = req.set_header("x-hello", "1");
}

/// Two threads driving one config use separate lanes: both reuse their own slots and the
/// totals add up.
#[test]
fn threads_use_their_own_lanes_and_totals_add_up() {
    use jisr::testing::bench::BenchFilter;
    let f = BenchFilter::new(
        |r| {
            r.register("hello", hello_header);
        },
        "hello",
        b"",
    )
    .unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut session = f.session();
                for _ in 0..1000 {
                    session.begin(&[(":method", "GET"), (":path", "/")]);
                    session.request_headers(true);
                    session.end();
                }
            });
        }
    });
    let st = f.stats();
    assert_eq!(st.streams, 2000);
    assert_eq!(st.in_flight, 0);
    assert_eq!(st.slots_allocated, 2, "one slot per thread, reused");
    assert_eq!(st.idle_slots, 2);
}
