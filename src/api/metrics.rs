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
