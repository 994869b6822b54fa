//! A local reply a handler asked for, held until its poll ends.
//!
//! Envoy may complete (and, in some versions, destroy) the stream *inside* the call that sends
//! a local reply, writing the access log there. A handler that sets metadata, counts or logs
//! right after `send` would lose those effects, and Envoy would re-enter our hooks while the
//! handler's own code is on the stack. So `send` only records the reply; the state machine
//! sends it when the poll that made it returns, after every effect of that poll reached Envoy.

use crate::executor::arena::copy_small;
use crate::executor::spare;
use arrayvec::ArrayVec;

/// Bytes a slot keeps for the rest of its stream once a reply was sent (a bigger buffer goes
/// back to the worker's shelf, which frees it).
pub(crate) const RETAINED: usize = 16 * 1024;

/// Bytes a slot keeps across streams for its replies: a reply buffer this small stays with the
/// slot when its stream ends (a 401 or a redirect fits many times over).
pub(crate) const KEPT: usize = 512;

/// Most headers a reply carries; later ones are dropped.
pub(crate) const MAX_HEADERS: usize = 32;

/// The recorded reply, in one buffer taken from the worker's shelf of byte buffers when a slot
/// first replies and kept by the slot while it holds at most [`KEPT`] bytes (no allocation per
/// request once warm; nothing held by a slot whose streams never replied): each header as its
/// name length and value length (`u32`, native order), name and value; then the body, then the
/// details.
#[derive(Default)]
pub(crate) struct StagedReply {
    pub(crate) armed: bool,
    /// The staged answer is "restart the filter chain" (`recreate_stream`), not a reply.
    pub(crate) recreate: bool,
    /// Headers in `bytes`.
    headers: u8,
    pub(crate) status: u32,
    bytes: Vec<u8>,
    body_len: usize,
    details_len: usize,
}

impl StagedReply {
    /// Records a reply (replacing nothing: the caller checks that none was made yet). Only the
    /// first [`MAX_HEADERS`] headers are kept.
    #[inline]
    pub(crate) fn stage(
        &mut self,
        status: u32,
        headers: &[(&str, &[u8])],
        body: &[u8],
        details: &str,
    ) {
        let headers = &headers[..headers.len().min(MAX_HEADERS)];
        if self.bytes.capacity() == 0 {
            self.bytes = spare::bytes();
        }
        self.bytes.clear();
        let head: usize = headers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        let total = head + body.len() + details.len();
        self.bytes.reserve(total);
        // SAFETY: the buffer is empty with room for `total` bytes (reserved above), and the
        // writes below cover exactly `total` bytes from its start, each range after the last
        // (lengths, name, value per header, then body and details, as `head` counts them);
        // the sources are the caller's slices, never this buffer. Then the first `total` bytes
        // are initialised, so `set_len(total)` is sound.
        unsafe {
            let mut dst = self.bytes.as_mut_ptr();
            for (k, v) in headers {
                core::ptr::write_unaligned(dst as *mut u32, k.len() as u32);
                core::ptr::write_unaligned(dst.add(4) as *mut u32, v.len() as u32);
                dst = dst.add(8);
                copy_small(k.as_ptr(), dst, k.len());
                dst = dst.add(k.len());
                copy_small(v.as_ptr(), dst, v.len());
                dst = dst.add(v.len());
            }
            core::ptr::copy_nonoverlapping(body.as_ptr(), dst, body.len());
            dst = dst.add(body.len());
            copy_small(details.as_ptr(), dst, details.len());
            self.bytes.set_len(total);
        }
        self.headers = headers.len() as u8;
        self.body_len = body.len();
        self.details_len = details.len();
        self.status = status;
        self.recreate = false;
        self.armed = true;
    }

    /// Records a stream recreation instead of a reply.
    pub(crate) fn stage_recreate(&mut self) {
        self.stage(0, &[], b"", "");
        self.recreate = true;
    }

    /// Calls `f` with the status, the headers as (name, value) pairs, the body and the details.
    #[inline]
    pub(crate) fn with_parts<R>(
        &self,
        f: impl FnOnce(u32, &[(&[u8], &[u8])], &[u8], &[u8]) -> R,
    ) -> R {
        let mut pairs: ArrayVec<(&[u8], &[u8]), MAX_HEADERS> = ArrayVec::new();
        let mut rest = self.bytes.as_slice();
        for _ in 0..self.headers {
            let (lens, after) = rest.split_at(8);
            let k = u32::from_ne_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
            let v = u32::from_ne_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
            let (k, after) = after.split_at(k);
            let (v, after) = after.split_at(v);
            pairs.push((k, v));
            rest = after;
        }
        let (body, details) = rest.split_at(self.body_len);
        debug_assert_eq!(details.len(), self.details_len);
        f(self.status, &pairs, body, details)
    }

    /// Forgets the reply. A buffer of at most [`KEPT`] bytes stays with the slot for its next
    /// reply (the common short reply takes nothing from the shelf and gives nothing back); a
    /// bigger one goes back to the worker's shelf.
    #[inline]
    pub(crate) fn clear(&mut self) {
        // Every field `with_parts` reads is written again by the next `stage`, before `armed`.
        self.armed = false;
        self.recreate = false;
        if self.bytes.capacity() > KEPT {
            self.give_back();
        }
    }

    #[cold]
    #[inline(never)]
    fn give_back(&mut self) {
        spare::give_bytes(core::mem::take(&mut self.bytes));
    }

    /// Bytes kept allocated.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

/// Fails a stream closed with jisr's one internal-error reply: `500`, `text/plain`,
/// `internal error`, with `details` naming the cause (e.g. [`PANIC_DETAILS`]).
///
/// [`PANIC_DETAILS`]: crate::filter::http::hooks::PANIC_DETAILS
pub(crate) fn internal_error(host: &dyn crate::host::http::Host, details: &[u8]) {
    host.send_response(
        500,
        &[(b"content-type".as_slice(), b"text/plain".as_slice())],
        b"internal error\n",
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_come_back_as_staged() {
        let mut r = StagedReply::default();
        let many: Vec<(&str, &[u8])> = (0..40).map(|_| ("k", b"v".as_slice())).collect();
        r.stage(401, &many, b"body", "details");
        r.with_parts(|status, headers, body, details| {
            assert_eq!(status, 401);
            assert_eq!(headers.len(), MAX_HEADERS);
            assert!(headers.iter().all(|&(k, v)| k == b"k" && v == b"v"));
            assert_eq!(body, b"body");
            assert_eq!(details, b"details");
        });
        r.stage(
            200,
            &[("content-type", b"text/plain"), ("x-a", b"")],
            b"",
            "",
        );
        r.with_parts(|status, headers, body, details| {
            assert_eq!(status, 200);
            assert_eq!(
                headers,
                &[
                    (b"content-type".as_slice(), b"text/plain".as_slice()),
                    (b"x-a".as_slice(), b"".as_slice())
                ]
            );
            assert!(body.is_empty() && details.is_empty());
        });
        // Every short length of names, values, body and details comes back exactly.
        let src: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(29) ^ 0x33).collect();
        for n in 0..src.len() {
            let name =
                std::str::from_utf8(&b"abcdefghijklmnopqrstuvwxyz0123456789-_.~"[..n]).unwrap();
            let hs = [(name, &src[..n]), ("x", &src[n..])];
            r.clear();
            r.stage(200 + n as u32, &hs, &src[..n / 2], &name[..n / 3]);
            r.with_parts(|status, headers, body, details| {
                assert_eq!(status, 200 + n as u32);
                assert_eq!(
                    headers,
                    &[(name.as_bytes(), &src[..n]), (b"x".as_slice(), &src[n..])]
                );
                assert_eq!(body, &src[..n / 2]);
                assert_eq!(details, &name.as_bytes()[..n / 3]);
            });
        }
        r.clear();
        assert!(
            !r.armed && r.capacity() > 0 && r.capacity() <= KEPT,
            "a small buffer stays"
        );
        r.stage(401, &[("www-authenticate", b"ApiKey")], b"{}", "jisr_auth");
        r.with_parts(|status, headers, body, details| {
            assert_eq!(
                (status, headers.len(), body, details),
                (401, 1, &b"{}"[..], &b"jisr_auth"[..])
            );
        });
        r.stage(500, &[], &vec![0u8; 2 * RETAINED], "big");
        r.clear();
        assert!(!r.armed && r.capacity() == 0, "a big buffer goes back");
    }
}
