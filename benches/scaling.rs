//! Two workers on one filter config: per-thread throughput with two threads driving the same
//! config at once, against one thread alone, on the allocation-free simulated host.
//!
//! Each thread runs the header-only accept lifecycle of `lifecycle_cases` (jisr and raw) in
//! its own session. With per-worker slot lanes nothing is shared on the stream start/end path,
//! so the per-thread rate with two threads should stay within a few percent of one thread's.
//! Two ratios are printed: by wall-clock time (needs two quiet cores to mean anything) and by
//! on-CPU time of each thread (time spent waiting for a CPU left out, so it shows only what the
//! threads cost each other: shared cache lines, locks).
//!
//! ```sh
//! cargo bench --bench scaling            # 5 rounds of 200 000 requests per thread
//! cargo bench --bench scaling -- 25 300000
//! ```

#[allow(dead_code)] // Shared with the lifecycle benches; this one uses a subset.
mod lifecycle_cases;

use jisr::testing::bench::BenchFilter;
use std::time::{Duration, Instant};

/// Nanoseconds the calling thread has spent on a CPU (`/proc/thread-self/schedstat`): time the
/// thread waited for a CPU (another process, the hypervisor) is not in it, so rates computed
/// from it show what the two threads cost each other, not what the machine lent them.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("a Linux kernel with schedstat")
}

/// A run's wall time and on-CPU time.
#[derive(Clone, Copy)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

/// Runs `n` accept requests on a new session of `filter` (after a warm-up).
fn run(f: &BenchFilter, filter: &str, n: u64) -> Took {
    let case = lifecycle_cases::CASES
        .iter()
        .find(|c| c.jisr == filter || c.raw == filter)
        .expect("known filter");
    let mut s = f.session();
    for _ in 0..1000 {
        (case.run)(&mut s);
    }
    let (t, c) = (Instant::now(), cpu_ns());
    for _ in 0..n {
        (case.run)(&mut s);
    }
    Took {
        wall: t.elapsed(),
        cpu: Duration::from_nanos(cpu_ns() - c),
    }
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
        let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
        let (mut one_best, mut two_best) = (0f64, 0f64);
        // The same two worker threads for every round (as Envoy's workers are): each keeps its
        // own slot lane. The single-thread figure comes from one of them while the other waits.
        let start = std::sync::Barrier::new(3);
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Took)>();
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
                let one = rate(n, alone.wall);
                let two = (rate(n, a.wall) + rate(n, b.wall)) / 2.0;
                ratios.push(two / one);
                let cpu_two = (rate(n, a.cpu) + rate(n, b.cpu)) / 2.0;
                cpu_ratios.push(cpu_two / rate(n, alone.cpu));
                one_best = one_best.max(one);
                two_best = two_best.max(two);
            }
        });
        ratios.sort_by(f64::total_cmp);
        cpu_ratios.sort_by(f64::total_cmp);
        let st = f.stats();
        println!(
            "{filter:>16}: 1 thread {:>10.0} req/s, 2 threads {:>10.0} req/s each; wall-clock ratio: median {:.3} (rounds {:.3}..{:.3}); on-CPU ratio: median {:.3} (rounds {:.3}..{:.3}); slots allocated {}",
            one_best,
            two_best,
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
            cpu_ratios[cpu_ratios.len() / 2],
            cpu_ratios[0],
            cpu_ratios[cpu_ratios.len() - 1],
            st.slots_allocated,
        );
    }
}
