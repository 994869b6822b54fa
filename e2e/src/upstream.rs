//! A real HTTP/1.1 upstream server on an OS-chosen loopback port: echo by default, or any
//! handler. One thread per connection, keep-alive, `Connection: close` honoured.

use crate::json::escape_into;
use crate::wire::{Wire, chunk};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Idle time after which the server drops a keep-alive connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Method.
    pub method: String,
    /// Request target, with query string.
    pub path: String,
    /// Headers, lower-case names, arrival order.
    pub headers: Vec<(String, String)>,
    /// The full decoded body.
    pub body: Vec<u8>,
    /// Trailers of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// Which accepted connection carried it (0-based).
    pub connection: usize,
}

impl UpstreamRequest {
    /// First value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    /// Query parameter `name` (no percent-decoding).
    pub fn query(&self, name: &str) -> Option<&str> {
        let q = self.path.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

/// Handler signature for [`Upstream::start_with`].
pub type Handler = dyn Fn(&UpstreamRequest, &mut ResponseWriter) + Send + Sync + 'static;

#[derive(PartialEq)]
enum State {
    Fresh,
    Chunked,
    Done,
    Closed,
}

/// Writes one response. Nothing is sent until a body method is called; whatever the handler
/// leaves unfinished is completed after it returns (empty body, or the terminal chunk).
pub struct ResponseWriter<'a> {
    stream: &'a mut TcpStream,
    status: u16,
    headers: Vec<(String, String)>,
    trailers: Vec<(String, String)>,
    state: State,
    close_after: bool,
    server: Arc<str>,
}

impl ResponseWriter<'_> {
    /// Sets the status (default 200). Ignored once the head is sent.
    pub fn status(&mut self, code: u16) -> &mut Self {
        self.status = code;
        self
    }

    /// Adds a response header. Ignored once the head is sent.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            self.close_after = true;
        }
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a trailer sent after the last chunk (chunked responses only).
    pub fn trailer(&mut self, name: &str, value: &str) -> &mut Self {
        self.trailers.push((name.into(), value.into()));
        self
    }

    fn head(&self, extra: &str) -> String {
        let mut h = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            let _ = write!(h, "{k}: {v}\r\n");
        }
        h.push_str(extra);
        h.push_str("\r\n");
        h
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        if self
            .stream
            .write_all(bytes)
            .and_then(|_| self.stream.flush())
            .is_err()
        {
            self.state = State::Closed;
        }
    }

    /// Sends the whole response with a content-length body.
    pub fn send(&mut self, body: &[u8]) {
        if self.state != State::Fresh {
            return;
        }
        let mut out = self
            .head(&format!("content-length: {}\r\n", body.len()))
            .into_bytes();
        out.extend_from_slice(body);
        self.write(&out);
        if self.state != State::Closed {
            self.state = State::Done;
        }
    }

    /// Sends the head of a chunked response now (useful before a delay).
    pub fn start_chunked(&mut self) {
        if self.state == State::Fresh {
            let h = self.head("transfer-encoding: chunked\r\n");
            self.write(h.as_bytes());
            if self.state != State::Closed {
                self.state = State::Chunked;
            }
        }
    }

    /// Sends one body chunk and flushes (starting a chunked response if needed).
    pub fn chunk(&mut self, data: &[u8]) {
        self.start_chunked();
        if self.state == State::Chunked && !data.is_empty() {
            self.write(&chunk(data));
        }
    }

    /// Ends a chunked response: terminal chunk plus trailers.
    pub fn finish(&mut self) {
        self.start_chunked();
        if self.state == State::Chunked {
            let mut end = String::from("0\r\n");
            for (k, v) in &self.trailers {
                let _ = write!(end, "{k}: {v}\r\n");
            }
            end.push_str("\r\n");
            self.write(end.as_bytes());
            if self.state != State::Closed {
                self.state = State::Done;
            }
        }
    }

    /// Writes raw bytes as they are (for malformed responses). The harness adds nothing after.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.write(bytes);
        if self.state != State::Closed {
            self.state = State::Done;
        }
        self.close_after = true;
    }

    /// Sleeps (so handlers read as a script).
    pub fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    /// Closes the connection now with a FIN, whatever was sent so far.
    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        self.state = State::Closed;
    }

    /// Resets the connection now (RST: SO_LINGER 0, then close).
    pub fn reset(&mut self) {
        set_linger_zero(self.stream);
        let _ = self.stream.shutdown(Shutdown::Read);
        self.state = State::Closed;
        self.close_after = true;
    }

    /// The name of the upstream serving this response.
    pub fn server_name(&self) -> &str {
        &self.server
    }

    /// True once the connection broke or was closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
}

#[cfg(target_os = "linux")]
fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        onoff: i32,
        linger: i32,
    }
    unsafe extern "C" {
        fn setsockopt(
            fd: i32,
            level: i32,
            name: i32,
            val: *const std::ffi::c_void,
            len: u32,
        ) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let l = Linger {
        onoff: 1,
        linger: 0,
    };
    // SAFETY: valid fd owned by `s`; `l` outlives the call and the length matches its size.
    unsafe {
        setsockopt(
            s.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            (&l as *const Linger).cast(),
            std::mem::size_of::<Linger>() as u32,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn set_linger_zero(_s: &TcpStream) {}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

struct Shared {
    name: Arc<str>,
    handler: Box<Handler>,
    requests: Mutex<Vec<UpstreamRequest>>,
    connections: Mutex<Vec<TcpStream>>,
    accepted: AtomicUsize,
    stop: AtomicBool,
}

/// A running upstream server; stops on drop.
pub struct Upstream {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Upstream {
    /// The echo server (see [`echo`]) named `name`; custom handlers can fall back to [`echo`].
    pub fn start(name: &str) -> Upstream {
        Upstream::start_with(name, echo)
    }

    /// A server answering every request with `handler`.
    pub fn start_with(
        name: &str,
        handler: impl Fn(&UpstreamRequest, &mut ResponseWriter) + Send + Sync + 'static,
    ) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("upstream addr").port();
        let shared = Arc::new(Shared {
            name: name.into(),
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
            connections: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("upstream-{name}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if sh.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let id = sh.accepted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(c) = conn.try_clone() {
                        sh.connections.lock().unwrap().push(c);
                    }
                    let sh2 = sh.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("upstream-{}-{id}", sh.name))
                        .spawn(move || serve(sh2, conn, id));
                }
            })
            .expect("spawn upstream acceptor");
        Upstream {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The name given at start (echoed as `"server"`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// All requests received so far (complete, with bodies).
    pub fn requests(&self) -> Vec<UpstreamRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for c in self.shared.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn serve(sh: Arc<Shared>, stream: TcpStream, id: usize) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut wire = Wire::new(stream);
    while !sh.stop.load(Ordering::SeqCst) {
        let req = match read_request(&mut wire, id) {
            Ok(Some(r)) => r,
            _ => return,
        };
        let wants_close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        sh.requests.lock().unwrap().push(req.clone());
        let mut w = ResponseWriter {
            stream: &mut out,
            status: 200,
            headers: Vec::new(),
            trailers: Vec::new(),
            state: State::Fresh,
            close_after: wants_close,
            server: sh.name.clone(),
        };
        if wants_close {
            w.headers.push(("connection".into(), "close".into()));
        }
        (sh.handler)(&req, &mut w);
        match w.state {
            State::Fresh => w.send(b""),
            State::Chunked => w.finish(),
            _ => {}
        }
        if w.state == State::Closed || w.close_after {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn read_request(wire: &mut Wire<TcpStream>, id: usize) -> io::Result<Option<UpstreamRequest>> {
    let Some(head) = wire.read_head()? else {
        return Ok(None);
    };
    let mut parts = head.start_line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let (body, trailers) = if head.is_chunked() {
        wire.read_chunked()?
    } else {
        (
            wire.read_n(head.content_length()?.unwrap_or(0))?,
            Vec::new(),
        )
    };
    Ok(Some(UpstreamRequest {
        method,
        path,
        headers: head.headers,
        body,
        trailers,
        connection: id,
    }))
}

/// 64-bit FNV-1a of `data` (the echo's `body_fnv`, as `{:016x}`).
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `n` bytes of the deterministic pattern served by `/bytes/<n>` and `/stream`, starting at
/// offset `from` of the infinite pattern.
pub fn pattern(from: usize, n: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (from..from + n)
        .map(|i| ALPHABET[i % ALPHABET.len()])
        .collect()
}

/// The echo JSON for `req` as served by `server`.
pub fn echo_json(server: &str, req: &UpstreamRequest) -> String {
    let mut s = String::from("{\"server\":");
    escape_into(&mut s, server);
    s.push_str(",\"method\":");
    escape_into(&mut s, &req.method);
    s.push_str(",\"path\":");
    escape_into(&mut s, &req.path);
    s.push_str(",\"headers\":{");
    let mut names: Vec<&str> = Vec::new();
    for (k, _) in &req.headers {
        if !names.contains(&k.as_str()) {
            names.push(k);
        }
    }
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        escape_into(&mut s, name);
        s.push(':');
        let joined: Vec<&str> = req
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        escape_into(&mut s, &joined.join(","));
    }
    let _ = write!(
        s,
        "}},\"body_len\":{},\"body_fnv\":\"{:016x}\"}}",
        req.body.len(),
        fnv1a64(&req.body)
    );
    s
}

fn send_echo(req: &UpstreamRequest, w: &mut ResponseWriter, server: &str) {
    w.header("content-type", "application/json");
    w.send(echo_json(server, req).as_bytes());
}

/// The default handler. Paths:
/// - `/delay/<ms>`: sleep, then echo;
/// - `/status/<code>`: echo with that status;
/// - `/bytes/<n>`: `n` bytes of [`pattern`];
/// - `/stream?chunks=N&delay_ms=D&size=S`: N chunks of S pattern bytes, D ms apart
///   (defaults 3, 100, 16);
/// - anything else: 200 `application/json` echo (see [`echo_json`]).
pub fn echo(req: &UpstreamRequest, w: &mut ResponseWriter) {
    let server = w.server.clone();
    let path = req.path_only();
    let num = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
    };
    if let Some(ms) = num("/delay/") {
        w.sleep(Duration::from_millis(ms.min(60_000)));
        send_echo(req, w, &server);
    } else if let Some(code) = num("/status/") {
        w.status(code.clamp(100, 999) as u16);
        send_echo(req, w, &server);
    } else if let Some(n) = num("/bytes/") {
        w.header("content-type", "application/octet-stream");
        w.send(&pattern(0, n as usize));
    } else if path == "/stream" {
        let q = |k: &str, d: u64| req.query(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let (chunks, delay, size) = (q("chunks", 3), q("delay_ms", 100), q("size", 16) as usize);
        w.header("content-type", "application/octet-stream");
        w.start_chunked();
        for i in 0..chunks as usize {
            if i > 0 {
                w.sleep(Duration::from_millis(delay.min(60_000)));
            }
            w.chunk(&pattern(i * size, size));
            if w.is_closed() {
                return;
            }
        }
        w.finish();
    } else {
        send_echo(req, w, &server);
    }
}
