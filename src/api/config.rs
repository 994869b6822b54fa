//! What a filter sees when Envoy loads one of its configs.

use crate::api::log::{self, Level};
use crate::api::metrics::{Counter, Gauge, Histogram};
use crate::host::{ConfigHost, MetricKind};
use std::fmt;

/// Why a filter refused its config. The message reaches Envoy's log with the filter name, and
/// Envoy rejects that configuration.
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{ConfigError, ConfigHandle, Registry, Request, ResponseWriter};
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<u64, ConfigError> {
///     let text = cfg.config_str()?;
///     text.trim().parse().map_err(|e| ConfigError::new(format!("limit {text:?}: {e}")))
/// }
/// async fn limit(_max: &u64, _req: Request<'_>, _w: ResponseWriter<'_>) {}
/// fn register(r: &mut Registry) { r.filter("limit").state(load).handle(limit); }
///
/// assert!(TestFilter::new(register, "limit", b"100").is_ok());
/// let refused = TestFilter::new(register, "limit", b"lots").err().unwrap();
/// assert!(refused.contains(r#"limit "lots": invalid digit"#), "{refused}");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    /// A config error with `msg`.
    pub fn new(msg: impl Into<String>) -> ConfigError {
        ConfigError(msg.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<String> for ConfigError {
    fn from(s: String) -> Self {
        ConfigError(s)
    }
}

impl From<&str> for ConfigError {
    fn from(s: &str) -> Self {
        ConfigError(s.to_string())
    }
}

/// One filter config being loaded: its name and raw `filter_config` bytes, metric
/// definitions, and logging. Runs on Envoy's main thread, once per config.
///
/// ```
/// use jisr::{ConfigError, ConfigHandle, Counter};
///
/// struct Limits { max: usize, hits: Counter }
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Limits, ConfigError> {
///     let text = cfg.config_str()?;
///     let max = text.trim().parse().map_err(|e| ConfigError::new(format!("max: {e}")))?;
///     Ok(Limits { max, hits: cfg.counter("limit_hits_total", &[])? })
/// }
/// # let _ = load;
/// ```
pub struct ConfigHandle<'c> {
    pub(crate) envoy_stats: bool,
    pub(crate) name: &'c str,
    pub(crate) bytes: &'c [u8],
    pub(crate) host: &'c dyn ConfigHost,
    /// The background runtime, once the filter asked for one.
    pub(crate) background: Option<std::sync::Arc<crate::executor::background::Runtime>>,
}

impl<'c> ConfigHandle<'c> {
    /// The `filter_name` of this config.
    pub fn filter_name(&self) -> &str {
        self.name
    }

    /// The raw `filter_config` bytes (a `StringValue` or `BytesValue` arrives as its contents,
    /// a `Struct` as JSON; empty when omitted).
    pub fn config(&self) -> &[u8] {
        self.bytes
    }

    /// The `filter_config` as UTF-8 text.
    pub fn config_str(&self) -> Result<&str, ConfigError> {
        core::str::from_utf8(self.bytes)
            .map_err(|e| ConfigError::new(format!("filter_config is not UTF-8: {e}")))
    }

    fn define(
        &mut self,
        kind: MetricKind,
        name: &str,
        labels: &[&str],
    ) -> Result<usize, ConfigError> {
        self.host.define_metric(kind, name, labels).map_err(|rc| {
            ConfigError::new(format!(
                "cannot define metric '{name}' (Envoy metrics result {rc})"
            ))
        })
    }

    /// Defines a counter (shown as `dynamicmodulescustom.<name>` in `/stats`; labelled ones as
    /// `dynamicmodulescustom.<name>.<label>.<value>`).
    pub fn counter(&mut self, name: &str, labels: &[&str]) -> Result<Counter, ConfigError> {
        Ok(Counter {
            id: self.define(MetricKind::Counter, name, labels)?,
            labels: labels.len(),
        })
    }

    /// Defines a gauge.
    pub fn gauge(&mut self, name: &str, labels: &[&str]) -> Result<Gauge, ConfigError> {
        Ok(Gauge {
            id: self.define(MetricKind::Gauge, name, labels)?,
            labels: labels.len(),
        })
    }

    /// Defines a histogram.
    pub fn histogram(&mut self, name: &str, labels: &[&str]) -> Result<Histogram, ConfigError> {
        Ok(Histogram {
            id: self.define(MetricKind::Histogram, name, labels)?,
            labels: labels.len(),
        })
    }

    /// Logs a line through Envoy's `dynamic_modules` logger (nothing is formatted when the level
    /// is disabled).
    #[track_caller]
    pub fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        let site = core::panic::Location::caller();
        if self.host.log_enabled(level as u32) {
            log::with_line(
                |s| fmt::write(s, args),
                |line| {
                    self.host
                        .log_at(level as u32, line, site.file(), site.line())
                },
            );
        }
    }
}
