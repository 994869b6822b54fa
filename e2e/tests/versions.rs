//! What the same module does on each Envoy version (run by `.ci/matrix.sh` on 1.38.3 and
//! 1.39.3, and by `cargo test` on the pinned 1.40.0): streamed replies work from 1.40 on and are
//! refused before (they crash Envoy 1.38/1.39), with a warning at load and an error per refusal.

use jisr_e2e::client;
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, envoy_minor, module_filter};
use std::time::Duration;

#[test]
fn streamed_replies_by_envoy_version() {
    let up = Upstream::start("versions-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("sse").filter(module_filter("stream_demo", "sse", None)))
            .upstream(up.port()),
    );
    let r = client::get(envoy.listener_port("sse"), "/events");
    if envoy_minor() >= (1, 40) {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert!(r.text().contains("data:"), "{}", r.text());
        assert!(!envoy.log().contains("predates 1.40"));
    } else {
        assert!(envoy.wait_for_log("jisr: this Envoy predates 1.40", Duration::from_secs(5)));
        assert!(envoy.wait_for_log("streamed replies are refused", Duration::from_secs(5)));
        // The request went on to the upstream instead; Envoy keeps serving.
        assert_eq!(r.status, 200, "{}", r.text());
    }
    envoy.assert_ready();
    assert_eq!(
        client::get(envoy.listener_port("sse"), "/events").status,
        200
    );
}
