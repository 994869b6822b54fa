//! Which host serves a socket's running hook.

crate::host::current::hook_host_slot!(
    /// The host of the hook currently running for one socket (empty between hooks, and for
    /// good once Envoy destroyed the filter or the socket went on).
    SocketHostSlot,
    super::SocketHost
);
