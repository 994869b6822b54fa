//! Background tasks of a filter config in real Envoy: a handler answers at once and a task on
//! Envoy's main thread posts an audit record (a callout owned by the config, outliving the
//! request) and counts it with a config-level counter; another task streams to a cluster
//! and reads the answer.

use jisr_e2e::client;
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, envoy_minor, module_filter,
    module_stat, wait_until,
};
use std::time::Duration;

#[test]
fn background_callouts_streams_and_config_metrics() {
    let up = Upstream::start("main");
    let audit = Upstream::start("audit");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("bg")
                    .filter(module_filter("background_fixture", "audit", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port()))
            .cluster(Cluster::new("audit", audit.port())),
    );
    let port = envoy.listener_port("bg");
    for path in ["/a", "/b"] {
        assert_eq!(client::get(port, path).status, 200, "{}", envoy.log());
    }
    let logged = || {
        audit
            .requests()
            .iter()
            .filter(|r| r.path == "/log")
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(5), || logged().len() == 2),
        "{:?}\n{}",
        logged(),
        envoy.log()
    );
    let mut got = logged();
    got.sort();
    assert_eq!(got, ["/a", "/b"]);
    assert_eq!(up.requests().len(), 2, "the requests went on at once");

    let r = client::get(port, "/stream");
    assert_eq!(r.status, 202);
    let status = || client::get(port, "/status").text();
    assert!(
        wait_until(Duration::from_secs(5), || status().contains("stream ")),
        "{}\n{}",
        status(),
        envoy.log()
    );
    let ingest = audit
        .requests()
        .into_iter()
        .find(|r| r.path == "/ingest")
        .expect("the stream reached the audit upstream");
    assert_eq!(ingest.body, b"first second");
    let text = status();
    assert!(
        text.contains("stream sent=true status=200 bytes="),
        "{text}"
    );

    // The config-level counter: Envoy 1.39+ counts without a stream; 1.38 lacks the call.
    let sent = module_stat("audit_sent", &[]);
    if envoy_minor() >= (1, 39) {
        assert!(text.contains("/a 200 counted=Ok(())"), "{text}");
        assert!(
            wait_until(Duration::from_secs(5), || envoy.counter(&sent) == Some(2)),
            "{:?}",
            envoy.counter(&sent)
        );
    } else {
        assert!(text.contains("/a 200 counted=Err(Unsupported("), "{text}");
    }
}
