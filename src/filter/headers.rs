//! Header sets kept inline, in memory the owner already has: a callout's answer.

/// Response headers of a callout, kept inline (no allocation): up to 32 headers and 2 KiB of
/// names and values; what does not fit is dropped and [`truncated`](Self::truncated) says so.
///
/// ```
/// use jisr::callout::CalloutRequest;
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn whoami(mut req: Request<'_>, w: ResponseWriter<'_>) {
///     let mut body = Vec::new();
///     let call = w.callout(CalloutRequest::get("auth", "/whoami", "auth.local"), &mut body);
///     let Ok(answer) = call.await else { return w.send(503, b"") };
///     req.set_header("x-user", answer.headers.get("X-User").unwrap_or_default()); // any case
///     let _ = req.set_header("x-auth-headers", answer.headers.iter().count().to_string());
/// }
/// # fn register(r: &mut Registry) { r.register("whoami", whoami); }
///
/// let f = TestFilter::new(register, "whoami", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// let id = s.callouts()[0].id;
/// s.complete_callout(id, 200, &[("x-user", "ada"), ("x-team", "ops")], b"");
/// assert_eq!(s.request_header("x-user").as_deref(), Some("ada"));
/// assert_eq!(s.request_header("x-auth-headers").as_deref(), Some("2"));
/// ```
#[derive(Clone, Debug)]
pub struct CalloutHeaders {
    pub(crate) bytes: arrayvec::ArrayVec<u8, 2048>,
    pub(crate) spans: arrayvec::ArrayVec<(u16, u16, u16), 32>,
    pub(crate) truncated: bool,
}

impl Default for CalloutHeaders {
    fn default() -> Self {
        CalloutHeaders {
            bytes: arrayvec::ArrayVec::new(),
            spans: arrayvec::ArrayVec::new(),
            truncated: false,
        }
    }
}

impl CalloutHeaders {
    /// Forgets every header, in place.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
        self.truncated = false;
    }

    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        if self.spans.is_full() || self.bytes.remaining_capacity() < key.len() + value.len() {
            self.truncated = true;
            return;
        }
        self.bytes.try_extend_from_slice(key).ok();
        self.bytes.try_extend_from_slice(value).ok();
        self.spans
            .push((start as u16, key.len() as u16, value.len() as u16));
    }

    /// Every header (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|&(start, k, v)| {
            let (s, k, v) = (start as usize, k as usize, v as usize);
            (&self.bytes[s..s + k], &self.bytes[s + k..s + k + v])
        })
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Whether some headers did not fit.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}
