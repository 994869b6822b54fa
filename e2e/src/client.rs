//! The tests' HTTP/1.1 client.
//!
//! Ordinary requests go through `ureq` ([`Client`], [`get`], [`request`], [`try_request`]): a
//! fresh connection per request, every status returned as a value, no redirects followed, no
//! proxy taken from the environment, and no header added but `host: localhost` (unless given)
//! and the body's `content-length`.
//!
//! Raw sockets remain only where a test needs control of the wire: [`Connection`],
//! [`stream`] / [`StreamingResponse`], [`send_and_disconnect`] and [`get_with_trailers`]. Each
//! says why a library client does not serve there.

use crate::wire::{Head, Wire, chunk};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use ureq::config::AutoHeaderValue;
use ureq::http;

/// Read/write timeout used unless a caller sets another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Header map: lower-case names, all values in arrival order.
pub type Headers = BTreeMap<String, Vec<String>>;

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Headers,
    /// The decoded body.
    pub body: Vec<u8>,
    /// Trailers of a chunked body (lower-case names). Only raw connections read them
    /// ([`get_with_trailers`], [`Connection::request`]); empty for [`Client`] responses.
    pub trailers: Headers,
}

impl Response {
    /// First value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.headers, name)
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The body parsed as JSON, or `None` if it is not JSON.
    pub fn try_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

fn first<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.get(&name.to_ascii_lowercase())
        .and_then(|v| v.first())
        .map(|s| s.as_str())
}

fn to_map(pairs: Vec<(String, String)>) -> Headers {
    let mut m = Headers::new();
    for (k, v) in pairs {
        m.entry(k).or_default().push(v);
    }
    m
}

/// A `ureq` agent set up for tests (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    /// A fresh connection for every request; `timeout` bounds connecting and each read and write.
    pub fn new(timeout: Duration) -> Client {
        Client::build(timeout, 0)
    }

    /// Keeps the connection to a server open for the next request (a new one once the server
    /// closed it); `timeout` as in [`Client::new`]. Each clone shares the same pool.
    pub fn keep_alive(timeout: Duration) -> Client {
        Client::build(timeout, 1)
    }

    fn build(timeout: Duration, idle: usize) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(AutoHeaderValue::None)
            .accept(AutoHeaderValue::None)
            .accept_encoding(AutoHeaderValue::None)
            .allow_non_standard_methods(true)
            .max_idle_connections(idle)
            .max_idle_connections_per_host(idle)
            .timeout_connect(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .build();
        Client {
            agent: config.into(),
        }
    }

    /// One request to `127.0.0.1:port`. `content-length` goes out when there is a body or the
    /// method usually has one (POST, PUT, PATCH).
    pub fn request(
        &self,
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{port}{path}"));
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req = req.header("host", "localhost");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let sent = if body.is_empty() && !matches!(method, "POST" | "PUT" | "PATCH") {
            req.body(()).map(|r| self.agent.run(r))
        } else {
            req.body(body).map(|r| self.agent.run(r))
        };
        let resp = sent
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .map_err(to_io)?;
        let (parts, mut body) = resp.into_parts();
        let body = body
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(to_io)?;
        let mut headers = Headers::new();
        for (k, v) in &parts.headers {
            headers
                .entry(k.as_str().to_string())
                .or_default()
                .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
        }
        Ok(Response {
            status: parts.status.as_u16(),
            headers,
            body,
            trailers: Headers::new(),
        })
    }
}

fn to_io(e: ureq::Error) -> io::Error {
    match e {
        ureq::Error::Timeout(t) => io::Error::new(io::ErrorKind::TimedOut, format!("timeout: {t}")),
        e => e.into_io(),
    }
}

/// The client behind [`get`], [`request`] and [`try_request`]: fresh connections,
/// [`DEFAULT_TIMEOUT`].
fn shared() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| Client::new(DEFAULT_TIMEOUT))
}

/// `GET path` on `127.0.0.1:port`; panics on I/O errors.
pub fn get(port: u16, path: &str) -> Response {
    request(port, "GET", path, &[], b"")
}

/// One request on a fresh connection; panics (naming the request) on I/O errors.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on 127.0.0.1:{port} failed: {e}"))
}

/// One request on a fresh connection.
pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    shared().request(port, method, path, headers, body)
}

/// `GET path` on a raw connection, keeping the response's trailers.
///
/// Raw because `ureq` decodes a chunked body but drops its trailers.
pub fn get_with_trailers(port: u16, path: &str) -> Response {
    Connection::open(port)
        .and_then(|mut c| c.request("GET", path, &[], b""))
        .unwrap_or_else(|e| panic!("GET {path} on 127.0.0.1:{port} failed: {e}"))
}

/// Sends `raw` bytes, waits `wait_before_close`, then closes the connection. Returns whatever
/// bytes arrived meanwhile (a disconnect test usually ignores them).
///
/// Raw because the point is an incomplete request (a head without its body, a body cut
/// short) and a client that leaves; a library client sends whole requests and waits for the
/// answer.
pub fn send_and_disconnect(
    port: u16,
    raw: &[u8],
    wait_before_close: Duration,
) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(raw)?;
    s.flush()?;
    let mut got = Vec::new();
    let deadline = Instant::now() + wait_before_close;
    s.set_read_timeout(Some(Duration::from_millis(20)))?;
    while Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        match io::Read::read(&mut s, &mut buf) {
            Ok(0) => {
                std::thread::sleep(Duration::from_millis(20).min(deadline - Instant::now()));
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = s.shutdown(Shutdown::Both);
    Ok(got)
}

/// One raw client connection (keep-alive capable).
///
/// Raw because the tests that use it need the wire: several requests on the same connection
/// for certain (a library pool reconnects silently), that connection's local address, what
/// happens on it after an answer, request bodies sent chunked with pauses between chunks,
/// hand-written bytes, and response trailers.
pub struct Connection {
    wire: Wire<TcpStream>,
}

impl Connection {
    /// Connects to `127.0.0.1:port` with [`DEFAULT_TIMEOUT`] for reads and writes.
    pub fn open(port: u16) -> io::Result<Connection> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
        s.set_write_timeout(Some(DEFAULT_TIMEOUT))?;
        Ok(Connection { wire: Wire::new(s) })
    }

    /// Changes the read/write timeout.
    pub fn set_timeout(&self, t: Duration) -> io::Result<()> {
        self.wire.inner.set_read_timeout(Some(t))?;
        self.wire.inner.set_write_timeout(Some(t))
    }

    /// The socket itself (for shutdowns and other raw operations).
    pub fn stream(&self) -> &TcpStream {
        &self.wire.inner
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wire.inner.write_all(bytes)?;
        self.wire.inner.flush()
    }

    /// Sends a request with a content-length body. Adds `host: localhost` and `content-length`
    /// unless given (content-length only when there is a body or the method usually has one).
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let mut head = request_head(method, path, headers);
        let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        if !has("content-length")
            && !has("transfer-encoding")
            && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH"))
        {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes)
    }

    /// Sends a request whose body goes out chunked, one write per chunk, `pause` between chunks.
    pub fn send_chunked(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        chunks: &[&[u8]],
        pause: Duration,
    ) -> io::Result<()> {
        let mut head = request_head(method, path, headers);
        head.push_str("transfer-encoding: chunked\r\n\r\n");
        self.send_raw(head.as_bytes())?;
        for (i, c) in chunks.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(pause);
            }
            if !c.is_empty() {
                self.send_raw(&chunk(c))?;
            }
        }
        self.send_raw(b"0\r\n\r\n")
    }

    /// Sends a request and reads its response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        self.send(method, path, headers, body)?;
        self.read_response(method)
    }

    /// Reads one complete response (skipping 1xx). `method` tells whether a body can follow.
    pub fn read_response(&mut self, method: &str) -> io::Result<Response> {
        let (status, head) = self.read_final_head()?;
        let mut reader = BodyReader::new(framing(method, status, &head)?);
        let mut body = Vec::new();
        while let Some(b) = reader.next(&mut self.wire, 64 * 1024)? {
            body.extend_from_slice(&b);
        }
        Ok(Response {
            status,
            headers: to_map(head.headers),
            body,
            trailers: reader.trailers,
        })
    }

    fn read_final_head(&mut self) -> io::Result<(u16, Head)> {
        loop {
            let (status, head) = self.wire.read_response_head()?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before response",
                )
            })?;
            if !(100..200).contains(&status) || status == 101 {
                return Ok((status, head));
            }
        }
    }

    /// Reads the response head and returns a reader for the body as it arrives.
    pub fn stream_response(mut self, method: &str) -> io::Result<StreamingResponse> {
        let started = Instant::now();
        let (status, head) = self.read_final_head()?;
        let head_after = started.elapsed();
        let body = BodyReader::new(framing(method, status, &head)?);
        Ok(StreamingResponse {
            status,
            headers: to_map(head.headers),
            trailers: Headers::new(),
            started,
            head_after,
            first_body_byte_after: None,
            body,
            conn: self,
        })
    }
}

fn request_head(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str("host: localhost\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    None,
    Length(usize),
    Chunked,
    Close,
}

fn framing(method: &str, status: u16, head: &Head) -> io::Result<Framing> {
    if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Framing::None);
    }
    if head.is_chunked() {
        return Ok(Framing::Chunked);
    }
    Ok(match head.content_length()? {
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// Decodes a response body from a raw connection as it arrives.
struct BodyReader {
    framing: Framing,
    chunk_left: usize,
    done: bool,
    trailers: Headers,
}

impl BodyReader {
    fn new(framing: Framing) -> BodyReader {
        BodyReader {
            framing,
            chunk_left: 0,
            done: matches!(framing, Framing::None | Framing::Length(0)),
            trailers: Headers::new(),
        }
    }

    /// The next decoded bytes (at most `max`, as they arrive); `None` at the end of the body.
    fn next(&mut self, wire: &mut Wire<TcpStream>, max: usize) -> io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let cut = |what: &str| io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string());
        let max = max.max(1);
        Ok(Some(match self.framing {
            Framing::None => Vec::new(),
            Framing::Length(ref mut left) => {
                let b = wire.read_some(max.min(*left))?;
                if b.is_empty() {
                    return Err(cut("body cut short"));
                }
                *left -= b.len();
                self.done = *left == 0;
                b
            }
            Framing::Close => {
                let b = wire.read_some(max)?;
                if b.is_empty() {
                    self.done = true;
                    return Ok(None);
                }
                b
            }
            Framing::Chunked => {
                if self.chunk_left == 0 {
                    self.chunk_left = wire.read_chunk_size()?;
                    if self.chunk_left == 0 {
                        self.trailers = to_map(wire.read_trailers()?);
                        self.done = true;
                        return Ok(None);
                    }
                }
                let b = wire.read_some(max.min(self.chunk_left))?;
                if b.is_empty() {
                    return Err(cut("chunk cut short"));
                }
                self.chunk_left -= b.len();
                if self.chunk_left == 0 {
                    wire.expect_crlf()?;
                }
                b
            }
        }))
    }
}

/// Sends a request on a fresh raw connection and returns once the response head arrived.
///
/// Raw because the tests time the body's arrival byte by byte (head, first byte, each
/// event), stall or read slowly for backpressure, leave mid-body, and tell a body cut short
/// (`UnexpectedEof`) from one that ended; a library client hides all of that behind its own
/// buffering and error mapping.
pub fn stream(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<StreamingResponse> {
    let mut c = Connection::open(port)?;
    c.send(method, path, headers, body)?;
    c.stream_response(method)
}

/// A response whose body is read incrementally, with timings (see [`stream`]).
pub struct StreamingResponse {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Headers,
    /// Trailers, filled once a chunked body ended.
    pub trailers: Headers,
    started: Instant,
    head_after: Duration,
    first_body_byte_after: Option<Duration>,
    body: BodyReader,
    conn: Connection,
}

impl StreamingResponse {
    /// First value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.headers, name)
    }

    /// Time from starting to wait for the response until its head arrived.
    pub fn head_after(&self) -> Duration {
        self.head_after
    }

    /// Time from starting to wait until the first body byte arrived (once one did).
    pub fn first_body_byte_after(&self) -> Option<Duration> {
        self.first_body_byte_after
    }

    /// The next decoded body bytes as they arrive (at most `max`); `None` at the end of the body.
    pub fn next_bytes(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        let out = self.body.next(&mut self.conn.wire, max)?;
        if self.body.done {
            self.trailers = std::mem::take(&mut self.body.trailers);
        }
        if self.first_body_byte_after.is_none() && out.as_ref().is_some_and(|b| !b.is_empty()) {
            self.first_body_byte_after = Some(self.started.elapsed());
        }
        Ok(out)
    }

    /// Reads the rest of the body.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(b) = self.next_bytes(64 * 1024)? {
            body.extend_from_slice(&b);
        }
        Ok(body)
    }

    /// Reads the rest slowly: at most `per_read` bytes, then sleeps `pause` (for backpressure tests).
    pub fn read_slowly(&mut self, per_read: usize, pause: Duration) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(b) = self.next_bytes(per_read)? {
            body.extend_from_slice(&b);
            std::thread::sleep(pause);
        }
        Ok(body)
    }

    /// The connection (e.g. to drop it mid-body, or to reuse it after the body ended).
    pub fn into_connection(self) -> Connection {
        self.conn
    }
}
