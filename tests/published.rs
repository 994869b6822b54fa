//! `Published<T>` through its public API: identity, lifetime of values, visibility.

use jisr::server::Published;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// A new `Published` created where a dropped one lived (a config reload whose new state lands
/// at the old address) reads its own value, not the dropped one's.
#[test]
fn a_new_published_at_a_reused_address_reads_its_own_value() {
    let mut slot: Option<Published<Vec<&'static str>>> = Some(Published::new(vec!["k1", "k2"]));
    let old_at = slot.as_ref().map(|p| p as *const _ as usize);
    assert_eq!(*slot.as_ref().unwrap().get(), ["k1", "k2"]);
    // The reload revokes k2.
    slot = Some(Published::new(vec!["k1"]));
    let new_at = slot.as_ref().map(|p| p as *const _ as usize);
    assert_eq!(old_at, new_at, "same storage, same address");
    assert_eq!(*slot.as_ref().unwrap().get(), ["k1"]);
}

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A worker that read a value does not keep it alive once its `Published` is dropped (or has
/// published a newer value), even if that worker never reads again.
#[test]
fn values_die_with_their_published_even_on_threads_that_read_them() {
    let drops = Arc::new(AtomicUsize::new(0));
    let p = Arc::new(Published::new(Counted(drops.clone())));
    let (read_tx, read_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let reader = {
        let p = p.clone();
        std::thread::spawn(move || {
            drop(p.get());
            drop(p);
            read_tx.send(()).unwrap();
            // Stays alive (an idle worker) until told to end.
            let _ = go_rx.recv();
        })
    };
    read_rx.recv().unwrap();
    // A newer value replaces it: the old one dies at once.
    p.publish(Counted(drops.clone()));
    assert_eq!(drops.load(Ordering::SeqCst), 1, "replaced value dropped");
    drop(Arc::into_inner(p).expect("the reader let go of its handle"));
    assert_eq!(
        drops.load(Ordering::SeqCst),
        2,
        "dropped with its Published"
    );
    go_tx.send(()).unwrap();
    reader.join().unwrap();
}

/// After `publish` returns, every later `get` on any thread sees the new value.
#[test]
fn a_publication_is_seen_by_every_later_get() {
    let p = Arc::new(Published::new(0u64));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                while last < 1000 {
                    let v = *p.get();
                    assert!(v >= last, "went back from {last} to {v}");
                    last = v;
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    for i in 1..=1000 {
        p.publish(i);
    }
    for r in readers {
        r.join().unwrap();
    }
}
