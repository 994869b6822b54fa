//! Metric handles defined at config time and used from handlers.

use std::fmt;

/// A counter defined with [`ConfigHandle::counter`](crate::ConfigHandle::counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    pub(crate) id: usize,
    pub(crate) labels: usize,
}

/// A gauge defined with [`ConfigHandle::gauge`](crate::ConfigHandle::gauge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gauge {
    pub(crate) id: usize,
    pub(crate) labels: usize,
}

/// A histogram defined with [`ConfigHandle::histogram`](crate::ConfigHandle::histogram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram {
    pub(crate) id: usize,
    pub(crate) labels: usize,
}

/// Why a metric update was not applied.
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
