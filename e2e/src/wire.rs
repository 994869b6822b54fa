//! HTTP/1.1 framing shared by the upstream server and the client: buffered reads of heads,
//! content-length, chunked (with trailers) and close-delimited bodies.

use std::io::{self, Read};

/// Largest request/response head accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// Header or trailer pairs: lower-case names, arrival order.
pub(crate) type Pairs = Vec<(String, String)>;

/// A parsed message head: first line and headers (names lower-cased, order kept).
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) start_line: String,
    pub(crate) headers: Vec<(String, String)>,
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

    /// Reads a head. `Ok(None)` on a clean EOF before the first byte.
    pub(crate) fn read_head(&mut self) -> io::Result<Option<Head>> {
        let mut scanned: usize = 0;
        loop {
            let b = self.buffered();
            if let Some(i) = find(&b[scanned.saturating_sub(3)..], b"\r\n\r\n") {
                let end = scanned.saturating_sub(3) + i;
                let text = String::from_utf8_lossy(&b[..end]).into_owned();
                self.consume(end + 4);
                return parse_head(&text).map(Some);
            }
            scanned = b.len();
            if scanned > MAX_HEAD {
                return Err(bad("head too large"));
            }
            if self.fill()? == 0 {
                return if self.buffered().is_empty() {
                    Ok(None)
                } else {
                    Err(eof("head"))
                };
            }
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    pub(crate) fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = find(self.buffered(), b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffered()[..i]).into_owned();
                self.consume(i + 2);
                return Ok(line);
            }
            if self.buffered().len() > MAX_HEAD {
                return Err(bad("line too long"));
            }
            if self.fill()? == 0 {
                return Err(eof("line"));
            }
        }
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

    /// Everything until EOF.
    pub(crate) fn read_to_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? > 0 {}
        let out = self.buffered().to_vec();
        self.consume(out.len());
        Ok(out)
    }

    /// The size line of the next chunk (extensions ignored).
    pub(crate) fn read_chunk_size(&mut self) -> io::Result<usize> {
        let line = self.read_line()?;
        let hex = line.split(';').next().unwrap_or("").trim();
        usize::from_str_radix(hex, 16).map_err(|_| bad(format!("bad chunk size line {line:?}")))
    }

    /// Trailer lines after the last chunk, up to the empty line.
    pub(crate) fn read_trailers(&mut self) -> io::Result<Pairs> {
        let mut out = Vec::new();
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                return Ok(out);
            }
            if let Some((k, v)) = line.split_once(':') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
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

fn parse_head(text: &str) -> io::Result<Head> {
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(Head {
        start_line,
        headers,
    })
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
        let h = w.read_head().unwrap().unwrap();
        assert_eq!(h.start_line, "POST /x HTTP/1.1");
        assert_eq!(h.get("host"), Some("a"));
        assert!(h.is_chunked());
        let (body, trailers) = w.read_chunked().unwrap();
        assert_eq!(body, b"abcde");
        assert_eq!(trailers, vec![("x-t".to_string(), "1".to_string())]);
        assert_eq!(w.read_to_eof().unwrap(), b"NEXT");
    }

    #[test]
    fn eof_before_head_is_none() {
        let mut w = Wire::new(&b""[..]);
        assert!(w.read_head().unwrap().is_none());
        let mut w = Wire::new(&b"GET / HT"[..]);
        assert!(w.read_head().is_err());
    }
}
