//! The request lifecycles that the lifecycle benches measure, each as a jisr handler and as a
//! hand-written raw callback filter doing the same work, on the same allocation-free simulated
//! host (`jisr::testing::bench`). Included by `lifecycle.rs` (time) and `instructions.rs`
//! (instructions counted by callgrind) so both measure exactly the same work.

use jisr::testing::bench::BenchSession;
use jisr::{
    ConfigError, ConfigHandle, Counter, Registry, Request, Response, ResponseMode, ResponseWriter,
    raw::{BodyStatus, HeadersStatus, RawFactory, RawFilter, RawScheduler, RawStream},
};
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};

const GET: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/hello"),
    ("x-api-key", "key-1"),
];
const NOKEY: &[(&str, &str)] = &[(":method", "GET"), (":path", "/hello")];
const POST: &[(&str, &str)] = &[(":method", "POST"), (":path", "/up")];
const OK: &[(&str, &str)] = &[(":status", "200")];
const CHUNK: &[u8] = &[b'x'; 64];

// ---- jisr handlers -----------------------------------------------------------------------

struct Hits {
    hits: Counter,
}

fn hits(cfg: &mut ConfigHandle<'_>) -> Result<Hits, ConfigError> {
    Ok(Hits {
        hits: cfg.counter("hits", &[])?,
    })
}

async fn accept(st: &Hits, mut req: Request<'_>, w: ResponseWriter<'_>) {
    if req.header("x-api-key").is_some() {
        let _ = req.set_header("x-user-id", "user-1");
        let _ = w.counter_inc(st.hits, &[]);
    }
}

async fn reject(req: Request<'_>, w: ResponseWriter<'_>) {
    if req.header("x-api-key").is_none() {
        w.send_with(
            401,
            &[("content-type", b"application/json")],
            b"{\"error\":\"missing api key\"}",
            "missing",
        );
    }
}

async fn body(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    req.limit_body(100);
    let mut buf = [0u8; 64];
    let mut n = 0;
    while let Ok(k) = req.read(&mut buf).await {
        if k == 0 {
            break;
        }
        n += k;
    }
    black_box(n);
}

/// Pends once; the bench wakes it between hooks (the scheduler path, no thread noise).
struct Once(bool);
impl Future for Once {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        WAKER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
        Poll::Pending
    }
}

thread_local! {
    static WAKER: std::cell::RefCell<Option<std::task::Waker>> = const { std::cell::RefCell::new(None) };
}

async fn wake(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    Once(false).await;
    let _ = req.set_header("x-woken", "1");
}

async fn tap(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    let mut buf = [0u8; 64];
    let mut total = 0;
    while let Ok(n) = resp.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n;
    }
    w.set_metadata_num("tap", "bytes", total as f64);
}

// ---- raw equivalents ---------------------------------------------------------------------

struct RawAccept(Counter);
impl RawFilter for RawAccept {
    fn on_request_headers(&mut self, s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
        if s.request_header("x-api-key").is_some() {
            s.set_header(false, "x-user-id", Some(b"user-1"));
            let _ = s.counter_add(self.0, &[], 1);
        }
        HeadersStatus::Continue
    }
}

struct RawReject;
impl RawFilter for RawReject {
    fn on_request_headers(&mut self, s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
        if s.request_header("x-api-key").is_none() {
            s.send_response(
                401,
                &[("content-type", b"application/json")],
                b"{\"error\":\"missing api key\"}",
                "missing",
            );
            return HeadersStatus::StopIteration;
        }
        HeadersStatus::Continue
    }
}

#[derive(Default)]
struct RawBody {
    seen: usize,
}
impl RawFilter for RawBody {
    fn on_request_headers(&mut self, _s: &mut RawStream<'_>, eos: bool) -> HeadersStatus {
        if eos {
            HeadersStatus::Continue
        } else {
            HeadersStatus::StopIteration
        }
    }
    fn on_request_body(&mut self, s: &mut RawStream<'_>, eos: bool) -> BodyStatus {
        let mut buf = [0u8; 64];
        let mut off = 0;
        while self.seen < 100 {
            let want = (100 - self.seen).min(buf.len());
            let n = s.copy_body(false, false, off, &mut buf[..want]);
            if n == 0 {
                break;
            }
            off += n;
            self.seen += n;
        }
        black_box(self.seen);
        if self.seen >= 100 || eos {
            BodyStatus::Continue
        } else {
            BodyStatus::StopIterationAndBuffer
        }
    }
}

#[derive(Default)]
struct RawWake {
    sched: Option<RawScheduler>,
}
impl RawFilter for RawWake {
    fn on_request_headers(&mut self, s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
        let sched = s.scheduler();
        sched.commit(1);
        self.sched = Some(sched);
        HeadersStatus::StopIteration
    }
    fn on_scheduled(&mut self, s: &mut RawStream<'_>, _event: u64) {
        s.set_header(false, "x-woken", Some(b"1"));
        s.continue_decoding();
    }
}

#[derive(Default)]
struct RawTap {
    total: usize,
}
impl RawFilter for RawTap {
    fn on_response_body(&mut self, s: &mut RawStream<'_>, eos: bool) -> BodyStatus {
        let mut buf = [0u8; 64];
        let mut off = 0;
        loop {
            let n = s.copy_body(true, false, off, &mut buf);
            if n == 0 {
                break;
            }
            off += n;
        }
        self.total += off;
        if eos {
            s.set_metadata_num("tap", "bytes", self.total as f64);
        }
        BodyStatus::Continue
    }
}

struct Make<F>(fn() -> F);
impl<F: RawFilter> RawFactory for Make<F> {
    type Filter = F;
    fn new_filter(&self) -> F {
        (self.0)()
    }
}

/// Registers every jisr handler and raw filter of [`CASES`].
pub fn register(r: &mut Registry) {
    r.filter("accept").state(hits).handle(accept);
    r.register("reject", reject);
    r.register("body", body);
    r.register("wake", wake);
    // Response handler only, as the raw twin has no request-side work.
    r.filter("tap").on_response(ResponseMode::Observe, tap);
    r.register_raw("raw_accept", |cfg| {
        let c = cfg.counter("hits", &[])?;
        Ok(RawAcceptFactory(c))
    });
    r.register_raw("raw_reject", |_| Ok(Make(|| RawReject)));
    r.register_raw("raw_body", |_| Ok(Make(RawBody::default)));
    r.register_raw("raw_wake", |_| Ok(Make(RawWake::default)));
    r.register_raw("raw_tap", |_| Ok(Make(RawTap::default)));
}

struct RawAcceptFactory(Counter);
impl RawFactory for RawAcceptFactory {
    type Filter = RawAccept;
    fn new_filter(&self) -> RawAccept {
        RawAccept(self.0)
    }
}

// ---- lifecycles --------------------------------------------------------------------------

fn accept_once(s: &mut BenchSession<'_>) {
    s.begin(GET);
    assert_eq!(s.request_headers(true), HeadersStatus::Continue);
    s.end();
}

fn reject_once(s: &mut BenchSession<'_>) {
    s.begin(NOKEY);
    assert_eq!(s.request_headers(true), HeadersStatus::StopIteration);
    s.end();
}

fn body_once(s: &mut BenchSession<'_>) {
    s.begin(POST);
    s.request_headers(false);
    s.request_body(CHUNK, false);
    s.request_body(CHUNK, false);
    s.request_body(CHUNK, true);
    s.end();
}

fn wake_once(s: &mut BenchSession<'_>) {
    s.begin(GET);
    s.request_headers(true);
    if let Some(w) = WAKER.with(|w| w.borrow_mut().take()) {
        w.wake();
    }
    assert_eq!(s.run_scheduled(), 1);
    assert_eq!(s.effects().continue_decoding, 1);
    s.end();
}

fn tap_once(s: &mut BenchSession<'_>) {
    s.begin(GET);
    s.request_headers(true);
    s.response_headers(OK, false);
    s.response_body(CHUNK, false);
    s.response_body(CHUNK, false);
    s.response_body(CHUNK, true);
    s.end();
}

/// One request lifecycle: the same work as a jisr filter and as a raw filter.
pub struct Case {
    /// What the lifecycle does.
    pub name: &'static str,
    /// The jisr filter's name in [`register`]; also the case's key on command lines.
    pub jisr: &'static str,
    /// The raw filter's name in [`register`].
    pub raw: &'static str,
    /// Drives one request through a session of either filter.
    pub run: fn(&mut BenchSession<'_>),
    /// The jisr / raw time ratio aimed for.
    pub goal: f64,
}

pub const CASES: &[Case] = &[
    Case {
        name: "header-only accept",
        jisr: "accept",
        raw: "raw_accept",
        run: accept_once,
        goal: 1.10,
    },
    Case {
        name: "reject with a local reply",
        jisr: "reject",
        raw: "raw_reject",
        run: reject_once,
        goal: 1.10,
    },
    Case {
        name: "limit_body read, 3 chunks",
        jisr: "body",
        raw: "raw_body",
        run: body_once,
        goal: 1.10,
    },
    Case {
        name: "one wake through the scheduler",
        jisr: "wake",
        raw: "raw_wake",
        run: wake_once,
        goal: 1.25,
    },
    Case {
        name: "Observe tap, 3 chunks",
        jisr: "tap",
        raw: "raw_tap",
        run: tap_once,
        goal: 1.10,
    },
];
