//! Which host serves a connection's running hook.

crate::host::current::hook_host_slot!(
    /// The host of the hook currently running for one connection (empty between hooks, and
    /// for good once Envoy destroyed the filter).
    ConnHostSlot,
    super::ConnHost
);
