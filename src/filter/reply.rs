//! A local reply a handler asked for, held until its poll ends.
//!
//! Envoy may complete (and, in some versions, destroy) the stream *inside* the call that sends
//! a local reply, writing the access log there. A handler that sets metadata, counts or logs
//! right after `send` would lose those effects, and Envoy would re-enter our hooks while the
//! handler's own code is on the stack. So `send` only records the reply; the state machine
//! sends it when the poll that made it returns, after every effect of that poll reached Envoy.

/// Body bytes an idle slot keeps for the next stream's reply.
pub(crate) const RETAINED: usize = 16 * 1024;

/// The recorded reply. Buffers are reused across streams of a slot (no allocation per
/// request once they have grown).
#[derive(Default)]
pub(crate) struct StagedReply {
    pub(crate) armed: bool,
    pub(crate) status: u32,
    /// Header names and values back to back; `spans` are (name len, value len).
    head: Vec<u8>,
    spans: Vec<(u32, u32)>,
    pub(crate) body: Vec<u8>,
    pub(crate) details: Vec<u8>,
}

impl StagedReply {
    /// Records a reply (replacing nothing: the caller checks that none was made yet).
    pub(crate) fn stage(
        &mut self,
        status: u32,
        headers: &[(&str, &[u8])],
        body: &[u8],
        details: &str,
    ) {
        self.clear();
        self.armed = true;
        self.status = status;
        for (k, v) in headers {
            self.head.extend_from_slice(k.as_bytes());
            self.head.extend_from_slice(v);
            self.spans.push((k.len() as u32, v.len() as u32));
        }
        self.body.extend_from_slice(body);
        self.details.extend_from_slice(details.as_bytes());
    }

    /// Calls `f` with the headers as (name, value) pairs, at most 32 of them.
    pub(crate) fn with_headers<R>(&self, f: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> R {
        let mut pairs: arrayvec::ArrayVec<(&[u8], &[u8]), 32> = arrayvec::ArrayVec::new();
        let mut at = 0;
        for &(k, v) in self.spans.iter().take(32) {
            let (k, v) = (k as usize, v as usize);
            pairs.push((&self.head[at..at + k], &self.head[at + k..at + k + v]));
            at += k + v;
        }
        f(&pairs)
    }

    /// Forgets the reply, keeping bounded buffers.
    pub(crate) fn clear(&mut self) {
        self.armed = false;
        self.head.clear();
        self.spans.clear();
        self.body.clear();
        self.details.clear();
        if self.body.capacity() > RETAINED {
            self.body = Vec::new();
        }
        if self.head.capacity() > RETAINED {
            self.head = Vec::new();
        }
    }

    /// Bytes kept allocated.
    pub(crate) fn capacity(&self) -> usize {
        self.head.capacity()
            + self.body.capacity()
            + self.details.capacity()
            + self.spans.capacity() * 8
    }
}
