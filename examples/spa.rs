//! `spa`: a small single-page app served from the module itself with local replies.
//!
//! Filter `spa` (request phase only; nothing goes upstream):
//!
//! - `/` and `/index.html`: the page, `text/html; charset=utf-8`, `cache-control: no-cache`;
//! - `/app.js`, `/style.css`: assets with their content type and
//!   `cache-control: public, max-age=31536000, immutable`;
//! - every file has an `etag`; a matching `if-none-match` gets `304` without a body;
//! - `/big.bin`: a large generated asset (`application/octet-stream`), streamed in 64 KiB
//!   chunks through [`jisr::response::StreamWriter`], which waits while the client is not keeping up.
//!   Its size is the `filter_config` (bytes; default 2 MiB). Byte `i` is [`big_byte`]`(i)`.
//!   Counter `spa_big_chunks_total` counts the chunks handed to Envoy, so a stalled client
//!   shows up as a count that stops growing;
//! - any other path: `index.html` (client-side routing), with `x-spa-fallback: 1`;
//! - a method other than GET: `405`.

use jisr::{ConfigError, ConfigHandle, Counter, Registry, Request, ResponseWriter};
use std::sync::OnceLock;

const INDEX: &[u8] = b"<!doctype html>
<html>
<head><meta charset=\"utf-8\"><title>jisr spa</title><link rel=\"stylesheet\" href=\"/style.css\"></head>
<body><div id=\"app\">loading</div><script src=\"/app.js\"></script></body>
</html>
";
const APP_JS: &[u8] =
    b"document.getElementById('app').textContent = 'served by jisr at ' + location.pathname;\n";
const STYLE_CSS: &[u8] = b"body { font-family: sans-serif; margin: 2em; }\n#app { color: #246; }\n";

const HTML: &[u8] = b"text/html; charset=utf-8";
const NO_CACHE: &[u8] = b"no-cache";
const IMMUTABLE: &[u8] = b"public, max-age=31536000, immutable";
const CHUNK: usize = 64 * 1024;

/// Byte `i` of `/big.bin`: a fixed pseudo-random sequence (the top byte of a multiplicative hash).
pub const fn big_byte(i: usize) -> u8 {
    ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8
}

struct File {
    body: &'static [u8],
    content_type: &'static [u8],
    cache: &'static [u8],
    etag: String,
}

fn file(body: &'static [u8], content_type: &'static [u8], cache: &'static [u8]) -> File {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    File {
        body,
        content_type,
        cache,
        etag: format!("\"{h:016x}\""),
    }
}

struct Spa {
    index: File,
    app_js: File,
    style_css: File,
    big_size: usize,
    big: OnceLock<Vec<u8>>,
    big_chunks: Counter,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Spa, ConfigError> {
    let text = cfg.config_str()?.trim();
    let big_size = if text.is_empty() {
        2 * 1024 * 1024
    } else {
        text.parse()
            .map_err(|e| ConfigError::new(format!("big asset size must be a byte count: {e}")))?
    };
    Ok(Spa {
        index: file(INDEX, HTML, NO_CACHE),
        app_js: file(APP_JS, b"text/javascript; charset=utf-8", IMMUTABLE),
        style_css: file(STYLE_CSS, b"text/css; charset=utf-8", IMMUTABLE),
        big_size,
        big: OnceLock::new(),
        big_chunks: cfg.counter("spa_big_chunks_total", &[])?,
    })
}

async fn serve(spa: &Spa, mut req: Request<'_>, w: ResponseWriter<'_>) {
    req.skip_body();
    if req.method() != Some("GET") {
        w.send_with(
            405,
            &[("allow", b"GET")],
            b"method not allowed\n",
            "spa_method",
        );
        return;
    }
    let path = req.path().unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let (f, fallback) = match path {
        "/" | "/index.html" => (&spa.index, false),
        "/app.js" => (&spa.app_js, false),
        "/style.css" => (&spa.style_css, false),
        "/big.bin" => return big(spa, w).await,
        _ => (&spa.index, true),
    };
    let not_modified = req
        .header("if-none-match")
        .is_some_and(|v| v == f.etag.as_bytes());
    let mut headers: Vec<(&str, &[u8])> =
        vec![("cache-control", f.cache), ("etag", f.etag.as_bytes())];
    if fallback {
        headers.push(("x-spa-fallback", b"1"));
    }
    if not_modified {
        w.send_with(304, &headers, b"", "spa_not_modified");
    } else {
        headers.push(("content-type", f.content_type));
        w.send_with(200, &headers, f.body, "spa_file");
    }
}

async fn big(spa: &Spa, w: ResponseWriter<'_>) {
    let data = spa
        .big
        .get_or_init(|| (0..spa.big_size).map(big_byte).collect());
    let len = data.len().to_string();
    let Ok(mut out) = w.stream(
        200,
        &[
            ("content-type", b"application/octet-stream"),
            ("content-length", len.as_bytes()),
            ("cache-control", IMMUTABLE),
        ],
    ) else {
        return;
    };
    for chunk in data.chunks(CHUNK) {
        if out.send(chunk).await.is_err() {
            return; // client gone
        }
        let _ = w.counter_inc(spa.big_chunks, &[]);
    }
    out.finish();
}

fn register(r: &mut Registry) {
    r.filter("spa").state(load).handle(serve);
}

jisr::export!(register);
