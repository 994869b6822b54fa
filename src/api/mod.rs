//! What users write against: the registry, configs, metrics, logs, time, callouts and
//! background work shared by every kind, then one module per kind ([`http`], [`server`]).

pub(crate) mod background;
pub(crate) mod callout;
pub(crate) mod callout_stream;
pub(crate) mod config;
pub(crate) mod http;
pub(crate) mod join;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod pb;
pub(crate) mod published;
pub(crate) mod registry;
pub(crate) mod secret;
pub(crate) mod server;
pub(crate) mod time;
