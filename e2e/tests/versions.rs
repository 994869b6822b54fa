//! The same module on each Envoy version (run by `.ci/matrix.sh` on 1.38.3 and 1.39.3, and by
//! `cargo test` on the pinned 1.40.0): a streamed reply, answered from `on_scheduled`, whose
//! stream Envoy tears down right after (1.38/1.39 destroy the filter synchronously inside the
//! last write — jisr defers freeing the stream until its own hook has unwound).
//!
//! `.ci/matrix.sh` runs every e2e file but the harness self-tests on 1.38.3 and 1.39.3 with the
//! same `.so` files. These passed there: hello, auth, async, config_errors, response, trailers,
//! callouts (timeouts included), faults, routing, llm_router, introspection, stream_callout,
//! sse_tap, versions, soak, streaming and backpressure. `panic_abort` and `soundness` joined the
//! matrix later; CONSTRAINTS.md reports them in their own rows.

use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, module_filter};
use jisr_e2e::{client, symbols};

#[test]
fn streamed_replies_work_and_envoy_keeps_serving() {
    let up = Upstream::start("versions-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("sse").filter(module_filter("stream_demo", "sse", None)))
            .upstream(up.port()),
    );
    for _ in 0..3 {
        let r = client::get(envoy.listener_port("sse"), "/events");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert!(r.text().contains("data:"), "{}", r.text());
    }
    envoy.assert_ready();
    assert!(!envoy.log().contains("Segmentation fault"));
}

/// Every HTTP-filter callback the running Envoy exports is bound by jisr: declared for direct
/// linking (`src/abi/ffi.rs`, each of which this Envoy must export, or the module would not
/// load) or looked up at run time (`src/abi/late.rs`); and CONSTRAINTS.md's HTTP callback
/// table lists each with the first version that has it, which matches this binary.
#[test]
fn every_callback_is_bound_and_the_table_matches_the_binary() {
    const PREFIX: &str = "envoy_dynamic_module_callback_http_";
    let exported = symbols::exported_with(PREFIX);
    assert!(
        exported.len() >= 90,
        "only {} callbacks found",
        exported.len()
    );
    let abi = symbols::KindAbi {
        prefix: PREFIX,
        linked: symbols::linked(include_str!("../../src/abi/ffi.rs"), PREFIX),
        late: symbols::late(include_str!("../../src/abi/late.rs"), PREFIX),
        rows: symbols::table(
            include_str!("../../CONSTRAINTS.md"),
            "## Every Envoy 1.40 HTTP-filter callback",
            PREFIX,
        ),
    };
    assert_eq!(
        abi.rows.len(),
        120,
        "CONSTRAINTS.md lists {} callbacks",
        abi.rows.len()
    );
    let problems = symbols::problems(&abi, &exported, jisr_e2e::envoy_minor());
    assert!(
        problems.is_empty(),
        "Envoy {}:\n{}",
        jisr_e2e::envoy_version(),
        problems.join("\n")
    );
}
