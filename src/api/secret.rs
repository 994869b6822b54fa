//! SDS generic secrets: subscribed when a filter config loads, read per request.

use crate::api::config::{ConfigError, ConfigHandle};

/// A generic secret (`envoy.extensions.transport_sockets.tls.v3.GenericSecret`) the filter
/// config subscribed to when it loaded. Envoy keeps it current (SDS or a watched file);
/// [`ResponseWriter::secret`](crate::ResponseWriter::secret) reads the current value, so a rotation is seen by the next read.
/// Envoy 1.40 tells modules nothing when a secret rotates: read it where you use it.
///
/// ```
/// use jisr::testing::{TestFilter, set_secret};
/// use jisr::{ConfigError, ConfigHandle, Registry, Request, ResponseWriter, Secret};
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Secret, ConfigError> {
///     cfg.secret("api-keys") // a comma-separated list of keys
/// }
/// async fn check(keys: &Secret, req: Request<'_>, w: ResponseWriter<'_>) {
///     let key = req.header("x-api-key").unwrap_or_default();
///     if !w.secret(*keys).unwrap_or_default().split(|b| *b == b',').any(|k| k == key) {
///         w.send(401, b"unknown key\n");
///     }
/// }
/// fn register(r: &mut Registry) { r.filter("keys").state(load).handle(check); }
///
/// set_secret("api-keys", Some(b"k1,k2"));
/// let f = TestFilter::new(register, "keys", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/"), ("x-api-key", "k3")], true);
/// assert_eq!(s.local_reply().unwrap().status, 401);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Secret {
    pub(crate) handle: u64,
}

impl ConfigHandle<'_> {
    fn subscribe(&mut self, name: &str, source: &str) -> Result<Secret, ConfigError> {
        match self
            .host
            .subscribe_secret(name.as_bytes(), source.as_bytes())
        {
            None => Err(ConfigError::new(format!(
                "secret '{name}': this Envoy has no generic secrets for modules (Envoy 1.40+)"
            ))),
            Some(0) => Err(ConfigError::new(format!(
                "secret '{name}': Envoy refused it (unknown static secret, or a bad config \
                 source; Envoy's log says which)"
            ))),
            Some(handle) => Ok(Secret { handle }),
        }
    }

    /// Subscribes to the static generic secret `name` of the bootstrap's
    /// `static_resources.secrets`.
    ///
    /// # Errors
    /// When Envoy has no such secret, or is older than 1.40; the config is refused then.
    pub fn secret(&mut self, name: &str) -> Result<Secret, ConfigError> {
        self.subscribe(name, "")
    }

    /// Subscribes to generic secret `name` from an SDS config source given as JSON, e.g. a
    /// watched file: `{"path_config_source": {"path": "/etc/envoy/keys.yaml"}}`.
    ///
    /// # Errors
    /// When Envoy refuses the source, or is older than 1.40; the config is refused then.
    pub fn sds_secret(
        &mut self,
        name: &str,
        config_source_json: &str,
    ) -> Result<Secret, ConfigError> {
        self.subscribe(name, config_source_json)
    }

    /// The secret's value now (a static secret has one at once; an SDS one may not yet).
    pub fn secret_value(&self, secret: Secret) -> Option<Vec<u8>> {
        self.host.secret(secret.handle)
    }
}
