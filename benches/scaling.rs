//! Two workers on one filter config: per-thread throughput with two threads driving the same
//! config at once, against one thread alone, on the allocation-free simulated host.
//!
//! Each thread runs the header-only accept lifecycle of `lifecycle_cases` (jisr and raw) in
//! its own session. With per-worker slot lanes nothing is shared on the stream start/end path,
//! so the per-thread rate with two threads should stay within a few percent of one thread's.
//! The machine needs two idle cores for the figure to mean anything: run it alone.
//!
//! ```sh
//! cargo bench --bench scaling            # 5 rounds of 200 000 requests per thread
//! cargo bench --bench scaling -- 20 500000
//! ```

#[allow(dead_code)] // Shared with the lifecycle benches; this one uses a subset.
mod lifecycle_cases;

use jisr::testing::bench::BenchFilter;
use std::time::{Duration, Instant};

/// Runs `n` accept requests on a new session of `filter` (after a warm-up); returns the time.
fn run(f: &BenchFilter, filter: &str, n: u64) -> Duration {
    let case = lifecycle_cases::CASES
        .iter()
        .find(|c| c.jisr == filter || c.raw == filter)
        .expect("known filter");
    let mut s = f.session();
    for _ in 0..1000 {
        (case.run)(&mut s);
    }
    let t = Instant::now();
    for _ in 0..n {
        (case.run)(&mut s);
    }
    t.elapsed()
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let n: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let accept = &lifecycle_cases::CASES[0];
    println!("{n} requests per thread, {rounds} rounds; per-thread rate, 2 threads / 1 thread");
    for filter in [accept.jisr, accept.raw] {
        let f = BenchFilter::new(lifecycle_cases::register, filter, b"").expect("loads");
        let mut ratios = Vec::new();
        let (mut one_best, mut two_best) = (0f64, 0f64);
        // The same two worker threads for every round (as Envoy's workers are): each keeps its
        // own slot lane. The single-thread figure comes from one of them while the other waits.
        let start = std::sync::Barrier::new(3);
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Duration)>();
        std::thread::scope(|s| {
            for id in 0..2 {
                let (f, start, tx) = (&f, &start, tx.clone());
                s.spawn(move || {
                    for round in 0..rounds {
                        // Alone: worker 0 runs while worker 1 waits.
                        start.wait();
                        if id == 0 {
                            tx.send((round, run(f, filter, n))).unwrap();
                        }
                        start.wait();
                        // Together.
                        start.wait();
                        tx.send((round, run(f, filter, n))).unwrap();
                    }
                });
            }
            for _ in 0..rounds {
                start.wait();
                let (_, alone) = rx.recv().unwrap();
                start.wait();
                start.wait();
                let (_, a) = rx.recv().unwrap();
                let (_, b) = rx.recv().unwrap();
                let one = rate(n, alone);
                let two = (rate(n, a) + rate(n, b)) / 2.0;
                ratios.push(two / one);
                one_best = one_best.max(one);
                two_best = two_best.max(two);
            }
        });
        ratios.sort_by(f64::total_cmp);
        let st = f.stats();
        println!(
            "{filter:>16}: 1 thread {:>10.0} req/s, 2 threads {:>10.0} req/s each; median ratio {:.3} (rounds {:.3}..{:.3}); slots allocated {}",
            one_best,
            two_best,
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
            st.slots_allocated,
        );
    }
}
