//! [`ResponseWriter`]: how a handler answers, from one complete body to chunks with delays,
//! trailers, raw bytes, or an abrupt close/reset.

use crate::wire::chunk;
use std::fmt::Write as _;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

#[derive(PartialEq)]
pub(super) enum State {
    Fresh,
    Chunked,
    Done,
    Closed,
}

/// Writes one response. Nothing is sent until a body method is called; whatever the handler
/// leaves unfinished is completed after it returns (empty body, or the terminal chunk).
pub struct ResponseWriter<'a> {
    pub(super) stream: &'a mut TcpStream,
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) trailers: Vec<(String, String)>,
    pub(super) state: State,
    pub(super) close_after: bool,
    pub(super) server: Arc<str>,
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

    pub(super) fn write(&mut self, bytes: &[u8]) {
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

    /// Sends one server-sent event as its own chunk (`event:` line if given, one `data:` line
    /// per line of `data`). Set `content-type: text/event-stream` before the first one.
    pub fn sse_event(&mut self, event: Option<&str>, data: &str) {
        let mut ev = String::new();
        if let Some(e) = event {
            let _ = writeln!(ev, "event: {e}");
        }
        for line in data.split('\n') {
            let _ = writeln!(ev, "data: {line}");
        }
        ev.push('\n');
        self.chunk(ev.as_bytes());
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
