//! Short soak in CI: 40 000 requests (after a 5000-request warm-up) through the example modules
//! from 64 keep-alive clients, mixed hello / auth allow+deny / body / async wake / Observe tap.
//! Goals: no error, Envoy's RSS grows less than 5 % after warm-up, nothing left in flight,
//! Envoy still ready. The full run is the `soak` binary (figures in CONSTRAINTS.md).

use jisr_e2e::soak::{SoakOptions, run};

#[test]
fn short_soak_has_no_errors_no_growth_and_nothing_in_flight() {
    let mut opts = SoakOptions::new(40_000, 64);
    opts.warmup = 5000;
    let report = run(&opts);
    eprintln!("{}", report.summary());
    assert_eq!(report.errors, 0, "{}", report.summary());
    assert_eq!(report.requests, 40_000, "{}", report.summary());
    assert!(
        report.per_kind.iter().all(|&n| n > 0),
        "{}",
        report.summary()
    );
    assert!(report.rss_growth_pct() < 5.0, "{}", report.summary());
    assert_eq!(report.in_flight_end, 0, "{}", report.summary());
    assert!(report.ready_at_end, "{}", report.summary());
}
