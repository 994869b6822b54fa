//! Allocation-free buffers for tapping streams.
//!
//! Everything here is pure code with no Envoy types. Types that keep bytes allocate their
//! storage once, at construction, with a capacity the caller chooses; after that nothing in
//! this module allocates.
//!
//! * [`logfmt`]: deterministic `msg key=value` log lines written into any `fmt::Write`.

pub mod logfmt;
