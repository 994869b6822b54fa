//! Network (L4) filters on simulated connections: what passes, what is held, what the
//! handler sees, and how it ends.

use jisr::network::{Connection, Traffic};
use jisr::testing::TestNetworkFilter;
use jisr::{ConfigError, ConfigHandle, Registry};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Reads until it has 8 bytes, then sends them upstream reversed and returns.
async fn reverse8(mut conn: Connection<'_>) {
    let mut buf = [0u8; 8];
    let mut have = 0;
    while have < 8 {
        let n = conn.read(&mut buf[have..]).await;
        if n == 0 {
            return;
        }
        have += n;
    }
    buf.reverse();
    conn.send_upstream(&buf);
}

fn register(r: &mut Registry) {
    r.network("reverse8").handle(reverse8);
}

#[test]
fn client_bytes_wait_for_the_handler_and_flow_once_it_returns() {
    let f = TestNetworkFilter::new(register, "reverse8", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"abc");
    assert_eq!(c.upstream(), b"", "nothing passes while the handler runs");
    c.client_sends(b"defghXYZ");
    // The handler took 8 bytes, sent them reversed and returned: the rest of that read goes
    // on with the same hook.
    assert_eq!(c.upstream(), b"hgfedcbaXYZ");
    c.client_sends(b" more");
    assert_eq!(c.upstream(), b"hgfedcbaXYZ more");
    assert_eq!(c.held(), 0);
    assert_eq!(c.closed(), None);
}

#[test]
fn upstream_bytes_pass_untouched_unless_the_handler_watches() {
    let f = TestNetworkFilter::new(register, "reverse8", b"").unwrap();
    let mut c = f.connect();
    c.upstream_sends(b"banner\r\n");
    assert_eq!(c.client(), b"banner\r\n");
}

#[test]
fn a_client_half_close_ends_a_read_with_zero_and_passes_on() {
    let f = TestNetworkFilter::new(register, "reverse8", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"abc");
    c.client_ends();
    // The handler read "abc" (bytes it read are its own), saw 0 and returned without
    // sending: only the end goes on.
    assert_eq!(c.upstream(), b"");
    assert!(c.upstream_ended());
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

struct CountDrop;
impl Drop for CountDrop {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

async fn waits_forever(mut conn: Connection<'_>) {
    let _guard = CountDrop;
    let mut buf = [0u8; 4];
    while conn.read(&mut buf).await > 0 {}
    // Closed: read gives 0. Keep waiting on something that never comes.
    std::future::pending::<()>().await;
}

#[test]
fn a_closed_connection_drops_the_handler() {
    fn reg(r: &mut Registry) {
        r.network("w").handle(waits_forever);
    }
    let f = TestNetworkFilter::new(reg, "w", b"").unwrap();
    let before = DROPPED.load(Ordering::SeqCst);
    {
        let mut c = f.connect();
        c.client_sends(b"hi");
        c.client_closes();
        assert_eq!(DROPPED.load(Ordering::SeqCst), before, "still waiting");
    } // Envoy destroys the filter
    assert_eq!(DROPPED.load(Ordering::SeqCst), before + 1);
}

async fn panics(mut conn: Connection<'_>) {
    let mut buf = [0u8; 4];
    let _ = conn.read(&mut buf).await;
    panic!("boom");
}

#[test]
fn a_panicking_handler_resets_the_connection_and_nothing_passes() {
    fn reg(r: &mut Registry) {
        r.network("p").handle(panics);
    }
    let f = TestNetworkFilter::new(reg, "p", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"GET secret");
    assert_eq!(c.closed().as_deref(), Some("jisr_network_handler_panic"));
    assert!(c.was_reset());
    assert_eq!(c.upstream(), b"", "fail closed: nothing went upstream");
    c.client_sends(b"more");
    assert_eq!(c.upstream(), b"");
    assert!(
        c.logs().iter().any(|(_, l)| l.contains("boom")),
        "{:?}",
        c.logs()
    );
}

/// Relays both ways, tagging upstream chunks.
async fn relay(mut conn: Connection<'_>) {
    let mut buf = [0u8; 16];
    loop {
        match conn.read_any(&mut buf).await {
            Traffic::Client(n) => conn.send_upstream(&buf[..n]),
            Traffic::Upstream(n) => {
                conn.send_downstream(b"<");
                conn.send_downstream(&buf[..n]);
            }
            Traffic::ClientEnd => conn.end_upstream(),
            Traffic::UpstreamEnd => conn.end_downstream(),
            Traffic::Closed => return,
        }
    }
}

#[test]
fn a_relay_sees_both_directions_and_each_end_once() {
    fn reg(r: &mut Registry) {
        r.network("relay").handle(relay);
    }
    let f = TestNetworkFilter::new(reg, "relay", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"ping");
    assert_eq!(c.upstream(), b"ping");
    c.upstream_sends(b"pong");
    assert_eq!(c.client(), b"<pong");
    // More than one buffer's worth arrives in one hook: all of it is relayed in that hook.
    c.upstream_sends(&[b'x'; 40]);
    assert_eq!(c.client().len(), 5 + 40 + 3);
    c.client_ends();
    assert!(c.upstream_ended());
    c.upstream_ends();
    assert!(c.client_ended());
    // Both ends told: the handler returned; later bytes flow untouched.
    c.upstream_sends(b"late");
    assert!(c.client().ends_with(b"late"));
}

async fn watches_but_never_reads(mut conn: Connection<'_>) {
    conn.watch_upstream();
    std::future::pending::<()>().await;
}

#[test]
fn an_upstream_that_outruns_the_inbox_gets_the_connection_reset() {
    fn reg(r: &mut Registry) {
        r.network("slow")
            .inbox_limit(100)
            .handle(watches_but_never_reads);
    }
    let f = TestNetworkFilter::new(reg, "slow", b"").unwrap();
    let mut c = f.connect();
    c.upstream_sends(&[1; 60]);
    assert_eq!(c.closed(), None);
    assert_eq!(c.client(), b"", "held for the handler");
    c.upstream_sends(&[2; 60]);
    assert_eq!(
        c.closed().as_deref(),
        Some("jisr_network_upstream_inbox_full")
    );
    assert!(c.was_reset());
    assert!(
        c.logs().iter().any(|(l, m)| *l == jisr::Level::Warn
            && m.contains("120 bytes")
            && m.contains("limit 100")),
        "{:?}",
        c.logs()
    );
}

/// Lets the waking thread go (set by the test once the hook that started it returned, so the
/// wake comes from outside any hook).
static RELEASE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn waits_for_a_thread(mut conn: Connection<'_>) {
    struct Wait {
        flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
        started: bool,
    }
    impl std::future::Future for Wait {
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
                    while !RELEASE.load(Ordering::SeqCst) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    flag.store(true, Ordering::SeqCst);
                    w.wake();
                });
            }
            std::task::Poll::Pending
        }
    }
    Wait {
        flag: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        started: false,
    }
    .await;
    conn.send_downstream(b"woken\n");
}

#[test]
fn a_wake_from_another_thread_comes_back_through_the_scheduler() {
    fn reg(r: &mut Registry) {
        r.network("t").handle(waits_for_a_thread);
    }
    let f = TestNetworkFilter::new(reg, "t", b"").unwrap();
    let mut c = f.connect();
    assert_eq!(c.run_scheduled(), 0, "nothing woke it yet");
    RELEASE.store(true, Ordering::SeqCst);
    let mut delivered = 0;
    for _ in 0..1000 {
        delivered += c.run_scheduled();
        if !c.client().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(c.client(), b"woken\n");
    assert_eq!(delivered, 1, "one scheduler event, delivered once");
}

struct Limits {
    max: usize,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Limits, ConfigError> {
    let max = cfg
        .config_str()?
        .trim()
        .parse()
        .map_err(|e| ConfigError::new(format!("not a byte count: {e}")))?;
    Ok(Limits { max })
}

async fn limited(l: &Limits, mut conn: Connection<'_>) {
    let mut total = 0;
    let mut buf = [0u8; 64];
    loop {
        let n = conn.read(&mut buf).await;
        if n == 0 {
            return;
        }
        total += n;
        if total > l.max {
            conn.close("too_much");
            return;
        }
        conn.send_upstream(&buf[..n]);
    }
}

#[test]
fn state_comes_from_the_config_and_a_bad_config_is_refused_by_name() {
    fn reg(r: &mut Registry) {
        r.network("limited").state(load).handle(limited);
    }
    let err = TestNetworkFilter::new(reg, "limited", b"lots")
        .err()
        .unwrap();
    assert!(
        err.contains("'limited'") && err.contains("not a byte count"),
        "{err}"
    );
    assert!(TestNetworkFilter::new(reg, "nope", b"1").is_err());
    let f = TestNetworkFilter::new(reg, "limited", b"10").unwrap();
    let mut c = f.connect();
    c.client_sends(b"12345");
    c.client_sends(b"67890");
    assert_eq!(c.upstream(), b"1234567890");
    c.client_sends(b"!");
    assert_eq!(c.closed().as_deref(), Some("too_much"));
    assert!(!c.was_reset());
}

async fn peer(mut conn: Connection<'_>) {
    let who = format!(
        "{:?} {:?} {}",
        conn.peer_addr(),
        conn.server_name().as_deref(),
        conn.is_tls()
    );
    conn.set_metadata("peer", "who", &who);
}

#[test]
fn addresses_sni_and_metadata() {
    fn reg(r: &mut Registry) {
        r.network("peer").handle(peer);
    }
    let f = TestNetworkFilter::new(reg, "peer", b"").unwrap();
    let c = f.connect();
    assert_eq!(
        c.metadata("peer", "who").as_deref(),
        Some("Some(127.0.0.1:40000) None false")
    );
}

struct Stats {
    opened: jisr::Counter,
    bytes: jisr::Histogram,
}

fn stats(cfg: &mut ConfigHandle<'_>) -> Result<Stats, ConfigError> {
    Ok(Stats {
        opened: cfg.counter("conns_opened", &[])?,
        bytes: cfg.histogram("first_read_bytes", &[])?,
    })
}

async fn counted(s: &Stats, mut conn: Connection<'_>) {
    conn.counter_inc(s.opened, &[]).unwrap();
    // Network metrics have no labels in Envoy's ABI: a label value is refused.
    assert_eq!(
        conn.counter_inc(s.opened, &["x"]),
        Err(jisr::handler::MetricError::LabelCount {
            expected: 0,
            got: 1
        })
    );
    let mut buf = [0u8; 32];
    let n = conn.read(&mut buf).await;
    conn.histogram_record(s.bytes, &[], n as u64).unwrap();
    let mut sans = Vec::new();
    conn.peer_dns_sans(|s| sans.push(s.to_string()));
    conn.peer_uri_sans(|s| sans.push(s.to_string()));
    let mut subject = [0u8; 64];
    let len = conn.peer_subject(&mut subject).unwrap_or(0);
    sans.push(String::from_utf8_lossy(&subject[..len]).into_owned());
    assert!(conn.set_filter_state("acme.peer", sans.join(",").as_bytes()));
    let mut back = [0u8; 8];
    assert_eq!(
        conn.filter_state("acme.peer", &mut back),
        Some(sans.join(",").len())
    );
    assert_eq!(conn.filter_state("acme.none", &mut back), None);
    assert!(conn.start_upstream_tls());
    assert_eq!(conn.start_downstream_tls(), Ok(true));
    conn.send_upstream(&buf[..n]);
}

#[test]
fn metrics_filter_state_peer_certificate_and_starttls() {
    fn reg(r: &mut Registry) {
        r.network("counted").state(stats).handle(counted);
    }
    let f = TestNetworkFilter::new(reg, "counted", b"").unwrap();
    for i in 1..=3u64 {
        let mut c = f.connect();
        c.set_peer_certificate(&["a.example"], &["spiffe://acme/x"], "CN=x");
        c.client_sends(&vec![b'.'; i as usize]);
        assert_eq!(
            c.filter_state("acme.peer").as_deref(),
            Some(&b"a.example,spiffe://acme/x,CN=x"[..])
        );
        assert_eq!(c.tls_started(), (1, 1));
        assert_eq!(f.metric("conns_opened"), Some(i));
        assert_eq!(f.metric("first_read_bytes"), Some(i));
    }
}

/// `mem::forget` of a pending read leaves nothing behind: the next read works.
async fn forgets(mut conn: Connection<'_>) {
    let mut a = [0u8; 4];
    {
        let mut r = std::pin::pin!(conn.read(&mut a));
        let w = std::task::Waker::noop();
        let _ = r.as_mut().poll(&mut std::task::Context::from_waker(w));
    }
    // `Read` has no `Drop` (it holds no registration to undo), so forgetting it is dropping it.
    #[allow(clippy::forget_non_drop)]
    std::mem::forget(conn.read(&mut a));
    let mut b = [0u8; 4];
    let n = conn.read(&mut b).await;
    conn.send_upstream(&b[..n]);
}

#[test]
fn a_forgotten_read_is_harmless() {
    fn reg(r: &mut Registry) {
        r.network("f").handle(forgets);
    }
    let f = TestNetworkFilter::new(reg, "f", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"wxyz");
    assert_eq!(c.upstream(), b"wxyz");
}

async fn asks(mut conn: Connection<'_>) {
    let mut body = Vec::new();
    let req = jisr::callout::CalloutRequest::get("authz", "/check", "authz.local")
        .header("x-peer", b"127.0.0.1");
    match conn.callout(req, &mut body).await {
        Ok(r) if r.status == 200 => {
            conn.send_downstream(b"welcome ");
            conn.send_downstream(&body);
        }
        Ok(r) => conn.reset(&format!("authz_{}", r.status)),
        // Close details are one word: the error's spaces become underscores.
        Err(e) => conn.reset(&format!("authz_error:{e}").replace(' ', "_")),
    }
}

#[test]
fn a_callout_holds_the_connection_until_it_answers() {
    fn reg(r: &mut Registry) {
        r.network("asks").handle(asks);
    }
    let f = TestNetworkFilter::new(reg, "asks", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"early bytes");
    let calls = c.callouts();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].cluster, "authz");
    assert_eq!(calls[0].header_str(":path"), Some("/check"));
    assert_eq!(calls[0].header_str("x-peer"), Some("127.0.0.1"));
    assert_eq!(c.upstream(), b"", "held while the callout runs");
    c.complete_callout(calls[0].id, 200, &[], b"ada");
    assert_eq!(c.client(), b"welcome ada");
    // Returned: the held bytes go on.
    assert_eq!(c.upstream(), b"early bytes");

    let mut c = f.connect();
    let id = c.callouts()[0].id;
    c.complete_callout(id, 403, &[], b"");
    assert_eq!(c.closed().as_deref(), Some("authz_403"));

    let mut c = f.connect();
    let id = c.callouts()[0].id;
    c.fail_callout(id);
    assert_eq!(c.closed().as_deref(), Some("authz_error:callout_reset"));
    assert!(c.was_reset());
}

#[test]
fn a_callout_to_an_unknown_cluster_fails_at_once() {
    fn reg(r: &mut Registry) {
        r.network("asks").handle(asks);
    }
    let f = TestNetworkFilter::new(reg, "asks", b"").unwrap();
    let socket = jisr::testing::Socket::default();
    socket.set_unknown_cluster("authz");
    let c = f.connect_on(&socket);
    assert_eq!(
        c.closed().as_deref(),
        Some("authz_error:callout_refused:_cluster_not_found")
    );
}

#[test]
fn an_answer_after_the_client_left_writes_nothing() {
    fn reg(r: &mut Registry) {
        r.network("asks").handle(asks);
    }
    let f = TestNetworkFilter::new(reg, "asks", b"").unwrap();
    let mut c = f.connect();
    c.client_closes();
    let id = c.callouts()[0].id;
    // The handler still waits (the filter is not destroyed yet) and gets its answer, but
    // its sends to a closed connection do nothing.
    c.complete_callout(id, 200, &[], b"late");
    assert_eq!(c.client(), b"");
}

/// Closes with the client's first line as details (what a careless filter might do).
async fn echo_details(mut conn: Connection<'_>) {
    let mut buf = [0u8; 256];
    let mut n = 0;
    while !buf[..n].contains(&b'\n') && n < buf.len() {
        let got = conn.read(&mut buf[n..]).await;
        if got == 0 {
            return;
        }
        n += got;
    }
    let line = &buf[..n];
    let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(n)];
    let text = String::from_utf8_lossy(line).into_owned();
    match text.strip_prefix("reset ") {
        Some(rest) => conn.reset(rest),
        None => conn.close(&text),
    }
}

#[test]
fn close_details_from_the_peer_cannot_forge_a_log_line() {
    fn reg(r: &mut Registry) {
        r.network("echo_details").handle(echo_details);
    }
    let f = TestNetworkFilter::new(reg, "echo_details", b"").unwrap();
    // A word of visible ASCII passes as is.
    let mut c = f.connect();
    c.client_sends(b"client_said_bye\n");
    assert_eq!(c.closed().as_deref(), Some("client_said_bye"));
    assert!(!c.was_reset());
    assert!(c.logs().is_empty(), "{:?}", c.logs());
    // CR, NUL, DEL, a space, a tab: refused, the connection closes all the same with
    // jisr's details, and the reason is logged at error (escaped).
    for (line, byte, at) in [
        (&b"bad\rlisten=forged\n"[..], 0x0d, 3),
        (b"nul\0byte\n", 0x00, 3),
        (b"del\x7f\n", 0x7f, 3),
        (b"two words\n", 0x20, 3),
        (b"tab\there\n", 0x09, 3),
    ] {
        let mut c = f.connect();
        c.client_sends(line);
        assert_eq!(
            c.closed().as_deref(),
            Some(jisr::wire::INVALID_CLOSE_DETAILS),
            "{line:?}"
        );
        let logs = c.logs();
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert_eq!(logs[0].0, jisr::Level::Error);
        assert!(
            logs[0]
                .1
                .contains(&format!("close details: byte {byte:#04x} at {at}")),
            "{logs:?}"
        );
    }
    // The same for a reset.
    let mut c = f.connect();
    c.client_sends(b"reset a\r\nb\n");
    assert_eq!(
        c.closed().as_deref(),
        Some(jisr::wire::INVALID_CLOSE_DETAILS)
    );
    assert!(c.was_reset());
}

/// What the handler saw right after its own close, as `(is_closed, read, read_any)` steps.
static AFTER_CLOSE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Closes (or resets) on the first client bytes, then keeps using the connection: Envoy raises
/// the close event inside the close call, so the handler is re-entered while it is running.
async fn closes_then_carries_on(mut conn: Connection<'_>) {
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf).await;
    conn.send_downstream(b"bye ");
    if buf[..n].starts_with(b"reset") {
        conn.reset("closed_by_handler");
    } else {
        conn.close("closed_by_handler");
    }
    let mut seen = vec![format!("closed={}", conn.is_closed())];
    // After the event: sends do nothing, reads end at once, a second close is ignored.
    conn.send_downstream(b"after");
    conn.send_upstream(b"after");
    conn.end_downstream();
    seen.push(format!("read={}", conn.read(&mut buf).await));
    seen.push(format!(
        "any={}",
        matches!(conn.read_any(&mut buf).await, Traffic::Closed)
    ));
    conn.close("second_close");
    AFTER_CLOSE.lock().unwrap().push(seen.join(" "));
}

#[test]
fn a_close_raises_the_close_event_inside_the_call_and_the_handler_carries_on() {
    fn reg(r: &mut Registry) {
        r.network("closes").handle(closes_then_carries_on);
    }
    let f = TestNetworkFilter::new(reg, "closes", b"").unwrap();
    for (first, reset) in [(&b"close"[..], false), (b"reset", true)] {
        AFTER_CLOSE.lock().unwrap().clear();
        let mut c = f.connect();
        c.client_sends(first);
        // The handler ran to its end inside the hook that closed: the nested event woke its
        // reads, which ended at once.
        assert_eq!(
            *AFTER_CLOSE.lock().unwrap(),
            ["closed=true read=0 any=true"]
        );
        assert_eq!(c.closed().as_deref(), Some("closed_by_handler"));
        assert_eq!(c.was_reset(), reset);
        assert_eq!(c.client(), b"bye ");
        assert!(!c.client_ended());
        assert_eq!(c.upstream(), b"");
        // Later hooks reach nothing.
        c.client_sends(b"late");
        c.upstream_sends(b"late");
        c.client_closes();
        assert_eq!(c.upstream(), b"");
        assert_eq!(c.client(), b"bye ");
    }
}

/// Panics after its own close: the close event already ran inside the close call.
async fn closes_then_panics(mut conn: Connection<'_>) {
    let mut buf = [0u8; 8];
    let _ = conn.read(&mut buf).await;
    conn.close("closed_first");
    panic!("after the close");
}

#[test]
fn a_panic_after_a_close_keeps_the_first_details() {
    fn reg(r: &mut Registry) {
        r.network("closes_then_panics").handle(closes_then_panics);
    }
    let f = TestNetworkFilter::new(reg, "closes_then_panics", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"x");
    assert_eq!(c.closed().as_deref(), Some("closed_first"));
    assert!(!c.was_reset());
    let logs = c.logs();
    assert!(
        logs.iter()
            .any(|(_, l)| l.contains("handler panicked: after the close")),
        "{logs:?}"
    );
}

/// A join that polls a child only after that child's own waker was woken (as
/// `FuturesUnordered` and similar combinators do): a read future that counted on the whole
/// task being polled again, instead of waking the waker it was given, would hang here.
mod precise {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Wake, Waker};

    pub struct ChildWake {
        woken: AtomicBool,
        parent: Mutex<Option<Waker>>,
    }

    impl Wake for ChildWake {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.store(true, Ordering::SeqCst);
            if let Some(w) = self.parent.lock().unwrap().as_ref() {
                w.wake_by_ref();
            }
        }
    }

    pub struct Child<F: Future> {
        fut: Pin<Box<F>>,
        wake: Arc<ChildWake>,
        out: Option<F::Output>,
        /// How many times this child was polled.
        pub polls: usize,
    }

    impl<F: Future> Child<F> {
        pub fn new(fut: F) -> Self {
            Child {
                fut: Box::pin(fut),
                wake: Arc::new(ChildWake {
                    // Polled once at the start.
                    woken: AtomicBool::new(true),
                    parent: Mutex::new(None),
                }),
                out: None,
                polls: 0,
            }
        }

        /// Polls the child if it was woken; `true` once it is done.
        fn step(&mut self, cx: &Context<'_>) -> bool {
            *self.wake.parent.lock().unwrap() = Some(cx.waker().clone());
            if self.out.is_none() && self.wake.woken.swap(false, Ordering::SeqCst) {
                self.polls += 1;
                let w = Waker::from(self.wake.clone());
                if let Poll::Ready(v) = self.fut.as_mut().poll(&mut Context::from_waker(&w)) {
                    self.out = Some(v);
                }
            }
            self.out.is_some()
        }
    }

    /// Both children's outputs, and how often each was polled.
    pub struct Join<A: Future, B: Future>(pub Child<A>, pub Child<B>);

    impl<A: Future, B: Future> Future for Join<A, B>
    where
        A::Output: Unpin,
        B::Output: Unpin,
    {
        type Output = (A::Output, B::Output, usize, usize);
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.get_mut();
            let a = this.0.step(cx);
            let b = this.1.step(cx);
            if a && b {
                Poll::Ready((
                    this.0.out.take().unwrap(),
                    this.1.out.take().unwrap(),
                    this.0.polls,
                    this.1.polls,
                ))
            } else {
                Poll::Pending
            }
        }
    }
}

/// Released by the test; wakes the waker it was given.
static GATE: std::sync::Mutex<(bool, Option<std::task::Waker>)> =
    std::sync::Mutex::new((false, None));

struct Gate;

impl std::future::Future for Gate {
    type Output = &'static str;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<&'static str> {
        let mut g = GATE.lock().unwrap();
        if g.0 {
            return std::task::Poll::Ready("gate");
        }
        g.1 = Some(cx.waker().clone());
        std::task::Poll::Pending
    }
}

fn open_gate() {
    let mut g = GATE.lock().unwrap();
    g.0 = true;
    if let Some(w) = g.1.take() {
        w.wake();
    }
}

static PRECISE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

async fn precise_reads(mut conn: Connection<'_>) {
    let reads = async {
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        let n = conn.read(&mut a).await;
        let m = conn.read_upstream(&mut b).await;
        let end = matches!(conn.read_any(&mut a).await, Traffic::Closed);
        (n, m, end)
    };
    let (reads, gate, read_polls, gate_polls) =
        precise::Join(precise::Child::new(reads), precise::Child::new(Gate)).await;
    PRECISE
        .lock()
        .unwrap()
        .push(format!("{reads:?} {gate} polls={read_polls}/{gate_polls}"));
}

#[test]
fn reads_wake_their_own_waker_under_a_combinator_that_polls_only_woken_children() {
    fn reg(r: &mut Registry) {
        r.network("precise").handle(precise_reads);
    }
    *GATE.lock().unwrap() = (false, None);
    PRECISE.lock().unwrap().clear();
    let f = TestNetworkFilter::new(reg, "precise", b"").unwrap();
    let mut c = f.connect();
    // Each event wakes only the child waiting for it.
    c.client_sends(b"abc");
    c.upstream_sends(b"defg");
    open_gate();
    assert_eq!(
        c.run_scheduled(),
        1,
        "the gate's wake came through the scheduler"
    );
    assert!(PRECISE.lock().unwrap().is_empty(), "still reading");
    c.client_closes();
    // Reads: polled at the start, then once per event (client bytes, upstream bytes, close);
    // the gate: at the start and once after its wake.
    assert_eq!(*PRECISE.lock().unwrap(), ["(3, 4, true) gate polls=4/2"]);
}

async fn reports(mut conn: Connection<'_>) {
    conn.set_upstream_socket_option(1, 9, 1);
    conn.set_upstream_socket_option_bytes(1, 25, b"eth0\0");
    conn.set_buffer_limit(4096);
    let mut buf = [0u8; 16];
    let _ = conn.read_upstream(&mut buf).await;
    conn.set_metadata_number("r", "n", 7.0);
    conn.set_metadata_bool("r", "b", false);
    conn.set_metadata("r", "s", "text");
    let mut s = [0u8; 2];
    let mut host = [0u8; 32];
    let mut cluster = [0u8; 32];
    let line = format!(
        "{:?} {:?} {:?}/{:?} {:?} {:?} {:?} {:?} {:?} {} {}",
        conn.upstream_addr(),
        conn.direct_peer_addr(),
        conn.upstream_hostname(&mut host)
            .map(|n| host[..n].to_vec()),
        conn.upstream_cluster(&mut cluster)
            .map(|n| cluster[..n].to_vec()),
        conn.metadata_number("r", "n"),
        conn.metadata_bool("r", "b"),
        // A string longer than the buffer: its whole length, the start copied.
        conn.metadata_str("r", "s", &mut s).map(|n| (n, s)),
        conn.metadata_number("r", "s"),
        conn.metadata_str("r", "missing", &mut s),
        conn.worker_index(),
        conn.buffer_limit(),
    );
    conn.send_downstream(line.as_bytes());
}

#[test]
fn upstream_host_socket_options_buffer_limit_and_typed_metadata() {
    fn reg(r: &mut Registry) {
        r.network("reports").handle(reports);
    }
    let f = TestNetworkFilter::new(reg, "reports", b"").unwrap();
    let mut c = f.connect();
    // Asked for before the first await: before the proxy connects.
    assert_eq!(
        c.upstream_socket_options(),
        [(1, 9, Ok(1)), (1, 25, Err(b"eth0\0".to_vec()))]
    );
    assert_eq!(c.buffer_limit(), 4096);
    c.set_peer("10.0.0.1", 1000);
    c.set_direct_peer("192.168.1.1", 2000);
    c.set_upstream_host("10.1.1.1", 6379, "redis-a", "redis");
    c.set_worker_index(3);
    c.upstream_sends(b"+OK\r\n");
    assert_eq!(
        String::from_utf8(c.client()).unwrap(),
        "Some(10.1.1.1:6379) Some(192.168.1.1:2000) Some([114, 101, 100, 105, 115, 45, 97])/\
         Some([114, 101, 100, 105, 115]) Some(7.0) Some(false) Some((4, [116, 101])) None None \
         3 4096"
    );
    assert_eq!(c.metadata_number("r", "n"), Some(7.0));
    assert_eq!(c.metadata_bool("r", "b"), Some(false));
    assert_eq!(c.metadata("r", "s").as_deref(), Some("text"));
}
