//! Listener filters on simulated sockets: what the handler sees, what it sets for filter-chain
//! matching, and how the socket goes on or ends.

use jisr::listener::{Peeked, Socket};
use jisr::testing::{SocketOutcome, TestListenerFilter};
use jisr::{ConfigError, ConfigHandle, Registry};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Waits for `NAME:<name>\n` (at most 32 bytes) and sets the name as SNI; anything else
/// closes the socket.
async fn named(mut s: Socket<'_>) {
    let mut buf = [0u8; 32];
    loop {
        let p = s.peek(&mut buf).await;
        let got = &buf[..p.len()];
        if let Some(end) = got.iter().position(|b| *b == b'\n') {
            let line = core::str::from_utf8(&got[..end]).unwrap_or("");
            match line.strip_prefix("NAME:") {
                Some(name) if s.set_server_name(name) => {
                    s.set_application_protocols(&["x-named", "http/1.1"]);
                    s.set_transport_protocol("named");
                    s.set_metadata("named", "name", name);
                    s.set_metadata_number("named", "len", name.len() as f64);
                }
                _ => s.close("named_bad_line"),
            }
            return;
        }
        if p.is_end() {
            s.close("named_no_line");
            return;
        }
    }
}

fn register(r: &mut Registry) {
    r.listener("named").max_read_bytes(32).handle(named);
}

#[test]
fn the_handler_peeks_until_it_can_decide_and_the_socket_goes_on() {
    let f = TestListenerFilter::new(register, "named", b"").unwrap();
    let mut s = f.accept();
    assert_eq!(s.outcome(), SocketOutcome::Waiting, "waits for bytes");
    s.client_sends(b"NAME:al");
    assert_eq!(s.outcome(), SocketOutcome::Waiting);
    s.client_sends(b"pha.test\nrest of the stream");
    assert_eq!(s.outcome(), SocketOutcome::WentOn);
    assert_eq!(s.server_name().as_deref(), Some("alpha.test"));
    assert_eq!(s.application_protocols(), ["x-named", "http/1.1"]);
    assert_eq!(s.transport_protocol().as_deref(), Some("named"));
    assert_eq!(s.metadata("named", "name").as_deref(), Some("alpha.test"));
    assert_eq!(s.metadata("named", "len").as_deref(), Some("10"));
    // Peeked bytes stay in the socket for the connection.
    assert_eq!(s.remaining(), b"NAME:alpha.test\nrest of the stream");
    assert!(s.drained().is_empty());
}

#[test]
fn garbage_is_bounded_by_max_read_bytes_and_closed_with_details() {
    let f = TestListenerFilter::new(register, "named", b"").unwrap();
    let mut s = f.accept();
    s.client_sends(&[b'x'; 20]);
    assert_eq!(s.outcome(), SocketOutcome::Waiting);
    // Past 32 bytes Envoy peeks no more: the peek ends and the handler decides.
    s.client_sends(&[b'x'; 1000]);
    assert_eq!(s.outcome(), SocketOutcome::Closed("named_no_line".into()));
    let mut s = f.accept();
    s.client_sends(b"NAME:has space\n");
    assert_eq!(s.outcome(), SocketOutcome::Closed("named_bad_line".into()));
    assert_eq!(s.server_name(), None, "a name with a space is refused");
}

async fn addresses(mut s: Socket<'_>) {
    let before = format!("{:?} {:?}", s.peer_addr(), s.local_addr());
    s.set_metadata("a", "before", &before);
    assert!(s.set_peer_addr("203.0.113.7:5555".parse().unwrap()));
    assert!(s.restore_local_addr("[2001:db8::1]:443".parse().unwrap()));
    let after = format!(
        "{:?} {:?} {:?}",
        s.peer_addr(),
        s.direct_peer_addr(),
        s.local_addr()
    );
    s.set_metadata("a", "after", &after);
    // Nothing to peek with the default max read bytes.
    let mut buf = [0u8; 8];
    assert_eq!(s.peek(&mut buf).await, Peeked::End(0));
}

#[test]
fn addresses_can_be_read_overridden_and_restored_without_peeking() {
    fn reg(r: &mut Registry) {
        r.listener("addr").handle(addresses);
    }
    let f = TestListenerFilter::new(reg, "addr", b"").unwrap();
    let s = f.accept_from("10.0.0.9", 4321);
    // Returned inside on_accept: the socket went on without waiting for bytes.
    assert_eq!(s.outcome(), SocketOutcome::WentOn);
    assert_eq!(
        s.metadata("a", "before").as_deref(),
        Some("Some(10.0.0.9:4321) Some(127.0.0.1:10000)")
    );
    assert_eq!(
        s.metadata("a", "after").as_deref(),
        Some("Some(203.0.113.7:5555) Some(10.0.0.9:4321) Some([2001:db8::1]:443)")
    );
    assert_eq!(s.peer(), ("203.0.113.7".to_string(), 5555));
    assert_eq!(s.local(), ("2001:db8::1".to_string(), 443, true));
}

/// Drains a `HDR <n>\n` prefix, then reports what follows.
async fn strips_header(mut s: Socket<'_>) {
    let mut buf = [0u8; 64];
    loop {
        let p = s.peek(&mut buf).await;
        if let Some(end) = buf[..p.len()].iter().position(|b| *b == b'\n') {
            assert!(s.drain(end + 1));
            break;
        }
        if p.is_end() {
            s.close("no_header");
            return;
        }
    }
    let p = s.peek(&mut buf).await;
    let after = String::from_utf8_lossy(&buf[..p.len()]).into_owned();
    s.set_metadata("h", "after", &after);
}

#[test]
fn drained_bytes_leave_the_socket_and_later_peeks_start_after_them() {
    fn reg(r: &mut Registry) {
        r.listener("strip").max_read_bytes(64).handle(strips_header);
    }
    let f = TestListenerFilter::new(reg, "strip", b"").unwrap();
    let mut s = f.accept();
    s.client_sends(b"HDR 1\n");
    assert_eq!(
        s.outcome(),
        SocketOutcome::Waiting,
        "drained; waits for more"
    );
    assert_eq!(s.drained(), b"HDR 1\n");
    s.client_sends(b"payload");
    assert_eq!(s.outcome(), SocketOutcome::WentOn);
    assert_eq!(s.metadata("h", "after").as_deref(), Some("payload"));
    assert_eq!(s.remaining(), b"payload");
}

async fn panics(mut s: Socket<'_>) {
    let mut buf = [0u8; 4];
    let _ = s.peek(&mut buf).await;
    s.set_server_name("before.panic");
    panic!("boom");
}

#[test]
fn a_panicking_handler_closes_the_socket() {
    fn reg(r: &mut Registry) {
        r.listener("p").max_read_bytes(4).handle(panics);
    }
    let f = TestListenerFilter::new(reg, "p", b"").unwrap();
    let mut s = f.accept();
    s.client_sends(b"abcd");
    assert_eq!(
        s.outcome(),
        SocketOutcome::Closed("jisr_listener_handler_panic".into())
    );
    assert!(
        s.logs().iter().any(|(_, l)| l.contains("boom")),
        "{:?}",
        s.logs()
    );
    // Later bytes change nothing.
    s.client_sends(b"more");
    assert_eq!(
        s.outcome(),
        SocketOutcome::Closed("jisr_listener_handler_panic".into())
    );
}

#[test]
fn a_panic_before_any_await_closes_in_on_accept() {
    async fn at_once(_s: Socket<'_>) {
        panic!("at once");
    }
    fn reg(r: &mut Registry) {
        r.listener("p").handle(at_once);
    }
    let f = TestListenerFilter::new(reg, "p", b"").unwrap();
    let s = f.accept();
    assert_eq!(
        s.outcome(),
        SocketOutcome::Closed("jisr_listener_handler_panic".into())
    );
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

struct CountDrop;
impl Drop for CountDrop {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

async fn waits_forever(mut s: Socket<'_>) {
    let _guard = CountDrop;
    let mut buf = [0u8; 4];
    let _ = s.peek(&mut buf).await;
    std::future::pending::<()>().await;
}

#[test]
fn a_client_that_closes_drops_the_handler_at_destroy() {
    fn reg(r: &mut Registry) {
        r.listener("w").max_read_bytes(4).handle(waits_forever);
    }
    let f = TestListenerFilter::new(reg, "w", b"").unwrap();
    let before = DROPPED.load(Ordering::SeqCst);
    {
        let mut s = f.accept();
        s.client_sends(b"hi");
        s.client_closes();
        assert_eq!(s.outcome(), SocketOutcome::Closed(String::new()));
        assert_eq!(DROPPED.load(Ordering::SeqCst), before, "still held");
    } // Envoy destroys the filter (also what its listener_filters_timeout does)
    assert_eq!(DROPPED.load(Ordering::SeqCst), before + 1);
    // The slot is reused for the next socket, with fresh state.
    let mut s = f.accept();
    s.client_sends(b"x");
    assert_eq!(s.outcome(), SocketOutcome::Waiting);
}

/// A future completed by another thread.
struct FromThread {
    flag: Arc<AtomicBool>,
    started: bool,
}

impl std::future::Future for FromThread {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.flag.load(Ordering::SeqCst) {
            return std::task::Poll::Ready(());
        }
        if !self.started {
            self.started = true;
            let (w, flag) = (cx.waker().clone(), self.flag.clone());
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                flag.store(true, Ordering::SeqCst);
                w.wake();
            });
        }
        std::task::Poll::Pending
    }
}

fn from_thread() -> FromThread {
    FromThread {
        flag: Arc::new(AtomicBool::new(false)),
        started: false,
    }
}

async fn asks_a_thread(mut s: Socket<'_>) {
    let mut buf = [0u8; 8];
    let p = s.peek(&mut buf).await;
    from_thread().await;
    // After the wake there is no peek buffer in this hook: draining is refused.
    assert!(!s.drain(1));
    if &buf[..p.len()] == b"close" {
        s.close("thread_said_no");
    } else {
        s.set_server_name("from.thread");
    }
}

fn wait_scheduled(s: &mut jisr::testing::TestSocket<'_>) -> usize {
    let mut delivered = 0;
    for _ in 0..400 {
        delivered += s.run_scheduled();
        if s.outcome() != SocketOutcome::Waiting {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    delivered
}

#[test]
fn a_wake_from_another_thread_continues_the_chain_through_the_scheduler() {
    fn reg(r: &mut Registry) {
        r.listener("t").max_read_bytes(8).handle(asks_a_thread);
    }
    let f = TestListenerFilter::new(reg, "t", b"").unwrap();
    let mut s = f.accept();
    s.client_sends(b"go");
    assert_eq!(s.outcome(), SocketOutcome::Waiting);
    assert_eq!(wait_scheduled(&mut s), 1);
    assert_eq!(s.outcome(), SocketOutcome::WentOn);
    assert_eq!(s.server_name().as_deref(), Some("from.thread"));

    let mut s = f.accept();
    s.client_sends(b"close");
    assert_eq!(wait_scheduled(&mut s), 1);
    assert_eq!(s.outcome(), SocketOutcome::Closed("thread_said_no".into()));
}

#[test]
fn a_forgotten_peek_is_harmless() {
    async fn forgets(mut s: Socket<'_>) {
        let mut buf = [0u8; 4];
        let mut fut = Box::pin(s.peek(&mut buf));
        let w = std::task::Waker::noop();
        let _ = fut.as_mut().poll(&mut std::task::Context::from_waker(w));
        std::mem::forget(fut);
        s.set_server_name("after.forget");
    }
    fn reg(r: &mut Registry) {
        r.listener("f").max_read_bytes(4).handle(forgets);
    }
    let f = TestListenerFilter::new(reg, "f", b"").unwrap();
    for _ in 0..3 {
        let mut s = f.accept();
        s.client_sends(b"abcd");
        assert_eq!(s.outcome(), SocketOutcome::WentOn);
        assert_eq!(s.server_name().as_deref(), Some("after.forget"));
    }
}

use std::future::Future as _;

struct Names {
    allowed: Vec<String>,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Names, ConfigError> {
    let allowed: Vec<String> = cfg
        .config_str()?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if allowed.is_empty() {
        return Err(ConfigError::new("no names"));
    }
    Ok(Names { allowed })
}

async fn first_allowed(n: &Names, mut s: Socket<'_>) {
    s.set_server_name(&n.allowed[0]);
}

#[test]
fn state_comes_from_the_config_and_a_bad_config_is_refused_by_name() {
    fn reg(r: &mut Registry) {
        r.listener("names").state(load).handle(first_allowed);
    }
    let err = TestListenerFilter::new(reg, "names", b" , ").err().unwrap();
    assert!(err.contains("'names'") && err.contains("no names"), "{err}");
    assert!(TestListenerFilter::new(reg, "nope", b"a").is_err());
    let f = TestListenerFilter::new(reg, "names", b"b.test, c.test").unwrap();
    let s = f.accept();
    assert_eq!(s.server_name().as_deref(), Some("b.test"));
    assert_eq!(s.outcome(), SocketOutcome::WentOn);
}

#[test]
fn names_that_would_be_unsafe_in_logs_are_refused() {
    async fn tries(mut s: Socket<'_>) {
        let results = [
            s.set_server_name(""),
            s.set_server_name("a\r\nb"),
            s.set_server_name(&"a".repeat(256)),
            s.set_transport_protocol("tls\0"),
            s.set_application_protocols::<&str>(&[]),
            s.set_application_protocols(&["h2", ""]),
            s.set_server_name("ok.test"),
        ];
        s.set_metadata("r", "results", &format!("{results:?}"));
    }
    fn reg(r: &mut Registry) {
        r.listener("n").handle(tries);
    }
    let f = TestListenerFilter::new(reg, "n", b"").unwrap();
    let s = f.accept();
    assert_eq!(
        s.metadata("r", "results").as_deref(),
        Some("[false, false, false, false, false, false, true]")
    );
    assert_eq!(s.server_name().as_deref(), Some("ok.test"));
    assert!(s.application_protocols().is_empty());
}

struct Stats {
    accepted: jisr::Counter,
    waiting: jisr::Gauge,
    peeked: jisr::Histogram,
}

fn stats(cfg: &mut ConfigHandle<'_>) -> Result<Stats, ConfigError> {
    Ok(Stats {
        accepted: cfg.counter("accepted", &[])?,
        waiting: cfg.gauge("waiting", &[])?,
        peeked: cfg.histogram("peeked_bytes", &[])?,
    })
}

/// Counts the socket, peeks, and passes what an earlier filter left in filter state on with
/// the peeked length.
async fn counted(st: &Stats, mut s: Socket<'_>) {
    s.counter_inc(st.accepted, &[]).unwrap();
    // Listener metrics have no labels in Envoy's ABI: a label value is refused.
    assert_eq!(
        s.counter_inc(st.accepted, &["x"]),
        Err(jisr::handler::MetricError::LabelCount {
            expected: 0,
            got: 1
        })
    );
    s.gauge_add(st.waiting, &[], 1).unwrap();
    let mut buf = [0u8; 16];
    let n = s.peek(&mut buf).await.len();
    s.histogram_record(st.peeked, &[], n as u64).unwrap();
    s.gauge_sub(st.waiting, &[], 1).unwrap();
    let mut earlier = [0u8; 4];
    let len = s.filter_state("acme.earlier", &mut earlier).unwrap_or(0);
    // Only the first bytes fit; the whole length is reported.
    assert_eq!(len, 5);
    let seen = format!("{}:{n}", String::from_utf8_lossy(&earlier));
    assert!(s.set_filter_state("acme.seen", seen.as_bytes()));
    let mut back = [0u8; 16];
    assert_eq!(s.filter_state("acme.seen", &mut back), Some(seen.len()));
    assert_eq!(s.filter_state("acme.none", &mut back), None);
}

#[test]
fn metrics_and_filter_state_round_trip() {
    fn reg(r: &mut Registry) {
        r.listener("counted")
            .max_read_bytes(16)
            .state(stats)
            .handle(counted);
    }
    let f = TestListenerFilter::new(reg, "counted", b"").unwrap();
    for i in 1..=3u64 {
        let mut s = f.accept();
        s.set_filter_state("acme.earlier", b"proxy");
        assert_eq!(f.metric("accepted"), Some(i));
        assert_eq!(f.metric("waiting"), Some(1), "counted while it waits");
        s.client_sends(&vec![b'.'; i as usize + 4]);
        assert_eq!(s.outcome(), SocketOutcome::WentOn);
        assert_eq!(f.metric("waiting"), Some(0));
        assert_eq!(f.metric("peeked_bytes"), Some(i + 4));
        assert_eq!(
            s.filter_state("acme.seen"),
            Some(format!("prox:{}", i + 4).into_bytes())
        );
    }
    assert_eq!(f.metric("nothing"), None);
}

#[test]
fn a_labelled_listener_metric_refuses_the_config() {
    fn labelled(cfg: &mut ConfigHandle<'_>) -> Result<jisr::Counter, ConfigError> {
        cfg.counter("by_sni", &["sni"])
    }
    async fn never(_: &jisr::Counter, _: Socket<'_>) {}
    fn reg(r: &mut Registry) {
        r.listener("labelled").state(labelled).handle(never);
    }
    let err = TestListenerFilter::new(reg, "labelled", b"")
        .err()
        .expect("a labelled listener metric is refused");
    assert!(err.contains("by_sni"), "{err}");
}

thread_local! {
    /// Answers the `admits` handler got on this test's thread.
    static ANSWERS_SEEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Asks an admission service before the socket goes on; its answer is the SNI to set.
async fn admits(mut s: Socket<'_>) {
    let peer = s
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let mut body = Vec::new();
    let req = jisr::callout::CalloutRequest::get("admission", "/admit", "admission.local")
        .header("x-peer", peer.as_bytes());
    let r = s.callout(req, &mut body).await;
    ANSWERS_SEEN.set(ANSWERS_SEEN.get() + 1);
    match r {
        Ok(r) if r.status == 200 => {
            let name = String::from_utf8_lossy(&body).into_owned();
            assert!(s.set_server_name(&name));
        }
        Ok(r) => s.close(&format!("admission_{}", r.status)),
        // Close details are one word: the error's spaces become underscores.
        Err(e) => s.close(&format!("admission_error:{e}").replace(' ', "_")),
    }
}

fn admission(r: &mut Registry) {
    r.listener("admits").handle(admits);
}

#[test]
fn a_callout_holds_the_socket_until_it_answers() {
    let f = TestListenerFilter::new(admission, "admits", b"").unwrap();
    let mut s = f.accept_from("10.0.0.7", 5555);
    assert_eq!(s.outcome(), SocketOutcome::Waiting);
    let calls = s.callouts();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].cluster, "admission");
    assert_eq!(calls[0].path(), Some("/admit"));
    assert_eq!(calls[0].header_str("x-peer"), Some("10.0.0.7"));
    s.complete_callout(calls[0].id, 200, &[], b"a.example");
    assert_eq!(s.outcome(), SocketOutcome::WentOn);
    assert_eq!(s.server_name().as_deref(), Some("a.example"));

    // The service refuses: the handler closes.
    let mut s = f.accept();
    let id = s.callouts()[0].id;
    s.complete_callout(id, 403, &[], b"");
    assert_eq!(s.outcome(), SocketOutcome::Closed("admission_403".into()));
    assert_eq!(s.server_name(), None);

    // The callout's stream is reset.
    let mut s = f.accept();
    let id = s.callouts()[0].id;
    s.fail_callout(id);
    assert_eq!(
        s.outcome(),
        SocketOutcome::Closed("admission_error:callout_reset".into())
    );

    // Envoy's own answers are errors, never a verdict: its timeout and its 503 without a host.
    let mut s = f.accept();
    let id = s.callouts()[0].id;
    s.complete_callout(id, 504, &[], b"upstream request timeout");
    assert_eq!(
        s.outcome(),
        SocketOutcome::Closed("admission_error:callout_timed_out".into())
    );
    let mut s = f.accept();
    let id = s.callouts()[0].id;
    s.complete_callout(id, 503, &[], b"no healthy upstream");
    assert_eq!(
        s.outcome(),
        SocketOutcome::Closed("admission_error:callout_got_no_answer:_no_healthy_host".into())
    );
}

/// Peeks a `NAME:<name>\n` line, then asks the admission service about that name.
async fn peeks_then_asks(mut s: Socket<'_>) {
    let mut buf = [0u8; 32];
    let name = loop {
        let p = s.peek(&mut buf).await;
        let got = &buf[..p.len()];
        if let Some(end) = got.iter().position(|b| *b == b'\n') {
            break String::from_utf8_lossy(got[..end].strip_prefix(b"NAME:").unwrap_or(b""))
                .into_owned();
        }
        if p.is_end() {
            s.close("no_name");
            return;
        }
    };
    let mut verdict = Vec::new();
    let req = jisr::callout::CalloutRequest::get("admission", "/admit", "admission.local")
        .header("x-name", name.as_bytes());
    match s.callout(req, &mut verdict).await {
        Ok(r) if r.status == 200 => {
            s.set_server_name(&name);
        }
        _ => s.close("admission_refused"),
    }
}

#[test]
fn a_callout_after_a_peek_waits_while_more_bytes_come() {
    fn reg(r: &mut Registry) {
        r.listener("peeks_then_asks")
            .max_read_bytes(32)
            .handle(peeks_then_asks);
    }
    let f = TestListenerFilter::new(reg, "peeks_then_asks", b"").unwrap();
    let mut s = f.accept();
    s.client_sends(b"NAME:a.exa");
    assert!(s.callouts().is_empty(), "no line yet");
    s.client_sends(b"mple\nGET /");
    let calls = s.callouts();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].header_str("x-name"), Some("a.example"));
    // More bytes while the callout runs: peeked, but nobody waits for them.
    s.client_sends(b" HTTP/1.1\r\n");
    assert_eq!(s.outcome(), SocketOutcome::Waiting);
    assert_eq!(s.callouts().len(), 1);
    s.complete_callout(calls[0].id, 200, &[], b"");
    assert_eq!(s.outcome(), SocketOutcome::WentOn);
    assert_eq!(s.server_name().as_deref(), Some("a.example"));
    // Peeked bytes stay in the socket for the connection.
    assert_eq!(s.remaining(), b"NAME:a.example\nGET / HTTP/1.1\r\n");
}

#[test]
fn a_callout_to_an_unknown_cluster_fails_in_on_accept() {
    let f = TestListenerFilter::new(admission, "admits", b"").unwrap();
    let socket = jisr::testing::AcceptedSocket::default();
    socket.set_unknown_cluster("admission");
    let s = f.accept_on(&socket);
    assert_eq!(
        s.outcome(),
        SocketOutcome::Closed("admission_error:callout_refused:_cluster_not_found".into())
    );
    assert!(s.callouts().is_empty());
}

#[test]
fn an_answer_after_the_client_left_is_dropped() {
    let f = TestListenerFilter::new(admission, "admits", b"").unwrap();
    let mut s = f.accept();
    let id = s.callouts()[0].id;
    s.client_closes();
    let before = ANSWERS_SEEN.get();
    s.complete_callout(id, 200, &[], b"late.example");
    // The handler is not polled again: the answer never reaches it, nothing is set.
    assert_eq!(ANSWERS_SEEN.get(), before);
    assert_eq!(s.outcome(), SocketOutcome::Closed(String::new()));
    assert_eq!(s.server_name(), None);
    drop(s);
    // The slot is reused cleanly: the next socket's callout works.
    let mut s = f.accept();
    let id = s.callouts()[0].id;
    s.complete_callout(id, 200, &[], b"b.example");
    assert_eq!(s.server_name().as_deref(), Some("b.example"));
}

const SOL_SOCKET: i64 = 1;
const SO_KEEPALIVE: i64 = 9;

/// Refuses plain text with a written answer, keeps TLS clients alive, and records their
/// fingerprints.
async fn tls_gate(mut s: Socket<'_>) {
    let mut first = [0u8; 1];
    if s.peek(&mut first).await.len() == 1 && first[0] != 0x16 {
        let n = s.write(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        s.set_metadata_number("gate", "written", n.unwrap_or(0) as f64);
        s.close("gate_tls_required");
        // Once closed nothing is written, set or read.
        assert_eq!(s.write(b"late"), None);
        assert!(!s.set_socket_option(SOL_SOCKET, SO_KEEPALIVE, 1));
        assert_eq!(s.socket_option(SOL_SOCKET, SO_KEEPALIVE), None);
        return;
    }
    assert_eq!(
        s.write(b""),
        None,
        "nothing to write is an error, as in Envoy"
    );
    assert!(s.set_socket_option(SOL_SOCKET, SO_KEEPALIVE, 1));
    let keepalive = s.socket_option(SOL_SOCKET, SO_KEEPALIVE).unwrap_or(-1);
    s.set_metadata_number("gate", "keepalive", keepalive as f64);
    let mut buf = [0u8; 64];
    let ja3 = s.ja3_hash(&mut buf).unwrap_or("-").to_string();
    s.set_metadata("gate", "ja3", &ja3);
    let ja4 = s.ja4_hash(&mut buf).unwrap_or("-").to_string();
    s.set_metadata("gate", "ja4", &ja4);
}

fn register_gate(r: &mut Registry) {
    r.listener("gate").max_read_bytes(1).handle(tls_gate);
}

#[test]
fn a_handler_writes_to_the_client_sets_socket_options_and_reads_fingerprints() {
    let f = TestListenerFilter::new(register_gate, "gate", b"").unwrap();
    let socket = jisr::testing::AcceptedSocket::default();

    let mut s = f.accept_on(&socket);
    s.client_sends(b"GET / HTTP/1.1\r\n");
    assert_eq!(
        s.outcome(),
        SocketOutcome::Closed("gate_tls_required".into())
    );
    assert_eq!(s.written(), b"HTTP/1.1 400 Bad Request\r\n\r\n");
    assert_eq!(s.metadata("gate", "written").as_deref(), Some("28"));
    assert_eq!(s.socket_option(SOL_SOCKET, SO_KEEPALIVE), None);
    drop(s);

    socket.set_tls_fingerprints(
        "771,4865-4866,0-11-10,29-23,0",
        "t13d1516h2_8daaf6152771_02713d6af862",
    );
    let mut s = f.accept_on(&socket);
    s.client_sends(&[0x16, 0x03, 0x01]);
    assert_eq!(s.outcome(), SocketOutcome::WentOn);
    assert!(
        s.written().is_empty(),
        "the previous socket's bytes are gone"
    );
    assert_eq!(s.socket_option(SOL_SOCKET, SO_KEEPALIVE), Some(1));
    assert_eq!(s.metadata("gate", "keepalive").as_deref(), Some("1"));
    assert_eq!(
        s.metadata("gate", "ja3").as_deref(),
        Some("771,4865-4866,0-11-10,29-23,0")
    );
    assert_eq!(
        s.metadata("gate", "ja4").as_deref(),
        Some("t13d1516h2_8daaf6152771_02713d6af862")
    );
    drop(s);

    // No inspector before the filter: no fingerprints. One longer than the caller's buffer
    // reads as none rather than cut.
    socket.set_tls_fingerprints("", &"x".repeat(65));
    let mut s = f.accept_on(&socket);
    s.client_sends(&[0x16]);
    assert_eq!(s.metadata("gate", "ja3").as_deref(), Some("-"));
    assert_eq!(s.metadata("gate", "ja4").as_deref(), Some("-"));
}
