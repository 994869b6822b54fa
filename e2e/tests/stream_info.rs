//! What only Envoy 1.40 offers a module, from jisr handlers in real Envoy: timing and upstream
//! facts, filter-state objects, structured and typed metadata, SDS generic secrets rotated by
//! rewriting a file. On 1.38 and 1.39 the module loads and each call reports `Unsupported`.

use jisr_e2e::client;
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, access_field, envoy_minor,
    module_filter, wait_until, write_generic_secret,
};
use std::time::Duration;

fn is_1_40() -> bool {
    envoy_minor() >= (1, 40)
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    access_field(line, key).unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn timing_and_upstream_facts() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("facts")
                    .filter(module_filter("control_fixture", "facts", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port())),
    );
    let r = client::get(envoy.listener_port("facts"), "/");
    assert_eq!(r.status, 200, "{}", envoy.log());
    let facts = r.header("x-facts").unwrap_or_default().to_string();
    if !is_1_40() {
        assert_eq!(
            facts,
            "this Envoy does not provide `envoy_dynamic_module_callback_http_get_timing_info`"
        );
        return;
    }
    let num = |key: &str| -> i64 {
        let v = field(&facts, key);
        v.strip_prefix("Some(")
            .and_then(|v| v.strip_suffix(')'))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {facts}"))
    };
    // Envoy's start time is a real Unix time a moment ago; the upstream's first byte came
    // after the request was sent, both on Envoy's clock.
    let age = num("age_ns");
    assert!((0..5_000_000_000).contains(&age), "{facts}");
    let (sent, ttfb) = (num("sent_ns"), num("ttfb_ns"));
    assert!(0 < sent && sent <= ttfb && ttfb < 5_000_000_000, "{facts}");
    assert!(
        field(&facts, "direct").starts_with("Some(\"127.0.0.1:"),
        "{facts}"
    );
    let upstream = format!("Some(\"127.0.0.1:{}\")", up.port());
    assert_eq!(field(&facts, "upstream"), upstream, "{facts}");
    assert!(num("conn") > 0, "{facts}");
    assert_eq!(
        field(&facts, "hosts"),
        format!("[\"127.0.0.1:{}\"]", up.port()),
        "{facts}"
    );
    assert_eq!(
        field(&facts, "ids"),
        format!("[{}]", num("conn")),
        "{facts}"
    );
}

#[test]
fn filter_state_objects_pass_between_filters() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("obj")
                    .filter(module_filter("control_fixture", "objects_set", None))
                    .filter(module_filter("control_fixture", "objects_read", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port())),
    );
    let r = client::request(
        envoy.listener_port("obj"),
        "GET",
        "/",
        &[("x-user", "alice")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", envoy.log());
    // Objects came in 1.39, typed state with options and `has` in 1.40.
    let expected = match envoy_minor() {
        (1, 40..) => {
            "user=Some(\"alice\") has=Ok(true) missing=Ok(false) sni=Some(\"tenant.internal\")\n"
        }
        (1, 39) => {
            "this Envoy does not provide `envoy_dynamic_module_callback_http_set_filter_state_value`\n"
        }
        _ => {
            "this Envoy does not provide `envoy_dynamic_module_callback_http_set_filter_state_object`\n"
        }
    };
    assert_eq!(r.text(), expected);
}

const TYPED_ROUTE: &str = r#"- match: { prefix: "/" }
  metadata:
    typed_filter_metadata:
      acme.route:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: route-gold
  route: { cluster: main, timeout: 30s }
"#;

#[test]
fn struct_and_typed_metadata() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("md")
                    .filter(module_filter("control_fixture", "struct_md", None))
                    .log_field("user", "%DYNAMIC_METADATA(acme.audit:user)%")
                    .log_field("roles", "%DYNAMIC_METADATA(acme.audit:roles)%")
                    .log_field("rpm", "%DYNAMIC_METADATA(acme.audit:limits:rpm)%")
                    .route(Route::Raw(TYPED_ROUTE.to_string())),
            )
            .cluster(Cluster::new("main", up.port())),
    );
    let r = client::get(envoy.listener_port("md"), "/");
    assert_eq!(r.status, 200, "{}", envoy.log());
    if !is_1_40() {
        assert!(
            r.text().starts_with(
                "set=Err(Unsupported { callback: \"envoy_dynamic_module_callback_http_set_dynamic_metadata_struct\" })"
            ),
            "{}",
            r.text()
        );
        return;
    }
    assert_eq!(
        r.text(),
        "set=Ok(()) typed=Ok(()) \
         back=Ok(Some((\"type.googleapis.com/google.protobuf.StringValue\", [10, 4, 103, 111, 108, 100]))) \
         route=Ok(Some((\"type.googleapis.com/google.protobuf.StringValue\", \
         [10, 10, 114, 111, 117, 116, 101, 45, 103, 111, 108, 100]))) user=Some(\"alice\")\n"
    );
    let lines = envoy.wait_for_access_lines(1, Duration::from_secs(5));
    assert_eq!(field(&lines[0], "user"), "alice", "{lines:?}");
    assert_eq!(
        field(&lines[0], "roles"),
        "[\"admin\",\"ops\"]",
        "{lines:?}"
    );
    assert_eq!(field(&lines[0], "rpm"), "600", "{lines:?}");
    assert!(!envoy.log().contains("failed to parse"), "{}", envoy.log());
}

#[test]
fn sds_secret_from_a_file_rotates_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("jisr-e2e-sds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.yaml");
    write_generic_secret(&path, "api-keys", "k1,k2");
    let up = Upstream::start("main");
    let config = EnvoyConfig::new()
        .listener(
            Listener::new("keys")
                .filter(module_filter(
                    "control_fixture",
                    "keys",
                    Some(path.to_str().unwrap()),
                ))
                .route(Route::to("/", "main")),
        )
        .cluster(Cluster::new("main", up.port()))
        .node_identity();
    if !is_1_40() {
        // The config is refused with the reason, naming the filter.
        let (status, err) = Envoy::start_expect_failure(&config);
        assert!(!status.success());
        assert!(
            err.contains("secret 'api-keys': this Envoy has no generic secrets for modules"),
            "{err}"
        );
        return;
    }
    let envoy = Envoy::start(&config);
    let port = envoy.listener_port("keys");
    let status = |key: &str| client::request(port, "GET", "/", &[("x-api-key", key)], b"").status;
    assert!(
        wait_until(Duration::from_secs(5), || status("k2") == 200),
        "{}",
        envoy.log()
    );
    assert_eq!(status("k3"), 401);
    write_generic_secret(&path, "api-keys", "k1,k3");
    assert!(
        wait_until(Duration::from_secs(10), || status("k3") == 200),
        "rotation not seen: {}",
        envoy.log()
    );
    assert_eq!(status("k2"), 401);
    assert_eq!(status("k1"), 200);
    let _ = std::fs::remove_dir_all(&dir);
}
