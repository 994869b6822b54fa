//! Trailers through jisr filters in real Envoy: a Buffer-mode response handler on a response
//! with HTTP/1.1 chunked trailers, and a request handler reading request trailers.
//!
//! Envoy drops HTTP/1 trailers unless both codecs enable them: `enable_trailers` in the HCM's
//! `http_protocol_options` (downstream) and in the cluster's `http_protocol_options` (upstream).

use jisr_e2e::client::{self, Connection};
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, Listener, Upstream, UpstreamRequest, access_field, module_filter,
};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

const HCM_TRAILERS: &str = "http_protocol_options: { enable_trailers: true }";
const CLUSTER_TRAILERS: &str = "typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config:
      http_protocol_options: { enable_trailers: true }";

/// `/trailers-json`: a chunked JSON object with trailer `x-checksum: 42`;
/// `/trailers-text`: the same for `text/plain`; anything else: echo.
fn upstream() -> Upstream {
    Upstream::start_with("trailers-up", |req: &UpstreamRequest, w| {
        let json = match req.path_only() {
            "/trailers-json" => true,
            "/trailers-text" => false,
            _ => return jisr_e2e::upstream::echo(req, w),
        };
        w.header(
            "content-type",
            if json {
                "application/json"
            } else {
                "text/plain"
            },
        );
        w.chunk(if json {
            br#"{"part":"#.as_slice()
        } else {
            b"part1 "
        });
        w.sleep(Duration::from_millis(20));
        w.chunk(if json { b"2}".as_slice() } else { b"part2" });
        w.trailer("x-checksum", "42");
        w.trailer("x-other", "a b");
        w.finish();
    })
}

fn trailers_envoy(up: &Upstream) -> Envoy {
    let listener = |name: &str| Listener::new(name).hcm_yaml(HCM_TRAILERS);
    Envoy::start(
        &EnvoyConfig::new()
            .listener(listener("rewrite").filter(module_filter("resp_rewrite", "rewrite", None)))
            .listener(listener("tap").filter(module_filter("resp_tap", "tap", None)))
            .listener(
                listener("req")
                    .filter(module_filter("resp_rewrite", "req_trailers", None))
                    .log_metadata("resp_rewrite", "req_checksum"),
            )
            .listener(listener("plain"))
            .listener(Listener::new("no_trailers"))
            .cluster(Cluster::new("upstream", up.port()).raw_yaml(CLUSTER_TRAILERS)),
    )
}

fn trailer<'a>(r: &'a client::Response, name: &str) -> Option<&'a str> {
    r.trailers
        .get(name)
        .and_then(|v| v.first())
        .map(String::as_str)
}

/// Buffer mode completes at the trailers (the handler sees them) and forwards them unchanged;
/// the JSON body is rewritten, a text body passes as is. Observe mode passes them too.
///
/// Without `http_protocol_options: { enable_trailers: true }` on the HCM, the client gets the
/// chunked body but no trailers. With it on the HCM, and on the cluster
/// (`HttpProtocolOptions.explicit_http_config.http_protocol_options`), `x-checksum: 42` and
/// `x-other: a b` reach the client. The handler's `read_to_end` ends at the trailers and
/// `resp.trailer("x-checksum")` is visible. Response header changes made after that still reach the
/// client (`x-jisr-saw-trailers`), because the headers are still held. The rewritten body and the
/// trailers are forwarded unchanged, and keep-alive works.
#[test]
fn buffer_mode_completes_at_response_trailers_and_forwards_them() {
    let up = upstream();
    let envoy = trailers_envoy(&up);

    // Without a jisr filter: what Envoy itself forwards.
    let r = client::get_with_trailers(envoy.listener_port("plain"), "/trailers-text");
    assert_eq!(r.text(), "part1 part2");
    assert_eq!(trailer(&r, "x-checksum"), Some("42"), "{:?}", r.trailers);

    // Without `enable_trailers` on the downstream codec, Envoy drops them (the body is intact).
    let r = client::get_with_trailers(envoy.listener_port("no_trailers"), "/trailers-text");
    assert_eq!(r.text(), "part1 part2");
    assert!(r.trailers.is_empty(), "{:?}", r.trailers);

    let port = envoy.listener_port("rewrite");
    let r = client::get_with_trailers(port, "/trailers-json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-jisr-rewrite"), Some("rewritten"));
    assert_eq!(r.header("x-jisr-saw-trailers"), Some("x-checksum"));
    assert_eq!(r.text(), r#"{"part":2,"x_jisr_rewritten":true}"#);
    assert_eq!(trailer(&r, "x-checksum"), Some("42"), "{:?}", r.trailers);
    assert_eq!(trailer(&r, "x-other"), Some("a b"), "{:?}", r.trailers);

    let r = client::get_with_trailers(port, "/trailers-text");
    assert_eq!(r.header("x-jisr-rewrite"), Some("skipped"));
    assert_eq!(r.text(), "part1 part2");
    assert_eq!(trailer(&r, "x-checksum"), Some("42"), "{:?}", r.trailers);

    // Keep-alive after a response with trailers: the framing was right.
    let mut c = Connection::open(port).unwrap();
    for _ in 0..2 {
        let r = c.request("GET", "/trailers-json", &[], b"").unwrap();
        assert_eq!(trailer(&r, "x-other"), Some("a b"));
    }

    let r = client::get_with_trailers(envoy.listener_port("tap"), "/trailers-text");
    assert_eq!(r.text(), "part1 part2");
    assert_eq!(trailer(&r, "x-checksum"), Some("42"), "{:?}", r.trailers);
}

/// A request handler reads the body to its end at the request trailers and sees them; the
/// trailers still reach the upstream unchanged.
///
/// The handler reads `x-req-checksum`. Request headers it sets afterwards reach the upstream
/// (`x-jisr-req-checksum`, `x-jisr-req-body-len: 11`), and metadata set then is in the access log.
/// Without trailers, the read ends at the terminal chunk.
#[test]
fn request_trailers_are_readable_by_a_handler_and_forwarded() {
    let up = upstream();
    let envoy = trailers_envoy(&up);
    let port = envoy.listener_port("req");

    let mut c = Connection::open(port).unwrap();
    c.send_raw(
        b"POST /rt HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\nx-req-checksum: abc123\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response("POST").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["body_len"].as_u64(), Some(11));
    let h = &echo["headers"];
    assert_eq!(h["x-jisr-req-body-len"].as_str(), Some("11"));
    assert_eq!(h["x-jisr-req-checksum"].as_str(), Some("abc123"));
    let seen = up.requests();
    let q = seen.iter().find(|q| q.path == "/rt").unwrap();
    assert_eq!(
        q.trailers,
        vec![("x-req-checksum".to_string(), "abc123".to_string())]
    );

    // No trailers: the body ends at the terminal chunk.
    let r = c.request("POST", "/plain", &[], b"0123456789").unwrap();
    let h = r.json()["headers"].clone();
    assert_eq!(h["x-jisr-req-body-len"].as_str(), Some("10"));
    assert!(h["x-jisr-req-checksum"].is_null());

    let mut line = None;
    jisr_e2e::wait_until(WAIT, || {
        line = envoy
            .access_log_lines()
            .into_iter()
            .find(|l| access_field(l, "path") == Some("/rt"));
        line.is_some()
    });
    let l = line.unwrap_or_else(|| envoy.log());
    assert_eq!(
        access_field(&l, "resp_rewrite:req_checksum"),
        Some("abc123"),
        "{l}"
    );
}
