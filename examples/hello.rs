//! `hello`: logging middleware, then a handler that tags the request.
//!
//! Filters in this module:
//! - `hello`: logs `request filter=hello method=GET path=/...`, skips the body, sets request
//!   header `x-hello: from-jisr`, sets metadata `jisr:filter=hello`, counts
//!   `hello_requests_total`.
//! - `attrs`: copies stream attributes into request headers (`x-attr-*`), so the upstream
//!   shows what Envoy reported.

use jisr::{
    Attr, ConfigError, ConfigHandle, Counter, Level, LogValue, Next, Registry, Request,
    ResponseWriter, chain,
};

/// Per-config state: the metric defined once per config.
struct Hello {
    requests: Counter,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Hello, ConfigError> {
    Ok(Hello {
        requests: cfg.counter("hello_requests_total", &[])?,
    })
}

/// Middleware: one structured line per request, then the rest of the chain.
async fn log_requests(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
    w.log_attrs(
        Level::Info,
        "request",
        &[
            ("method", LogValue::Str(req.method().unwrap_or("-"))),
            ("path", LogValue::Str(req.path().unwrap_or("-"))),
        ],
    );
    next.run(&mut req, &mut w).await;
}

async fn hello(state: &Hello, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let _ = req.set_header("x-hello", "from-jisr");
    w.set_metadata_str("jisr", "filter", "hello");
    let _ = w.counter_inc(state.requests, &[]);
}

async fn attrs(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    let text = |req: &Request<'_>, a: Attr| {
        req.attr_str(a)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let pairs = [
        ("x-attr-path", text(&req, Attr::PATH)),
        ("x-attr-method", text(&req, Attr::METHOD)),
        ("x-attr-host", text(&req, Attr::HOST)),
        ("x-attr-scheme", text(&req, Attr::SCHEME)),
        ("x-attr-protocol", text(&req, Attr::PROTOCOL)),
        ("x-attr-user-agent", text(&req, Attr::USER_AGENT)),
        ("x-attr-source", text(&req, Attr::SOURCE_ADDRESS)),
        ("x-attr-request-id", text(&req, Attr::REQUEST_ID)),
        (
            "x-attr-source-port",
            req.attr_int(Attr::SOURCE_PORT).map(|p| p.to_string()),
        ),
        ("x-attr-filter", Some(req.filter_name().to_owned())),
    ];
    for (name, value) in pairs {
        if let Some(v) = value {
            let _ = req.set_header(name, v);
        }
    }
}

fn register(r: &mut Registry) {
    r.filter("hello")
        .state(load)
        .handle(chain(log_requests, hello));
    r.register("attrs", attrs);
}

jisr::export!(register);
