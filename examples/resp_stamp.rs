//! `resp_stamp`: a Passthrough response handler that stamps the status on the response.
//!
//! Filter `stamp` ([`ResponseMode::Passthrough`]): the request handler remembers the request
//! headers it needs; the response handler sets response header `x-jisr-stamp: <status>` and
//! metadata `resp_stamp:status`. The response headers are held while it runs, so it can wait:
//!
//! - request header `x-stamp-delay-ms: <ms>`: the response handler first waits for a value a
//!   `std::thread` produces after `<ms>` (the response is held meanwhile) and then also sets
//!   `x-jisr-stamp-waited: <ms>`. If the client leaves first, the handler is dropped and
//!   `resp_stamp: handler dropped before completion` goes to stderr.
//! - request header `x-resp-panic`: the response handler panics; the response headers have not
//!   left yet, so jisr answers 500 with details `jisr_handler_panic`.

use jisr::{Registry, Request, Response, ResponseMode, ResponseWriter};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// What the request handler hands to the response handler.
struct Asked {
    delay_ms: Option<u64>,
    panic: bool,
}

async fn remember(mut req: Request<'_>, _w: ResponseWriter<'_>) -> Asked {
    req.skip_body();
    Asked {
        delay_ms: req
            .header_str("x-stamp-delay-ms")
            .and_then(|v| v.parse().ok()),
        panic: req.header("x-resp-panic").is_some(),
    }
}

/// A value set by another thread, plus the waker to call when it is there.
#[derive(Default)]
struct Shared {
    value: Option<u64>,
    waker: Option<Waker>,
}

struct Later(Arc<Mutex<Shared>>);

impl Future for Later {
    type Output = u64;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let mut s = self.0.lock().unwrap();
        if let Some(v) = s.value {
            return Poll::Ready(v);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// `ms` after the call, another thread produces `ms` and wakes the handler.
fn after(ms: u64) -> Later {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let theirs = shared.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        let waker = {
            let mut s = theirs.lock().unwrap();
            s.value = Some(ms);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    });
    Later(shared)
}

/// Reports on stderr when the handler is dropped before it finished.
struct DropProbe(bool);

impl Drop for DropProbe {
    fn drop(&mut self) {
        if !self.0 {
            eprintln!("resp_stamp: handler dropped before completion");
        }
    }
}

async fn stamp(asked: Asked, mut resp: Response<'_>, w: ResponseWriter<'_>) {
    if asked.panic {
        panic!("resp_stamp: asked to panic by x-resp-panic");
    }
    let status = resp.status().unwrap_or(0);
    if let Some(ms) = asked.delay_ms {
        let mut probe = DropProbe(false);
        let waited = after(ms).await;
        probe.0 = true;
        let _ = resp.set_header("x-jisr-stamp-waited", waited.to_string());
    }
    let _ = resp.set_header("x-jisr-stamp", status.to_string());
    w.set_metadata_num("resp_stamp", "status", f64::from(status));
}

fn register(r: &mut Registry) {
    r.filter("stamp")
        .respond(ResponseMode::Passthrough, remember, stamp);
}

jisr::export!(register);
