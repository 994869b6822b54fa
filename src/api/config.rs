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

    /// The reason the config was refused, as given to [`ConfigError::new`].
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

    /// The `filter_config` parsed as JSON into `T` (feature `serde`, on by default).
    ///
    /// An error names the path of the bad field (`limits.max_body`, `routes[2].cluster`), what
    /// was wrong and where (line and column); Envoy's log shows it after the filter's name, as
    /// in the example below. An empty `filter_config` (the field left out in Envoy) is an error
    /// too; check [`config`](Self::config)`.is_empty()` first if the filter has a default.
    /// Any `serde::Deserialize` type works (`#[serde(deny_unknown_fields)]` catches misspelt
    /// keys); `serde` with its `derive` feature is your crate's own dependency.
    ///
    /// ```
    /// # use jisr::testing::TestFilter;
    /// use jisr::{ConfigError, ConfigHandle, Registry, Request, ResponseWriter};
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Limits { max_body: usize, #[serde(default)] paths: Vec<String> }
    /// #[derive(Deserialize)]
    /// struct Config { limits: Limits }
    ///
    /// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Config, ConfigError> {
    ///     cfg.json::<Config>()
    /// }
    /// async fn check(cfg: &Config, mut req: Request<'_>, _w: ResponseWriter<'_>) {
    ///     req.limit_body(cfg.limits.max_body);
    /// }
    /// fn register(r: &mut Registry) { r.filter("limits").state(load).handle(check); }
    ///
    /// assert!(TestFilter::new(register, "limits", br#"{"limits": {"max_body": 1024}}"#).is_ok());
    /// let refused = TestFilter::new(register, "limits", br#"{"limits": {"max_body": "lots"}}"#)
    ///     .err()
    ///     .unwrap();
    /// assert_eq!(
    ///     refused,
    ///     "jisr: filter 'limits' rejected its config: filter_config: at `limits.max_body`: \
    ///      invalid type: string \"lots\", expected usize at line 1 column 30"
    /// );
    /// ```
    #[cfg(feature = "serde")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        json_config(self.bytes)
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

/// Parses `bytes` as one JSON document into `T`; the error says where and at which field.
#[cfg(feature = "serde")]
fn json_config<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new(
            "filter_config: empty, expected a JSON document",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ConfigError::new(format!("filter_config: {inner}"))
        } else {
            ConfigError::new(format!("filter_config: at `{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ConfigError::new(format!("filter_config: {e}")))?;
    Ok(value)
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::json_config;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Route {
        prefix: String,
        cluster: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        routes: Vec<Route>,
        #[serde(default)]
        timeout_ms: u64,
    }

    fn err(text: &str) -> String {
        json_config::<Config>(text.as_bytes())
            .unwrap_err()
            .message()
            .to_string()
    }

    #[test]
    fn parses_a_valid_config() {
        let c: Config =
            json_config(br#" {"routes": [{"prefix": "/a", "cluster": "x"}]} "#).unwrap();
        assert_eq!(c.routes[0].cluster, "x");
        assert_eq!(c.timeout_ms, 0);
    }

    #[test]
    fn errors_name_the_path_of_the_bad_field() {
        let text = r#"{"routes": [{"prefix": "/a", "cluster": "x"},
                                   {"prefix": "/b", "cluster": 7}]}"#;
        assert_eq!(
            err(text),
            "filter_config: at `routes[1].cluster`: invalid type: integer `7`, \
             expected a string at line 2 column 64"
        );
        assert_eq!(
            err(r#"{"routes": [], "timeout": 5}"#),
            "filter_config: at `timeout`: unknown field `timeout`, \
             expected `routes` or `timeout_ms` at line 1 column 24"
        );
        assert_eq!(
            err(r#"{"timeout_ms": 5}"#),
            "filter_config: missing field `routes` at line 1 column 17"
        );
    }

    #[test]
    fn syntax_errors_empty_configs_and_trailing_text_are_refused() {
        assert_eq!(
            err(r#"{"routes": [,]}"#),
            "filter_config: at `routes[0]`: expected value at line 1 column 13"
        );
        assert_eq!(err("  "), "filter_config: empty, expected a JSON document");
        assert_eq!(
            err(r#"{"routes": []} {}"#),
            "filter_config: trailing characters at line 1 column 16"
        );
    }
}
