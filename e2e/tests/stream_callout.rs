//! Streaming callouts in real Envoy: the request body goes out in chunks, the answer is read
//! as it arrives.

use jisr_e2e::client;
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, module_filter};

fn envoy(up: &Upstream, path: &str) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("stream").filter(module_filter(
                "callout_demo",
                "stream",
                Some(&format!(r#"{{"cluster": "upstream", "path": "{path}"}}"#)),
            )))
            .upstream(up.port()),
    )
}

fn seen(r: &client::Response, name: &str) -> Option<String> {
    r.json()["headers"][name].as_str().map(str::to_string)
}

#[test]
fn streaming_callout_sends_chunks_and_reads_the_answer() {
    let up = Upstream::start("target");
    let e = envoy(&up, "/echo");
    let r = client::get(e.listener_port("stream"), "/go");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen(&r, "x-stream-status").as_deref(), Some("200"));
    // All three chunks reached the target: "alpha-beta-gamma" is 16 bytes.
    assert_eq!(seen(&r, "x-stream-sent-len").as_deref(), Some("16"));
    let callout = up
        .requests()
        .into_iter()
        .find(|q| q.path == "/echo")
        .expect("callout seen");
    assert_eq!(callout.body, b"alpha-beta-gamma");
    assert_eq!(callout.method, "POST");
    e.assert_ready();
}

#[test]
fn streaming_callout_reads_a_slow_answer_piece_by_piece() {
    let up = Upstream::start("target");
    let e = envoy(&up, "/stream?chunks=4&delay_ms=60&size=100");
    let r = client::get(e.listener_port("stream"), "/go");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen(&r, "x-stream-body-len").as_deref(), Some("400"));
    let reads: u32 = seen(&r, "x-stream-reads").unwrap().parse().unwrap();
    assert!(reads >= 2, "the answer arrived in {reads} reads");
    e.assert_ready();
}
