//! jisr metrics where operators already look: Envoy's OpenTelemetry stat sink and its
//! Prometheus endpoint, with the `llm_router` example's labelled counter and histogram.
//!
//! The OTLP receiver and the Prometheus parser are the libraries operators' own tools use
//! (`jisr_e2e::telemetry`), so the test checks what they read, not a substring of the text.

use jisr_e2e::telemetry::{OtlpReceiver, parse_prometheus};
use jisr_e2e::{Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, client, module_filter};
use std::time::{Duration, Instant};

/// Envoy's OpenTelemetry stat sink, flushing every 500 ms to the cluster `otlp`.
const OTLP_SINK: &str = r#"stats_flush_interval: 0.5s
stats_sinks:
- name: envoy.stat_sinks.open_telemetry
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig
    grpc_service:
      envoy_grpc: { cluster_name: otlp }
"#;

fn chat(envoy: &Envoy, model: &str) {
    let body = format!(r#"{{"model":"{model}","messages":[]}}"#);
    let r = client::request(
        envoy.listener_port("router"),
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Starts the providers, the receiver and Envoy, then sends 2 OpenAI and 1 Anthropic request.
fn setup() -> (Vec<Upstream>, OtlpReceiver, Envoy) {
    let providers: Vec<Upstream> = ["openai", "anthropic", "default"]
        .iter()
        .map(|n| Upstream::start(n))
        .collect();
    let otlp = OtlpReceiver::start();
    let mut cfg = EnvoyConfig::new()
        .listener(
            Listener::new("router")
                .filter(module_filter("llm_router", "llm_router", None))
                .route(Route::cluster_header("/", "x-cluster")),
        )
        .cluster(Cluster::new("otlp", otlp.port()).http2())
        .raw_top_level(OTLP_SINK);
    for p in &providers {
        cfg = cfg.cluster(Cluster::new(p.name(), p.port()));
    }
    let envoy = Envoy::start(&cfg);
    for model in ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet"] {
        chat(&envoy, model);
    }
    (providers, otlp, envoy)
}

/// The OTLP sink delivers jisr's labelled counter and histogram with the labels as attributes:
/// `llm_router_requests_total` is a monotonic sum of 2 for `cluster=openai` and 1 for
/// `cluster=anthropic`, and `llm_router_ttfb_ms` a histogram with 2 and 1 samples.
#[test]
fn otlp_sink_delivers_jisr_metrics_with_attributes() {
    let (_providers, otlp, _envoy) = setup();
    let wait = Duration::from_secs(10);
    let name = "dynamicmodulescustom.llm_router_requests_total";
    for (cluster, n) in [("openai", 2), ("anthropic", 1)] {
        let p = otlp
            .wait_for(name, &[("cluster", cluster)], wait)
            .unwrap_or_else(|| panic!("no {name}{{cluster={cluster}}} in {:#?}", otlp.points()));
        assert_eq!(p["kind"], "sum", "{p}");
        assert_eq!(p["monotonic"], true, "{p}");
        assert_eq!(p["value"], n, "{p}");
    }
    let name = "dynamicmodulescustom.llm_router_ttfb_ms";
    for (cluster, n) in [("openai", 2), ("anthropic", 1)] {
        let p = otlp
            .wait_for(name, &[("cluster", cluster)], wait)
            .unwrap_or_else(|| panic!("no {name}{{cluster={cluster}}} in {:#?}", otlp.points()));
        assert_eq!(p["kind"], "histogram", "{p}");
        assert_eq!(p["count"], n, "{p}");
        let buckets: u64 = p["bucket_counts"]
            .as_array()
            .expect("bucket_counts")
            .iter()
            .map(|c| c.as_u64().expect("a count"))
            .sum();
        assert_eq!(buckets, n, "{p}");
    }
    // A cluster nobody was routed to has no series.
    assert!(
        otlp.points()
            .iter()
            .all(|p| p["attributes"]["cluster"] != "default"),
        "{:#?}",
        otlp.points()
    );
}

/// `/stats/prometheus` is valid Prometheus text (parsed by the Prometheus project's parser),
/// and jisr's series are in it with their labels: the counter per cluster, the histogram's
/// buckets, sum and count per cluster.
#[test]
fn prometheus_endpoint_parses_with_jisr_labels() {
    let (_providers, _otlp, envoy) = setup();
    // Histograms reach the admin endpoint at a stats flush (every 500 ms here): read until
    // both clusters' counts are in, then check everything on that one text.
    let hist = "envoy_dynamicmodulescustom_llm_router_ttfb_ms";
    let deadline = Instant::now() + Duration::from_secs(10);
    let (text, samples) = loop {
        let text = envoy.admin_get("/stats/prometheus").text();
        let samples = parse_prometheus(&text);
        let flushed = samples
            .iter()
            .filter(|s| s.name == format!("{hist}_count") && s.value > 0.0)
            .count();
        if flushed == 2 || Instant::now() >= deadline {
            break (text, samples);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let counter = "envoy_dynamicmodulescustom_llm_router_requests_total";
    for (cluster, n) in [("openai", 2.0), ("anthropic", 1.0)] {
        let s = samples
            .iter()
            .find(|s| {
                s.name == counter && s.labels.get("cluster").map(String::as_str) == Some(cluster)
            })
            .unwrap_or_else(|| panic!("no {counter}{{cluster={cluster}}} in\n{text}"));
        assert_eq!(s.kind, "counter");
        assert_eq!(s.value, n);
    }
    for (cluster, n) in [("openai", 2.0), ("anthropic", 1.0)] {
        let of = |suffix: &str| {
            samples
                .iter()
                .filter(|s| {
                    s.family == hist
                        && s.name == format!("{hist}{suffix}")
                        && s.labels.get("cluster").map(String::as_str) == Some(cluster)
                })
                .collect::<Vec<_>>()
        };
        let count = of("_count");
        assert_eq!(
            count.len(),
            1,
            "{hist}_count{{cluster={cluster}}} in\n{text}"
        );
        assert_eq!(count[0].kind, "histogram");
        assert_eq!(count[0].value, n);
        let buckets = of("_bucket");
        let inf = buckets
            .iter()
            .find(|s| s.labels.get("le").map(String::as_str) == Some("+Inf"))
            .unwrap_or_else(|| panic!("no +Inf bucket for {cluster} in\n{text}"));
        assert_eq!(inf.value, n);
        assert!(buckets.len() > 2, "{buckets:?}");
    }
}

/// `dynamic_module_config.metrics_namespace` names the prefix of a module's metrics: with
/// `acme`, `hello_requests_total` is `acme.hello_requests_total` in `/stats` and
/// `envoy_acme_hello_requests_total` in `/stats/prometheus` (the default namespace is
/// `dynamicmodulescustom`).
#[test]
fn metrics_namespace_names_the_prometheus_prefix() {
    let up = Upstream::start("ns-up");
    let filter = jisr_e2e::HttpFilter::raw(
        "hello",
        "\"@type\": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter\n\
         dynamic_module_config:\n  name: hello\n  metrics_namespace: acme\nfilter_name: hello\n",
    )
    .as_module();
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("ns").filter(filter))
            .upstream(up.port()),
    );
    let r = client::get(envoy.listener_port("ns"), "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        envoy.counter("acme.hello_requests_total"),
        Some(1),
        "{}",
        envoy.stats()
    );
    let text = envoy.admin_get("/stats/prometheus").text();
    let samples = parse_prometheus(&text);
    let s = samples
        .iter()
        .find(|s| s.name == "envoy_acme_hello_requests_total")
        .unwrap_or_else(|| panic!("no envoy_acme_hello_requests_total in\n{text}"));
    assert_eq!((s.kind.as_str(), s.value), ("counter", 1.0));
    assert!(
        !text.contains("dynamicmodulescustom_hello_requests_total"),
        "{text}"
    );
}
