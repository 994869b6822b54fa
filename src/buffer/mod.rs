//! Allocation-free buffers for tapping streams.
