//! `resp_rewrite`: a Buffer response handler that edits JSON bodies, and a request handler
//! that reads request trailers.
//!
//! - `rewrite` ([`ResponseMode::Buffer`]): for a response with `content-type:
//!   application/json` whose body is a JSON object, adds `"x_jisr_rewritten": true` and
//!   replaces the body (jisr fixes `content-length`; a chunked response stays chunked). Any
//!   other body is left untouched. Response header `x-jisr-rewrite` says what happened
//!   (`rewritten`, `not-json`, `not-an-object`, `skipped`). If the response has trailers, they
//!   arrive before the handler finishes; `x-jisr-saw-trailers` lists their names.
//! - `req_trailers` (request phase only): reads the whole request body, then copies the request
//!   trailer `x-req-checksum` (if any) into request header `x-jisr-req-checksum` and metadata
//!   `resp_rewrite:req_checksum`, and the body length into `x-jisr-req-body-len`.

use jisr::{Registry, Request, Response, ResponseMode, ResponseWriter};

fn is_json(resp: &Response<'_>) -> bool {
    resp.header_str("content-type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

async fn rewrite(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    if !is_json(&resp) {
        resp.skip_body();
        let _ = resp.set_header("x-jisr-rewrite", "skipped");
        return;
    }
    let mut body = Vec::new();
    if resp.read_to_end(&mut body).await.is_err() {
        return;
    }
    let mut trailers = Vec::new();
    for name in ["x-checksum", "grpc-status"] {
        if resp.trailer(name).is_some() {
            trailers.push(name);
        }
    }
    if !trailers.is_empty() {
        let _ = resp.set_header("x-jisr-saw-trailers", trailers.join(","));
    }
    let outcome = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert("x_jisr_rewritten".into(), serde_json::Value::Bool(true));
            let new = serde_json::to_vec(&map).unwrap_or(body);
            match resp.replace_body(&new) {
                Ok(()) => "rewritten",
                Err(e) => {
                    w.log(jisr::Level::Warn, format_args!("resp_rewrite: {e}"));
                    "refused"
                }
            }
        }
        Ok(_) => "not-an-object",
        Err(_) => "not-json",
    };
    let _ = resp.set_header("x-jisr-rewrite", outcome);
}

async fn req_trailers(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let mut body = Vec::new();
    let Ok(len) = req.read_to_end(&mut body).await else {
        return;
    };
    let checksum = req
        .trailer("x-req-checksum")
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let _ = req.set_header("x-jisr-req-body-len", len.to_string());
    if let Some(c) = checksum {
        let _ = req.set_header("x-jisr-req-checksum", &c);
        w.set_metadata_str("resp_rewrite", "req_checksum", &c);
    }
}

fn register(r: &mut Registry) {
    // Response handler only: the request passes untouched.
    r.filter("rewrite")
        .on_response(ResponseMode::Buffer, rewrite);
    r.register("req_trailers", req_trailers);
}

jisr::export!(register);
