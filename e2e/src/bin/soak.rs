//! Soak: pushes many requests through the example modules in real Envoy and reports errors,
//! Envoy's RSS before and after, and the streams left in flight.
//!
//! ```text
//! cargo run --release -p jisr-e2e --bin soak -- --requests 200000 --concurrency 64
//! ```
//!
//! Options: `--requests N` (measured run, default 200000), `--concurrency C` (client threads,
//! one keep-alive connection each, default 64), `--warmup N` (default a tenth of the requests,
//! at least 2000), `--workers W` (Envoy `--concurrency`, default 2). The modules are the debug
//! build of the examples unless `JISR_MODULES_DIR` names another directory (for example
//! `target/release/examples` after `cargo build --release --examples -p jisr`); the Envoy
//! version is the pinned one unless `JISR_ENVOY_VERSION` says otherwise.
//! Exits 1 if a goal is missed: 0 errors, RSS growth under 5 % after warm-up, 0 in flight.

use jisr_e2e::soak::{SoakOptions, run};
use jisr_e2e::{envoy_version, modules_dir};

fn usage() -> ! {
    eprintln!(
        "usage: soak [--requests N] [--concurrency C] [--warmup N] [--workers W]\n\
         (defaults: 200000 requests, 64 clients, warm-up requests/10, 2 Envoy workers)"
    );
    std::process::exit(2)
}

fn main() {
    let mut opts = SoakOptions::new(200_000, 64);
    let mut warmup = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || -> u64 {
            args.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "--requests" => opts.requests = value(),
            "--concurrency" => opts.concurrency = value().max(1) as usize,
            "--warmup" => warmup = Some(value()),
            "--workers" => opts.envoy_workers = value().max(1) as usize,
            _ => usage(),
        }
    }
    opts.warmup = warmup.unwrap_or((opts.requests / 10).max(2000));
    println!(
        "== jisr soak: Envoy {}, {} Envoy workers, {} clients, modules in {}",
        envoy_version(),
        opts.envoy_workers,
        opts.concurrency,
        modules_dir().display()
    );
    let report = run(&opts);
    println!("{}", report.summary());
    let ok = report.errors == 0
        && report.rss_growth_pct() < 5.0
        && report.in_flight_end == 0
        && report.ready_at_end;
    if !ok {
        eprintln!("soak: a goal was missed (0 errors, RSS growth < 5%, 0 in flight, ready)");
        std::process::exit(1);
    }
}
