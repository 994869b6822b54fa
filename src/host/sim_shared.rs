//! What the simulated hosts of every kind share (feature `testing`): the record of a callout
//! a filter started, label-free metrics, bytes filter state, and how recorded bytes and
//! headers print.

use crate::host::MetricOp;
use core::fmt;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Label-free metric values by id, shared by a config's simulated connections or sockets.
pub(crate) type SimMetrics = RefCell<Rc<RefCell<Vec<u64>>>>;

/// Applies a metric update as Envoy would show it (counters and gauges add; a histogram keeps
/// its last value); the ABI metrics result.
pub(crate) fn apply_metric(metrics: &SimMetrics, op: MetricOp, id: usize, value: u64) -> u32 {
    let shared = metrics.borrow();
    let mut m = shared.borrow_mut();
    let Some(v) = m.get_mut(id) else {
        return crate::abi::metrics_result::METRIC_NOT_FOUND;
    };
    *v = match op {
        MetricOp::CounterAdd | MetricOp::GaugeAdd => v.saturating_add(value),
        MetricOp::GaugeSub => v.saturating_sub(value),
        MetricOp::GaugeSet | MetricOp::HistogramRecord => value,
    };
    crate::abi::metrics_result::SUCCESS
}

/// Bytes filter-state objects by key.
pub(crate) type SimFilterState = RefCell<Vec<(Vec<u8>, Vec<u8>)>>;

/// Sets the object under `key` (replacing one).
pub(crate) fn set_filter_state(fs: &SimFilterState, key: &[u8], value: &[u8]) -> bool {
    let mut fs = fs.borrow_mut();
    fs.retain(|(k, _)| k != key);
    fs.push((key.to_vec(), value.to_vec()));
    true
}

/// Copies the object under `key` into `out`; its whole length.
pub(crate) fn filter_state(fs: &SimFilterState, key: &[u8], out: &mut [u8]) -> Option<usize> {
    let fs = fs.borrow();
    let (_, v) = fs.iter().find(|(k, _)| k == key)?;
    let n = v.len().min(out.len());
    out[..n].copy_from_slice(&v[..n]);
    Some(v.len())
}

/// The callouts a simulated connection or socket started.
#[derive(Default)]
pub(crate) struct SimCallouts {
    /// Callouts started: id, cluster, request headers, body.
    pub(crate) started: RefCell<Vec<SimCallout>>,
    /// The last id given.
    pub(crate) last_id: Cell<u64>,
    /// Clusters that do not exist.
    pub(crate) unknown_clusters: RefCell<Vec<String>>,
}

impl SimCallouts {
    /// Records a callout as Envoy would start it: its id, or `CLUSTER_NOT_FOUND`.
    pub(crate) fn start(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let cluster = String::from_utf8_lossy(cluster).into_owned();
        if self.unknown_clusters.borrow().contains(&cluster) {
            return Err(crate::abi::callout_init::CLUSTER_NOT_FOUND);
        }
        let id = self.last_id.get() + 1;
        self.last_id.set(id);
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        self.started.borrow_mut().push(SimCallout {
            id,
            cluster,
            headers: headers.iter().map(|(k, v)| (s(k), v.to_vec())).collect(),
            body: body.to_vec(),
            timeout_ms,
        });
        Ok(id)
    }
}

/// A callout the filter started on a simulated stream or connection.
///
/// ```
/// use std::time::Duration;
/// use jisr::callout::CalloutRequest;
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn audit(req: Request<'_>, w: ResponseWriter<'_>) {
///     let path = req.path().unwrap_or("/");
///     let call = CalloutRequest::post("audit", "/log", "audit.local", path.as_bytes())
///         .timeout(Duration::from_millis(250));
///     let _ = w.callout(call, &mut Vec::new()).await;
/// }
/// fn register(r: &mut Registry) { r.register("audit", audit); }
///
/// let f = TestFilter::new(register, "audit", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/orders/7")], true);
/// let call = s.callouts().remove(0);
/// assert_eq!((call.cluster.as_str(), call.body.as_slice(), call.timeout_ms), ("audit", &b"/orders/7"[..], 250));
/// // Headers by name, with the types a handler uses (`req.header`, `req.header_str`):
/// assert_eq!(call.method(), Some("POST"));
/// assert_eq!(call.header("host"), Some(&b"audit.local"[..]));
/// assert_eq!(call.header_str("Host"), Some("audit.local"));
/// // `{:?}` shows text as text:
/// assert_eq!(
///     format!("{call:?}"),
///     r#"SimCallout { id: 1, cluster: "audit", headers: {":method": "POST", ":path": "/log", "host": "audit.local"}, body: "/orders/7", timeout_ms: 250 }"#
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SimCallout {
    /// Envoy's callout id.
    pub id: u64,
    /// Target cluster.
    pub cluster: String,
    /// Request headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Request body.
    pub body: Vec<u8>,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
}

impl SimCallout {
    /// The value of request header `name` (any case; the first if repeated), as a handler's
    /// `req.header(name)` gives it. Pseudo-headers too: `":method"`, `":path"`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }

    /// [`header`](Self::header) as text; `None` if absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// The request method (`:method`).
    pub fn method(&self) -> Option<&str> {
        self.header_str(":method")
    }

    /// The request path (`:path`).
    pub fn path(&self) -> Option<&str> {
        self.header_str(":path")
    }
}

impl fmt::Debug for SimCallout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimCallout")
            .field("id", &self.id)
            .field("cluster", &self.cluster)
            .field("headers", &HeadersDebug(&self.headers))
            .field("body", &BytesDebug(&self.body))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

pub(crate) fn find_header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Bytes shown as a string literal: `"text"` when UTF-8, else `b"..."` with escapes.
pub(crate) struct BytesDebug<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for BytesDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.0) {
            Ok(text) => fmt::Debug::fmt(text, f),
            Err(_) => write!(f, "b\"{}\"", self.0.escape_ascii()),
        }
    }
}

/// Header pairs shown as `{"name": "value", ...}` in order (repeated names stay repeated).
pub(crate) struct HeadersDebug<'a>(pub(crate) &'a [(String, Vec<u8>)]);

impl fmt::Debug for HeadersDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, BytesDebug(v))))
            .finish()
    }
}

/// Calls `f` with a simulated callout response as Envoy hands it to the callout-done hook:
/// `:status` and `headers`, and `body` in 7-byte chunks (so readers see a body in pieces).
pub(crate) fn with_callout_response<R>(
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    f: impl FnOnce(crate::host::HeaderArray<'_>, crate::host::ChunkArray<'_>) -> R,
) -> R {
    let code = status.to_string();
    let mut pairs = vec![(b":status".as_slice(), code.as_bytes())];
    pairs.extend(headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
    let chunks: Vec<&[u8]> = body.chunks(7).collect();
    f(
        crate::host::HeaderArray::of(&pairs),
        crate::host::ChunkArray::of(&chunks),
    )
}
