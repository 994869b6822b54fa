//! `stream_demo`: a request handler that answers with a server-sent-events stream, paced by
//! values another thread produces.
//!
//! Filter `sse`: `GET /events?n=<events>&gap_ms=<ms>` (defaults 5 and 100) starts a
//! `std::thread` that produces one value every `<ms>`; the handler awaits each value (the hook
//! returns, the thread's wake brings the stream back through Envoy's scheduler) and sends it
//! as one event: `id: <i>\nevent: tick\ndata: {"i":<i>,"value":<v>}\n\n` where `v = i * i`.
//! After the last event it sends `event: done\ndata: {}\n\n` and ends the stream. If the client
//! leaves, the next send fails, the handler returns, and the producer thread stops.
//! Nothing goes upstream.

use jisr::{Registry, Request, ResponseWriter};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[derive(Default)]
struct Queue {
    values: VecDeque<u64>,
    finished: bool,
    closed: bool,
    waker: Option<Waker>,
}

/// The receiving end of the producer thread.
struct Ticks(Arc<Mutex<Queue>>);

impl Ticks {
    fn start(n: u64, gap: Duration) -> Ticks {
        let q = Arc::new(Mutex::new(Queue::default()));
        let theirs = q.clone();
        std::thread::spawn(move || {
            for i in 0..=n {
                if i < n {
                    std::thread::sleep(gap);
                }
                let waker = {
                    let mut q = theirs.lock().unwrap();
                    if q.closed {
                        return;
                    }
                    if i < n {
                        q.values.push_back(i * i);
                    } else {
                        q.finished = true;
                    }
                    q.waker.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            }
        });
        Ticks(q)
    }

    /// The next value; `None` once the producer is done.
    fn next(&self) -> NextTick<'_> {
        NextTick(self)
    }
}

impl Drop for Ticks {
    fn drop(&mut self) {
        self.0.lock().unwrap().closed = true;
    }
}

struct NextTick<'t>(&'t Ticks);

impl Future for NextTick<'_> {
    type Output = Option<u64>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u64>> {
        let mut q = (self.0).0.lock().unwrap();
        if let Some(v) = q.values.pop_front() {
            return Poll::Ready(Some(v));
        }
        if q.finished {
            return Poll::Ready(None);
        }
        q.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

fn query(path: &str, key: &str) -> Option<u64> {
    let q = path.split_once('?')?.1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

async fn events(mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let path = req.path().unwrap_or("/");
    let n = query(path, "n").unwrap_or(5).min(1000);
    let gap = Duration::from_millis(query(path, "gap_ms").unwrap_or(100).min(10_000));
    let Ok(mut out) = w.stream(
        200,
        &[
            ("content-type", b"text/event-stream"),
            ("cache-control", b"no-cache"),
        ],
    ) else {
        return;
    };
    let ticks = Ticks::start(n, gap);
    let mut i = 0u64;
    while let Some(v) = ticks.next().await {
        let event = format!("id: {i}\nevent: tick\ndata: {{\"i\":{i},\"value\":{v}}}\n\n");
        if out.send(event.as_bytes()).await.is_err() {
            return; // client gone; dropping `ticks` stops the producer
        }
        i += 1;
    }
    if out.send(b"event: done\ndata: {}\n\n").await.is_ok() {
        out.finish();
    }
}

fn register(r: &mut Registry) {
    r.register("sse", events);
}

jisr::export!(register);
