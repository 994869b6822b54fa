//! `TestFilter::metric` and `TestFilter::histogram` find a metric by the name Envoy shows for
//! it in `/stats` and in Prometheus text, as well as by the short key.

use jisr::testing::TestFilter;
use jisr::{
    ConfigError, ConfigHandle, Counter, Gauge, Histogram, Registry, Request, ResponseWriter,
};

struct Metrics {
    requests: Counter,
    by_route: Counter,
    in_flight: Gauge,
    sizes: Histogram,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Metrics, ConfigError> {
    Ok(Metrics {
        requests: cfg.counter("shop_requests_total", &[])?,
        by_route: cfg.counter("shop_routed_total", &["route", "method"])?,
        in_flight: cfg.gauge("shop.in_flight", &[])?,
        sizes: cfg.histogram("shop_body_bytes", &["method"])?,
    })
}

async fn count(m: &Metrics, req: Request<'_>, w: ResponseWriter<'_>) {
    let method = req.method().unwrap_or("-").to_owned();
    let route = req.header_str("x-route").unwrap_or("none").to_owned();
    let _ = w.counter_inc(m.requests, &[]);
    let _ = w.counter_inc(m.by_route, &[&route, &method]);
    let _ = w.gauge_set(m.in_flight, &[], 3);
    let _ = w.histogram_record(m.sizes, &[&method], 512);
}

fn register(r: &mut Registry) {
    r.filter("shop").state(load).handle(count);
}

fn filter() -> TestFilter {
    let f = TestFilter::new(register, "shop", b"").unwrap();
    for route in ["v1.orders", "v1.orders", "cart"] {
        f.stream().request_headers(
            &[(":method", "GET"), (":path", "/"), ("x-route", route)],
            true,
        );
    }
    f
}

#[test]
fn names_as_in_stats() {
    let f = filter();
    assert_eq!(
        f.metric("dynamicmodulescustom.shop_requests_total"),
        Some(3)
    );
    // Label values may hold dots: each value runs up to the next `.<label>.`.
    assert_eq!(
        f.metric("dynamicmodulescustom.shop_routed_total.route.v1.orders.method.GET"),
        Some(2)
    );
    assert_eq!(
        f.metric("dynamicmodulescustom.shop_routed_total.route.cart.method.GET"),
        Some(1)
    );
    assert_eq!(f.metric("dynamicmodulescustom.shop.in_flight"), Some(3));
    assert_eq!(
        f.histogram("dynamicmodulescustom.shop_body_bytes.method.GET"),
        [512, 512, 512]
    );
    // Wrong label names, missing or extra labels, unknown names: nothing.
    for name in [
        "dynamicmodulescustom.shop_routed_total.path.cart.method.GET",
        "dynamicmodulescustom.shop_routed_total.route.cart",
        "dynamicmodulescustom.shop_requests_total.route.cart",
        "dynamicmodulescustom.shop_routed_total.route.cart.method.POST",
        "dynamicmodulescustom.shop",
    ] {
        assert_eq!(f.metric(name), None, "{name}");
    }
}

#[test]
fn names_as_in_prometheus_text() {
    let f = filter();
    assert_eq!(
        f.metric("envoy_dynamicmodulescustom_shop_requests_total"),
        Some(3)
    );
    assert_eq!(
        f.metric("envoy_dynamicmodulescustom_shop_requests_total{}"),
        Some(3)
    );
    assert_eq!(
        f.metric(r#"envoy_dynamicmodulescustom_shop_routed_total{route="v1.orders",method="GET"}"#),
        Some(2)
    );
    // Labels in any order, with spaces after the commas.
    assert_eq!(
        f.metric(r#"envoy_dynamicmodulescustom_shop_routed_total{method="GET", route="cart"}"#),
        Some(1)
    );
    // Characters Prometheus does not allow in names are `_` there.
    assert_eq!(
        f.metric("envoy_dynamicmodulescustom_shop_in_flight"),
        Some(3)
    );
    assert_eq!(
        f.histogram(r#"envoy_dynamicmodulescustom_shop_body_bytes{method="GET"}"#),
        [512, 512, 512]
    );
    for name in [
        r#"envoy_dynamicmodulescustom_shop_routed_total{route="cart"}"#,
        r#"envoy_dynamicmodulescustom_shop_routed_total{route="cart",method="GET",x="1"}"#,
        r#"envoy_dynamicmodulescustom_shop_routed_total{route="cart",method="GET""#,
        "envoy_dynamicmodulescustom_shop",
    ] {
        assert_eq!(f.metric(name), None, "{name}");
    }
}

#[test]
fn short_keys_still_work() {
    let f = filter();
    assert_eq!(f.metric("shop_requests_total"), Some(3));
    assert_eq!(f.metric("shop_routed_total.v1.orders.GET"), Some(2));
    assert_eq!(f.histogram("shop_body_bytes.GET"), [512, 512, 512]);
}
