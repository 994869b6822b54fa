//! Helpers shared by the simulated-stream tests.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// A value another thread will produce; awaiting it pends until then.
#[derive(Clone, Default)]
pub struct Oneshot(Arc<Mutex<(Option<u64>, Option<Waker>)>>);

impl Oneshot {
    /// Sets the value and wakes the waiting future (from any thread).
    pub fn send(&self, v: u64) {
        let w = {
            let mut g = self.0.lock().unwrap();
            g.0 = Some(v);
            g.1.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    /// The waker the future registered, if any.
    pub fn waker(&self) -> Option<Waker> {
        self.0.lock().unwrap().1.clone()
    }

    /// Waits for the value.
    pub fn recv(&self) -> Recv {
        Recv(self.clone())
    }
}

pub struct Recv(Oneshot);

impl Future for Recv {
    type Output = u64;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let mut g = (self.0).0.lock().unwrap();
        match g.0 {
            Some(v) => Poll::Ready(v),
            None => {
                g.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Pends once, waking itself (a cooperative yield).
pub struct YieldOnce(pub bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Never completes and never wakes.
pub struct Forever;

impl Future for Forever {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// Sets a flag when dropped.
pub struct DropFlag(pub Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Request headers of a plain GET.
pub const GET: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/hello?x=1"),
    (":authority", "example.com"),
    (":scheme", "http"),
];
