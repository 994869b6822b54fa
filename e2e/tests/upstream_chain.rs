//! A jisr filter in a cluster's upstream HTTP filter chain (`HttpProtocolOptions.http_filters`,
//! Envoy's `upstream_codec` last), in real Envoy: it stamps requests and responses, records
//! its metrics, and its streams end even though Envoy's upstream filter manager never calls
//! `stream_complete` (only destroy): handlers are dropped, slots are reused, and jisr's own
//! `jisr_*` stats are reported.

use jisr_e2e::client;
use jisr_e2e::wait_until;
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, envoy_minor, module_filter, module_stat,
};
use std::io::Write;
use std::time::Duration;

const UPSTREAM_CHAIN: &str = r#"typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config:
      http_protocol_options: {}
    http_filters:
    - name: jisr.upstream_stamp
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
        dynamic_module_config: { name: upstream_fixture }
        filter_name: upstream_stamp
    - name: envoy.filters.http.upstream_codec
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"#;

fn envoy(up: &Upstream) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .concurrency(1)
            .listener(
                Listener::new("main")
                    // Downstream, only to answer /jisr/stats.
                    .filter(module_filter(
                        "upstream_fixture",
                        "jisr_introspection",
                        None,
                    ))
                    .route(Route::to("/", "stamped")),
            )
            .cluster(Cluster::new("stamped", up.port()).raw_yaml(UPSTREAM_CHAIN)),
    )
}

/// The `upstream_stamp` entry of `/jisr/stats`.
/// A module metric of the upstream chain: Envoy scopes the filter's stats under its cluster.
fn cluster_stat(name: &str, labels: &[(&str, &str)]) -> String {
    format!("cluster.stamped.{}", module_stat(name, labels))
}

fn figures(envoy: &Envoy) -> String {
    let text = client::get(envoy.listener_port("main"), "/jisr/stats").text();
    let start = text
        .find("{\"filter\":\"upstream_stamp\"")
        .unwrap_or_else(|| panic!("no upstream_stamp in {text}"));
    let end = start + text[start..].find('}').unwrap();
    text[start..=end].to_string()
}

fn field(figures: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let at = figures.find(&key).unwrap() + key.len();
    figures[at..]
        .split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn an_upstream_filter_stamps_both_ways_and_its_streams_end() {
    let up = Upstream::start("stamped-up");
    let envoy = envoy(&up);
    let port = envoy.listener_port("main");
    for i in 0..41 {
        let r = client::get(port, &format!("/r{i}"));
        assert_eq!(r.status, 200, "{}", envoy.log());
        // The request reached the upstream stamped, the response came back stamped.
        assert_eq!(
            r.json()["headers"]["x-upstream-filter"].as_str(),
            Some("jisr"),
            "{}",
            r.text()
        );
        assert_eq!(r.header("x-upstream-stamp"), Some("200"));
    }
    // In the cluster's stats scope, not the listener's.
    let requests = cluster_stat("upstream_stamp_requests_total", &[]);
    assert_eq!(
        envoy.wait_for_counter(&requests, 41, Duration::from_secs(5)),
        Some(41),
        "{}",
        envoy.stats()
    );
    // Every stream ended: none in flight, one slot allocated and reused 41 times.
    let f = figures(&envoy);
    assert_eq!(field(&f, "streams"), 41, "{f}");
    assert_eq!(field(&f, "in_flight"), 0, "{f}");
    assert_eq!(field(&f, "slots_allocated"), 1, "{f}");
    assert_eq!(field(&f, "idle_slots"), 1, "{f}");
    let streams = cluster_stat("jisr_streams_total", &[("filter", "upstream_stamp")]);
    let polls = cluster_stat("jisr_polls_total", &[("filter", "upstream_stamp")]);
    let in_flight = cluster_stat("jisr_streams_in_flight", &[("filter", "upstream_stamp")]);
    if envoy_minor() >= (1, 39) {
        // jisr's Envoy stats, from the main thread within the flush interval (1 s): every
        // stream, with no later stream needed.
        assert!(
            wait_until(Duration::from_secs(3), || envoy.counter(&streams)
                == Some(41)),
            "{}",
            envoy.stats()
        );
        // Exactly what jisr counted (two polls per stream here).
        assert_eq!(
            envoy.counter(&polls),
            Some(field(&f, "polls")),
            "{f}\n{}",
            envoy.stats()
        );
    } else {
        // 1.38: the 1st, 17th and 33rd ended streams made a report due, each sent at the next
        // stream's start (the upstream chain has no completion hook to send it from).
        assert_eq!(envoy.counter(&streams), Some(33), "{}", envoy.stats());
        assert!(
            envoy.counter(&polls).unwrap_or(0) >= 33,
            "{}",
            envoy.stats()
        );
    }
    assert_eq!(envoy.gauge(&in_flight), Some(0), "{}", envoy.stats());
    envoy.assert_ready();
}

#[test]
fn a_client_that_leaves_drops_the_upstream_handler_and_frees_its_slot() {
    let up = Upstream::start("stamped-up");
    let envoy = envoy(&up);
    let port = envoy.listener_port("main");
    // The upstream handler sleeps 5 s before it lets the request go; the client leaves after
    // 300 ms, so Envoy resets the upstream request and destroys the filter mid-handler.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\nx-upstream-nap-ms: 5000\r\n\r\n")
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || field(
            &figures(&envoy),
            "in_flight"
        ) == 1),
        "{}",
        figures(&envoy)
    );
    std::thread::sleep(Duration::from_millis(300));
    drop(c);
    assert!(
        wait_until(Duration::from_secs(3), || field(
            &figures(&envoy),
            "in_flight"
        ) == 0),
        "the stream did not end: {}\n{}",
        figures(&envoy),
        envoy.log()
    );
    let f = figures(&envoy);
    assert_eq!(field(&f, "idle_slots"), 1, "{f}");
    // The slot is reused by the next request, which passes normally.
    let r = client::get(port, "/after");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream-stamp"), Some("200"));
    let f = figures(&envoy);
    assert_eq!(
        (field(&f, "streams"), field(&f, "slots_allocated")),
        (2, 1),
        "{f}"
    );
    assert!(up.requests().iter().all(|r| r.path_only() != "/slow"));
}
