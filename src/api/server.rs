//! A jisr server extension: the module's own work on Envoy's main thread (Envoy's bootstrap
//! extension), with no thread and no async runtime.
//!
//! ```yaml
//! bootstrap_extensions:
//! - name: envoy.bootstrap.dynamic_modules
//!   typed_config:
//!     "@type": type.googleapis.com/envoy.extensions.bootstrap.dynamic_modules.v3.DynamicModuleBootstrapExtension
//!     dynamic_module_config: { name: my_module }
//!     extension_name: refresher            # the name given to `Registry::server`
//!     extension_config:
//!       "@type": type.googleapis.com/google.protobuf.StringValue
//!       value: '{"every_ms": 1000}'
//! ```
//!
//! The setup function runs when Envoy loads the extension. It spawns tasks (polled on the main
//! thread, see [`Background`]), may hold Envoy's readiness until a first result is in
//! ([`ServerSetup::hold_init`]), adds admin endpoints, watches files, and hands data to request
//! handlers through a [`Published`] value. While a server extension runs, it also drives every
//! jisr timer (`jisr::time`) from Envoy's main-thread timer.

use crate::api::config::{ConfigError, ConfigHandle};
use crate::executor::background::Runtime;
use crate::executor::timer::{Driver, timers};
use crate::host::server::ServerHost;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Scheduler events of a server extension (event 0 is the runtime's "tasks are ready").
pub(crate) const EVENT_TIMERS: u64 = 1;
pub(crate) const EVENT_INIT: u64 = 2;

/// An admin request (`GET /jisr/...` on Envoy's admin listener).
///
/// ```
/// use jisr::server::AdminRequest;
///
/// /// `POST /acme/debug` with `on` or `off` (given to `ServerSetup::admin`).
/// fn debug_switch(req: &AdminRequest) -> (u16, Vec<u8>) {
///     match (req.method.as_str(), req.body.as_slice()) {
///         ("POST", b"on" | b"off") => (200, b"ok\n".to_vec()),
///         ("POST", _) => (400, b"say on or off\n".to_vec()),
///         _ => (405, b"POST only\n".to_vec()),
///     }
/// }
///
/// let req = AdminRequest { method: "POST".into(), path: "/acme/debug".into(), body: b"on".to_vec() };
/// assert_eq!(debug_switch(&req).0, 200);
/// ```
#[derive(Clone, Debug)]
pub struct AdminRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Request body.
    pub body: Vec<u8>,
}

/// An admin handler: the status and body to answer with.
///
/// ```
/// use jisr::server::{AdminHandler, AdminRequest};
///
/// let echo: AdminHandler = Box::new(|req| (200, format!("{} {}\n", req.method, req.path).into_bytes()));
/// let req = AdminRequest { method: "GET".into(), path: "/acme/echo?x=1".into(), body: Vec::new() };
/// assert_eq!(echo(&req), (200, b"GET /acme/echo?x=1\n".to_vec()));
/// ```
pub type AdminHandler = Box<dyn Fn(&AdminRequest) -> (u16, Vec<u8>) + Send + Sync>;

/// What Envoy told the server extension, shared with its tasks.
#[derive(Default)]
struct Lifecycle {
    draining: AtomicBool,
    shutting_down: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
}

impl Lifecycle {
    fn notify(&self) {
        let waiters = core::mem::take(&mut *lock(&self.waiters));
        for w in waiters {
            w.wake();
        }
    }

    fn wait<'a>(&'a self, flag: &'a AtomicBool) -> impl Future<Output = ()> + 'a {
        std::future::poll_fn(move |cx| {
            if flag.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            let mut w = lock(&self.waiters);
            if flag.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// Readiness held back by [`ServerSetup::hold_init`].
#[derive(Default)]
struct InitGate {
    holds: usize,
    signalled: bool,
}

/// Files watched for changes: path, how many changes were seen, waiters.
type Watched = Vec<(String, u64, Vec<Waker>)>;

/// State of one server extension config, shared by its tasks and hooks.
pub(crate) struct ServerShared {
    pub(crate) name: String,
    life: Lifecycle,
    init: Mutex<InitGate>,
    admin: Mutex<Vec<(String, String, AdminHandler)>>,
    files: Mutex<Watched>,
    runtime: Arc<Runtime>,
    /// This extension's shutdown grace is over (each extension has its own: several server
    /// extensions may run in one process).
    grace_over: AtomicBool,
}

/// What the setup function of a server extension uses (see [`Registry::server`]).
///
/// Server extensions run only inside Envoy ([`testing`](crate::testing) simulates filters, not
/// them), so this example registers the extension without running its setup.
///
/// ```
/// use std::time::Duration;
/// use jisr::server::ServerSetup;
/// use jisr::{ConfigError, ConfigHandle, Registry};
///
/// fn setup(cfg: &mut ConfigHandle<'_>, srv: &mut ServerSetup) -> Result<(), ConfigError> {
///     let every_ms: u64 = cfg.config_str()?.trim().parse().map_err(|_| ConfigError::new("every_ms"))?;
///     let life = srv.lifecycle();
///     cfg.background().spawn(async move {
///         let mut tick = jisr::time::interval(Duration::from_millis(every_ms));
///         while !life.is_draining() {
///             tick.tick().await; // ... refresh something ...
///         }
///     });
///     srv.admin("/acme/period", "refresh period", move |_| (200, format!("{every_ms}\n").into_bytes()));
///     Ok(())
/// }
///
/// let mut r = Registry::default();
/// r.server("refresher", setup);
/// ```
///
/// [`Registry::server`]: crate::Registry::server
pub struct ServerSetup {
    shared: Arc<ServerShared>,
    init_timeout: Option<Duration>,
}

/// Keeps Envoy from serving until released (see [`ServerSetup::hold_init`]).
///
/// As for [`ServerSetup`], the setup below runs only inside Envoy; the example registers it.
///
/// ```
/// use std::time::Duration;
/// use jisr::callout::CalloutRequest;
/// use jisr::server::ServerSetup;
/// use jisr::{ConfigError, ConfigHandle, Registry};
///
/// fn setup(cfg: &mut ConfigHandle<'_>, srv: &mut ServerSetup) -> Result<(), ConfigError> {
///     let bg = cfg.background();
///     let ready = srv.hold_init(Duration::from_secs(10)); // listeners wait for the first fetch
///     bg.clone().spawn(async move {
///         let _keys = bg.callout(CalloutRequest::get("keys", "/keys", "keys.local")).await;
///         // ... publish the keys for the handlers ...
///         ready.release(); // dropping `ready` would release it too
///     });
///     Ok(())
/// }
///
/// let mut r = Registry::default();
/// r.server("keys", setup);
/// ```
pub struct InitHold {
    shared: Arc<ServerShared>,
    released: bool,
}

impl InitHold {
    /// Lets Envoy start serving (as far as this hold is concerned).
    pub fn release(mut self) {
        self.release_now();
    }

    fn release_now(&mut self) {
        if core::mem::replace(&mut self.released, true) {
            return;
        }
        let open = {
            let mut g = lock(&self.shared.init);
            g.holds = g.holds.saturating_sub(1);
            g.holds == 0 && !g.signalled
        };
        if open {
            self.shared.runtime.commit_event(EVENT_INIT);
        }
    }
}

impl Drop for InitHold {
    fn drop(&mut self) {
        self.release_now();
    }
}

impl fmt::Debug for InitHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitHold")
            .field("released", &self.released)
            .finish()
    }
}

impl ServerSetup {
    /// Holds Envoy's readiness (listeners do not serve) until the returned hold is released
    /// or dropped, e.g. by a task once its first fetch is in. After `timeout` Envoy starts
    /// anyway and the extension logs that its init timed out.
    pub fn hold_init(&mut self, timeout: Duration) -> InitHold {
        lock(&self.shared.init).holds += 1;
        self.init_timeout = Some(self.init_timeout.map_or(timeout, |t| t.min(timeout)));
        InitHold {
            shared: self.shared.clone(),
            released: false,
        }
    }

    /// Answers `GET <prefix>` (and paths under it) on Envoy's admin listener with `handler`.
    /// Registered when the server is initialized; a prefix Envoy refuses is logged.
    pub fn admin(
        &mut self,
        prefix: &str,
        help: &str,
        handler: impl Fn(&AdminRequest) -> (u16, Vec<u8>) + Send + Sync + 'static,
    ) {
        lock(&self.shared.admin).push((prefix.to_string(), help.to_string(), Box::new(handler)));
    }

    /// Watches `path` (a file, moved into place or modified); see [`FileWatch`].
    pub fn watch(&mut self, path: &str) -> FileWatch {
        lock(&self.shared.files).push((path.to_string(), 0, Vec::new()));
        FileWatch {
            shared: self.shared.clone(),
            path: path.to_string(),
            seen: 0,
        }
    }

    /// The extension's lifecycle, for tasks: drain and shutdown.
    pub fn lifecycle(&self) -> ServerLifecycle {
        ServerLifecycle {
            shared: self.shared.clone(),
        }
    }
}

/// Drain and shutdown of Envoy, as a server extension's tasks see them.
///
/// As for [`ServerSetup`], the setup below runs only inside Envoy; the example registers it.
///
/// ```
/// use jisr::callout::CalloutRequest;
/// use jisr::server::ServerSetup;
/// use jisr::{ConfigError, ConfigHandle, Registry};
///
/// fn setup(cfg: &mut ConfigHandle<'_>, srv: &mut ServerSetup) -> Result<(), ConfigError> {
///     let (bg, life) = (cfg.background(), srv.lifecycle());
///     bg.clone().spawn(async move {
///         life.shutting_down().await;
///         // Flush what must not be lost: Envoy waits (up to 5 s) for this task to return.
///         let flush = CalloutRequest::post("audit", "/flush", "audit.local", b"bye");
///         let _ = bg.callout(flush).await;
///     });
///     Ok(())
/// }
///
/// let mut r = Registry::default();
/// r.server("audit", setup);
/// ```
#[derive(Clone)]
pub struct ServerLifecycle {
    shared: Arc<ServerShared>,
}

impl ServerLifecycle {
    /// Completes when Envoy starts draining (callouts and timers still work).
    pub async fn draining(&self) {
        let life = &self.shared.life;
        life.wait(&life.draining).await
    }

    /// Completes when Envoy shuts down. Envoy waits (up to 5 s) for the extension's tasks to
    /// finish; a task should flush what it must and return.
    pub async fn shutting_down(&self) {
        let life = &self.shared.life;
        life.wait(&life.shutting_down).await
    }

    /// Whether Envoy is draining or shutting down.
    pub fn is_draining(&self) -> bool {
        self.shared.life.draining.load(Ordering::Acquire)
            || self.shared.life.shutting_down.load(Ordering::Acquire)
    }

    /// A counter's value by its full stats name (inside a task on the main thread).
    pub fn counter_value(&self, name: &str) -> Option<u64> {
        with_server(|h| h.counter_value(name.as_bytes())).flatten()
    }

    /// A gauge's value by its full stats name (inside a task on the main thread).
    pub fn gauge_value(&self, name: &str) -> Option<u64> {
        with_server(|h| h.gauge_value(name.as_bytes())).flatten()
    }
}

impl fmt::Debug for ServerLifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerLifecycle")
            .field("server", &self.shared.name)
            .finish()
    }
}

/// A watched file (see [`ServerSetup::watch`]).
///
/// As for [`ServerSetup`], the setup below runs only inside Envoy; the example registers it.
///
/// ```
/// use std::sync::LazyLock;
/// use jisr::server::{Published, ServerSetup};
/// use jisr::{ConfigError, ConfigHandle, Registry};
///
/// // Request handlers read it with `DENY.get()`.
/// static DENY: LazyLock<Published<String>> = LazyLock::new(|| Published::new(String::new()));
///
/// fn setup(cfg: &mut ConfigHandle<'_>, srv: &mut ServerSetup) -> Result<(), ConfigError> {
///     let path = cfg.config_str()?.trim().to_string();
///     let mut watch = srv.watch(&path);
///     cfg.background().spawn(async move {
///         loop {
///             DENY.publish(std::fs::read_to_string(&path).unwrap_or_default());
///             watch.changed().await;
///         }
///     });
///     Ok(())
/// }
///
/// let mut r = Registry::default();
/// r.server("deny_list", setup);
/// ```
pub struct FileWatch {
    shared: Arc<ServerShared>,
    path: String,
    seen: u64,
}

impl FileWatch {
    /// Completes at the next change of the file after the last one this watch saw.
    pub async fn changed(&mut self) {
        let seen = self.seen;
        let now = std::future::poll_fn(|cx| {
            let mut files = lock(&self.shared.files);
            let Some(entry) = files.iter_mut().find(|(p, ..)| *p == self.path) else {
                return Poll::Ready(seen);
            };
            if entry.1 != seen {
                return Poll::Ready(entry.1);
            }
            if !entry.2.iter().any(|w| w.will_wake(cx.waker())) {
                entry.2.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
        self.seen = now;
    }
}

pub use crate::api::published::Published;

// ---- The main-thread side, driven by the entry layer's bootstrap hooks.

/// The jisr timers' main-thread driver: asks the running server extension to re-arm its
/// Envoy timer.
struct ServerDriver {
    runtime: Mutex<Option<Arc<Runtime>>>,
}

impl Driver for ServerDriver {
    fn rearm(&self) {
        if let Some(rt) = lock(&self.runtime).as_ref() {
            rt.commit_event(EVENT_TIMERS);
        }
    }
}

static DRIVER: ServerDriver = ServerDriver {
    runtime: Mutex::new(None),
};

/// One loaded server extension config.
pub(crate) struct ServerBox {
    pub(crate) shared: Arc<ServerShared>,
    /// Envoy's pointer of this extension config.
    pub(crate) config_envoy: std::sync::atomic::AtomicPtr<core::ffi::c_void>,
    /// Envoy's timer used to fire jisr timers (only the extension that drives them has one).
    timer: Mutex<Option<usize>>,
    pub(crate) extension: std::sync::atomic::AtomicPtr<core::ffi::c_void>,
    shutdown: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// The user's setup function of a server extension.
pub(crate) type ServerBuild =
    Box<dyn Fn(&mut ConfigHandle<'_>, &mut ServerSetup) -> Result<(), ConfigError> + Send + Sync>;

/// Loads a server extension (main thread, `on_bootstrap_extension_config_new`).
pub(crate) fn load(
    build: &ServerBuild,
    cfg: &mut ConfigHandle<'_>,
    host: &dyn ServerHost,
) -> Result<ServerBox, ConfigError> {
    // The extension's runtime: the one its setup asks for with `cfg.background()`.
    let _ = cfg.background();
    let Some(runtime) = cfg.background.clone() else {
        return Err(ConfigError::new("no background runtime"));
    };
    let shared = Arc::new(ServerShared {
        name: cfg.filter_name().to_string(),
        life: Lifecycle::default(),
        init: Mutex::new(InitGate::default()),
        admin: Mutex::new(Vec::new()),
        files: Mutex::new(Vec::new()),
        runtime: runtime.clone(),
        grace_over: AtomicBool::new(false),
    });
    let mut setup = ServerSetup {
        shared: shared.clone(),
        init_timeout: None,
    };
    build(cfg, &mut setup)?;
    for (path, ..) in lock(&shared.files).iter() {
        if !host.watch_file(path.as_bytes(), 0x1 | 0x2) {
            return Err(ConfigError::new(format!("cannot watch file '{path}'")));
        }
    }
    // The first server extension drives the jisr timers from Envoy's main-thread timer and
    // answers jisr's own admin paths.
    let mut timer = None;
    {
        let mut d = lock(&DRIVER.runtime);
        if d.is_none() {
            *d = Some(runtime.clone());
            timer = Some(host.timer_new() as usize);
        }
    }
    if timer.is_some() {
        builtin_admin(&shared);
    }
    lock(&SERVERS).push(Arc::downgrade(&shared));
    if timer.is_some() {
        timers().set_driver(Some(&DRIVER));
    }
    let server = ServerBox {
        shared: shared.clone(),
        config_envoy: std::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
        timer: Mutex::new(timer),
        extension: std::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
        shutdown: Mutex::new(None),
    };
    // Readiness: at once, unless a hold is out; a timeout opens it regardless.
    let held = lock(&shared.init).holds > 0;
    if !held {
        signal_init(&shared, host);
    } else if let Some(timeout) = setup.init_timeout {
        let s = shared.clone();
        runtime.spawn(Box::pin(async move {
            crate::time::sleep(timeout).await;
            let open = {
                let mut g = lock(&s.init);
                let open = !g.signalled;
                g.holds = 0;
                open
            };
            if open {
                crate::host::current::with_config(|h| {
                    h.log(
                        crate::Level::Warn as u32,
                        format!(
                            "jisr: server '{}': init not complete after {timeout:?}; Envoy starts anyway",
                            s.name
                        )
                        .as_bytes(),
                    )
                });
                s.runtime.commit_event(EVENT_INIT);
            }
        }));
    }
    Ok(server)
}

/// Live server extensions, for `/jisr/streams`.
static SERVERS: Mutex<Vec<std::sync::Weak<ServerShared>>> = Mutex::new(Vec::new());

/// jisr's own admin paths on Envoy's admin listener.
fn builtin_admin(shared: &ServerShared) {
    // From now on `/jisr/streams` can list waiting streams: register them.
    crate::filter::live::enable();
    let mut admin = lock(&shared.admin);
    let json = |body: String| (200u16, body.into_bytes());
    admin.push((
        "/jisr/healthz".into(),
        "jisr: liveness".into(),
        Box::new(|_| (200, b"ok\n".to_vec())),
    ));
    admin.push((
        "/jisr/stats".into(),
        "jisr: figures of every filter config".into(),
        Box::new(move |_| json(crate::api::stats::stats_json())),
    ));
    admin.push((
        "/jisr/version".into(),
        "jisr: versions".into(),
        Box::new(move |_| json(crate::api::stats::version_json())),
    ));
    admin.push((
        "/jisr/streams".into(),
        "jisr: streams per filter, each waiting stream, tasks per server".into(),
        Box::new(move |_| json(streams_json())),
    ));
}

/// Live streams per filter config and tasks per server extension, as JSON.
fn streams_json() -> String {
    use std::fmt::Write as _;
    let mut body = String::from("{\"filters\":[");
    for (i, (name, s)) in crate::api::stats::filter_stats().iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{{\"filter\":\"{}\",\"in_flight\":{},\"streams\":{},\"polls\":{},\"wakes_inline\":{},\"wakes_scheduled\":{}}}",
            name.escape_default(),
            s.in_flight,
            s.streams,
            s.polls,
            s.wakes_inline,
            s.wakes_scheduled
        );
    }
    body.push_str("],\"waiting\":[");
    // Streams whose handler is waiting (pended at least once), up to 1000.
    for (i, w) in crate::filter::live::snapshot()
        .iter()
        .take(1000)
        .enumerate()
    {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{{\"filter\":\"{}\",\"phase\":\"{}\",\"age_ms\":{},\"polls\":{},\"wakes_inline\":{},\"wakes_scheduled\":{}}}",
            w.filter.name.escape_default(),
            w.phase,
            w.since.elapsed().as_millis(),
            w.polls,
            w.wakes_inline,
            w.wakes_scheduled
        );
    }
    body.push_str("],\"servers\":[");
    let servers: Vec<_> = lock(&SERVERS)
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    for (i, s) in servers.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{{\"server\":\"{}\",\"tasks\":{},\"task_panics\":{},\"draining\":{}}}",
            s.name.escape_default(),
            s.runtime.live_tasks(),
            s.runtime.panics(),
            s.life.draining.load(Ordering::Acquire)
        );
    }
    body.push_str("]}\n");
    body
}

fn signal_init(shared: &ServerShared, host: &dyn ServerHost) {
    let now = {
        let mut g = lock(&shared.init);
        !core::mem::replace(&mut g.signalled, true)
    };
    if now {
        host.signal_init_complete();
    }
}

/// Runs the server's ready tasks with `host` current (and the server-only calls reachable).
fn run(server: &ServerBox, host: &dyn ServerHost) {
    let rt = &server.shared.runtime;
    let owner = format!("server '{}'", server.shared.name);
    enter_server(host, || {
        crate::filter::background::poll(rt, host.as_config(), &owner)
    });
    maybe_finish_shutdown(server);
}

/// A scheduler event (main thread).
pub(crate) fn scheduled(server: &ServerBox, host: &dyn ServerHost, event: u64) {
    match event {
        EVENT_TIMERS => rearm(server, host),
        EVENT_INIT if lock(&server.shared.init).holds == 0 => signal_init(&server.shared, host),
        _ => {}
    }
    run(server, host);
}

fn rearm(server: &ServerBox, host: &dyn ServerHost) {
    let Some(timer) = *lock(&server.timer) else {
        return;
    };
    let ms = timers().arm().map(|d| {
        // Rounded up: a fire before the deadline would find nothing due. A far deadline is
        // armed for at most `MAX_WAIT` and re-armed from there.
        let left = d
            .saturating_duration_since(Instant::now())
            .min(crate::executor::timer::MAX_WAIT)
            .as_nanos();
        u64::try_from(left.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    });
    if let Some(ms) = ms {
        host.timer_enable(timer as *mut core::ffi::c_void, ms);
    }
}

/// Envoy's timer fired (main thread).
pub(crate) fn timer_fired(server: &ServerBox, host: &dyn ServerHost) {
    timers().fire(Instant::now());
    rearm(server, host);
    run(server, host);
}

/// A callout of a server task finished.
pub(crate) fn callout_done(
    server: &ServerBox,
    host: &dyn ServerHost,
    id: u64,
    result: u32,
    headers: &[crate::abi::ffi::HeaderPair],
    chunks: &[crate::abi::ffi::Buf],
) {
    crate::filter::background::deliver_callout(&server.shared.runtime, id, result, headers, chunks);
    run(server, host);
}

/// The server is initialized: register the admin endpoints.
pub(crate) fn server_initialized(server: &ServerBox, host: &dyn ServerHost) {
    let admin = lock(&server.shared.admin);
    for (prefix, help, _) in admin.iter() {
        if !host.register_admin(prefix.as_bytes(), help.as_bytes()) {
            host.log(
                crate::Level::Error as u32,
                format!(
                    "jisr: server '{}': Envoy refused admin path '{prefix}'",
                    server.shared.name
                )
                .as_bytes(),
            );
        }
    }
}

/// An admin request for one of the server's prefixes; returns the status.
pub(crate) fn admin_request(server: &ServerBox, host: &dyn ServerHost, req: &AdminRequest) -> u32 {
    let path = req.path.split('?').next().unwrap_or("");
    let admin = lock(&server.shared.admin);
    let best = admin
        .iter()
        .filter(|(prefix, ..)| path.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, ..)| prefix.len());
    let (status, body) = match best {
        Some((_, _, handler)) => {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(req))) {
                Ok(r) => r,
                Err(p) => {
                    core::mem::forget(p);
                    (500, b"admin handler panicked\n".to_vec())
                }
            }
        }
        None => (404, b"no such jisr admin path\n".to_vec()),
    };
    // The status goes on Envoy's admin listener as it is: hold it to a final status, as every
    // other reply is (`jisr::wire`).
    let (status, body) = match crate::api::wire::status(status) {
        Ok(()) => (status, body),
        Err(e) => (500, format!("jisr admin handler: {e}\n").into_bytes()),
    };
    host.admin_response(&body);
    u32::from(status)
}

/// A watched file changed.
pub(crate) fn file_changed(server: &ServerBox, host: &dyn ServerHost, path: &str) {
    let waiters = {
        let mut files = lock(&server.shared.files);
        match files.iter_mut().find(|(p, ..)| p == path) {
            Some(e) => {
                e.1 += 1;
                core::mem::take(&mut e.2)
            }
            None => Vec::new(),
        }
    };
    for w in waiters {
        w.wake();
    }
    run(server, host);
}

/// Envoy started draining.
pub(crate) fn drain_started(server: &ServerBox, host: &dyn ServerHost) {
    server.shared.life.draining.store(true, Ordering::Release);
    server.shared.life.notify();
    run(server, host);
}

/// Envoy shuts down: tasks see it, and `done` is called once they have all finished (or after
/// a grace period); nothing is polled afterwards.
pub(crate) fn shutdown(server: &ServerBox, host: &dyn ServerHost, done: Box<dyn FnOnce() + Send>) {
    *lock(&server.shutdown) = Some(done);
    server
        .shared
        .life
        .shutting_down
        .store(true, Ordering::Release);
    server.shared.life.notify();
    let rt = server.shared.runtime.clone();
    // A grace period for tasks that do not finish.
    let grace = SHUTDOWN_GRACE;
    let shared = Arc::downgrade(&server.shared);
    rt.spawn(Box::pin(async move {
        crate::time::sleep(grace).await;
        if let Some(shared) = shared.upgrade() {
            shared.grace_over.store(true, Ordering::Release);
        }
    }));
    run(server, host);
}

/// How long Envoy's shutdown waits for the extension's tasks.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn maybe_finish_shutdown(server: &ServerBox) {
    if !server.shared.life.shutting_down.load(Ordering::Acquire) {
        return;
    }
    let rt = &server.shared.runtime;
    // The grace task itself is one live task.
    let others_done = rt.live_tasks() <= 1;
    if others_done || server.shared.grace_over.load(Ordering::Acquire) {
        let done = lock(&server.shutdown).take();
        if let Some(done) = done {
            rt.close();
            done();
        }
    }
}

/// The config goes away (main thread).
pub(crate) fn destroy(server: &ServerBox, host: &dyn ServerHost) {
    server.shared.runtime.close();
    lock(&SERVERS)
        .retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(&server.shared)));
    let timer = lock(&server.timer).take();
    if let Some(t) = timer {
        let mut d = lock(&DRIVER.runtime);
        *d = None;
        drop(d);
        timers().set_driver(None);
        host.timer_delete(t as *mut core::ffi::c_void);
    }
}

fn enter_server<R>(host: &dyn ServerHost, f: impl FnOnce() -> R) -> R {
    crate::host::current::enter_server(host, f)
}

fn with_server<R>(f: impl FnOnce(&dyn ServerHost) -> R) -> Option<R> {
    crate::host::current::with_server(f)
}
