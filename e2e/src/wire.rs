//! HTTP/1.1 framing shared by the upstream server and the raw client connections: buffered
//! reads of heads (parsed by `httparse`), content-length, chunked (with trailers) and
//! close-delimited bodies.

use httparse::{EMPTY_HEADER, Status};
use std::io::{self, Read};

/// Largest request/response head (or trailer block) accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// Most header (or trailer) lines accepted in one head.
const MAX_HEADERS: usize = 256;

/// Header or trailer pairs: lower-case names, arrival order.
pub(crate) type Pairs = Vec<(String, String)>;

/// The headers of a parsed message head (names lower-cased, order kept).
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) headers: Pairs,
}

impl Head {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn is_chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub(crate) fn content_length(&self) -> io::Result<Option<usize>> {
        match self.get("content-length") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("bad content-length {v:?}"))),
        }
    }
}

fn pairs(headers: &[httparse::Header<'_>]) -> Pairs {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect()
}

/// What one parse attempt on the buffered bytes gave: `None` = incomplete, else the bytes
/// consumed and the value.
type Parsed<T> = io::Result<Option<(usize, T)>>;

fn parsed<T>(
    what: &str,
    r: Result<Status<usize>, httparse::Error>,
    value: impl FnOnce() -> T,
) -> Parsed<T> {
    match r.map_err(|e| bad(format!("bad {what}: {e}")))? {
        Status::Partial => Ok(None),
        Status::Complete(n) => Ok(Some((n, value()))),
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn eof(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed while reading {what}"),
    )
}

/// A reader with a push-back buffer.
pub(crate) struct Wire<S> {
    pub(crate) inner: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: Read> Wire<S> {
    pub(crate) fn new(inner: S) -> Self {
        Wire {
            inner,
            buf: Vec::with_capacity(8192),
            pos: 0,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more bytes into the buffer; returns how many (0 = EOF).
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut tmp = [0u8; 16 * 1024];
        let n = loop {
            match self.inner.read(&mut tmp) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Runs `parse` on the buffered bytes, reading more until it completes; consumes what it
    /// parsed. `Ok(None)` on a clean EOF before the first byte.
    fn read_parsed<T>(
        &mut self,
        what: &str,
        mut parse: impl FnMut(&[u8]) -> Parsed<T>,
    ) -> io::Result<Option<T>> {
        loop {
            if let Some((n, v)) = parse(self.buffered())? {
                self.consume(n);
                return Ok(Some(v));
            }
            if self.buffered().len() > MAX_HEAD {
                return Err(bad(format!("{what} too large")));
            }
            if self.fill()? == 0 {
                return if self.buffered().is_empty() {
                    Ok(None)
                } else {
                    Err(eof(what))
                };
            }
        }
    }

    /// A request head: method, target and headers. `Ok(None)` on a clean EOF before it.
    pub(crate) fn read_request_head(&mut self) -> io::Result<Option<(String, String, Head)>> {
        self.read_parsed("request head", |buf| {
            let mut slots = [EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut slots);
            let r = req.parse(buf);
            parsed("request head", r, || {
                let head = Head {
                    headers: pairs(req.headers),
                };
                let method = req.method.unwrap_or_default().to_string();
                (method, req.path.unwrap_or_default().to_string(), head)
            })
        })
    }

    /// A response head: status and headers. `Ok(None)` on a clean EOF before it.
    pub(crate) fn read_response_head(&mut self) -> io::Result<Option<(u16, Head)>> {
        self.read_parsed("response head", |buf| {
            let mut slots = [EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut slots);
            let r = resp.parse(buf);
            parsed("response head", r, || {
                let head = Head {
                    headers: pairs(resp.headers),
                };
                (resp.code.unwrap_or_default(), head)
            })
        })
    }

    /// Exactly `n` bytes.
    pub(crate) fn read_n(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.buffered().is_empty() && self.fill()? == 0 {
                return Err(eof("body"));
            }
            let take = (n - out.len()).min(self.buffered().len());
            out.extend_from_slice(&self.buffered()[..take]);
            self.consume(take);
        }
        Ok(out)
    }

    /// Whatever is buffered, or the bytes of one read (at most `max`); empty at EOF.
    pub(crate) fn read_some(&mut self, max: usize) -> io::Result<Vec<u8>> {
        if self.buffered().is_empty() {
            self.fill()?;
        }
        let take = max.min(self.buffered().len());
        let out = self.buffered()[..take].to_vec();
        self.consume(take);
        Ok(out)
    }

    /// The size line of the next chunk (extensions ignored).
    pub(crate) fn read_chunk_size(&mut self) -> io::Result<usize> {
        self.read_parsed("chunk size", |buf| match httparse::parse_chunk_size(buf) {
            Ok(Status::Complete((n, size))) => Ok(Some((n, size as usize))),
            Ok(Status::Partial) => Ok(None),
            Err(_) => Err(bad("bad chunk size line")),
        })?
        .ok_or_else(|| eof("chunk size"))
    }

    /// Trailer lines after the last chunk, up to the empty line.
    pub(crate) fn read_trailers(&mut self) -> io::Result<Pairs> {
        self.read_parsed("trailers", |buf| {
            let mut slots = [EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(buf, &mut slots) {
                Ok(Status::Complete((n, headers))) => Ok(Some((n, pairs(headers)))),
                Ok(Status::Partial) => Ok(None),
                Err(e) => Err(bad(format!("bad trailers: {e}"))),
            }
        })?
        .ok_or_else(|| eof("trailers"))
    }

    /// A whole chunked body and its trailers.
    pub(crate) fn read_chunked(&mut self) -> io::Result<(Vec<u8>, Pairs)> {
        let mut body = Vec::new();
        loop {
            let n = self.read_chunk_size()?;
            if n == 0 {
                return Ok((body, self.read_trailers()?));
            }
            body.extend_from_slice(&self.read_n(n)?);
            self.expect_crlf()?;
        }
    }

    pub(crate) fn expect_crlf(&mut self) -> io::Result<()> {
        if self.read_n(2)? != b"\r\n" {
            return Err(bad("missing CRLF after chunk"));
        }
        Ok(())
    }
}

/// Encodes one chunk of a chunked body.
pub(crate) fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_and_chunked_body_with_trailers() {
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let mut w = Wire::new(&raw[..]);
        let (method, path, h) = w.read_request_head().unwrap().unwrap();
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/x"));
        assert_eq!(h.get("host"), Some("a"));
        assert!(h.is_chunked());
        let (body, trailers) = w.read_chunked().unwrap();
        assert_eq!(body, b"abcde");
        assert_eq!(trailers, vec![("x-t".to_string(), "1".to_string())]);
        assert_eq!(w.read_some(100).unwrap(), b"NEXT");
    }

    #[test]
    fn eof_before_head_is_none() {
        let mut w = Wire::new(&b""[..]);
        assert!(w.read_request_head().unwrap().is_none());
        let mut w = Wire::new(&b"GET / HT"[..]);
        assert!(w.read_request_head().is_err());
    }

    #[test]
    fn response_head_trims_values() {
        let mut w = Wire::new(&b"HTTP/1.1 204 No Content\r\nX-A:  b \r\n\r\n"[..]);
        let (status, h) = w.read_response_head().unwrap().unwrap();
        assert_eq!((status, h.get("x-a")), (204, Some("b")));
    }
}
