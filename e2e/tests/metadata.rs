//! Reading metadata in real Envoy: a jisr handler reads the matched route's `metadata`, the
//! upstream cluster's, and the dynamic metadata an earlier Envoy filter (`set_metadata`) wrote,
//! each as the type it has (string, number, bool); asked as another type, a value is absent
//! and Envoy logs `[error][dynamic_modules] ... key <key> is not a number` (1.40).

use jisr_e2e::client;
use jisr_e2e::{Cluster, Envoy, EnvoyConfig, HttpFilter, Listener, Route, Upstream, module_filter};

const SET_METADATA: &str = r#""@type": type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config
metadata:
- metadata_namespace: acme.auth
  value: { user: alice, level: 3 }"#;

/// The route carries `acme: { tier, weight, canary }`, the cluster `acme: { region }`, and
/// `set_metadata` runs before the module filter.
#[test]
fn route_cluster_and_other_filters_metadata_reach_the_handler() {
    let up = Upstream::start("main");
    let route = Route::Raw(
        "- match: { prefix: \"/\" }
  metadata:
    filter_metadata:
      acme: { tier: gold, weight: 3, canary: true }
  route: { cluster: main, timeout: 30s }
"
        .to_string(),
    );
    let cluster = Cluster::new("main", up.port()).raw_yaml(
        "metadata:
  filter_metadata:
    acme: { region: eu-west }",
    );
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("md")
                    .filter(HttpFilter::raw(
                        "envoy.filters.http.set_metadata",
                        SET_METADATA,
                    ))
                    .filter(module_filter("metadata_fixture", "read_metadata", None))
                    .route(route),
            )
            .cluster(cluster),
    );
    let r = client::get(envoy.listener_port("md"), "/");
    assert_eq!(r.status, 200, "{}", envoy.log());
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "tier=gold weight=Some(3.0) canary=Some(true) region=eu-west user=alice level=Some(3.0) wrong_type=None\n",
        "{}",
        envoy.log()
    );
    // Asked as the wrong type, Envoy also logs an error line (so ask for the type you set).
    let log = envoy.log();
    assert!(log.contains("key tier is not a number"), "{log}");
}
