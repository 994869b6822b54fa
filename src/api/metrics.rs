//! Metric handles defined at config time and used from handlers.

use std::fmt;

/// A counter defined with [`ConfigHandle::counter`](crate::ConfigHandle::counter).
///
/// A `Counter` is a small `Copy` handle: keep it in the filter's state and bump it from
/// handlers (with one value per label, in definition order).
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{ConfigError, ConfigHandle, Counter, Registry, Request, ResponseWriter};
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Counter, ConfigError> {
///     cfg.counter("requests_total", &["method"])
/// }
/// async fn count(requests: &Counter, req: Request<'_>, w: ResponseWriter<'_>) {
///     let _ = w.counter_inc(*requests, &[req.method().unwrap_or("-")]);
/// }
/// fn register(r: &mut Registry) { r.filter("count").state(load).handle(count); }
///
/// let f = TestFilter::new(register, "count", b"").unwrap();
/// f.stream().request_headers(&[(":method", "GET"), (":path", "/")], true);
/// assert_eq!(f.metric("requests_total.GET"), Some(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    pub(crate) id: usize,
    pub(crate) labels: usize,
}

/// A gauge defined with [`ConfigHandle::gauge`](crate::ConfigHandle::gauge).
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{ConfigError, ConfigHandle, Gauge, Registry, Request, ResponseWriter};
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Gauge, ConfigError> {
///     cfg.gauge("uploads_in_progress", &[])
/// }
/// async fn upload(uploading: &Gauge, mut req: Request<'_>, w: ResponseWriter<'_>) {
///     let _ = w.gauge_add(*uploading, &[], 1);
///     let _ = req.read_to_end(&mut Vec::new()).await;
///     let _ = w.gauge_sub(*uploading, &[], 1);
/// }
/// fn register(r: &mut Registry) { r.filter("upload").state(load).handle(upload); }
///
/// let f = TestFilter::new(register, "upload", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":method", "POST"), (":path", "/files")], false);
/// assert_eq!(f.metric("uploads_in_progress"), Some(1));
/// s.request_body(b"last chunk", true);
/// assert_eq!(f.metric("uploads_in_progress"), Some(0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gauge {
    pub(crate) id: usize,
    pub(crate) labels: usize,
}

/// A histogram defined with [`ConfigHandle::histogram`](crate::ConfigHandle::histogram).
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{ConfigError, ConfigHandle, Histogram, Registry, Request, ResponseWriter};
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Histogram, ConfigError> {
///     cfg.histogram("upload_bytes", &[])
/// }
/// async fn sizes(sizes: &Histogram, req: Request<'_>, w: ResponseWriter<'_>) {
///     let len = req.header_str("content-length").and_then(|v| v.parse().ok());
///     let _ = w.histogram_record(*sizes, &[], len.unwrap_or(0));
/// }
/// fn register(r: &mut Registry) { r.filter("sizes").state(load).handle(sizes); }
///
/// let f = TestFilter::new(register, "sizes", b"").unwrap();
/// for len in ["512", "40960"] {
///     f.stream().request_headers(&[(":path", "/up"), ("content-length", len)], true);
/// }
/// assert_eq!(f.histogram("upload_bytes"), [512, 40960]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram {
    pub(crate) id: usize,
    pub(crate) labels: usize,
}

/// Why a metric update was not applied.
///
/// Updates return it rather than fail silently; a handler usually ignores it (`let _ =`), but
/// it tells a test or a log what went wrong:
///
/// ```
/// use jisr::handler::MetricError;
/// # use jisr::testing::TestFilter;
/// use jisr::{ConfigError, ConfigHandle, Counter, Registry, Request, ResponseWriter};
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Counter, ConfigError> {
///     cfg.counter("denied_total", &["reason"])
/// }
/// async fn deny(denied: &Counter, _req: Request<'_>, w: ResponseWriter<'_>) {
///     let r: Result<(), MetricError> = w.counter_inc(*denied, &[]); // the label value is missing
///     w.send(403, format!("{r:?}").as_bytes());
/// }
/// fn register(r: &mut Registry) { r.filter("deny").state(load).handle(deny); }
///
/// let f = TestFilter::new(register, "deny", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.local_reply().unwrap().body, b"Err(LabelCount { expected: 1, got: 0 })");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricError {
    /// The number of label values differs from the number of label names at definition.
    LabelCount {
        /// Labels the metric was defined with.
        expected: usize,
        /// Label values given.
        got: usize,
    },
    /// Envoy does not know the metric id.
    NotFound,
    /// Envoy refused the update (its metrics result code).
    Rejected(u32),
    /// Called outside a handler poll (e.g. from a `Drop` after the stream ended), or, for
    /// [`Background`](crate::background::Background) metrics, outside a background task.
    Detached,
    /// This Envoy lacks the callback (config-level metrics need Envoy 1.39+).
    Unsupported(crate::Unsupported),
}

impl fmt::Display for MetricError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricError::LabelCount { expected, got } => {
                write!(f, "metric expects {expected} label values, got {got}")
            }
            MetricError::NotFound => f.write_str("metric not found"),
            MetricError::Rejected(rc) => write!(f, "metric update rejected (result {rc})"),
            MetricError::Detached => f.write_str("stream is not active"),
            MetricError::Unsupported(u) => u.fmt(f),
        }
    }
}

impl std::error::Error for MetricError {}

/// The public metric methods, for a type with a private
/// `fn metric(&self, op: MetricOp, id: usize, expected: usize, labels: &[&str], v: u64)
/// -> Result<(), MetricError>`; `$errors` documents when they fail.
macro_rules! metric_methods {
    ($errors:literal) => {
        /// Adds `n` to a counter; `labels` are the values, in definition order.
        ///
        /// # Errors
        #[doc = $errors]
        pub fn counter_add(
            &self,
            c: crate::Counter,
            labels: &[&str],
            n: u64,
        ) -> Result<(), crate::handler::MetricError> {
            self.metric(crate::host::MetricOp::CounterAdd, c.id, c.labels, labels, n)
        }

        /// Increments a counter by one.
        ///
        /// # Errors
        #[doc = $errors]
        pub fn counter_inc(
            &self,
            c: crate::Counter,
            labels: &[&str],
        ) -> Result<(), crate::handler::MetricError> {
            self.counter_add(c, labels, 1)
        }

        /// Sets a gauge.
        ///
        /// # Errors
        #[doc = $errors]
        pub fn gauge_set(
            &self,
            g: crate::Gauge,
            labels: &[&str],
            v: u64,
        ) -> Result<(), crate::handler::MetricError> {
            self.metric(crate::host::MetricOp::GaugeSet, g.id, g.labels, labels, v)
        }

        /// Adds to a gauge.
        ///
        /// # Errors
        #[doc = $errors]
        pub fn gauge_add(
            &self,
            g: crate::Gauge,
            labels: &[&str],
            v: u64,
        ) -> Result<(), crate::handler::MetricError> {
            self.metric(crate::host::MetricOp::GaugeAdd, g.id, g.labels, labels, v)
        }

        /// Subtracts from a gauge.
        ///
        /// # Errors
        #[doc = $errors]
        pub fn gauge_sub(
            &self,
            g: crate::Gauge,
            labels: &[&str],
            v: u64,
        ) -> Result<(), crate::handler::MetricError> {
            self.metric(crate::host::MetricOp::GaugeSub, g.id, g.labels, labels, v)
        }

        /// Records a histogram value.
        ///
        /// # Errors
        #[doc = $errors]
        pub fn histogram_record(
            &self,
            h: crate::Histogram,
            labels: &[&str],
            v: u64,
        ) -> Result<(), crate::handler::MetricError> {
            self.metric(
                crate::host::MetricOp::HistogramRecord,
                h.id,
                h.labels,
                labels,
                v,
            )
        }
    };
}
pub(crate) use metric_methods;

/// Turns the ABI result of a metric operation into the typed error.
/// A metric update of a kind whose metrics take no labels in Envoy's ABI (network, listener):
/// label values are refused before `apply` runs; `apply` gives the ABI result (`None`:
/// outside the handler's polls).
pub(crate) fn label_free(
    expected: usize,
    labels: &[&str],
    apply: impl FnOnce() -> Option<u32>,
) -> Result<(), MetricError> {
    if labels.len() != expected {
        return Err(MetricError::LabelCount {
            expected,
            got: labels.len(),
        });
    }
    metric_result(apply(), expected, labels.len())
}

pub(crate) fn metric_result(
    rc: Option<u32>,
    expected: usize,
    got: usize,
) -> Result<(), MetricError> {
    use crate::abi::metrics_result;
    match rc {
        None => Err(MetricError::Detached),
        Some(metrics_result::SUCCESS) => Ok(()),
        Some(metrics_result::METRIC_NOT_FOUND) => Err(MetricError::NotFound),
        Some(metrics_result::INVALID_LABELS) => Err(MetricError::LabelCount { expected, got }),
        Some(rc) => Err(MetricError::Rejected(rc)),
    }
}
