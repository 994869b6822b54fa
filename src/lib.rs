//! jisr: Envoy HTTP filters as plain `async fn` handlers.
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]

pub mod buffer;
