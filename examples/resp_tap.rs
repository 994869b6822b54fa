//! `resp_tap`: an Observe response handler that counts response body bytes as they pass.
//!
//! Filter `tap` ([`ResponseMode::Observe`]): headers and body go to the client without waiting
//! for the handler; the handler reads each chunk while it passes.
//!
//! - counter `resp_tap_bytes_total`: body bytes seen, added chunk by chunk;
//! - metadata `resp_tap:bytes`: the body length, set when the body ended;
//! - when the stream ends before the body did (upstream closed or reset mid-body, client gone),
//!   the read returns `BodyError::Aborted`: counter `resp_tap_aborted_total` goes up by one and
//!   metadata `resp_tap:aborted_after` holds the bytes seen until then;
//! - request header `x-resp-panic`: the handler panics after the first body chunk. The
//!   headers already went to the client, so jisr resets the stream.
//!
//! Filter `ended` ([`ResponseMode::Observe`]) reads nothing: it waits for the end of the
//! response with [`Response::finished`] while everything flows, then sets metadata
//! `resp_tap:ended` to `complete` (or `cut` when the stream ended first) and
//! `resp_tap:status` to the status.

use jisr::{
    ConfigError, ConfigHandle, Counter, Registry, Request, Response, ResponseMode, ResponseWriter,
    handler::BodyError,
};

struct Tap {
    bytes: Counter,
    aborted: Counter,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Tap, ConfigError> {
    Ok(Tap {
        bytes: cfg.counter("resp_tap_bytes_total", &[])?,
        aborted: cfg.counter("resp_tap_aborted_total", &[])?,
    })
}

/// Whether the response handler should panic.
async fn remember(_tap: &Tap, mut req: Request<'_>, _w: ResponseWriter<'_>) -> bool {
    req.skip_body();
    req.header("x-resp-panic").is_some()
}

async fn count(tap: &Tap, panic: bool, mut resp: Response<'_>, w: ResponseWriter<'_>) {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        match resp.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                let _ = w.counter_add(tap.bytes, &[], n as u64);
                if panic {
                    panic!("resp_tap: asked to panic by x-resp-panic after {total} bytes");
                }
            }
            // `read` has no size limit, so the only error is an aborted stream.
            Err(BodyError::Aborted | BodyError::TooLarge { .. }) => {
                let _ = w.counter_inc(tap.aborted, &[]);
                w.set_metadata_num("resp_tap", "aborted_after", total as f64);
                return;
            }
        }
    }
    w.set_metadata_num("resp_tap", "bytes", total as f64);
}

/// Acts at the end of the response without reading or copying its body.
async fn at_end(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    let outcome = match resp.finished().await {
        Ok(()) => "complete",
        Err(_) => "cut",
    };
    w.set_metadata_str("resp_tap", "ended", outcome);
    w.set_metadata_num("resp_tap", "status", f64::from(resp.status().unwrap_or(0)));
}

fn register(r: &mut Registry) {
    r.filter("tap")
        .state(load)
        .respond(ResponseMode::Observe, remember, count);
    // Response handler only: the request passes untouched.
    r.filter("ended").on_response(ResponseMode::Observe, at_end);
}

jisr::export!(register);
