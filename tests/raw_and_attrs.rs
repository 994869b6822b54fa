//! Raw filters beside jisr filters, and stream attributes, through the simulated stream.

mod common;

use common::GET;
use jisr::testing::TestFilter;
use jisr::{
    Attr, Registry, Request, ResponseWriter,
    raw::{HeadersStatus, RawFactory, RawFilter, RawStream},
};

struct RawAuth {
    seen: u32,
}

impl RawFilter for RawAuth {
    fn on_request_headers(&mut self, s: &mut RawStream<'_>, _eos: bool) -> HeadersStatus {
        self.seen += 1;
        if s.request_header("x-api-key").is_none() {
            s.send_response(
                401,
                &[("content-type", b"text/plain")],
                b"raw says no",
                "raw_auth_denied",
            );
            return HeadersStatus::StopIteration;
        }
        HeadersStatus::Continue
    }
}

struct RawAuthFactory;

impl RawFactory for RawAuthFactory {
    type Filter = RawAuth;
    fn new_filter(&self) -> RawAuth {
        RawAuth { seen: 0 }
    }
}

async fn attrs(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    let src = req
        .attr_str(Attr::SOURCE_ADDRESS)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let path = req
        .attr_str(Attr::PATH)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let port = req.attr_int(Attr::SOURCE_PORT);
    let mtls = req.attr_bool(Attr::CONNECTION_MTLS);
    let name = req.filter_name().to_owned();
    let _ = req.set_header("x-src", src.unwrap_or_default());
    let _ = req.set_header("x-path", path.unwrap_or_default());
    let _ = req.set_header("x-port", port.map(|p| p.to_string()).unwrap_or_default());
    let _ = req.set_header("x-mtls", mtls.map(|p| p.to_string()).unwrap_or_default());
    let _ = req.set_header("x-name", name);
}

fn register(r: &mut Registry) {
    r.register_raw("raw_auth", |_cfg| Ok(RawAuthFactory));
    r.register("attrs", attrs);
}

#[test]
fn raw_filter_registered_beside_jisr_filter() {
    let raw = TestFilter::new(register, "raw_auth", b"").unwrap();
    let mut s = raw.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::StopIteration);
    let reply = s.local_reply().unwrap();
    assert_eq!(
        (reply.status, reply.details.as_str()),
        (401, "raw_auth_denied")
    );
    drop(s);
    let mut s = raw.stream();
    assert_eq!(
        s.request_headers(&[(":path", "/"), ("x-api-key", "k")], true),
        HeadersStatus::Continue
    );

    let jisr_filter = TestFilter::new(register, "attrs", b"").unwrap();
    let mut s = jisr_filter.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
}

#[test]
fn attributes_by_id() {
    let f = TestFilter::new(register, "attrs", b"").unwrap();
    let mut s = f.stream();
    s.set_attr_str(Attr::SOURCE_ADDRESS, "127.0.0.1:4242");
    s.set_attr_int(Attr::SOURCE_PORT, 4242);
    s.set_attr_bool(Attr::CONNECTION_MTLS, false);
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    assert_eq!(s.request_header("x-src").as_deref(), Some("127.0.0.1:4242"));
    assert_eq!(s.request_header("x-path").as_deref(), Some("/hello?x=1"));
    assert_eq!(s.request_header("x-port").as_deref(), Some("4242"));
    assert_eq!(s.request_header("x-mtls").as_deref(), Some("false"));
    assert_eq!(s.request_header("x-name").as_deref(), Some("attrs"));
}
