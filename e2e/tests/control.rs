//! Tracing and stream control in real Envoy: a jisr tag, log and child span reach a Zipkin
//! collector; recreate_stream is an internal redirect; GOAWAY-and-close after a reply closes
//! the client's connection; socket options and typed filter state reach Envoy; calls newer
//! than the running Envoy report `Unsupported`.

use jisr_e2e::client::{self, Connection};
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, access_field, envoy_minor,
    module_filter, wait_until,
};
use serde_json::Value;
use std::time::Duration;

/// Zipkin JSON v2 to cluster `zipkin`, every request sampled; the runtime flushes each span at
/// once (Envoy's default batches 5 spans or 5 s).
const ZIPKIN: &str = r#"tracing:
  random_sampling: { value: 100 }
  provider:
    name: envoy.tracers.zipkin
    typed_config:
      "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
      collector_cluster: zipkin
      collector_endpoint: /api/v2/spans
      collector_endpoint_version: HTTP_JSON
      shared_span_context: false"#;

const FLUSH_EACH_SPAN: &str = "layered_runtime:
  layers:
  - name: static
    static_layer:
      tracing.zipkin.min_flush_spans: 1";

#[test]
fn span_tags_logs_and_a_child_span_reach_zipkin() {
    let up = Upstream::start("main");
    let collector = Upstream::start("zipkin");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("traced")
                    .hcm_yaml(ZIPKIN)
                    .filter(module_filter("control_fixture", "traced", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port()))
            .cluster(Cluster::new("zipkin", collector.port()))
            .raw_top_level(FLUSH_EACH_SPAN),
    );
    let r = client::request(
        envoy.listener_port("traced"),
        "GET",
        "/",
        &[("x-tenant", "acme")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", envoy.log());
    let text = r.text();
    let trace = text
        .strip_prefix("trace=")
        .and_then(|t| t.split(' ').next())
        .unwrap_or_default()
        .to_string();
    assert_eq!(trace.len(), 16, "a Zipkin 64-bit trace id in hex: {text}");
    let spans = || {
        collector
            .requests()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = spans();
            s.contains("jisr-lookup") && s.contains("jisr.tenant")
        }),
        "spans not exported: {}\n{}",
        spans(),
        envoy.log()
    );
    let all = spans();
    assert!(all.contains(&trace), "trace id {trace} in {all}");
    let spans: Vec<Value> = collector
        .requests()
        .iter()
        .filter_map(|r| match serde_json::from_slice(&r.body) {
            Ok(Value::Array(batch)) => Some(batch),
            _ => None,
        })
        .flatten()
        .collect();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no span {name} in {all}"))
    };
    let child = find("jisr-lookup");
    let tag = |s: &Value, k: &str| s["tags"][k].as_str().map(str::to_string);
    assert_eq!(tag(child, "jisr.step").as_deref(), Some("lookup"));
    // Envoy's Zipkin tracer keeps no baggage: set_baggage is a no-op there and the child reads
    // none (the simulated tests cover inheritance; OpenTelemetry carries baggage).
    assert_eq!(tag(child, "jisr.user").as_deref(), Some("-"));
    let parent_id = child["parentId"].as_str().unwrap();
    let parent = spans
        .iter()
        .find(|s| s["id"].as_str() == Some(parent_id))
        .unwrap_or_else(|| panic!("parent {parent_id} of the child in {all}"));
    assert_eq!(tag(parent, "jisr.tenant").as_deref(), Some("acme"));
    assert_eq!(tag(parent, "jisr.a").as_deref(), Some("1"));
    assert_eq!(tag(parent, "jisr.b").as_deref(), Some("2"));
    assert!(
        all.contains("jisr checked the tenant"),
        "log annotation in {all}"
    );
}

#[test]
fn recreate_stream_is_an_internal_redirect() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("rc")
                    .filter(module_filter("control_fixture", "recreate", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port())),
    );
    let port = envoy.listener_port("rc");
    let r = client::get(port, "/old/items?x=1");
    assert_eq!(r.status, 200, "{}", envoy.log());
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/new/items?x=1");
    assert_eq!(reqs[0].header("x-recreated"), Some("1"));
    // A request with a body cannot be recreated: jisr fails it closed.
    let r = client::request(port, "POST", "/old/upload", &[], b"data");
    assert_eq!(r.status, 500, "{}", envoy.log());
    assert_eq!(up.requests().len(), 1);
    assert!(
        envoy.log().contains("refused to recreate the stream"),
        "{}",
        envoy.log()
    );
}

#[test]
fn goaway_after_a_reply_closes_the_connection() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("ga")
                    .hcm_yaml("drain_timeout: 1s")
                    .filter(module_filter("control_fixture", "goaway", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port())),
    );
    let port = envoy.listener_port("ga");
    let drain = |graceful: bool| {
        let mut c = Connection::open(port).unwrap();
        // A plain request keeps the connection open.
        c.send("GET", "/", &[], b"").unwrap();
        assert_eq!(c.read_response("GET").unwrap().status, 200);
        let mut headers = vec![("x-drain", "1")];
        if graceful {
            headers.push(("x-graceful", "1"));
        }
        c.send("GET", "/", &headers, b"").unwrap();
        let r = c.read_response("GET");
        c.set_timeout(Duration::from_secs(5)).unwrap();
        let mut buf = [0u8; 64];
        let after = std::io::Read::read(&mut c.stream(), &mut buf);
        (r.map(|r| (r.status, r.text())), after.map_err(|e| e.kind()))
    };
    // Graceful: the reply is delivered, then Envoy closes the connection (EOF) when the
    // connection manager's `drain_timeout` (1 s here) is over.
    let (reply, after) = drain(true);
    assert_eq!(
        reply.unwrap(),
        (503, "draining\n".to_string()),
        "{}",
        envoy.log()
    );
    assert_eq!(after, Ok(0), "connection closed after the reply");
    // Not graceful: Envoy closes at once, without flushing the reply staged before it.
    let (reply, after) = drain(false);
    assert!(reply.is_err(), "{reply:?}");
    assert_eq!(after, Ok(0));
}

#[test]
fn socket_options_and_typed_filter_state_reach_envoy() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("so")
                    .filter(module_filter("control_fixture", "sockets", None))
                    .route(Route::to("/", "main")),
            )
            .listener(
                Listener::new("fs")
                    .filter(module_filter("control_fixture", "typed_state", None))
                    .log_field(
                        "sni",
                        "%FILTER_STATE(envoy.network.upstream_server_name:PLAIN)%",
                    )
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port())),
    );
    let r = client::get(envoy.listener_port("so"), "/");
    assert_eq!(r.status, 200, "{}", envoy.log());
    assert_eq!(
        r.text(),
        "before=None set=true after=Some(1) up=true up_back=Some(\"cubic\")\n"
    );
    let r = client::get(envoy.listener_port("fs"), "/");
    assert_eq!(r.status, 200, "{}", envoy.log());
    assert_eq!(
        r.text(),
        "set=true unknown=false back=Some(\"api.internal\")\n"
    );
    let lines = envoy.wait_for_access_lines(2, Duration::from_secs(5));
    let line = lines
        .iter()
        .find(|l| l.contains("listener=fs"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(access_field(line, "sni"), Some("api.internal"), "{lines:?}");
}

/// `Span::disable_local_decision` needs a callback Envoy 1.39 added: on 1.38 it is
/// `Unsupported` (the module still loads), from 1.39 on it works.
#[test]
fn newer_calls_report_unsupported_on_older_envoys() {
    let up = Upstream::start("main");
    let collector = Upstream::start("zipkin");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("late")
                    .hcm_yaml(ZIPKIN)
                    .filter(module_filter("control_fixture", "late", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port()))
            .cluster(Cluster::new("zipkin", collector.port())),
    );
    let r = client::get(envoy.listener_port("late"), "/");
    assert_eq!(r.status, 200, "{}", envoy.log());
    let expected = if envoy_minor() >= (1, 39) {
        "disable_local_decision=ok\n".to_string()
    } else {
        "disable_local_decision=unsupported \
         envoy_dynamic_module_callback_http_span_disable_local_decision\n"
            .to_string()
    };
    assert_eq!(r.text(), expected);
}

/// Every value of a multi-valued header, and several metadata strings set at once (one call
/// each on 1.39+, one call per value on 1.38: the answer is the same).
#[test]
fn header_values_and_metadata_batches() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("hv")
                    .filter(module_filter("control_fixture", "values", None))
                    .log_metadata("jisr.batch", "first")
                    .log_metadata("jisr.batch", "n")
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port())),
    );
    let mut headers = vec![("x-v", "a"), ("x-v", "b"), ("x-v", "c")];
    headers.extend((0..20).map(|_| ("x-many", "m")));
    let r = client::request(envoy.listener_port("hv"), "GET", "/", &headers, b"");
    assert_eq!(r.status, 200, "{}", envoy.log());
    assert_eq!(r.text(), "[\"a\", \"b\", \"c\"] 20\n");
    let lines = envoy.wait_for_access_lines(1, Duration::from_secs(5));
    assert_eq!(
        access_field(&lines[0], "jisr.batch:first"),
        Some("a"),
        "{lines:?}"
    );
    assert_eq!(
        access_field(&lines[0], "jisr.batch:n"),
        Some("three"),
        "{lines:?}"
    );
}

/// A request body read whole and replaced: the upstream gets the rewritten JSON with a right
/// `content-length`; a request that already asks for usage, or is not streaming, passes as
/// sent; a body over the handler's limit gets its 413.
#[test]
fn request_body_rewrite_injects_include_usage() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("rw")
                    .filter(module_filter("control_fixture", "include_usage", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port())),
    );
    let port = envoy.listener_port("rw");
    let post = |body: &str| {
        client::request(
            port,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
    };
    let r = post(r#"{"model":"m","stream":true,"messages":[]}"#);
    assert_eq!(r.status, 200, "{}", envoy.log());
    let sent = up.requests().pop().unwrap();
    let v: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(v["stream_options"]["include_usage"].as_bool(), Some(true));
    assert_eq!(v["model"].as_str(), Some("m"));
    assert_eq!(
        sent.header("content-length").map(str::to_string),
        Some(sent.body.len().to_string())
    );
    let plain = r#"{"model":"m","stream":false}"#;
    assert_eq!(post(plain).status, 200);
    assert_eq!(up.requests().pop().unwrap().body, plain.as_bytes());
    let big = format!(
        r#"{{"model":"m","stream":true,"pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    assert_eq!(post(&big).status, 413);
}
