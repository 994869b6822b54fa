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
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
pub(crate) struct Lifecycle {
    pub(crate) draining: AtomicBool,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) waiters: Mutex<Vec<Waker>>,
}

impl Lifecycle {
    pub(crate) fn notify(&self) {
        let waiters = core::mem::take(&mut *lock(&self.waiters));
        for w in waiters {
            w.wake();
        }
    }

    pub(crate) fn wait<'a>(&'a self, flag: &'a AtomicBool) -> impl Future<Output = ()> + 'a {
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
pub(crate) struct InitGate {
    pub(crate) holds: usize,
    pub(crate) signalled: bool,
}

/// Files watched for changes: path, how many changes were seen, waiters.
type Watched = Vec<(String, u64, Vec<Waker>)>;

/// State of one server extension config, shared by its tasks and hooks.
pub(crate) struct ServerShared {
    pub(crate) name: String,
    pub(crate) life: Lifecycle,
    pub(crate) init: Mutex<InitGate>,
    pub(crate) admin: Mutex<Vec<(String, String, AdminHandler)>>,
    pub(crate) files: Mutex<Watched>,
    pub(crate) runtime: Arc<Runtime>,
    /// This extension's shutdown grace is over (each extension has its own: several server
    /// extensions may run in one process).
    pub(crate) grace_over: AtomicBool,
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
    pub(crate) shared: Arc<ServerShared>,
    pub(crate) init_timeout: Option<Duration>,
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
        crate::host::server::with_server(|h| h.counter_value(name.as_bytes())).flatten()
    }

    /// A gauge's value by its full stats name (inside a task on the main thread).
    pub fn gauge_value(&self, name: &str) -> Option<u64> {
        crate::host::server::with_server(|h| h.gauge_value(name.as_bytes())).flatten()
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

/// The user's setup function of a server extension.
pub(crate) type ServerBuild =
    Box<dyn Fn(&mut ConfigHandle<'_>, &mut ServerSetup) -> Result<(), ConfigError> + Send + Sync>;
