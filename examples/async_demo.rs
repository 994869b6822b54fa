//! `async_demo`: handlers that wait.
//!
//! - `wait`: starts a `std::thread` that sleeps `x-delay-ms` (default 50) and produces a value;
//!   the handler awaits it (the hook returns a stop status, the thread's wake goes through
//!   Envoy's scheduler, the handler resumes on the worker) and forwards the request with
//!   `x-async-value`. If the client leaves first, the handler is dropped and logs
//!   `wait: handler dropped before completion`.
//! - `body`: reads at most `limit` bytes of the request body (`filter_config`, default 1024)
//!   and forwards the whole body with `x-body-seen: <bytes read>` and `x-body-fnv` (FNV-1a of
//!   the bytes read). Metadata `jisr:body_bytes`.

use jisr::{ConfigError, ConfigHandle, Level, Registry, Request, ResponseWriter};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A value produced by another thread, awaited without a runtime.
#[derive(Default)]
struct Slot {
    value: Option<u64>,
    waker: Option<Waker>,
}

struct Pending(Arc<Mutex<Slot>>);

impl Future for Pending {
    type Output = u64;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let mut slot = self.0.lock().unwrap();
        match slot.value {
            Some(v) => Poll::Ready(v),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn produce_later(delay: Duration) -> Pending {
    let shared = Arc::new(Mutex::new(Slot::default()));
    let theirs = shared.clone();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let waker = {
            let mut slot = theirs.lock().unwrap();
            slot.value = Some(delay.as_millis() as u64 + 1000);
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    });
    Pending(shared)
}

/// Logs when a handler future is dropped before it finished.
struct DropProbe<'w> {
    w: &'w ResponseWriter<'w>,
    done: bool,
}

impl Drop for DropProbe<'_> {
    fn drop(&mut self) {
        if !self.done {
            // The stream is gone, so this cannot reach Envoy's stream; use stderr.
            eprintln!("wait: handler dropped before completion");
            self.w.log(
                Level::Info,
                format_args!("wait: handler dropped before completion"),
            );
        }
    }
}

async fn wait(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let delay = req
        .header_str("x-delay-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut probe = DropProbe { w: &w, done: false };
    let value = produce_later(Duration::from_millis(delay)).await;
    probe.done = true;
    let _ = req.set_header("x-async-value", value.to_string());
    w.set_metadata_num("jisr", "async_value", value as f64);
}

struct BodyLimit {
    limit: usize,
}

fn load_body(cfg: &mut ConfigHandle<'_>) -> Result<BodyLimit, ConfigError> {
    let text = cfg.config_str()?.trim();
    let limit = if text.is_empty() {
        1024
    } else {
        text.parse()
            .map_err(|e| ConfigError::new(format!("limit must be a byte count: {e}")))?
    };
    Ok(BodyLimit { limit })
}

async fn body(state: &BodyLimit, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.limit_body(state.limit);
    let mut buf = [0u8; 512];
    let mut seen = 0usize;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    loop {
        match req.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                for &b in &buf[..n] {
                    hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
                seen += n;
            }
            Err(e) => {
                w.log(Level::Warn, format_args!("body: {e}"));
                return;
            }
        }
    }
    let _ = req.set_header("x-body-seen", seen.to_string());
    let _ = req.set_header("x-body-fnv", format!("{hash:016x}"));
    w.set_metadata_num("jisr", "body_bytes", seen as f64);
}

fn register(r: &mut Registry) {
    r.register("wait", wait);
    r.filter("body").state(load_body).handle(body);
}

jisr::export!(register);
