//! `soundness_fixture`: filters that put jisr where Envoy may call back into it from inside a
//! call jisr makes, or free memory a handler still holds, for the `soundness` e2e tests. Each
//! one answers the client with what the handler saw, so a test can tell a right answer from a
//! lost or wrong one.
//!
//! - `stream_nohost`: opens a streaming callout `GET /` to the cluster named by `filter_config`
//!   (default `nohost`), awaits its head and reads its body to the end, then answers `200` with
//!   body `head=<status> body=<callout body>`, or `error=<error>` (after `head=<status> ` if
//!   the head came). For a cluster without a usable host, Envoy's router answers the callout
//!   (`503 no healthy upstream`) inside the call that opens it.
//! - `callout_nohost`: the same with a unary callout; answers `200` with
//!   `status=<status> body=<callout body>` or `error=<error>`.
//! - `buffer_reply` ([`ResponseMode::Buffer`]): the response handler keeps the view of the
//!   upstream's `content-type` it read, sets metadata `soundness:replying` to `502`, answers
//!   `502 replaced` instead of the upstream response, and then stores the kept value in
//!   metadata `soundness:ct`.

use jisr::{
    CalloutError, CalloutRequest, ConfigError, ConfigHandle, Registry, Request, Response,
    ResponseMode, ResponseWriter,
};

/// The callout target: a cluster name.
struct Target(String);

fn load_target(cfg: &mut ConfigHandle<'_>) -> Result<Target, ConfigError> {
    let name = cfg.config_str()?.trim();
    Ok(Target(if name.is_empty() {
        "nohost".into()
    } else {
        name.into()
    }))
}

/// Callout bodies are short texts; keep one line of printable ASCII.
fn printable(body: &[u8]) -> String {
    body.iter()
        .take_while(|b| (b' '..=b'~').contains(*b))
        .map(|&b| char::from(b))
        .collect()
}

async fn stream_nohost(t: &Target, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let mut seen = String::new();
    if let Err(e) = stream_exchange(&t.0, &w, &mut seen).await {
        seen.push_str(&format!("error={e}"));
    }
    w.send(200, seen.as_bytes());
}

/// Opens the streaming callout and appends what it sees to `seen`.
async fn stream_exchange(
    cluster: &str,
    w: &ResponseWriter<'_>,
    seen: &mut String,
) -> Result<(), CalloutError> {
    let mut s = w.stream_callout(CalloutRequest::get(cluster, "/", "svc"), true)?;
    let head = s.head().await?;
    seen.push_str(&format!("head={} ", head.status));
    let mut body = Vec::new();
    while s.read(&mut body).await? > 0 {}
    seen.push_str(&format!("body={}", printable(&body)));
    Ok(())
}

async fn callout_nohost(t: &Target, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    let mut body = Vec::new();
    let seen = match w
        .callout(CalloutRequest::get(&t.0, "/", "svc"), &mut body)
        .await
    {
        Ok(r) => format!("status={} body={}", r.status, printable(&body)),
        Err(e) => format!("error={e}"),
    };
    w.send(200, seen.as_bytes());
}

async fn pass(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    req.skip_body();
}

async fn buffer_reply(_: (), resp: Response<'_>, w: ResponseWriter<'_>) {
    // A view of the upstream's header, kept across the local reply on purpose.
    let ct = resp.header("content-type").unwrap_or(b"none");
    w.set_metadata_str("soundness", "replying", "502");
    w.send(502, b"replaced\n");
    w.set_metadata_str("soundness", "ct", &String::from_utf8_lossy(ct));
}

fn register(r: &mut Registry) {
    r.register_with_config("stream_nohost", load_target, stream_nohost);
    r.register_with_config("callout_nohost", load_target, callout_nohost);
    r.register_response("buffer_reply", ResponseMode::Buffer, pass, buffer_reply);
}

jisr::export!(register);
