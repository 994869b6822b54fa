//! End-to-end harness for jisr: real Envoy (from PyPI), the example modules and the test
//! fixtures (`e2e/fixtures/`), a real upstream server and an HTTP/1.1 client (`ureq`, plus
//! raw connections where a test needs the wire), all on 127.0.0.1.
//!
//! ```no_run
//! use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, client, module_filter};
//! let up = Upstream::start("echo");
//! let cfg = EnvoyConfig::new()
//!     .listener(Listener::new("main").filter(module_filter("hello", "hello", None)))
//!     .upstream(up.port());
//! let envoy = Envoy::start(&cfg);
//! let resp = client::get(envoy.listener_port("main"), "/");
//! assert_eq!(resp.json()["headers"]["x-hello"].as_str(), Some("from-jisr"));
//! ```
#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod dns;
pub mod envoy;
pub mod install;
pub mod json;
pub mod modules;
pub mod paths;
pub mod peers;
pub mod soak;
pub mod symbols;
pub mod telemetry;
pub mod upstream;
mod wire;

pub use config::{
    Cluster, EnvoyConfig, HttpFilter, Listener, Route, module_filter, write_generic_secret,
};
pub use envoy::{Envoy, access_field, free_port, module_stat, wait_until};
pub use install::{
    ENVOY_VERSION, ENVOY_VERSION_ENV, abi_load_line, envoy_bin, envoy_minor, envoy_version,
};
pub use modules::{ProfileBuild, build_example_with_profile, module_path, modules_dir};
pub use upstream::{ResponseWriter, Upstream, UpstreamRequest, echo_server};
