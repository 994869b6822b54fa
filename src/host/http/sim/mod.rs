//! The simulated host: an in-memory stream that records every effect a filter has.
//!
//! Byte views follow the same rule as Envoy's: values are boxed individually and stay put until
//! that entry is replaced or removed.

pub(crate) mod context;

use super::{BodyKind, Host, Map, MetaKind, MetaRead, MetadataValue};
pub use crate::host::sim_shared::SimCallout;
use crate::host::sim_shared::{BytesDebug, HeadersDebug, find_header};
use crate::host::{Committer, ConfigHost, MetricKind, MetricOp, Raw};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub(crate) type Pairs = Vec<(Box<[u8]>, Box<[u8]>)>;
type Bytes = Box<[u8]>;

/// A recorded metadata value.
///
/// ```
/// use jisr::testing::{MetaValue, TestFilter};
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn score(req: Request<'_>, w: ResponseWriter<'_>) {
///     w.set_metadata_num("risk", "score", 0.5);
///     if req.header("user-agent").is_none() {
///         w.append_metadata_str("risk", "reasons", "no-user-agent");
///     }
/// }
/// fn register(r: &mut Registry) { r.register("score", score); }
///
/// let f = TestFilter::new(register, "score", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.metadata("risk", "score"), Some(MetaValue::Num(0.5)));
/// let reasons = MetaValue::List(vec![MetaValue::Str("no-user-agent".into())]);
/// assert_eq!(s.metadata("risk", "reasons"), Some(reasons));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// A list of values.
    List(Vec<MetaValue>),
}

/// A recorded complete local reply.
///
/// ```
/// use jisr::testing::{LocalReply, TestFilter};
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn deny(_req: Request<'_>, w: ResponseWriter<'_>) {
///     w.send_with(403, &[("content-type", b"text/plain")], b"no\n", "policy_deny");
/// }
/// fn register(r: &mut Registry) { r.register("deny", deny); }
///
/// let f = TestFilter::new(register, "deny", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// let expected = LocalReply {
///     status: 403,
///     headers: vec![("content-type".to_string(), b"text/plain".to_vec())],
///     body: b"no\n".to_vec(),
///     details: "policy_deny".to_string(),
/// };
/// assert_eq!(s.local_reply(), Some(expected));
/// let reply = s.local_reply().unwrap();
/// assert_eq!(reply.header_str("Content-Type"), Some("text/plain"));
/// assert_eq!(reply.body_str(), Some("no\n"));
/// assert_eq!(
///     format!("{reply:?}"),
///     r#"LocalReply { status: 403, headers: {"content-type": "text/plain"}, body: "no\n", details: "policy_deny" }"#
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// Status code (a `u16`, as handlers give it to `send`).
    pub status: u16,
    /// Headers, in the order given.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Response code details (empty means Envoy's default).
    pub details: String,
}

/// A recorded module-generated streaming reply.
///
/// ```
/// use jisr::testing::{StreamedReply, TestFilter};
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn events(_req: Request<'_>, w: ResponseWriter<'_>) {
///     let Ok(mut out) = w.stream(200, &[("content-type", b"text/event-stream")]) else { return };
///     let _ = out.send(b"data: hi\n\n").await;
///     out.finish();
/// }
/// fn register(r: &mut Registry) { r.register("events", events); }
///
/// let f = TestFilter::new(register, "events", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/events")], true);
/// let StreamedReply { headers, data, trailers, ended } = s.streamed_reply().unwrap();
/// assert_eq!(headers[0], (":status".to_string(), b"200".to_vec()));
/// assert_eq!(data.concat(), b"data: hi\n\n");
/// assert!(ended && trailers.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamedReply {
    /// Headers sent (with `:status`).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Data frames, in order.
    pub data: Vec<Vec<u8>>,
    /// Trailers, if sent.
    pub trailers: Option<Vec<(String, Vec<u8>)>>,
    /// Whether end of stream was signalled.
    pub ended: bool,
}

/// Metric definitions and values shared by one simulated config and its streams.
#[derive(Debug, Default)]
pub struct SimMetrics {
    /// Kind, name and label names of each defined metric, by id.
    pub(crate) defs: RefCell<Vec<(MetricKind, String, Vec<String>)>>,
    pub(crate) values: RefCell<BTreeMap<String, i64>>,
    pub(crate) histograms: RefCell<BTreeMap<String, Vec<u64>>>,
}

impl SimMetrics {
    /// Applies a metric operation as Envoy would; returns the ABI metrics result.
    pub(crate) fn apply(&self, op: MetricOp, id: usize, labels: &[&[u8]], value: u64) -> u32 {
        let defs = self.defs.borrow();
        let Some((kind, name, n_labels)) = defs.get(id) else {
            return 1;
        };
        let kind_ok = matches!(
            (kind, op),
            (MetricKind::Counter, MetricOp::CounterAdd)
                | (
                    MetricKind::Gauge,
                    MetricOp::GaugeAdd | MetricOp::GaugeSub | MetricOp::GaugeSet
                )
                | (MetricKind::Histogram, MetricOp::HistogramRecord)
        );
        if !kind_ok {
            return 1;
        }
        if n_labels.len() != labels.len() {
            return 2;
        }
        let key = SimMetrics::key(name, labels);
        if op == MetricOp::HistogramRecord {
            self.histograms
                .borrow_mut()
                .entry(key)
                .or_default()
                .push(value);
            return 0;
        }
        let mut values = self.values.borrow_mut();
        let e = values.entry(key).or_insert(0);
        match op {
            MetricOp::CounterAdd | MetricOp::GaugeAdd => *e += value as i64,
            MetricOp::GaugeSub => *e -= value as i64,
            MetricOp::GaugeSet => *e = value as i64,
            MetricOp::HistogramRecord => {}
        }
        0
    }
    /// The key values are kept under (`name` or `name.value1.value2`) for a metric named the
    /// way Envoy shows it: in `/stats` (`dynamicmodulescustom.name.label1.value1`), in
    /// Prometheus text (`envoy_dynamicmodulescustom_name{label1="value1"}`), or by that key
    /// itself. `None` when the name is Envoy's spelling of no defined metric.
    pub(crate) fn resolve(&self, shown: &str) -> Option<String> {
        let defs = self.defs.borrow();
        if let Some(rest) = shown.strip_prefix(PROMETHEUS_PREFIX) {
            let (name, labels) = match rest.split_once('{') {
                Some((name, labels)) => (name, Some(labels.strip_suffix('}')?)),
                None => (rest, None),
            };
            let pairs = match labels {
                Some(text) => prometheus_labels(text)?,
                None => Vec::new(),
            };
            return defs.iter().find_map(|(_, def, label_names)| {
                if prometheus_name(def) != name || label_names.len() != pairs.len() {
                    return None;
                }
                let values: Option<Vec<&[u8]>> = label_names
                    .iter()
                    .map(|l| {
                        pairs
                            .iter()
                            .find(|(k, _)| k == l)
                            .map(|(_, v)| v.as_bytes())
                    })
                    .collect();
                Some(SimMetrics::key(def, &values?))
            });
        }
        if let Some(rest) = shown.strip_prefix(STATS_PREFIX) {
            return defs.iter().find_map(|(_, def, label_names)| {
                let mut tail = rest.strip_prefix(def.as_str())?;
                let mut values: Vec<&[u8]> = Vec::new();
                for (i, label) in label_names.iter().enumerate() {
                    tail = tail.strip_prefix('.')?.strip_prefix(label.as_str())?;
                    tail = tail.strip_prefix('.')?;
                    // A value runs up to the next label's `.<label>.`, or to the end.
                    let end = match label_names.get(i + 1) {
                        Some(next) => tail.find(&format!(".{next}."))?,
                        None => tail.len(),
                    };
                    values.push(&tail.as_bytes()[..end]);
                    tail = &tail[end..];
                }
                tail.is_empty().then(|| SimMetrics::key(def, &values))
            });
        }
        Some(shown.to_string())
    }

    fn key(name: &str, labels: &[&[u8]]) -> String {
        let mut k = name.to_string();
        for l in labels {
            k.push('.');
            k.push_str(&String::from_utf8_lossy(l));
        }
        k
    }
}

/// How Envoy's `/stats` names module metrics (the default `metrics_namespace`).
const STATS_PREFIX: &str = "dynamicmodulescustom.";
/// How Envoy's Prometheus text names them.
const PROMETHEUS_PREFIX: &str = "envoy_dynamicmodulescustom_";

/// A metric name as Envoy writes it in Prometheus text: characters other than ASCII letters,
/// digits, `_` and `:` become `_`.
fn prometheus_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `a="x",b="y"` (spaces after commas allowed; `\"`, `\\` and `\n` escapes) as pairs; `None`
/// if malformed.
fn prometheus_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        pairs.push((key.trim().to_string(), value));
        rest = after[end + 1..].trim_start();
        rest = match rest.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some(pairs)
}

/// Log lines shared by a simulated config and its streams.
pub type SimLogs = Rc<RefCell<Vec<(u32, String)>>>;

thread_local! {
    /// The logs (and level) of the simulated config or stream whose hook runs on this thread:
    /// where process-wide log lines (`tracing` events) go in tests.
    static CURRENT_LOGS: RefCell<Option<(SimLogs, u32)>> = const { RefCell::new(None) };
}

/// Makes `logs` (at `level`: lines below it are dropped) this thread's current simulated log
/// for the duration of `f`; restores the previous one after, also on unwind.
pub(crate) fn with_current_logs<R>(logs: &SimLogs, level: u32, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<(SimLogs, u32)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            let _ = CURRENT_LOGS.try_with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT_LOGS.with(|c| c.borrow_mut().replace((logs.clone(), level)));
    let _restore = Restore(prev);
    f()
}

/// Whether a process-wide line at `level` would be kept by the current simulated log.
#[cfg(feature = "tracing")]
pub(crate) fn current_log_enabled(level: u32) -> bool {
    CURRENT_LOGS
        .try_with(|c| c.borrow().as_ref().is_some_and(|(_, min)| level >= *min))
        .unwrap_or(false)
}

/// Appends a process-wide line to the current simulated log (dropped when none is current).
#[cfg(feature = "tracing")]
pub(crate) fn current_log(level: u32, msg: &[u8]) {
    let _ = CURRENT_LOGS.try_with(|c| {
        if let Some((logs, min)) = c.borrow().as_ref() {
            if level >= *min {
                logs.borrow_mut()
                    .push((level, String::from_utf8_lossy(msg).into_owned()));
            }
        }
    });
}

/// Scheduler events committed for one simulated stream (any thread may push).
#[derive(Debug, Default)]
pub struct SimQueue {
    events: Mutex<Vec<u64>>,
    cv: Condvar,
}

impl SimQueue {
    pub(crate) fn push(&self, event: u64) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
        self.cv.notify_all();
    }

    /// Takes all pending events.
    pub(crate) fn take(&self) -> Vec<u64> {
        core::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until at least one event is pending or `timeout` passes.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let g = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = self
            .cv
            .wait_timeout_while(g, timeout, |ev| ev.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        !g.is_empty()
    }

    /// Number of pending events.
    pub(crate) fn len(&self) -> usize {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A routed cluster: its name and `[total, healthy, degraded]` hosts per priority.
pub(crate) type SimCluster = (Box<[u8]>, Vec<[u64; 3]>);

/// The per-route config pointer the simulated route holds (null: none). A newtype because
/// raw pointers have no `Default` before Rust 1.88.
#[derive(Clone, Copy)]
pub(crate) struct RoutePtr(pub(crate) *const core::ffi::c_void);

impl Default for RoutePtr {
    fn default() -> Self {
        RoutePtr(core::ptr::null())
    }
}

/// One simulated stream.
#[derive(Default)]
pub(crate) struct SimHost {
    pub(crate) maps: [RefCell<Pairs>; 4],
    pub(crate) bodies: [RefCell<Vec<Box<[u8]>>>; 4],
    pub(crate) received_is_buffered: Cell<bool>,
    pub(crate) local_reply: RefCell<Option<LocalReply>>,
    pub(crate) streamed: RefCell<Option<StreamedReply>>,
    pub(crate) reset: RefCell<Option<String>>,
    pub(crate) continue_decoding: Cell<u32>,
    pub(crate) continue_encoding: Cell<u32>,
    pub(crate) metadata: RefCell<BTreeMap<(String, String), MetaValue>>,
    /// Route, cluster and host metadata (by ABI source), as Envoy's config would give them.
    pub(crate) source_metadata: RefCell<BTreeMap<(u32, String, String), MetaValue>>,
    pub(crate) filter_state: RefCell<Vec<(Vec<u8>, Bytes)>>,
    pub(crate) route_cache_cleared: Cell<u32>,
    pub(crate) route_cluster_cache_cleared: Cell<u32>,
    pub(crate) custom_flags: RefCell<Vec<String>>,
    /// The routed cluster's name and `[total, healthy, degraded]` per priority.
    pub(crate) cluster: RefCell<Option<SimCluster>>,
    /// The stream's buffer limit; `None` is Envoy's default of 1 MiB.
    pub(crate) buffer_limit: Cell<Option<u64>>,
    pub(crate) attrs_str: RefCell<Vec<(u32, Box<[u8]>)>>,
    pub(crate) attrs_int: RefCell<Vec<(u32, u64)>>,
    pub(crate) attrs_bool: RefCell<Vec<(u32, bool)>>,
    pub(crate) metrics: Rc<SimMetrics>,
    pub(crate) logs: SimLogs,
    pub(crate) log_level: Cell<u32>,
    pub(crate) queue: Arc<SimQueue>,
    pub(crate) schedulers_created: Cell<u32>,
    pub(crate) callouts: RefCell<Vec<SimCallout>>,
    pub(crate) next_callout: Cell<u64>,
    pub(crate) unknown_clusters: RefCell<Vec<String>>,
    pub(crate) route_config: Cell<RoutePtr>,
    pub(crate) override_host: RefCell<Option<(String, bool)>>,
    pub(crate) stream_log: RefCell<Vec<(u64, String)>>,
    /// Simulates an Envoy that destroys the filter synchronously inside a local reply.
    pub(crate) destroy_during_reply: Cell<Option<DestroyHook>>,
    /// Simulates an Envoy whose `continue_decoding` lets the filters after this one finish the
    /// stream at once (a direct response): the stream behind the pointer is completed, and
    /// with a destroyer also destroyed, inside the call.
    pub(crate) complete_during_continue: Cell<Option<(CompleteHook, Option<DestroyHook>)>>,
    /// The stream was completed from inside a host call.
    pub(crate) completed_inside: Cell<bool>,
    /// Envoy destroyed the filter (from here on, nothing may be called on it).
    pub(crate) destroy_requested: Cell<bool>,
    /// Host calls made after the destroy (each a bug: Envoy's filter pointer is dead then).
    pub(crate) calls_after_destroy: RefCell<Vec<&'static str>>,
    /// A host method that panics when called (injects a failure inside jisr).
    pub(crate) panic_in: Cell<Option<&'static str>>,
    /// Delivers events to the stream's hooks from inside a host call, as Envoy does.
    pub(crate) reenter: RefCell<Option<Reenter>>,
    /// Clusters Envoy answers inside the call that starts a callout (status, body), like its own
    /// 503 for a cluster without a healthy host.
    pub(crate) inline_answers: RefCell<Vec<(String, u16, Vec<u8>)>>,
    /// Events delivered inside the next `stream_send` call.
    pub(crate) on_stream_send: RefCell<Vec<SimEvent>>,
    /// Tracing, socket options, stream control and typed filter state.
    pub(crate) context: context::SimContext,
    /// The simulated tracer's thread-local string (valid until the next tracing call).
    pub(crate) span_scratch: RefCell<Box<[u8]>>,
    /// Calls that fetched all values of a header at once.
    pub(crate) header_batches: Cell<u32>,
    /// Calls that set several metadata strings at once.
    pub(crate) metadata_batches: Cell<u32>,
}

/// Delivers a [`SimEvent`] to the stream's hooks (installed by the testing layer).
pub(crate) type Reenter = std::rc::Rc<dyn Fn(&SimHost, SimEvent)>;

/// An event the simulated Envoy delivers to the stream re-entrantly.
#[derive(Clone, Debug)]
pub(crate) enum SimEvent {
    /// A unary callout completed.
    CalloutDone { id: u64, status: u16, body: Vec<u8> },
    /// Response headers of a streaming callout.
    StreamHeaders { id: u64, status: u16, end: bool },
    /// Response data of a streaming callout.
    StreamData { id: u64, data: Vec<u8>, end: bool },
    /// A streaming callout completed.
    StreamComplete { id: u64 },
}

/// Envoy's completion call for one stream: a function of the layer above that runs the stream's
/// completion hook on the host it is given, and the stream's module pointer.
pub(crate) type CompleteHook = (
    unsafe fn(&dyn super::Host, *const core::ffi::c_void),
    *const core::ffi::c_void,
);

/// The destroyer of a simulated stream and its module pointer.
pub(crate) type DestroyHook = (
    unsafe fn(*const core::ffi::c_void),
    *const core::ffi::c_void,
);

impl LocalReply {
    /// The value of reply header `name` (any case; the first if repeated), as given to
    /// `send_with`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }

    /// [`header`](Self::header) as text; `None` if absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// The body as text; `None` if it is not UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        core::str::from_utf8(&self.body).ok()
    }
}

impl fmt::Debug for LocalReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalReply")
            .field("status", &self.status)
            .field("headers", &HeadersDebug(&self.headers))
            .field("body", &BytesDebug(&self.body))
            .field("details", &self.details)
            .finish()
    }
}

fn owned(pairs: &[(&[u8], &[u8])]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec()))
        .collect()
}

/// Bytes of this host's own storage, as host bytes of a `&self` borrow of the host.
///
/// # Safety
/// `b` lies in the host's storage (its cells, borrowed for `'h` through `&self`), which changes
/// only through a host method that modifies or refills it, as `Raw::new` requires.
unsafe fn raw<'h>(b: &[u8]) -> Raw<'h> {
    // SAFETY: guaranteed by the caller.
    unsafe { Raw::new(b.as_ptr(), b.len()) }
}

/// An owned copy of a value a filter writes.
fn owned_meta(value: MetadataValue<'_>) -> MetaValue {
    match value {
        MetadataValue::Str(s) => MetaValue::Str(String::from_utf8_lossy(s).into_owned()),
        MetadataValue::Num(n) => MetaValue::Num(n),
        MetadataValue::Bool(b) => MetaValue::Bool(b),
    }
}

/// Reads `v` as `kind`. A string is a view of the value's heap bytes, which stay put until the
/// test changes that metadata entry.
///
/// # Safety
/// `v` is in this host's metadata cells, borrowed for `'h` (as `raw` requires).
unsafe fn read_meta<'h>(v: &MetaValue, kind: MetaKind) -> Option<MetaRead<'h>> {
    match (v, kind) {
        // SAFETY: guaranteed by the caller.
        (MetaValue::Str(s), MetaKind::Str) => Some(MetaRead::Str(unsafe { raw(s.as_bytes()) })),
        (MetaValue::Num(n), MetaKind::Num) => Some(MetaRead::Num(*n)),
        (MetaValue::Bool(b), MetaKind::Bool) => Some(MetaRead::Bool(*b)),
        _ => None,
    }
}

impl SimHost {
    /// Runs `f` on metadata `ns:key` from `source` (0 is dynamic metadata), if set.
    fn with_meta_value<R>(
        &self,
        source: u32,
        ns: &[u8],
        key: &[u8],
        f: impl FnOnce(&MetaValue) -> Option<R>,
    ) -> Option<R> {
        let (ns, key) = (
            String::from_utf8_lossy(ns).into_owned(),
            String::from_utf8_lossy(key).into_owned(),
        );
        if source == crate::abi::metadata_source::DYNAMIC {
            return self.metadata.borrow().get(&(ns, key)).and_then(f);
        }
        self.source_metadata
            .borrow()
            .get(&(source, ns, key))
            .and_then(f)
    }

    /// Every host call goes through here: records calls made after the stream was destroyed and
    /// injects a panic where asked.
    pub(crate) fn touch(&self, what: &'static str) {
        if self.destroy_requested.get() {
            self.calls_after_destroy.borrow_mut().push(what);
        }
        if self.panic_in.get() == Some(what) {
            panic!("simulated failure in host call {what}");
        }
    }

    /// Moves every header value to a new allocation, as Envoy may between hooks: a view kept
    /// from an earlier hook then points at freed memory (which Miri reports).
    pub(crate) fn rebox(&self) {
        for m in &self.maps {
            for (_, v) in m.borrow_mut().iter_mut() {
                *v = v.to_vec().into_boxed_slice();
            }
        }
    }

    /// The answer Envoy gives inside the start call for `cluster`, if it is set up to.
    fn inline_answer(&self, cluster: &[u8]) -> Option<(u16, Vec<u8>)> {
        self.inline_answers
            .borrow()
            .iter()
            .find(|(c, _, _)| c.as_bytes() == cluster)
            .map(|(_, status, body)| (*status, body.clone()))
    }

    fn deliver(&self, event: SimEvent) {
        if self.destroy_requested.get() {
            return;
        }
        let f = self.reenter.borrow().clone();
        if let Some(f) = f {
            f(self, event);
        }
    }
}

impl Host for SimHost {
    fn header(&self, map: Map, key: &[u8], index: usize) -> (Option<Raw<'_>>, usize) {
        self.touch("header");
        let m = self.maps[map as usize].borrow();
        let mut count = 0;
        let mut found = None;
        for (k, v) in m.iter() {
            if k.eq_ignore_ascii_case(key) {
                if count == index {
                    // SAFETY: the bytes are in this host's cells (borrowed through `&self`),
                    // changed only by a host method that modifies them, as `raw` requires.
                    found = Some(unsafe { raw(v) });
                }
                count += 1;
            }
        }
        (found, count)
    }

    fn for_each_header(&self, map: Map, f: &mut dyn FnMut(Raw<'_>, Raw<'_>)) {
        self.touch("for_each_header");
        let list: Vec<(Raw<'_>, Raw<'_>)> = self.maps[map as usize]
            .borrow()
            .iter()
            // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only
            // by a host method that modifies them, as `raw` requires.
            .map(|(k, v)| (unsafe { raw(k) }, unsafe { raw(v) }))
            .collect();
        for (k, v) in list {
            f(k, v);
        }
    }

    fn set_header(&self, map: Map, key: &[u8], value: Option<&[u8]>) -> bool {
        self.touch("set_header");
        let mut m = self.maps[map as usize].borrow_mut();
        let lower = key.to_ascii_lowercase().into_boxed_slice();
        match value {
            None => m.retain(|(k, _)| !k.eq_ignore_ascii_case(key)),
            Some(v) => {
                if let Some(pos) = m.iter().position(|(k, _)| k.eq_ignore_ascii_case(key)) {
                    m[pos].1 = v.into();
                    let mut i = pos + 1;
                    while i < m.len() {
                        if m[i].0.eq_ignore_ascii_case(key) {
                            m.remove(i);
                        } else {
                            i += 1;
                        }
                    }
                } else {
                    m.push((lower, v.into()));
                }
            }
        }
        true
    }

    fn add_header(&self, map: Map, key: &[u8], value: &[u8]) -> bool {
        self.touch("add_header");
        self.maps[map as usize]
            .borrow_mut()
            .push((key.to_ascii_lowercase().into_boxed_slice(), value.into()));
        true
    }

    fn body_len(&self, kind: BodyKind) -> usize {
        self.touch("body_len");
        self.bodies[kind as usize]
            .borrow()
            .iter()
            .map(|c| c.len())
            .sum()
    }

    fn copy_body(&self, kind: BodyKind, offset: usize, dst: &mut [u8]) -> usize {
        self.touch("copy_body");
        let chunks = self.bodies[kind as usize].borrow();
        crate::host::copy_from_chunks(chunks.iter().map(|c| &c[..]), offset, dst)
    }

    fn received_is_buffered(&self, _request: bool) -> bool {
        self.touch("received_is_buffered");
        self.received_is_buffered.get()
    }

    fn drain_body(&self, kind: BodyKind, n: usize) -> bool {
        self.touch("drain_body");
        let mut chunks = self.bodies[kind as usize].borrow_mut();
        let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let rest = all[n.min(all.len())..].to_vec();
        chunks.clear();
        if !rest.is_empty() {
            chunks.push(rest.into_boxed_slice());
        }
        true
    }

    fn append_body(&self, kind: BodyKind, data: &[u8]) -> bool {
        self.touch("append_body");
        self.bodies[kind as usize].borrow_mut().push(data.into());
        true
    }

    fn send_response(&self, status: u32, headers: &[(&[u8], &[u8])], body: &[u8], details: &[u8]) {
        self.touch("send_response");
        // Like Envoy, the reply's headers replace the response header map: the old values are
        // freed now.
        let mut reply: Pairs = vec![(
            b":status".to_vec().into_boxed_slice(),
            status.to_string().into_bytes().into_boxed_slice(),
        )];
        reply.extend(headers.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        *self.maps[Map::ResponseHeaders as usize].borrow_mut() = reply;
        *self.local_reply.borrow_mut() = Some(LocalReply {
            // jisr refuses statuses outside 200–599 before they reach Envoy.
            status: u16::try_from(status).unwrap_or(u16::MAX),
            headers: owned(headers),
            body: body.to_vec(),
            details: String::from_utf8_lossy(details).into_owned(),
        });
        if let Some((destroy, m)) = self.destroy_during_reply.take() {
            self.destroy_requested.set(true);
            // SAFETY: `m` is the live stream this host serves and `destroy` its destroyer, as
            // Envoy would call it; the stream must cope with being destroyed from here.
            unsafe { destroy(m) };
        }
    }

    fn send_response_headers(&self, headers: &[(&[u8], &[u8])], end_stream: bool) {
        self.touch("send_response_headers");
        let mut s = self.streamed.borrow_mut();
        let r = s.get_or_insert_with(StreamedReply::default);
        r.headers = owned(headers);
        r.ended |= end_stream;
    }

    fn send_response_data(&self, data: &[u8], end_stream: bool) {
        self.touch("send_response_data");
        let mut s = self.streamed.borrow_mut();
        let r = s.get_or_insert_with(StreamedReply::default);
        r.data.push(data.to_vec());
        r.ended |= end_stream;
    }

    fn send_response_trailers(&self, trailers: &[(&[u8], &[u8])]) {
        self.touch("send_response_trailers");
        let mut s = self.streamed.borrow_mut();
        let r = s.get_or_insert_with(StreamedReply::default);
        r.trailers = Some(owned(trailers));
        r.ended = true;
    }

    fn reset_stream(&self, details: &[u8]) {
        self.touch("reset_stream");
        *self.reset.borrow_mut() = Some(String::from_utf8_lossy(details).into_owned());
    }

    fn continue_decoding(&self) {
        self.touch("continue_decoding");
        self.continue_decoding.set(self.continue_decoding.get() + 1);
        if let Some(((complete, m), destroy)) = self.complete_during_continue.take() {
            self.completed_inside.set(true);
            // SAFETY: `m` is the live stream this host serves and `complete` its completion
            // call (both set by its `TestStream`), made from inside one of its hooks as Envoy
            // makes it; the stream must cope with completing here.
            unsafe { complete(self, m) };
            if let Some((destroy, m)) = destroy {
                self.destroy_requested.set(true);
                // SAFETY: as for `destroy_during_reply`: the stream's destroyer, called once,
                // as Envoy would call it.
                unsafe { destroy(m) };
            }
        }
    }

    fn continue_encoding(&self) {
        self.touch("continue_encoding");
        self.continue_encoding.set(self.continue_encoding.get() + 1);
    }

    fn append_metadata(&self, ns: &[u8], key: &[u8], value: MetadataValue<'_>) -> bool {
        self.touch("append_metadata");
        let k = (
            String::from_utf8_lossy(ns).into_owned(),
            String::from_utf8_lossy(key).into_owned(),
        );
        let mut md = self.metadata.borrow_mut();
        match md.entry(k).or_insert_with(|| MetaValue::List(Vec::new())) {
            MetaValue::List(items) => {
                items.push(owned_meta(value));
                true
            }
            _ => false,
        }
    }

    fn set_metadata(&self, ns: &[u8], key: &[u8], value: MetadataValue<'_>) {
        self.touch("set_metadata");
        let v = owned_meta(value);
        self.metadata.borrow_mut().insert(
            (
                String::from_utf8_lossy(ns).into_owned(),
                String::from_utf8_lossy(key).into_owned(),
            ),
            v,
        );
    }

    fn metadata(&self, source: u32, ns: &[u8], key: &[u8], kind: MetaKind) -> Option<MetaRead<'_>> {
        self.touch("metadata");
        // SAFETY: `v` is in this host's metadata cells, borrowed through `&self`.
        self.with_meta_value(source, ns, key, |v| unsafe { read_meta(v, kind) })
    }

    fn metadata_names(&self, source: u32, ns: Option<&[u8]>, f: &mut dyn FnMut(Raw<'_>)) {
        self.touch("metadata_names");
        // Names in sorted order; Envoy gives protobuf map order, so callers must not rely on
        // any order.
        let mut names: Vec<&[u8]> = Vec::new();
        let dynamic = self.metadata.borrow();
        let other = self.source_metadata.borrow();
        let entries: Vec<(&str, &str)> = if source == crate::abi::metadata_source::DYNAMIC {
            dynamic
                .keys()
                .map(|(n, k)| (n.as_str(), k.as_str()))
                .collect()
        } else {
            other
                .keys()
                .filter(|(s, _, _)| *s == source)
                .map(|(_, n, k)| (n.as_str(), k.as_str()))
                .collect()
        };
        for (n, k) in entries {
            let name = match ns {
                Some(ns) if n.as_bytes() == ns => k.as_bytes(),
                Some(_) => continue,
                None => n.as_bytes(),
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        for name in names {
            // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only
            // by a host method that modifies them, as `raw` requires.
            f(unsafe { raw(name) });
        }
    }

    fn metadata_list_len(&self, source: u32, ns: &[u8], key: &[u8]) -> Option<usize> {
        self.touch("metadata_list_len");
        self.with_meta_value(source, ns, key, |v| match v {
            MetaValue::List(items) => Some(items.len()),
            _ => None,
        })
    }

    fn metadata_list_item(
        &self,
        source: u32,
        ns: &[u8],
        key: &[u8],
        index: usize,
        kind: MetaKind,
    ) -> Option<MetaRead<'_>> {
        self.touch("metadata_list_item");
        self.with_meta_value(source, ns, key, |v| match v {
            // SAFETY: the item is in this host's metadata cells, borrowed through `&self`.
            MetaValue::List(items) => unsafe { read_meta(items.get(index)?, kind) },
            _ => None,
        })
    }

    fn set_filter_state(&self, key: &[u8], value: &[u8]) -> bool {
        self.touch("set_filter_state");
        let mut fs = self.filter_state.borrow_mut();
        fs.retain(|(k, _)| k != key);
        fs.push((key.to_vec(), value.into()));
        true
    }

    fn filter_state(&self, key: &[u8]) -> Option<Raw<'_>> {
        self.touch("filter_state");
        self.filter_state
            .borrow()
            .iter()
            .find(|(k, _)| k == key)
            // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only
            // by a host method that modifies them, as `raw` requires.
            .map(|(_, v)| unsafe { raw(v) })
    }

    fn clear_route_cache(&self) {
        self.touch("clear_route_cache");
        self.route_cache_cleared
            .set(self.route_cache_cleared.get() + 1);
    }

    fn clear_route_cluster_cache(&self) {
        self.touch("clear_route_cluster_cache");
        self.route_cluster_cache_cleared
            .set(self.route_cluster_cache_cleared.get() + 1);
    }

    fn add_custom_flag(&self, flag: &[u8]) {
        self.touch("add_custom_flag");
        self.custom_flags
            .borrow_mut()
            .push(String::from_utf8_lossy(flag).into_owned());
    }

    fn cluster_name(&self) -> Option<Raw<'_>> {
        self.touch("cluster_name");
        // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only by a
        // host method that modifies them, as `raw` requires.
        self.cluster
            .borrow()
            .as_ref()
            .map(|(name, _)| unsafe { raw(name) })
    }

    fn cluster_host_count(&self, priority: u32) -> Option<[u64; 3]> {
        self.touch("cluster_host_count");
        let c = self.cluster.borrow();
        c.as_ref()?.1.get(priority as usize).copied()
    }

    fn buffer_limit(&self) -> u64 {
        self.touch("buffer_limit");
        self.buffer_limit.get().unwrap_or(1 << 20)
    }

    fn set_buffer_limit(&self, limit: u64) {
        self.touch("set_buffer_limit");
        self.buffer_limit.set(Some(limit));
    }

    fn attr_str(&self, id: u32) -> Option<Raw<'_>> {
        self.touch("attr_str");
        if let Some((_, v)) = self.attrs_str.borrow().iter().find(|(i, _)| *i == id) {
            // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only
            // by a host method that modifies them, as `raw` requires.
            return Some(unsafe { raw(v) });
        }
        // Like Envoy, derive the request-line attributes from the request headers.
        let key: &[u8] = match id {
            0 => b":path",
            2 => b":authority",
            3 => b":scheme",
            4 => b":method",
            6 => b"referer",
            7 => b"user-agent",
            9 => b"x-request-id",
            _ => return None,
        };
        self.header(Map::RequestHeaders, key, 0).0
    }

    fn attr_int(&self, id: u32) -> Option<u64> {
        self.touch("attr_int");
        self.attrs_int
            .borrow()
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| *v)
    }

    fn attr_bool(&self, id: u32) -> Option<bool> {
        self.touch("attr_bool");
        self.attrs_bool
            .borrow()
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| *v)
    }

    fn metric(&self, op: MetricOp, id: usize, labels: &[&[u8]], value: u64) -> u32 {
        self.touch("metric");
        self.metrics.apply(op, id, labels, value)
    }

    fn log_enabled(&self, level: u32) -> bool {
        self.touch("log_enabled");
        level >= self.log_level.get()
    }

    fn log(&self, level: u32, msg: &[u8]) {
        self.touch("log");
        self.logs
            .borrow_mut()
            .push((level, String::from_utf8_lossy(msg).into_owned()));
    }

    fn new_scheduler(&self) -> Committer {
        self.touch("new_scheduler");
        self.schedulers_created
            .set(self.schedulers_created.get() + 1);
        let ptr = Arc::into_raw(self.queue.clone()) as *mut core::ffi::c_void;
        // SAFETY: `ptr` owns one strong count of the queue until `queue_release` drops it;
        // `SimQueue::push` is thread-safe.
        unsafe { Committer::new(ptr, queue_commit, queue_release) }
    }

    fn route_config(&self) -> *const core::ffi::c_void {
        self.touch("route_config");
        self.route_config.get().0
    }

    fn set_upstream_override_host(&self, host: &[u8], strict: bool) -> bool {
        self.touch("set_upstream_override_host");
        *self.override_host.borrow_mut() =
            Some((String::from_utf8_lossy(host).into_owned(), strict));
        true
    }

    fn worker_index(&self) -> u32 {
        self.touch("worker_index");
        0
    }
}

impl super::Outbound for SimHost {
    fn callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let has = |k: &[u8]| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k));
        if !(has(b":method") && has(b":path") && has(b"host")) {
            return Err(crate::abi::callout_init::MISSING_REQUIRED_HEADERS);
        }
        if cluster.is_empty()
            || self
                .unknown_clusters
                .borrow()
                .iter()
                .any(|c| c.as_bytes() == cluster)
        {
            return Err(crate::abi::callout_init::CLUSTER_NOT_FOUND);
        }
        let id = self.next_callout.get() + 1;
        self.next_callout.set(id);
        let inline = self.inline_answer(cluster);
        if let Some((status, body)) = inline {
            // Envoy's async client answers inside `send` and then returns no request, so the
            // filter reports "cannot create request" after the answer was delivered.
            self.deliver(SimEvent::CalloutDone { id, status, body });
            return Err(4);
        }
        self.callouts.borrow_mut().push(SimCallout {
            id,
            cluster: String::from_utf8_lossy(cluster).into_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec()))
                .collect(),
            body: body.to_vec(),
            timeout_ms,
        });
        Ok(id)
    }

    fn start_stream(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        end_stream: bool,
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let inline = self.inline_answer(cluster);
        if let Some((status, answer)) = inline {
            // Envoy writes the id, then sends the headers, and the router answers at once:
            // headers, data and completion arrive inside this call, which still succeeds.
            let id = self.next_callout.get() + 1;
            self.next_callout.set(id);
            self.stream_log
                .borrow_mut()
                .push((id, format!("start body={} end={end_stream}", body.len())));
            self.deliver(SimEvent::StreamHeaders {
                id,
                status,
                end: false,
            });
            self.deliver(SimEvent::StreamData {
                id,
                data: answer,
                end: true,
            });
            self.deliver(SimEvent::StreamComplete { id });
            return Ok(id);
        }
        let id = self.callout(cluster, headers, body, timeout_ms)?;
        self.stream_log
            .borrow_mut()
            .push((id, format!("start body={} end={end_stream}", body.len())));
        Ok(id)
    }

    fn stream_send(&self, id: u64, data: &[u8], end_stream: bool) -> bool {
        self.touch("stream_send");
        self.stream_log.borrow_mut().push((
            id,
            format!("data {} end={end_stream}", String::from_utf8_lossy(data)),
        ));
        let events: Vec<SimEvent> = self.on_stream_send.borrow_mut().drain(..).collect();
        for e in events {
            self.deliver(e);
        }
        true
    }

    fn stream_trailers(&self, id: u64, trailers: &[(&[u8], &[u8])]) -> bool {
        self.touch("stream_trailers");
        self.stream_log
            .borrow_mut()
            .push((id, format!("trailers {}", trailers.len())));
        true
    }

    fn stream_reset(&self, id: u64) {
        self.touch("stream_reset");
        self.stream_log.borrow_mut().push((id, "reset".to_string()));
    }
}

/// The simulated side of a filter config at load time.
#[derive(Debug, Default)]
pub(crate) struct SimConfigHost {
    pub(crate) metrics: Rc<SimMetrics>,
    pub(crate) logs: SimLogs,
    pub(crate) log_level: Cell<u32>,
    /// Events committed to the config's (main-thread) scheduler.
    pub(crate) queue: Arc<SimQueue>,
    /// Callouts and streaming callouts the config started, and what was sent on streams.
    pub(crate) work: Rc<SimConfigWork>,
    /// Whether the simulated Envoy lacks config-level metrics (before 1.39).
    pub(crate) before_1_39: Cell<bool>,
}

/// Callouts and streams a simulated config started.
#[derive(Debug, Default)]
pub(crate) struct SimConfigWork {
    pub(crate) callouts: RefCell<Vec<SimCallout>>,
    /// Streaming callouts: the start, then data, trailers and resets sent, as log lines.
    pub(crate) stream_log: RefCell<Vec<(u64, String)>>,
    pub(crate) next_id: Cell<u64>,
}

impl SimConfigHost {
    fn start(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let has = |k: &[u8]| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k));
        if !(has(b":method") && has(b":path") && has(b"host")) {
            return Err(crate::abi::callout_init::MISSING_REQUIRED_HEADERS);
        }
        if cluster.is_empty() {
            return Err(crate::abi::callout_init::CLUSTER_NOT_FOUND);
        }
        let id = self.work.next_id.get() + 1;
        self.work.next_id.set(id);
        self.work.callouts.borrow_mut().push(SimCallout {
            id,
            cluster: String::from_utf8_lossy(cluster).into_owned(),
            headers: owned(headers),
            body: body.to_vec(),
            timeout_ms,
        });
        Ok(id)
    }

    fn note(&self, id: u64, what: String) {
        self.work.stream_log.borrow_mut().push((id, what));
    }
}

impl ConfigHost for SimConfigHost {
    fn new_scheduler(&self) -> Committer {
        let ptr = Arc::into_raw(self.queue.clone()) as *mut core::ffi::c_void;
        // SAFETY: `ptr` owns one strong count of the queue until `queue_release` drops it;
        // `SimQueue::push` is thread-safe.
        unsafe { Committer::new(ptr, queue_commit, queue_release) }
    }

    fn metric(&self, op: MetricOp, id: usize, labels: &[&[u8]], value: u64) -> Option<u32> {
        (!self.before_1_39.get()).then(|| self.metrics.apply(op, id, labels, value))
    }

    /// Under Miri a test's stats flush runs only through `TestFilter::flush_envoy_stats` (or a
    /// background run): the timer thread a deadline would start outlives the test, and Miri
    /// reports a thread still running at exit as a leak, hiding real leaks behind it.
    fn timers_fire_stats_flush(&self) -> bool {
        !cfg!(miri)
    }

    fn subscribe_secret(&self, name: &[u8], _source: &[u8]) -> Option<u64> {
        Some(context::secret_handle(name))
    }

    fn secret(&self, handle: u64) -> Option<Vec<u8>> {
        context::secret_value(handle)
    }

    fn process_log(&self) -> Option<fn(u32, &[u8])> {
        None
    }

    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[&str]) -> Result<usize, u32> {
        let mut defs = self.metrics.defs.borrow_mut();
        defs.push((
            kind,
            name.to_string(),
            labels.iter().map(|l| l.to_string()).collect(),
        ));
        Ok(defs.len() - 1)
    }

    fn log_enabled(&self, level: u32) -> bool {
        level >= self.log_level.get()
    }

    fn log(&self, level: u32, msg: &[u8]) {
        self.logs
            .borrow_mut()
            .push((level, String::from_utf8_lossy(msg).into_owned()));
    }
}

impl super::Outbound for SimConfigHost {
    fn callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        self.start(cluster, headers, body, timeout_ms)
    }

    fn start_stream(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        end_stream: bool,
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let id = self.start(cluster, headers, body, timeout_ms)?;
        self.note(id, format!("start end={end_stream}"));
        Ok(id)
    }

    fn stream_send(&self, id: u64, data: &[u8], end_stream: bool) -> bool {
        self.note(
            id,
            format!("data {:?} end={end_stream}", String::from_utf8_lossy(data)),
        );
        true
    }

    fn stream_trailers(&self, id: u64, trailers: &[(&[u8], &[u8])]) -> bool {
        self.note(id, format!("trailers {}", trailers.len()));
        true
    }

    fn stream_reset(&self, id: u64) {
        self.note(id, "reset".to_string());
    }
}

/// # Safety
/// `ptr` is a live pointer from `Arc::into_raw` of a `SimQueue`.
unsafe fn queue_commit(ptr: *mut core::ffi::c_void, event: u64) {
    // SAFETY: guaranteed by the caller; the committer holds a strong count.
    unsafe { &*(ptr as *const SimQueue) }.push(event);
}

/// # Safety
/// `ptr` came from `Arc::into_raw` of a `SimQueue`; called once.
unsafe fn queue_release(ptr: *mut core::ffi::c_void) {
    // SAFETY: guaranteed by the caller: gives back the strong count taken at creation.
    drop(unsafe { Arc::from_raw(ptr as *const SimQueue) });
}
