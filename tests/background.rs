//! Background tasks of a filter config, through the simulated host: spawned from handlers or
//! other threads, polled on the (simulated) main thread, with callouts, streams and metrics
//! not tied to a stream.

mod common;

use common::GET;
use jisr::background::{Background, BackgroundEvent};
use jisr::callout::{CalloutError, CalloutRequest};
use jisr::handler::MetricError;
use jisr::testing::TestFilter;
use jisr::{ConfigError, ConfigHandle, Counter, Registry, Request, ResponseWriter};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Audit {
    bg: Background,
    sent: Counter,
    failed: Counter,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Audit, ConfigError> {
    Ok(Audit {
        bg: cfg.background(),
        sent: cfg.counter("audit_sent", &[])?,
        failed: cfg.counter("audit_failed", &["why"])?,
    })
}

/// Answers at once; the audit callout outlives the request.
async fn audited(a: &Audit, req: Request<'_>, w: ResponseWriter<'_>) {
    let path = req.path().unwrap_or("/").to_string();
    let (bg, sent, failed) = (a.bg.clone(), a.sent, a.failed);
    a.bg.spawn(async move {
        let req = CalloutRequest::post("audit", "/log", "audit.local", path.as_bytes());
        match bg.callout(req).await {
            Ok(r) if r.status == 200 => bg.counter_add(sent, &[], 1).unwrap(),
            Ok(_) => bg.counter_add(failed, &["status"], 1).unwrap(),
            Err(_) => bg.counter_add(failed, &["error"], 1).unwrap(),
        }
    });
    // Outside a background task the main-thread calls are refused, not run on a worker.
    let outside = a.bg.counter_add(a.sent, &[], 1);
    let callout = a.bg.callout(CalloutRequest::get("audit", "/", "a")).await;
    w.send(200, format!("{outside:?} {:?}", callout.err()).as_bytes());
}

fn register(r: &mut Registry) {
    r.filter("audited").state(load).handle(audited);
}

#[test]
fn a_background_callout_outlives_its_request_and_counts_without_a_stream() {
    let f = TestFilter::new(register, "audited", b"").unwrap();
    let mut s = f.stream();
    s.request_headers(GET, true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        "Err(Detached) Some(Detached)"
    );
    s.complete();
    drop(s);
    // The request is over; the task runs on the main thread and starts its callout.
    assert_eq!(f.run_background(), 1);
    let calls = f.background_callouts();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].cluster, "audit");
    assert_eq!(calls[0].body, b"/hello?x=1");
    assert_eq!(f.metric("audit_sent"), None);
    f.complete_background_callout(calls[0].id, 200, b"ok");
    assert_eq!(f.metric("audit_sent"), Some(1));
    // A failing answer counts with its label.
    let mut s = f.stream();
    s.request_headers(GET, true);
    f.run_background();
    let id = f.background_callouts()[1].id;
    f.complete_background_callout(id, 503, b"");
    assert_eq!(f.metric("audit_failed.status"), Some(1));
}

// The config's Background and Counter, handed out by a handler.
std::thread_local! {
    static HANDED: std::cell::RefCell<Option<(Background, Counter)>> = const { std::cell::RefCell::new(None) };
}

async fn hand_out(a: &Audit, _req: Request<'_>, w: ResponseWriter<'_>) {
    HANDED.with(|h| *h.borrow_mut() = Some((a.bg.clone(), a.sent)));
    w.send(200, b"");
}

fn handing_filter() -> (TestFilter, Background, Counter) {
    let f = TestFilter::new(
        |r: &mut Registry| {
            r.filter("hand").state(load).handle(hand_out);
        },
        "hand",
        b"",
    )
    .unwrap();
    f.stream().request_headers(GET, true);
    let (bg, c) = HANDED.with(|h| h.borrow_mut().take()).unwrap();
    (f, bg, c)
}

#[test]
fn config_metrics_are_unsupported_on_envoy_1_38() {
    let (f, bg, sent) = handing_filter();
    f.simulate_envoy_1_38();
    let seen: Arc<Mutex<Option<Result<(), MetricError>>>> = Arc::default();
    let (s2, bg2) = (seen.clone(), bg.clone());
    bg.spawn(async move {
        *s2.lock().unwrap() = Some(bg2.counter_add(sent, &[], 1));
    });
    f.run_background();
    let got = *seen.lock().unwrap();
    assert!(
        matches!(got, Some(Err(MetricError::Unsupported(_)))),
        "{got:?}"
    );
}

static TASK_DROPS: AtomicUsize = AtomicUsize::new(0);

struct CountDrop;

impl Drop for CountDrop {
    fn drop(&mut self) {
        TASK_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn tasks_spawned_from_other_threads_run_and_die_with_the_config() {
    let (f, bg, _) = handing_filter();
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let bg2 = bg.clone();
    std::thread::spawn(move || {
        bg2.spawn(async move {
            r2.fetch_add(1, Ordering::SeqCst);
        });
    })
    .join()
    .unwrap();
    assert!(f.wait_background(Duration::from_secs(1)));
    f.run_background();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    // A panicking task is dropped and counted; the others run.
    bg.spawn(async { panic!("task bug") });
    bg.spawn(async {});
    // A task that never finishes holds a value until the config goes away.
    let before = TASK_DROPS.load(Ordering::SeqCst);
    bg.spawn(async {
        let _held = CountDrop;
        std::future::pending::<()>().await;
    });
    f.run_background();
    assert_eq!((bg.panics(), bg.tasks()), (1, 1));
    assert_eq!(TASK_DROPS.load(Ordering::SeqCst), before);
    drop(f);
    assert_eq!(TASK_DROPS.load(Ordering::SeqCst), before + 1);
    // The config is gone: a spawn is refused and its future dropped.
    assert!(!bg.spawn(async {}));
}

#[test]
fn a_background_stream_sends_and_reads() {
    let (f, bg, _) = handing_filter();
    let got: Arc<Mutex<Vec<BackgroundEvent>>> = Arc::default();
    let (g, bg2) = (got.clone(), bg.clone());
    bg.spawn(async move {
        let req = CalloutRequest::post("feed", "/ingest", "feed.local", b"first ");
        let mut s = bg2.stream(req, false).expect("stream");
        assert!(s.send(b"second", true));
        while let Some(ev) = s.next_event().await {
            g.lock().unwrap().push(ev);
        }
    });
    f.run_background();
    let log = f.background_stream_log();
    assert_eq!(log.len(), 2, "{log:?}");
    let id = log[0].0;
    assert_eq!(log[0].1, "start end=false");
    assert_eq!(log[1].1, "data \"second\" end=true");
    f.answer_background_stream(id, 200, &[b"a", b"b"]);
    let got = got.lock().unwrap().clone();
    assert_eq!(
        got,
        [
            BackgroundEvent::Headers(200, vec![(":status".into(), b"200".to_vec())], false),
            BackgroundEvent::Data(b"a".to_vec(), false),
            BackgroundEvent::Data(b"b".to_vec(), true),
            BackgroundEvent::Complete,
        ]
    );
    assert_eq!(bg.tasks(), 0);
    // Outside a task a stream cannot be opened.
    let err = bg
        .stream(CalloutRequest::get("feed", "/", "f"), true)
        .err()
        .unwrap();
    assert_eq!(err, CalloutError::Detached);
}
