//! Zero allocations per request on the core paths, measured with a counting allocator.
//!
//! Each path runs 10,000 requests through the allocation-free simulated stream
//! (`jisr::testing::bench`) after a warm-up, on one reused session: every allocation counted
//! while measuring comes from jisr or the handler. The wake path's other thread is measured too.

use jisr::testing::bench::BenchFilter;
use jisr::{
    ConfigError, ConfigHandle, Counter, Level, LogValue, MetadataSource, Next, Registry, Request,
    Response, ResponseMode, ResponseWriter,
    callout::CalloutRequest,
    chain,
    raw::{BodyStatus, HeadersStatus},
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

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

const WARMUP: usize = 200;
const REQUESTS: usize = 10_000;

/// Runs `one` WARMUP times, then REQUESTS times while counting; returns allocations/request.
fn measure(mut one: impl FnMut()) -> f64 {
    for _ in 0..WARMUP {
        one();
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    MEASURE.with(|m| m.set(true));
    for _ in 0..REQUESTS {
        one();
    }
    MEASURE.with(|m| m.set(false));
    (ALLOCS.load(Ordering::SeqCst) - before) as f64 / REQUESTS as f64
}

// ---- handlers ----------------------------------------------------------------------------

struct Hello {
    requests: Counter,
}

fn hello_config(cfg: &mut ConfigHandle<'_>) -> Result<Hello, ConfigError> {
    Ok(Hello {
        requests: cfg.counter("hello_requests_total", &[])?,
    })
}

async fn log_requests(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
    w.log_attrs(
        Level::Info,
        "request",
        &[
            ("method", LogValue::Str(req.method().unwrap_or("-"))),
            ("path", LogValue::Str(req.path().unwrap_or("-"))),
        ],
    );
    next.run(&mut req, &mut w).await;
}

async fn hello(state: &Hello, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let _ = req.set_header("x-hello", "from-jisr");
    w.set_metadata_str("jisr", "filter", "hello");
    let _ = w.counter_inc(state.requests, &[]);
}

async fn auth(req: Request<'_>, w: ResponseWriter<'_>) {
    if req.header("x-api-key").is_none() {
        w.send_with(
            401,
            &[("content-type", b"application/json")],
            br#"{"error":"missing api key"}"#,
            "missing",
        );
    }
}

async fn body_limit(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    req.limit_body(100);
    let mut buf = [0u8; 32];
    let mut seen = 0;
    while let Ok(n) = req.read(&mut buf).await {
        if n == 0 {
            break;
        }
        seen += n;
    }
    assert_eq!(seen, 100);
}

/// Hands the stream's waker to a long-lived thread, which wakes it.
struct Gate {
    state: Mutex<(bool, Option<Waker>)>,
    cv: Condvar,
}

static GATE: Gate = Gate {
    state: Mutex::new((false, None)),
    cv: Condvar::new(),
};

struct WaitGate;

impl Future for WaitGate {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = GATE.state.lock().unwrap();
        if g.0 {
            g.0 = false;
            return Poll::Ready(());
        }
        match &mut g.1 {
            Some(w) => w.clone_from(cx.waker()),
            None => g.1 = Some(cx.waker().clone()),
        }
        GATE.cv.notify_all();
        Poll::Pending
    }
}

fn start_waker_thread() {
    std::thread::spawn(|| {
        MEASURE.with(|m| m.set(true));
        loop {
            let waker = {
                let mut g = GATE.state.lock().unwrap();
                while g.1.is_none() {
                    g = GATE.cv.wait(g).unwrap();
                }
                g.0 = true;
                g.1.take()
            };
            if let Some(w) = waker {
                // Let the hook return first, so the wake takes the scheduler path.
                std::thread::sleep(Duration::from_micros(50));
                w.wake();
            }
        }
    });
}

async fn wait_once(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    WaitGate.await;
    let _ = req.set_header("x-woken", "1");
}

async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}

/// Reads metadata (scalars, list elements, names), appends to lists, reads the routed cluster and the buffer limit, raises the limit, flags the stream;
/// answers 200 when every read saw the bench host's values.
async fn stream_info(_req: Request<'_>, w: ResponseWriter<'_>) {
    let ok = w.metadata_str(MetadataSource::Route, "acme", "tier") == Some("bench")
        && w.metadata_num(MetadataSource::Cluster, "acme", "weight") == Some(1.0)
        && w.metadata_bool(MetadataSource::Dynamic, "acme", "canary") == Some(true)
        && w.metadata_list_len(MetadataSource::Dynamic, "jwt", "aud") == Some(1)
        && w.metadata_list_str(MetadataSource::Dynamic, "jwt", "aud", 0) == Some("bench")
        && w.metadata_list_num(MetadataSource::Dynamic, "jwt", "n", 0) == Some(1.0)
        && w.metadata_keys(MetadataSource::Dynamic, "jwt")
            .eq(["bench"])
        && w.metadata_namespaces(MetadataSource::Route).len() == 1
        && w.cluster_name() == Some("bench")
        && w.cluster_hosts(0).is_some_and(|h| h.healthy == 1)
        && w.buffer_limit() == 1 << 20;
    w.set_buffer_limit(4 << 20);
    let appended = w.append_metadata_str("audit", "reasons", "bench")
        && w.append_metadata_num("audit", "scores", 1.0)
        && w.append_metadata_bool("audit", "flags", true);
    w.add_response_flag("JISR");
    w.clear_route_cluster_cache();
    w.send(if ok && appended { 200 } else { 500 }, b"");
}

async fn traced(_req: Request<'_>, w: ResponseWriter<'_>) {
    use jisr::handler::StructValue::{List, Num, Str};
    use jisr::info::TimingPoint;
    let span = w.span().expect("bench streams are traced");
    span.set_tag("tenant", "bench");
    span.set_tags(&[("a", "1"), ("b", "2")]);
    span.log("checked");
    if let Some(child) = span.child("lookup") {
        child.set_tag("step", "1");
    }
    let ttfb = w
        .timing()
        .ok()
        .and_then(|t| t.since_start(TimingPoint::FirstUpstreamRxByteReceived));
    w.set_metadata_strs("acme", &[("user", "bench"), ("tier", "gold")]);
    let scopes = [Str("read"), Str("write")];
    let ok = w
        .set_metadata_struct(
            "audit",
            &[
                ("user", Str("bench")),
                ("scopes", List(&scopes)),
                ("n", Num(1.0)),
            ],
        )
        .is_ok();
    w.send(
        if ok && ttfb == Some(Duration::from_millis(1)) {
            200
        } else {
            500
        },
        b"",
    );
}

fn published_keys() -> &'static jisr::server::Published<Vec<String>> {
    static KEYS: std::sync::OnceLock<jisr::server::Published<Vec<String>>> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(|| jisr::server::Published::new(vec!["k1".into(), "k2".into()]))
}

async fn snapshot(req: Request<'_>, w: ResponseWriter<'_>) {
    let keys = published_keys().get();
    let key = req.header_str(":path").unwrap_or("");
    let known = keys.iter().any(|k| k == key);
    w.send(if known { 500 } else { 401 }, b"");
}

async fn tap(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    let mut buf = [0u8; 64];
    let mut total = 0u64;
    while let Ok(n) = resp.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    w.set_metadata_num("tap", "bytes", total as f64);
}

async fn rewrite(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
    let mut buf = [0u8; 64];
    while let Ok(n) = resp.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    resp.replace_body(br#"{"rewritten":true}"#).unwrap();
    let _ = resp.set_header("x-rewritten", "1");
}

thread_local! {
    // The callout body the user keeps: reused across requests (its growth is the user's).
    static KEEP: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

async fn callout(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let mut body = KEEP.with(|k| std::mem::take(&mut *k.borrow_mut()));
    body.clear();
    let r = w
        .callout(
            CalloutRequest::get("auth", "/check", "auth").header("x-key", b"k"),
            &mut body,
        )
        .await;
    if r.map(|r| r.status) == Ok(200) {
        let _ = req.set_header("x-checked", "1");
    }
    KEEP.with(|k| *k.borrow_mut() = body);
}

fn register(r: &mut Registry) {
    r.filter("hello")
        .state(hello_config)
        .handle(chain(log_requests, hello));
    r.register("auth", auth);
    r.register("body", body_limit);
    r.register("wait", wait_once);
    r.filter("tap").respond(ResponseMode::Observe, pass, tap);
    r.filter("only_tap").on_response(ResponseMode::Observe, tap);
    r.filter("rewrite")
        .respond(ResponseMode::Buffer, pass, rewrite);
    r.register("callout", callout);
    r.register("stream_info", stream_info);
    r.register("traced", traced);
    r.register("snapshot", snapshot);
}

const GET: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/hello"),
    (":authority", "x"),
    (":scheme", "http"),
];
const POST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":path", "/up"),
    ("content-length", "192"),
];
const OK: &[(&str, &str)] = &[
    (":status", "200"),
    ("content-type", "application/json"),
    ("content-length", "192"),
];
const CHUNK: &[u8] = &[b'x'; 64];

#[test]
fn zero_allocations_per_request_on_every_core_path() {
    start_waker_thread();
    let mut report = Vec::new();

    let f = BenchFilter::new(register, "hello", b"").unwrap();
    let mut s = f.session();
    report.push((
        "hello (header-only accept)",
        measure(|| {
            s.begin(GET);
            assert_eq!(s.request_headers(true), HeadersStatus::Continue);
            s.end();
        }),
    ));
    assert_eq!(s.effects().logs, 1);

    let f = BenchFilter::new(register, "auth", b"").unwrap();
    let mut s = f.session();
    report.push((
        "auth (reject with a local reply)",
        measure(|| {
            s.begin(GET);
            assert_eq!(s.request_headers(true), HeadersStatus::StopIteration);
            s.end();
        }),
    ));
    assert_eq!(s.effects().reply_status, 401);

    let f = BenchFilter::new(register, "stream_info", b"").unwrap();
    let mut s = f.session();
    report.push((
        "metadata, cluster and buffer-limit reads and writes",
        measure(|| {
            s.begin(GET);
            assert_eq!(s.request_headers(true), HeadersStatus::StopIteration);
            s.end();
        }),
    ));
    assert_eq!(s.effects().reply_status, 200);

    let f = BenchFilter::new(register, "traced", b"").unwrap();
    let mut s = f.session();
    report.push((
        "span tags and child span, timing, metadata batch and struct",
        measure(|| {
            s.begin(GET);
            assert_eq!(s.request_headers(true), HeadersStatus::StopIteration);
            s.end();
        }),
    ));
    assert_eq!(s.effects().reply_status, 200);
    assert!(s.effects().span_edits >= 5);

    let f = BenchFilter::new(register, "snapshot", b"").unwrap();
    let mut s = f.session();
    // A publication before the warm-up: the worker's cached copy is refreshed once.
    published_keys().publish(vec!["k3".into()]);
    report.push((
        "read of a value published by a server task",
        measure(|| {
            s.begin(GET);
            assert_eq!(s.request_headers(true), HeadersStatus::StopIteration);
            s.end();
        }),
    ));
    assert_eq!(s.effects().reply_status, 401);

    let f = BenchFilter::new(register, "body", b"").unwrap();
    let mut s = f.session();
    report.push((
        "limit_body read of a multi-chunk body",
        measure(|| {
            s.begin(POST);
            assert_eq!(s.request_headers(false), HeadersStatus::StopIteration);
            assert_eq!(
                s.request_body(CHUNK, false),
                BodyStatus::StopIterationAndBuffer
            );
            assert_eq!(s.request_body(CHUNK, false), BodyStatus::Continue);
            assert_eq!(s.request_body(CHUNK, true), BodyStatus::Continue);
            s.end();
        }),
    ));

    let f = BenchFilter::new(register, "wait", b"").unwrap();
    let mut s = f.session();
    let mut via_scheduler = 0;
    report.push((
        "pends once, woken from another thread",
        measure(|| {
            s.begin(GET);
            // A wake that lands while the hook still polls completes inline (also correct).
            if s.request_headers(true) == HeadersStatus::StopIteration {
                via_scheduler += 1;
                while s.effects().continue_decoding == 0 {
                    s.wait_scheduled(Duration::from_secs(5));
                }
            }
            s.end();
        }),
    ));
    assert!(
        via_scheduler > (WARMUP + REQUESTS) / 2,
        "only {via_scheduler} went through the scheduler"
    );

    for (name, what) in [
        ("tap", "Observe tap of a multi-chunk response"),
        (
            "only_tap",
            "Observe tap, response handler only (on_response)",
        ),
    ] {
        let f = BenchFilter::new(register, name, b"").unwrap();
        let mut s = f.session();
        report.push((
            what,
            measure(|| {
                s.begin(GET);
                assert_eq!(s.request_headers(true), HeadersStatus::Continue);
                assert_eq!(s.response_headers(OK, false), HeadersStatus::Continue);
                for _ in 0..2 {
                    assert_eq!(s.response_body(CHUNK, false), BodyStatus::Continue);
                }
                assert_eq!(s.response_body(CHUNK, true), BodyStatus::Continue);
                s.end();
            }),
        ));
    }

    let f = BenchFilter::new(register, "rewrite", b"").unwrap();
    let mut s = f.session();
    report.push((
        "Buffer rewrite",
        measure(|| {
            s.begin(GET);
            s.request_headers(true);
            assert_eq!(s.response_headers(OK, false), HeadersStatus::StopIteration);
            assert_eq!(
                s.response_body(CHUNK, false),
                BodyStatus::StopIterationAndBuffer
            );
            assert_eq!(s.response_body(CHUNK, true), BodyStatus::Continue);
            s.end();
        }),
    ));

    let f = BenchFilter::new(register, "callout", b"").unwrap();
    let mut s = f.session();
    report.push((
        "callout",
        measure(|| {
            s.begin(GET);
            assert_eq!(s.request_headers(true), HeadersStatus::StopIteration);
            s.complete_callout("200", b"{\"ok\":true}");
            assert_eq!(s.effects().continue_decoding, 1);
            s.end();
        }),
    ));

    // The counter itself works: a path that allocates once per request shows 1.
    let control = measure(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(16))));
    assert_eq!(control, 1.0, "counting allocator sees allocations");

    for (path, per_request) in &report {
        println!("{path}: {per_request} allocations per request");
    }
    for (path, per_request) in &report {
        assert_eq!(*per_request, 0.0, "{path} allocates");
    }
}
