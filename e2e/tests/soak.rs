//! Short soak in CI: 40 000 requests (after a 5000-request warm-up) through the example modules
//! from 64 keep-alive clients, mixed hello / auth allow+deny / body / async wake / Observe tap.
//! Goals: no error, Envoy's RSS grows less than 5 % after warm-up, nothing left in flight, Envoy
//! still ready. The full run is the `soak` binary (figures in CONSTRAINTS.md).
//!
//! The first two long runs of the `soak` binary each had one unanswered `body` POST (the harness
//! upstream was not fixed yet). In the first, it got no answer within the client's 10 s timeout
//! (`Resource temporarily unavailable`), and Envoy logged it `code=0
//! details=downstream_remote_disconnect` when the client gave up. Whether it was held in the `body`
//! filter or stuck at the harness upstream was not known then, so the soak's access lines were
//! given `%UPSTREAM_HOST%`, `%RESPONSE_FLAGS%` and `%DURATION%`. In the second run the access line
//! was `code=0 details=downstream_remote_disconnect up=127.0.0.1:<upstream> flags=DC ms=10091`: the
//! request had passed the filter and the router had picked the upstream host, then it waited 10 s
//! for an answer that never came (either the harness upstream stalled, or a body byte never left
//! Envoy). A later run that also logged wire bytes showed it was the harness upstream
//! (CONSTRAINTS.md, "Soak").

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
