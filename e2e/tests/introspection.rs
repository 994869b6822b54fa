//! jisr's introspection in real Envoy: the built-in `jisr_introspection` filter and the
//! `jisr_*` stats mirrored into Envoy's `/stats`.

use jisr_e2e::client;
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, module_filter, module_stat};
use std::time::Duration;

#[test]
fn builtin_filter_and_envoy_stats_report_what_filters_do() {
    let up = Upstream::start("introspect-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .concurrency(1)
            .listener(Listener::new("hello").filter(module_filter("hello", "hello", None)))
            .listener(Listener::new("ops").filter(module_filter(
                "hello",
                "jisr_introspection",
                None,
            )))
            .upstream(up.port()),
    );
    let ops = envoy.listener_port("ops");
    let hello = envoy.listener_port("hello");

    let r = client::get(ops, "/jisr/healthz");
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    let r = client::get(ops, "/jisr/version");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.text().contains("\"envoy_abi\":\"v0.2.0\""),
        "{}",
        r.text()
    );

    for _ in 0..17 {
        assert_eq!(client::get(hello, "/x").status, 200);
    }
    let r = client::get(ops, "/jisr/stats");
    let text = r.text();
    assert!(
        text.contains("{\"filter\":\"hello\",\"streams\":17,\"in_flight\":0,\"polls\":17,"),
        "{text}"
    );
    // Other paths pass through the built-in filter to the upstream.
    assert_eq!(client::get(ops, "/not-jisr").status, 200);

    // Flushed at the 1st and 17th finished stream of the `hello` config.
    let streams = module_stat("jisr_streams_total", &[("filter", "hello")]);
    assert_eq!(
        envoy.wait_for_counter(&streams, 17, Duration::from_secs(5)),
        Some(17),
        "{streams}:\n{}",
        envoy.stats()
    );
    let polls = module_stat("jisr_polls_total", &[("filter", "hello")]);
    assert_eq!(envoy.counter(&polls), Some(17));
    let in_flight = module_stat("jisr_streams_in_flight", &[("filter", "hello")]);
    assert_eq!(envoy.gauge(&in_flight), Some(0));
    envoy.assert_ready();
}
