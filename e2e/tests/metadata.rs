//! Reading metadata in real Envoy: a jisr handler reads the matched route's `metadata`, the
//! upstream cluster's, and the dynamic metadata an earlier Envoy filter (`set_metadata`) wrote,
//! each as the type it has (string, number, bool); asked as another type, a value is absent
//! and Envoy logs `[error][dynamic_modules] ... key <key> is not a number` (1.40).

use jisr_e2e::client;
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, HttpFilter, Listener, Route, Upstream, access_field, module_filter,
};

const SET_METADATA: &str = r#""@type": type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config
metadata:
- metadata_namespace: acme.auth
  value: { user: alice, level: 3, roles: [admin, ops] }"#;

/// The route carries `acme: { tier, weight, canary, zones: [..], mixed: [..] }`, the cluster
/// `acme: { region }`, and `set_metadata` (writing `acme.auth`, with a list) runs before the
/// module filter. List elements are read by index and type.
#[test]
fn route_cluster_and_other_filters_metadata_reach_the_handler() {
    let up = Upstream::start("main");
    let route = Route::Raw(
        "- match: { prefix: \"/\" }
  metadata:
    filter_metadata:
      acme: { tier: gold, weight: 3, canary: true, zones: [eu-1, eu-2], mixed: [x, 2, true] }
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
        "tier=gold weight=Some(3.0) canary=Some(true) region=eu-west user=alice level=Some(3.0) wrong_type=None\n\
         zones=Some(2) [Some(\"eu-1\"), Some(\"eu-2\"), None] \
         mixed=(Some(\"x\"), Some(2.0), Some(true), None) roles=Some(2) role1=Some(\"ops\") not_list=None\n\
         keys=[\"canary\", \"mixed\", \"tier\", \"weight\", \"zones\"] route_ns=[\"acme\"] \
         dynamic_ns=[\"acme.auth\"] auth_keys=3 none=0\n",
        "{}",
        envoy.log()
    );
    // Asked as the wrong type, Envoy also logs an error line (so ask for the type you set).
    let log = envoy.log();
    assert!(log.contains("key tier is not a number"), "{log}");
}

/// A custom response flag a handler adds shows in the access log's `%CUSTOM_FLAGS%` (empty
/// without one); Envoy's own `%RESPONSE_FLAGS%` does not include it (`-`).
#[test]
fn custom_response_flag_shows_in_the_access_log() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("flag")
                    .filter(module_filter("metadata_fixture", "flag", None))
                    .log_field("flags", "%RESPONSE_FLAGS%")
                    .log_field("custom", "%CUSTOM_FLAGS%")
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port())),
    );
    let port = envoy.listener_port("flag");
    let r = client::request(port, "GET", "/a", &[("x-flag", "JISR_TEST")], b"");
    assert_eq!(r.status, 200, "{}", envoy.log());
    let r = client::get(port, "/b");
    assert_eq!(r.status, 200, "{}", envoy.log());
    let lines = envoy.wait_for_access_lines(2, std::time::Duration::from_secs(5));
    let field = |path: &str, key: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("path={path} ")))
            .and_then(|l| access_field(l, key))
            .unwrap_or_else(|| panic!("no {key} in the access line for {path}: {lines:?}"))
            .to_string()
    };
    assert_eq!(field("/a", "custom"), "JISR_TEST");
    assert_eq!(field("/a", "flags"), "-");
    assert_eq!(field("/b", "custom"), "");
}

/// A route whose cluster a `matcher` cluster specifier picks from request header `x-cluster`.
const MATCHER_ROUTE: &str = r#"- match: { prefix: "/" }
  route:
    timeout: 30s
    inline_cluster_specifier_plugin:
      extension:
        name: envoy.router.cluster_specifier_plugin.matcher
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.router.cluster_specifiers.matcher.v3.MatcherClusterSpecifier
          cluster_matcher:
            matcher_tree:
              input:
                name: x-cluster
                typed_config:
                  "@type": type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput
                  header_name: x-cluster
              exact_match_map:
                map:
                  a:
                    action:
                      name: a
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.router.cluster_specifiers.matcher.v3.ClusterAction
                        cluster: a
                  b:
                    action:
                      name: b
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.router.cluster_specifiers.matcher.v3.ClusterAction
                        cluster: b
"#;

/// Sends `headers` through a listener running the `recluster` filter in front of `route`;
/// answers how many requests upstreams `a` and `b` saw after each of `requests`.
fn recluster(route: Route, requests: &[&[(&str, &str)]]) -> Vec<(usize, usize)> {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("recluster")
                    .filter(module_filter("metadata_fixture", "recluster", None))
                    .route(route),
            )
            .cluster(Cluster::new("a", a.port()))
            .cluster(Cluster::new("b", b.port())),
    );
    let port = envoy.listener_port("recluster");
    requests
        .iter()
        .map(|headers| {
            let r = client::request(port, "GET", "/", headers, b"");
            assert_eq!(r.status, 200, "{}", envoy.log());
            (a.requests().len(), b.requests().len())
        })
        .collect()
}

/// With a cluster specifier plugin (here `matcher`), clearing the cached cluster after changing
/// the header it reads sends the request to the new cluster; without the clear it goes where
/// Envoy first picked.
#[test]
fn clearing_the_cluster_cache_reruns_the_cluster_specifier() {
    let seen = recluster(
        Route::Raw(MATCHER_ROUTE.into()),
        &[
            &[("x-cluster", "a"), ("x-want", "b"), ("x-clear", "1")],
            &[("x-cluster", "a"), ("x-want", "b")],
        ],
    );
    assert_eq!(seen, [(0, 1), (1, 1)]);
}

/// A plain `cluster_header` route keeps the cluster it picked even after the clear: only
/// `clear_route_cache` (a new route lookup) reads the changed header.
#[test]
fn clearing_the_cluster_cache_keeps_a_cluster_header_pick() {
    let seen = recluster(
        Route::cluster_header("/", "x-cluster"),
        &[&[("x-cluster", "a"), ("x-want", "b"), ("x-clear", "1")]],
    );
    assert_eq!(seen, [(1, 0)]);
}

/// The stream's buffer limit starts at the listener's 1 MiB: a 2 MiB upload the handler reads
/// whole is a `413`. After the handler raises the limit to 4 MiB, the same upload is read in
/// full. The handler also sees the routed cluster's name and its one healthy host at priority
/// 0 (priority 1 does not exist).
#[test]
fn buffer_limit_and_cluster_info_reach_the_handler() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("upload")
                    .filter(module_filter("metadata_fixture", "upload", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port())),
    );
    let port = envoy.listener_port("upload");
    let body = vec![b'x'; 2 << 20];
    let r = client::request(port, "POST", "/big", &[("x-limit", "4194304")], &body);
    assert_eq!(
        r.text(),
        "before=1048576 after=4194304 read=Ok(2097152) cluster=main p0=1/1/0 p1=-\n",
        "{}",
        envoy.log()
    );
    match client::try_request(port, "POST", "/big", &[], &body) {
        Ok(r) => assert_eq!(r.status, 413, "{}", r.text()),
        Err(e) => eprintln!("client saw {e} (Envoy answered 413 and closed mid-upload)"),
    }
    let r = client::request(port, "POST", "/small", &[], b"hi");
    assert_eq!(
        r.text(),
        "before=1048576 after=1048576 read=Ok(2) cluster=main p0=1/1/0 p1=-\n"
    );
    let lines = envoy.wait_for_access_lines(3, std::time::Duration::from_secs(5));
    let codes: Vec<_> = lines
        .iter()
        .filter_map(|l| access_field(l, "code"))
        .collect();
    assert_eq!(codes, ["200", "413", "200"], "{lines:?}");
}

/// A handler builds dynamic-metadata lists by appending; it reads them back, and the access
/// log renders them. Appending to a key that holds a scalar is refused (`false`) and keeps the
/// scalar.
#[test]
fn appended_metadata_lists_are_read_back_and_logged() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("append")
                    .filter(module_filter("metadata_fixture", "append", None))
                    .log_metadata("audit", "reasons")
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port())),
    );
    let r = client::get(envoy.listener_port("append"), "/");
    assert_eq!(
        r.text(),
        "appended=[true, true, true, true, false] reasons=[Some(\"no-credentials\"), \
         Some(\"no-user-agent\")] mixed=(Some(1.5), Some(true)) scalar=Some(\"x\")\n",
        "{}",
        envoy.log()
    );
    let lines = envoy.wait_for_access_lines(1, std::time::Duration::from_secs(5));
    let logged = access_field(&lines[0], "audit:reasons");
    assert_eq!(
        logged,
        Some(r#"["no-credentials","no-user-agent"]"#),
        "{lines:?}"
    );
}
