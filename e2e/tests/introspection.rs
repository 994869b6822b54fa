//! jisr's introspection in real Envoy: the built-in `jisr_introspection` filter and the
//! `jisr_*` stats mirrored into Envoy's `/stats`.

use jisr_e2e::client;
use jisr_e2e::telemetry::parse_prometheus;
use jisr_e2e::{
    Envoy, EnvoyConfig, Listener, Upstream, envoy_minor, module_filter, module_stat, wait_until,
};
use std::time::{Duration, Instant};

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

    // 1.39+: flushed by the main thread within a second; 1.38: at the 1st and 17th finished
    // stream of the `hello` config.
    let streams = module_stat("jisr_streams_total", &[("filter", "hello")]);
    assert_eq!(
        envoy.wait_for_counter(&streams, 17, Duration::from_secs(5)),
        Some(17),
        "{streams}:\n{}",
        envoy.stats()
    );
    let polls = module_stat("jisr_polls_total", &[("filter", "hello")]);
    assert!(
        wait_until(Duration::from_secs(3), || envoy.counter(&polls) == Some(17)),
        "{:?}",
        envoy.counter(&polls)
    );
    let in_flight = module_stat("jisr_streams_in_flight", &[("filter", "hello")]);
    assert_eq!(envoy.gauge(&in_flight), Some(0));
    envoy.assert_ready();
}

/// The value of `name{filter="hello"}` in `/stats/prometheus`, read with the Prometheus
/// project's parser.
fn prometheus_value(envoy: &Envoy, name: &str) -> Option<f64> {
    let text = envoy.admin_get("/stats/prometheus").text();
    parse_prometheus(&text)
        .into_iter()
        .find(|s| s.name == name && s.labels.get("filter").map(String::as_str) == Some("hello"))
        .map(|s| s.value)
}

/// With two workers, N requests, one of them held for 2.5 s: on Envoy 1.39+ the main thread
/// hands the summed figures to Envoy within the flush interval (1 s) of the last change, so
/// `/stats` and Prometheus reach exactly N once traffic stops and the in-flight gauge shows
/// the held stream, then 0, with no stream ever calling Envoy's metric callbacks. On 1.38 the
/// workers still report every 16 finished streams.
#[test]
fn jisr_stats_reach_exactly_n_within_the_flush_interval_once_traffic_stops() {
    const N: u64 = 23;
    let up = Upstream::start("stats-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .concurrency(2)
            .listener(Listener::new("hello").filter(module_filter("hello", "hello", None)))
            .upstream(up.port()),
    );
    let hello = envoy.listener_port("hello");
    let streams = module_stat("jisr_streams_total", &[("filter", "hello")]);
    let polls = module_stat("jisr_polls_total", &[("filter", "hello")]);
    let in_flight = module_stat("jisr_streams_in_flight", &[("filter", "hello")]);
    let off_path = envoy_minor() >= (1, 39);
    if off_path {
        // Listed at 0 from the start.
        assert_eq!(envoy.counter(&streams), Some(0), "{}", envoy.stats());
        assert_eq!(envoy.gauge(&in_flight), Some(0), "{}", envoy.stats());
    }
    // One stream held by a slow upstream while the others pass.
    let slow = std::thread::spawn(move || client::get(hello, "/delay/2500").status);
    if off_path {
        assert!(
            wait_until(Duration::from_secs(3), || envoy.gauge(&in_flight)
                == Some(1)),
            "the held stream shows within the interval: {:?}",
            envoy.gauge(&in_flight)
        );
    }
    let clients: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..(N - 1) / 2 {
                    assert_eq!(client::get(hello, "/x").status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(slow.join().unwrap(), 200);
    let quiet = Instant::now();
    if !off_path {
        // The workers' flush: at their 1st and 17th finished streams only.
        let seen = envoy.counter(&streams).unwrap_or(0);
        assert!((1..=N).contains(&seen), "{seen}\n{}", envoy.stats());
        return;
    }
    assert!(
        wait_until(Duration::from_secs(3), || envoy.counter(&streams)
            == Some(N)
            && envoy.gauge(&in_flight) == Some(0)),
        "{}",
        envoy.stats()
    );
    let took = quiet.elapsed();
    // One interval, plus the main thread's and this poll's latency.
    assert!(took < Duration::from_millis(2000), "{took:?}");
    assert_eq!(envoy.counter(&polls), Some(N), "{}", envoy.stats());
    assert_eq!(
        prometheus_value(&envoy, "envoy_dynamicmodulescustom_jisr_streams_total"),
        Some(N as f64)
    );
    assert_eq!(
        prometheus_value(&envoy, "envoy_dynamicmodulescustom_jisr_streams_in_flight"),
        Some(0.0)
    );
    // Later flushes (the tail) add nothing: the figures stay exact.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(envoy.counter(&streams), Some(N), "{}", envoy.stats());
    assert_eq!(envoy.gauge(&in_flight), Some(0));
    envoy.assert_ready();
}
