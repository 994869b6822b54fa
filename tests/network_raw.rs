//! Raw network filters on simulated connections: statuses, buffer calls, events, a panic
//! failing closed, and slot reuse.

use jisr::Registry;
use jisr::network::{Event, RawConnection, RawFactory, RawFilter, RawScheduler, Status};
use jisr::testing::TestNetworkFilter;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Holds client bytes until a newline is in the read buffer, then lets everything go.
struct UntilNewline;
impl RawFilter for UntilNewline {
    fn on_read(&mut self, c: &mut RawConnection<'_>, _end: bool) -> Status {
        let mut seen = false;
        c.read_chunks(|chunk| {
            seen = chunk.contains(&b'\n');
            !seen
        });
        if seen {
            Status::Continue
        } else {
            Status::StopIteration
        }
    }
}

/// Takes each read out of Envoy's buffer and sends it on upper-cased (copy, drain, inject).
struct Upper;
impl RawFilter for Upper {
    fn on_read(&mut self, c: &mut RawConnection<'_>, end: bool) -> Status {
        let mut buf = [0u8; 64];
        let n = c.copy_read(&mut buf);
        c.drain_read(n);
        buf[..n].make_ascii_uppercase();
        c.inject_read(&buf[..n], end);
        Status::StopIteration
    }
    fn on_write(&mut self, c: &mut RawConnection<'_>, _end: bool) -> Status {
        // Replaces upstream's `secret` with `******` on its way to the client.
        let mut buf = [0u8; 64];
        let n = c.copy_write(&mut buf);
        if buf[..n].windows(6).any(|w| w == b"secret") {
            c.drain_write(n);
            let out: Vec<u8> = String::from_utf8_lossy(&buf[..n])
                .replace("secret", "******")
                .into_bytes();
            c.inject_write(&out, false);
            return Status::StopIteration;
        }
        Status::Continue
    }
}

/// Closes the connection on `QUIT` and records every event, with the hook it arrived in.
struct Quit(Arc<Mutex<Vec<String>>>);
impl RawFilter for Quit {
    fn on_read(&mut self, c: &mut RawConnection<'_>, _end: bool) -> Status {
        let mut buf = [0u8; 4];
        let n = c.copy_read(&mut buf);
        if &buf[..n] == b"QUIT" {
            self.0.lock().unwrap().push("close".into());
            c.close("quit");
            self.0.lock().unwrap().push("close returned".into());
            return Status::StopIteration;
        }
        Status::Continue
    }
    fn on_event(&mut self, _c: &mut RawConnection<'_>, event: Event) {
        self.0.lock().unwrap().push(format!("{event:?}"));
    }
}

/// Panics on `boom`; counts the hooks it gets and its drops.
struct Boom;
static BOOM_HOOKS: AtomicUsize = AtomicUsize::new(0);
static BOOM_DROPS: AtomicUsize = AtomicUsize::new(0);
impl RawFilter for Boom {
    fn on_read(&mut self, c: &mut RawConnection<'_>, _end: bool) -> Status {
        BOOM_HOOKS.fetch_add(1, Ordering::SeqCst);
        let mut buf = [0u8; 8];
        let n = c.copy_read(&mut buf);
        assert!(&buf[..n] != b"boom", "boom");
        Status::Continue
    }
    fn on_event(&mut self, _c: &mut RawConnection<'_>, _event: Event) {
        BOOM_HOOKS.fetch_add(1, Ordering::SeqCst);
    }
}
impl Drop for Boom {
    fn drop(&mut self) {
        BOOM_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

/// Reports what it sees of the connection in dynamic metadata.
struct Info;
impl RawFilter for Info {
    fn on_new_connection(&mut self, c: &mut RawConnection<'_>) -> Status {
        let peer = c.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let local = c.local_addr().map(|a| a.to_string()).unwrap_or_default();
        // Before any read hook there is no read buffer to ask about.
        let early = c.read_len();
        c.set_metadata("raw", "peer", &peer);
        c.set_metadata("raw", "local", &local);
        c.set_metadata("raw", "early", &early.to_string());
        let name = String::from(c.filter_name());
        c.set_metadata("raw", "name", &name);
        Status::Continue
    }
    fn on_read(&mut self, c: &mut RawConnection<'_>, _end: bool) -> Status {
        // The write buffer exists only in a write hook.
        let w = c.write_len();
        c.set_metadata("raw", "write_len_in_read", &w.to_string());
        Status::Continue
    }
}

/// Stops every read, and lets them go when a thread's wake arrives.
struct Later(Option<RawScheduler>);
impl RawFilter for Later {
    fn on_read(&mut self, c: &mut RawConnection<'_>, _end: bool) -> Status {
        let s = c.scheduler();
        let t = std::thread::spawn(move || s.commit());
        t.join().unwrap();
        self.0 = Some(c.scheduler());
        Status::StopIteration
    }
    fn on_scheduled(&mut self, c: &mut RawConnection<'_>) {
        c.continue_reading();
    }
}

/// Counts the filters it makes; `filter_config` is its step.
struct Counted(usize);
static MADE: AtomicUsize = AtomicUsize::new(0);
impl RawFactory for Counted {
    type Filter = UntilNewline;
    fn new_filter(&self) -> UntilNewline {
        MADE.fetch_add(self.0, Ordering::SeqCst);
        UntilNewline
    }
}

static EVENTS: Mutex<Option<Arc<Mutex<Vec<String>>>>> = Mutex::new(None);

fn register(r: &mut Registry) {
    r.network_raw("until_newline", |_cfg| Ok(|| UntilNewline));
    r.network_raw("upper", |_cfg| Ok(|| Upper));
    r.network_raw("quit", |_cfg| {
        let log = EVENTS.lock().unwrap().clone().unwrap_or_default();
        Ok(move || Quit(log.clone()))
    });
    r.network_raw("boom", |_cfg| Ok(|| Boom));
    r.network_raw("info", |_cfg| Ok(|| Info));
    r.network_raw("later", |_cfg| Ok(|| Later(None)));
    r.network_raw("counted", |cfg| {
        cfg.config_str()?
            .parse()
            .map(Counted)
            .map_err(|_| jisr::ConfigError::new("not a number"))
    });
}

#[test]
fn stop_iteration_holds_client_bytes_and_continue_lets_them_all_go() {
    let f = TestNetworkFilter::new(register, "until_newline", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"hel");
    c.client_sends(b"lo");
    assert_eq!(c.upstream(), b"", "held in Envoy's read buffer");
    assert_eq!(c.held(), 5);
    c.client_sends(b" world\nrest");
    assert_eq!(c.upstream(), b"hello world\nrest");
    assert_eq!(c.held(), 0);
    // The default write hook lets upstream bytes through.
    c.upstream_sends(b"pong");
    assert_eq!(c.client(), b"pong");
}

#[test]
fn drain_and_inject_replace_bytes_in_both_directions() {
    let f = TestNetworkFilter::new(register, "upper", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"hello");
    c.client_sends(b" world");
    assert_eq!(c.upstream(), b"HELLO WORLD");
    assert_eq!(c.held(), 0, "drained");
    c.client_ends();
    assert!(
        c.upstream_ended(),
        "end_stream passed on with the injection"
    );
    c.upstream_sends(b"the secret is out");
    assert_eq!(c.client(), b"the ****** is out");
    c.upstream_sends(b" plain");
    assert_eq!(c.client(), b"the ****** is out plain");
}

#[test]
fn a_close_inside_a_hook_is_reported_after_the_hook_returns() {
    let log = Arc::new(Mutex::new(Vec::new()));
    *EVENTS.lock().unwrap() = Some(log.clone());
    let f = TestNetworkFilter::new(register, "quit", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"data");
    assert_eq!(c.upstream(), b"data");
    c.client_sends(b"QUIT");
    assert_eq!(c.closed().as_deref(), Some("quit"));
    assert!(!c.was_reset(), "a flush close");
    assert_eq!(
        *log.lock().unwrap(),
        ["close", "close returned", "LocalClose"],
        "the event is not lost, and not delivered inside the hook"
    );
    assert_eq!(c.upstream(), b"data", "the QUIT read was stopped");
    // A remote close on another connection comes as such.
    let mut d = f.connect();
    d.client_closes();
    assert_eq!(log.lock().unwrap().last().unwrap(), "RemoteClose");
}

#[test]
fn a_panic_resets_the_connection_and_the_filter_gets_no_more_hooks() {
    let f = TestNetworkFilter::new(register, "boom", b"").unwrap();
    let before = BOOM_HOOKS.load(Ordering::SeqCst);
    let drops = BOOM_DROPS.load(Ordering::SeqCst);
    let mut c = f.connect();
    c.client_sends(b"ok");
    assert_eq!(c.upstream(), b"ok");
    c.client_sends(b"boom");
    assert!(c.was_reset());
    assert_eq!(c.closed().as_deref(), Some("jisr_network_handler_panic"));
    assert_eq!(c.upstream(), b"ok", "nothing of the panicking read passes");
    assert_eq!(
        BOOM_DROPS.load(Ordering::SeqCst),
        drops + 1,
        "the poisoned filter is dropped at once"
    );
    assert!(
        c.logs()
            .iter()
            .any(|(l, s)| *l == jisr::Level::Error && s.contains("panicked: boom")),
        "{:?}",
        c.logs()
    );
    // Neither the close event nor later data reach the poisoned filter.
    assert_eq!(BOOM_HOOKS.load(Ordering::SeqCst), before + 2);
    drop(c);
    // The slot is reused for the next connection, which works.
    let mut d = f.connect();
    d.client_sends(b"fine");
    assert_eq!(d.upstream(), b"fine");
}

#[test]
fn the_connection_is_described_and_buffers_exist_only_where_envoy_has_them() {
    let f = TestNetworkFilter::new(register, "info", b"").unwrap();
    let mut c = f.connect();
    assert_eq!(
        c.metadata("raw", "peer").as_deref(),
        Some("127.0.0.1:40000")
    );
    assert_eq!(
        c.metadata("raw", "local").as_deref(),
        Some("127.0.0.1:10000")
    );
    assert_eq!(c.metadata("raw", "early").as_deref(), Some("0"));
    assert_eq!(c.metadata("raw", "name").as_deref(), Some("info"));
    c.client_sends(b"x");
    assert_eq!(c.metadata("raw", "write_len_in_read").as_deref(), Some("0"));
}

#[test]
fn a_scheduler_commit_from_another_thread_arrives_as_on_scheduled() {
    let f = TestNetworkFilter::new(register, "later", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"wait");
    assert_eq!(c.upstream(), b"");
    let start = Instant::now();
    while c.run_scheduled() == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "no wake arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.upstream(), b"wait");
}

#[test]
fn the_config_builds_a_factory_and_each_connection_gets_a_filter() {
    let f = TestNetworkFilter::new(register, "counted", b"1000").unwrap();
    let before = MADE.load(Ordering::SeqCst);
    for _ in 0..3 {
        let mut c = f.connect();
        c.client_sends(b"a\n");
        assert_eq!(c.upstream(), b"a\n");
    }
    assert_eq!(MADE.load(Ordering::SeqCst) - before, 3000);
    let refused = TestNetworkFilter::new(register, "counted", b"many")
        .err()
        .unwrap();
    assert!(refused.contains("not a number"), "{refused}");
}

/// Looks at upstream bytes in place; resets on `RST`, stops reading the client on `PAUSE`.
struct Watch;
impl RawFilter for Watch {
    fn on_read(&mut self, c: &mut RawConnection<'_>, _end: bool) -> Status {
        let mut head = [0u8; 5];
        let n = c.copy_read(&mut head);
        match &head[..n] {
            b"PAUSE" => c.read_disable(true),
            b"RST" => c.reset("watch_reset"),
            _ => {}
        }
        Status::Continue
    }
    fn on_write(&mut self, c: &mut RawConnection<'_>, _end: bool) -> Status {
        let mut total = 0;
        c.write_chunks(|chunk| {
            total += chunk.len();
            true
        });
        assert_eq!(total, c.write_len());
        // Envoy's read buffer is there (a read hook ran), the client's bytes already passed.
        c.set_metadata("watch", "read_len", &c.read_len().to_string());
        c.set_metadata("watch", "write_len", &total.to_string());
        Status::Continue
    }
}

fn register_watch(r: &mut Registry) {
    r.network_raw("watch", |_cfg| Ok(|| Watch));
}

#[test]
fn write_views_read_disable_and_reset() {
    let f = TestNetworkFilter::new(register_watch, "watch", b"").unwrap();
    let mut c = f.connect();
    c.client_sends(b"PAUSE");
    assert!(c.reading_disabled());
    c.upstream_sends(b"0123456789");
    assert_eq!(c.client(), b"0123456789");
    assert_eq!(c.metadata("watch", "write_len").as_deref(), Some("10"));
    assert_eq!(c.metadata("watch", "read_len").as_deref(), Some("0"));
    c.client_sends(b"RST");
    assert!(c.was_reset());
    assert_eq!(c.closed().as_deref(), Some("watch_reset"));
}
