//! Each request lifecycle, jisr against a hand-written raw callback filter doing the same work,
//! on the same allocation-free simulated host (`jisr::testing::bench`).
//!
//! `cargo bench --bench lifecycle` first prints jisr/raw time ratios from interleaved rounds
//! measured in one run (goal: ≤ 1.10 inline, ≤ 1.25 with one wake), then runs criterion.

mod lifecycle_cases;

use criterion::Criterion;
use jisr::testing::bench::{BenchFilter, BenchSession};
use lifecycle_cases::{CASES, register};
use std::time::{Duration, Instant};

/// Nanoseconds per request over `n` requests.
fn time(s: &mut BenchSession<'_>, f: fn(&mut BenchSession<'_>), n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f(s);
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn ratios() {
    println!("jisr / raw, medians of 15 interleaved rounds of 20,000 requests each (one run):");
    for c in CASES {
        let (name, f, goal) = (c.name, c.run, c.goal);
        let jf = BenchFilter::new(register, c.jisr, b"").unwrap();
        let rf = BenchFilter::new(register, c.raw, b"").unwrap();
        let (mut js, mut rs) = (jf.session(), rf.session());
        time(&mut js, f, 5_000);
        time(&mut rs, f, 5_000);
        let (mut jt, mut rt) = (Vec::new(), Vec::new());
        for _ in 0..15 {
            jt.push(time(&mut js, f, 20_000));
            rt.push(time(&mut rs, f, 20_000));
        }
        jt.sort_by(f64::total_cmp);
        rt.sort_by(f64::total_cmp);
        let (j, r) = (jt[jt.len() / 2], rt[rt.len() / 2]);
        println!(
            "  {name:<32} jisr {j:>7.1} ns  raw {r:>7.1} ns  ratio {:.2} (goal <= {goal:.2})",
            j / r
        );
    }
}

fn benches(c: &mut Criterion) {
    for case in CASES {
        let f = case.run;
        let mut g = c.benchmark_group(case.name);
        for which in [case.jisr, case.raw] {
            let filter = BenchFilter::new(register, which, b"").unwrap();
            let mut s = filter.session();
            g.bench_function(
                if which.starts_with("raw_") {
                    "raw"
                } else {
                    "jisr"
                },
                |b| b.iter(|| f(&mut s)),
            );
        }
        g.finish();
    }
}

fn main() {
    ratios();
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    benches(&mut c);
    c.final_summary();
}
