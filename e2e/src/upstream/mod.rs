//! A real HTTP/1.1 upstream server on an OS-chosen loopback port: echo by default, or any
//! handler. One thread per connection, keep-alive, `Connection: close` honoured.

mod echo;
mod writer;

pub use echo::{echo, echo_json, fnv1a64, pattern};
pub use writer::ResponseWriter;
use writer::State;

use crate::wire::Wire;
use std::io;
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
struct Shared {
    name: Arc<str>,
    handler: Box<Handler>,
    requests: Mutex<Vec<UpstreamRequest>>,
    connections: Mutex<Vec<TcpStream>>,
    accepted: AtomicUsize,
    stop: AtomicBool,
    record: AtomicBool,
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
            record: AtomicBool::new(true),
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

    /// Stops keeping received requests for [`Upstream::requests`] (long runs such as the soak
    /// would otherwise hold every body in memory).
    pub fn stop_recording(&self) {
        self.shared.record.store(false, Ordering::SeqCst);
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
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    // However this ends (idle timeout, bad request, close), shut the socket down: the acceptor
    // keeps a clone of every connection, and a socket left open with nobody reading it would
    // take Envoy's next request on that pooled connection and never answer.
    struct Close(TcpStream);
    impl Drop for Close {
        fn drop(&mut self) {
            let _ = self.0.shutdown(Shutdown::Both);
        }
    }
    let _close = stream.try_clone().map(Close);
    let mut wire = Wire::new(stream);
    while !sh.stop.load(Ordering::SeqCst) {
        let req = match read_request(&mut wire, id) {
            Ok(Some(r)) => r,
            _ => return,
        };
        let wants_close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if sh.record.load(Ordering::Relaxed) {
            sh.requests.lock().unwrap().push(req.clone());
        }
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
    let Some((method, path, head)) = wire.read_request_head()? else {
        return Ok(None);
    };
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

/// A TCP echo server on a free port of 127.0.0.1, for network filters: each connection gets
/// back what it sends, and its write side is shut down when the client half-closes. It
/// serves until the test process ends; returns its port.
pub fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let port = l.local_addr().expect("echo address").port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = s.shutdown(Shutdown::Write);
                            return;
                        }
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}
