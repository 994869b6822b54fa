//! The process-wide timer set, through bare futures and the fallback timer thread (no server
//! extension runs here). One test per file: the timer set is shared by the whole process, and
//! another test's sleeps would re-arm the driver and hide what this one checks.

use jisr::time::{sleep, timeout};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` on this thread until it completes or `limit` passes (then `None`).
fn run_for<F: Future>(limit: Duration, f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let until = Instant::now() + limit;
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

/// Pending at its first poll (waking itself at once), ready at the second: a body that
/// arrives well within its timeout.
struct ReadySoon(bool);

impl Future for ReadySoon {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The sequence that froze every timer of the process: a `timeout` whose future wins leaves
/// its cancelled deadline at the top of the set, a shorter sleep fires, and then any sleep
/// ending after the cancelled deadline was never announced to the driver.
#[test]
fn sleeps_fire_after_a_timeout_whose_future_won() {
    let won = run_for(
        Duration::from_secs(5),
        timeout(Duration::from_millis(400), ReadySoon(false)),
    );
    assert_eq!(won, Some(Ok(())));
    let t = Instant::now();
    assert!(
        run_for(Duration::from_secs(5), sleep(Duration::from_millis(50))).is_some(),
        "the short sleep fired"
    );
    assert!(
        run_for(Duration::from_secs(5), sleep(Duration::from_millis(600))).is_some(),
        "the later sleep fired within 5 s"
    );
    let took = t.elapsed();
    assert!(
        (Duration::from_millis(650)..Duration::from_secs(3)).contains(&took),
        "{took:?}"
    );
}
