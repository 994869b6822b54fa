//! The filter on a simulated Envoy stream (`jisr::testing`): no Envoy needed, plain
//! `cargo test`. The crate is also an `rlib` (see Cargo.toml), so this file can import it.
//! Metrics are named as Envoy's `/stats` shows them (the Prometheus spelling,
//! `envoy_dynamicmodulescustom_<name>{result="allowed"}`, works too).

use {{crate_name}}::register;
use jisr::testing::TestFilter;

const CONFIG: &[u8] =
    br#"{"authz_cluster": "authz", "public_prefixes": ["/public/"], "greeting": "hello"}"#;

fn filter() -> TestFilter {
    TestFilter::new(register, "{{crate_name}}", CONFIG).unwrap()
}

#[test]
fn authorized_requests_go_upstream_with_the_greeting() {
    let f = filter();
    let mut s = f.stream();
    s.request_headers(
        &[
            (":method", "GET"),
            (":path", "/orders"),
            ("authorization", "Bearer good"),
        ],
        true,
    );
    let call = s.callouts().remove(0);
    assert_eq!(call.cluster, "authz");
    assert!(
        call.headers
            .contains(&("authorization".to_string(), b"Bearer good".to_vec()))
    );
    s.complete_callout(call.id, 200, &[], b"");
    assert!(s.local_reply().is_none());
    assert_eq!(s.request_header("x-greeting").as_deref(), Some("hello"));
    assert_eq!(
        f.metric("dynamicmodulescustom.{{crate_name}}_requests_total.result.allowed"),
        Some(1)
    );
}

#[test]
fn refused_requests_get_403() {
    let f = filter();
    let mut s = f.stream();
    s.request_headers(&[(":method", "GET"), (":path", "/orders")], true);
    let id = s.callouts()[0].id;
    s.complete_callout(id, 403, &[], b"");
    assert_eq!(s.local_reply().unwrap().status, 403);
    assert_eq!(
        f.metric("dynamicmodulescustom.{{crate_name}}_requests_total.result.denied"),
        Some(1)
    );
}

#[test]
fn an_unreachable_authorization_service_is_not_a_refusal() {
    let f = filter();
    let mut s = f.stream();
    s.request_headers(&[(":method", "GET"), (":path", "/orders")], true);
    let id = s.callouts()[0].id;
    // What Envoy answers when it cannot reach the service: its own 503.
    s.complete_callout(id, 503, &[], b"no healthy upstream");
    assert_eq!(s.local_reply().unwrap().status, 503);
    assert_eq!(
        f.metric("dynamicmodulescustom.{{crate_name}}_requests_total.result.error"),
        Some(1)
    );
}

#[test]
fn public_paths_pass_without_asking() {
    let f = filter();
    let mut s = f.stream();
    s.request_headers(&[(":method", "GET"), (":path", "/public/logo.png")], true);
    assert!(s.callouts().is_empty());
    assert!(s.local_reply().is_none());
    assert_eq!(
        f.metric("dynamicmodulescustom.{{crate_name}}_requests_total.result.public"),
        Some(1)
    );
}

#[test]
fn a_bad_config_is_refused_with_the_reason() {
    let err = TestFilter::new(register, "{{crate_name}}", br#"{"greeting": "hi"}"#)
        .err()
        .unwrap();
    assert!(
        err.ends_with("filter_config: missing field `authz_cluster` at line 1 column 18"),
        "{err}"
    );
}
