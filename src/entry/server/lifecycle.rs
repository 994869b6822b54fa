//! The lifecycle of a server extension on Envoy's main thread: loading it, running its tasks
//! and timers, holding and releasing Envoy's init, answering admin requests and file changes,
//! and draining and shutting down with a grace period. The bootstrap hooks of the module
//! ([`super`]) call into it; the user-facing handles (`ServerSetup`, `ServerLifecycle`,
//! `InitHold`, `FileWatch`) live in the API layer and share [`ServerShared`] with it.

use crate::api::config::{ConfigError, ConfigHandle};
use crate::api::server::{
    AdminRequest, EVENT_INIT, EVENT_TIMERS, InitGate, Lifecycle, ServerBuild, ServerSetup,
    ServerShared, lock,
};
use crate::executor::background::Runtime;
use crate::executor::timer::{Driver, timers};
use crate::host::server::ServerHost;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
        crate::entry::introspection::builtin_admin(&shared);
    }
    lock(&crate::entry::introspection::SERVERS).push(Arc::downgrade(&shared));
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
    headers: crate::host::HeaderArray<'_>,
    chunks: crate::host::ChunkArray<'_>,
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
    lock(&crate::entry::introspection::SERVERS)
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
    crate::host::server::enter_server(host, f)
}
