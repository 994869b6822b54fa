//! Registering named filters in one module.

use crate::api::config::{ConfigError, ConfigHandle};
use crate::api::http::pipeline::{
    IntoPipeline, IntoRegistered, IntoRequestHandler, IntoResponseHandler, NoRequest, NoResponse,
    OnRequest,
};
use crate::api::http::raw::{RawConfig, RawFactory};
use crate::api::http::response::ResponseMode;
use crate::filter::http::core::{FilterMeta, FilterStats};
use crate::filter::http::hooks::ConfigHooks;
use crate::filter::http::pipeline::Pipeline;
use crate::filter::http::slot::JisrConfig;
use std::marker::PhantomData;
use std::sync::Arc;

type Build =
    Box<dyn Fn(&mut ConfigHandle<'_>) -> Result<Box<dyn ConfigHooks>, ConfigError> + Send + Sync>;

/// The filters one module offers, by `filter_name`. Filled by the function given to
/// [`export!`](crate::export).
///
/// ```
/// use jisr::{Registry, Request, ResponseWriter};
///
/// async fn hello(mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     let _ = req.set_header("x-hello", "from-jisr");
/// }
///
/// fn register(r: &mut Registry) {
///     r.register("hello", hello);
/// }
/// # let mut r = Registry::default();
/// # register(&mut r);
/// # assert_eq!(r.names().collect::<Vec<_>>(), ["hello"]);
/// ```
pub struct Registry {
    entries: Vec<(String, Build)>,
    routes: Vec<(String, RouteBuild)>,
    servers: Vec<(String, crate::api::server::ServerBuild)>,
    networks: Vec<(String, crate::api::network::NetBuild)>,
    listeners: Vec<(String, crate::api::listener::ListenerBuild)>,
    udps: Vec<(String, crate::api::udp::UdpBuild)>,
    envoy_stats: bool,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            entries: Vec::new(),
            routes: Vec::new(),
            servers: Vec::new(),
            networks: Vec::new(),
            listeners: Vec::new(),
            udps: Vec::new(),
            envoy_stats: true,
        }
    }
}

type RouteBuild =
    Box<dyn Fn(&[u8]) -> Result<Box<dyn std::any::Any + Send + Sync>, ConfigError> + Send + Sync>;

fn meta(
    cfg: &ConfigHandle<'_>,
    envoy: Option<crate::filter::http::envoy_stats::EnvoyStats>,
    mode: ResponseMode,
) -> Arc<FilterMeta> {
    Arc::new(FilterMeta {
        name: cfg.filter_name().to_string(),
        mode,
        stats: FilterStats::default(),
        envoy,
        process_log: cfg.host.process_log(),
    })
}

fn config_box<S, Q, R>(
    cfg: &mut ConfigHandle<'_>,
    state: S,
    req: Q,
    resp: R,
    mode: ResponseMode,
) -> Box<dyn ConfigHooks>
where
    S: Send + Sync + 'static,
    Q: Pipeline<S, ()>,
    R: Pipeline<S, Q::Output, Output = ()>,
{
    let envoy = if cfg.envoy_stats {
        match crate::filter::http::envoy_stats::EnvoyStats::define(cfg.host, cfg.filter_name()) {
            Ok(e) => Some(e),
            Err(e) => {
                cfg.log(
                    crate::Level::Warn,
                    format_args!("jisr: filter '{}': no Envoy stats: {e}", cfg.filter_name()),
                );
                None
            }
        }
    } else {
        None
    };
    let config = JisrConfig {
        meta: meta(cfg, envoy, mode),
        background: crate::filter::background::BackgroundSlot(cfg.background.take()),
        state,
        req,
        resp,
        pool: std::sync::Arc::default(),
    };
    crate::filter::http::meta::register_live(&config.meta, config.pool.clone());
    Box::new(config)
}

impl Registry {
    fn push(&mut self, name: &str, build: Build) -> &mut Self {
        self.entries.retain(|(n, _)| n != name);
        self.entries.push((name.to_string(), build));
        self
    }

    /// Registers a stateless request handler (or a chain ending in one) under `name`.
    pub fn register<H, M>(&mut self, name: &str, handler: H) -> &mut Self
    where
        H: IntoRegistered<M> + Clone + Send + Sync + 'static,
    {
        self.push(
            name,
            Box::new(move |cfg| {
                let req = handler.clone().into_pipeline();
                Ok(config_box(
                    cfg,
                    (),
                    req,
                    NoResponse,
                    ResponseMode::Passthrough,
                ))
            }),
        )
    }

    /// Starts registering a filter that has per-config state, a response handler, or both:
    /// finish with [`FilterBuilder::handle`] (request handler only),
    /// [`FilterBuilder::respond`] (request and response handlers) or
    /// [`FilterBuilder::on_response`] (response handler only).
    ///
    /// ```
    /// use jisr::{ConfigError, ConfigHandle, Registry, Request, Response, ResponseMode, ResponseWriter};
    ///
    /// struct Limits { max: usize }
    /// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Limits, ConfigError> {
    ///     let max = cfg.config_str()?.trim().parse().map_err(|e| ConfigError::new(format!("max: {e}")))?;
    ///     Ok(Limits { max })
    /// }
    /// async fn check(lim: &Limits, mut req: Request<'_>, _w: ResponseWriter<'_>) {
    ///     req.limit_body(lim.max);
    /// }
    /// async fn remember(req: Request<'_>, _w: ResponseWriter<'_>) -> bool {
    ///     req.header("x-debug").is_some()
    /// }
    /// async fn stamp(debug: bool, mut resp: Response<'_>, _w: ResponseWriter<'_>) {
    ///     if debug {
    ///         let _ = resp.set_header("x-debug-status", resp.status().unwrap_or(0).to_string());
    ///     }
    /// }
    ///
    /// let mut r = Registry::default();
    /// r.filter("limits").state(load).handle(check);
    /// r.filter("stamp").respond(ResponseMode::Passthrough, remember, stamp);
    /// ```
    pub fn filter(&mut self, name: &str) -> FilterBuilder<'_, (), NoState> {
        FilterBuilder {
            registry: self,
            name: name.to_string(),
            state: no_state,
            _state: PhantomData,
        }
    }

    /// Registers a server extension (Envoy's bootstrap extension with `extension_name: name`):
    /// `setup` runs on Envoy's main thread when Envoy loads it, with the extension's config
    /// (`extension_config`) and a [`ServerSetup`](crate::server::ServerSetup) to spawn tasks
    /// (`cfg.background()`), hold readiness, add admin endpoints and watch files. See
    /// [`jisr::server`](crate::server).
    ///
    /// ```
    /// use std::time::Duration;
    /// use jisr::{ConfigError, ConfigHandle, Registry, server::ServerSetup};
    ///
    /// fn setup(cfg: &mut ConfigHandle<'_>, srv: &mut ServerSetup) -> Result<(), ConfigError> {
    ///     let bg = cfg.background();
    ///     let ready = srv.hold_init(Duration::from_secs(5));
    ///     bg.spawn(async move {
    ///         // ... fetch what the handlers need, publish it ...
    ///         ready.release();
    ///         loop {
    ///             jisr::time::sleep(Duration::from_secs(30)).await;
    ///             // ... refresh ...
    ///         }
    ///     });
    ///     srv.admin("/acme/status", "acme status", |_req| (200, b"ok\n".to_vec()));
    ///     Ok(())
    /// }
    ///
    /// fn register(r: &mut Registry) {
    ///     r.server("acme", setup);
    /// }
    /// # let _ = register;
    /// ```
    pub fn server<F>(&mut self, name: &str, setup: F) -> &mut Self
    where
        F: Fn(&mut ConfigHandle<'_>, &mut crate::server::ServerSetup) -> Result<(), ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.servers.retain(|(n, _)| n != name);
        self.servers.push((name.to_string(), Box::new(setup)));
        self
    }

    /// The setup of server extension `name`.
    pub(crate) fn server_build(&self, name: &str) -> Option<&crate::api::server::ServerBuild> {
        self.servers.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    /// Names of the registered server extensions.
    pub(crate) fn server_names(&self) -> impl Iterator<Item = &str> {
        self.servers.iter().map(|(n, _)| n.as_str())
    }

    /// Registers a network (L4) filter named `name`: a builder taking optional state, then an
    /// `async fn` that owns each connection (see [`jisr::network`](crate::network)).
    ///
    /// ```
    /// use jisr::network::Connection;
    /// use jisr::Registry;
    ///
    /// async fn tap(mut conn: Connection<'_>) {
    ///     let mut buf = [0u8; 256];
    ///     let n = conn.read(&mut buf).await; // the client's first bytes
    ///     conn.send_upstream(&buf[..n]);
    /// } // returned: the rest flows untouched
    ///
    /// fn register(r: &mut Registry) {
    ///     r.network("tap").handle(tap);
    /// }
    /// # let mut r = Registry::default();
    /// # register(&mut r);
    /// ```
    pub fn network(
        &mut self,
        name: &str,
    ) -> crate::api::network::NetworkBuilder<'_, (), crate::api::network::NoNetState> {
        crate::api::network::NetworkBuilder {
            sink: &mut self.networks,
            name: name.to_string(),
            state: crate::api::network::no_state,
            inbox_limit: crate::filter::network::DEFAULT_INBOX,
            _state: PhantomData,
        }
    }

    /// Registers a raw network filter, written directly against Envoy's network hooks (see
    /// [`RawFilter`](crate::network::RawFilter)): `factory` runs once per Envoy filter config
    /// (main thread) and may refuse it; what it returns makes one filter per connection.
    ///
    /// ```
    /// use jisr::network::{RawConnection, RawFilter, Status};
    /// use jisr::Registry;
    ///
    /// struct Pass;
    /// impl RawFilter for Pass {
    ///     fn on_read(&mut self, _c: &mut RawConnection<'_>, _end: bool) -> Status {
    ///         Status::Continue
    ///     }
    /// }
    /// fn register(r: &mut Registry) {
    ///     r.network_raw("pass", |_cfg| Ok(|| Pass));
    /// }
    /// # let mut r = Registry::default();
    /// # register(&mut r);
    /// ```
    pub fn network_raw<F, C>(&mut self, name: &str, factory: C) -> &mut Self
    where
        F: crate::network::RawFactory,
        C: Fn(&mut ConfigHandle<'_>) -> Result<F, ConfigError> + Send + Sync + 'static,
    {
        self.networks.retain(|(n, _)| n != name);
        self.networks.push((
            name.to_string(),
            Box::new(move |cfg| {
                let f = factory(cfg)?;
                Ok(Box::new(crate::api::network::RawNetConfig::new(
                    std::sync::Arc::from(cfg.filter_name()),
                    f,
                ))
                    as Box<dyn crate::filter::network::NetConfigHooks>)
            }),
        ));
        self
    }

    /// The builder of network filter `name`.
    pub(crate) fn network_build(&self, name: &str) -> Option<&crate::api::network::NetBuild> {
        self.networks
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
    }

    /// Names of the registered network filters.
    pub(crate) fn network_names(&self) -> impl Iterator<Item = &str> {
        self.networks.iter().map(|(n, _)| n.as_str())
    }

    /// Registers a listener filter named `name`: a builder taking optional state and the
    /// number of bytes to peek, then an `async fn` that looks at each accepted socket before
    /// filter-chain matching (see [`jisr::listener`](crate::listener)).
    ///
    /// ```
    /// use jisr::listener::Socket;
    /// use jisr::Registry;
    ///
    /// async fn tag(mut s: Socket<'_>) {
    ///     let from_lo = s.peer_addr().is_some_and(|a| a.ip().is_loopback());
    ///     s.set_metadata("tag", "loopback", if from_lo { "yes" } else { "no" });
    /// } // returned: the socket goes on
    ///
    /// fn register(r: &mut Registry) {
    ///     r.listener("tag").handle(tag);
    /// }
    /// # let mut r = Registry::default();
    /// # register(&mut r);
    /// ```
    pub fn listener(
        &mut self,
        name: &str,
    ) -> crate::api::listener::ListenerBuilder<'_, (), crate::api::listener::NoListenerState> {
        crate::api::listener::ListenerBuilder {
            sink: &mut self.listeners,
            name: name.to_string(),
            state: crate::api::listener::no_state,
            max_read: 0,
            _state: PhantomData,
        }
    }

    /// The builder of listener filter `name`.
    pub(crate) fn listener_build(
        &self,
        name: &str,
    ) -> Option<&crate::api::listener::ListenerBuild> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
    }

    /// Names of the registered listener filters.
    pub(crate) fn listener_names(&self) -> impl Iterator<Item = &str> {
        self.listeners.iter().map(|(n, _)| n.as_str())
    }

    /// Registers a UDP listener filter named `name`: a builder taking optional state, then a
    /// plain function called once per datagram (see [`jisr::udp`](crate::udp)).
    ///
    /// ```
    /// use jisr::udp::{Datagram, Verdict};
    /// use jisr::Registry;
    ///
    /// fn no_empty(dg: &mut Datagram<'_>) -> Verdict {
    ///     if dg.data().is_empty() { Verdict::Stop } else { Verdict::Continue }
    /// }
    ///
    /// fn register(r: &mut Registry) {
    ///     r.udp("no_empty").handle(no_empty);
    /// }
    /// # let mut r = Registry::default();
    /// # register(&mut r);
    /// ```
    pub fn udp(
        &mut self,
        name: &str,
    ) -> crate::api::udp::UdpBuilder<'_, (), crate::api::udp::NoUdpState> {
        crate::api::udp::UdpBuilder {
            sink: &mut self.udps,
            name: name.to_string(),
            state: crate::api::udp::no_state,
            _state: PhantomData,
        }
    }

    /// The builder of UDP listener filter `name`.
    pub(crate) fn udp_build(&self, name: &str) -> Option<&crate::api::udp::UdpBuild> {
        self.udps.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    /// Names of the registered UDP listener filters.
    pub(crate) fn udp_names(&self) -> impl Iterator<Item = &str> {
        self.udps.iter().map(|(n, _)| n.as_str())
    }

    /// Registers a raw filter, written directly against Envoy's hooks (see [`RawFilter`]).
    ///
    /// [`RawFilter`]: crate::raw::RawFilter
    pub fn register_raw<F, C>(&mut self, name: &str, factory: C) -> &mut Self
    where
        F: RawFactory,
        C: Fn(&mut ConfigHandle<'_>) -> Result<F, ConfigError> + Send + Sync + 'static,
    {
        self.push(
            name,
            Box::new(move |cfg| {
                let f = factory(cfg)?;
                Ok(Box::new(RawConfig::new(
                    meta(cfg, None, ResponseMode::Passthrough),
                    f,
                )) as Box<dyn ConfigHooks>)
            }),
        )
    }

    /// Declares how per-route configs named `name` are parsed: `parse` runs once per route
    /// (on Envoy's main thread) with the route's `filter_config` bytes; handlers read the
    /// result with [`Request::route_config`](crate::Request::route_config). An error refuses
    /// that route configuration with the message in Envoy's log.
    ///
    /// In Envoy, the route's `typed_per_filter_config` entry is a
    /// `DynamicModuleFilterPerRoute` whose `per_route_config_name` is `name`.
    pub fn route_config<R, F>(&mut self, name: &str, parse: F) -> &mut Self
    where
        R: Send + Sync + 'static,
        F: Fn(&[u8]) -> Result<R, ConfigError> + Send + Sync + 'static,
    {
        self.routes.retain(|(n, _)| n != name);
        self.routes.push((
            name.to_string(),
            Box::new(move |bytes| {
                parse(bytes).map(|r| Box::new(r) as Box<dyn std::any::Any + Send + Sync>)
            }),
        ));
        self
    }

    /// Parses a per-route config; the error is the line for Envoy's log.
    pub(crate) fn build_route(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<crate::host::http::route::RouteConfigBox, String> {
        let Some((_, parse)) = self.routes.iter().find(|(n, _)| n == name) else {
            let known: Vec<&str> = self.routes.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "jisr: no per-route config named '{name}'; this module declares: {}",
                if known.is_empty() {
                    "(none)".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        match crate::executor::catch(|| parse(bytes)) {
            Ok(Ok(value)) => Ok(crate::host::http::route::RouteConfigBox { value }),
            Ok(Err(e)) => Err(format!("jisr: per-route config '{name}' rejected: {e}")),
            Err(panic) => Err(format!(
                "jisr: per-route config '{name}' parser panicked: {panic}"
            )),
        }
    }

    /// Whether jisr's own figures per filter (streams, polls, wakes, panics, in-flight streams,
    /// idle slots) are also published as Envoy stats `dynamicmodulescustom.jisr_*` labelled
    /// with the filter name (default: on). Envoy's main thread updates them at most one second
    /// after a stream changed them, and workers never call Envoy's metric callbacks (Envoy
    /// 1.39+); on Envoy 1.38, which lacks config-level metric updates, each worker updates
    /// them every 16 finished streams.
    pub fn envoy_stats(&mut self, on: bool) -> &mut Self {
        self.envoy_stats = on;
        self
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// Builds the config for `name`; `Ok(None)` if no such filter is registered.
    pub(crate) fn build(
        &self,
        cfg: &mut ConfigHandle<'_>,
    ) -> Result<Option<Box<dyn ConfigHooks>>, ConfigError> {
        cfg.envoy_stats = self.envoy_stats;
        match self.entries.iter().find(|(n, _)| n == cfg.filter_name()) {
            None if cfg.filter_name() == crate::api::http::stats::INTROSPECTION_FILTER => {
                let req = IntoPipeline::<(), OnRequest<()>, _>::into_pipeline(
                    crate::api::http::stats::introspection,
                );
                Ok(Some(config_box(
                    cfg,
                    (),
                    req,
                    NoResponse,
                    ResponseMode::Passthrough,
                )))
            }
            None => Ok(None),
            Some((_, build)) => build(cfg).map(Some),
        }
    }
}

/// The state function of a filter without per-config state.
#[doc(hidden)]
pub type NoState = fn(&mut ConfigHandle<'_>) -> Result<(), ConfigError>;

fn no_state(_: &mut ConfigHandle<'_>) -> Result<(), ConfigError> {
    Ok(())
}

/// A filter being registered (from [`Registry::filter`]): optional per-config state, then the
/// handlers.
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{ConfigError, ConfigHandle, Registry, Request, ResponseWriter};
///
/// struct Greeting(String);
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Greeting, ConfigError> {
///     Ok(Greeting(cfg.config_str()?.trim().to_string()))
/// }
/// async fn greet(greeting: &Greeting, mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     let _ = req.set_header("x-greeting", &greeting.0);
/// }
/// fn register(r: &mut Registry) {
///     r.filter("greet").state(load).handle(greet); // a `FilterBuilder`, then the handler
/// }
///
/// let f = TestFilter::new(register, "greet", b"salam").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.request_header("x-greeting").as_deref(), Some("salam"));
/// ```
pub struct FilterBuilder<'r, S, C> {
    registry: &'r mut Registry,
    name: String,
    state: C,
    _state: PhantomData<fn() -> S>,
}

impl<'r> FilterBuilder<'r, (), NoState> {
    /// Per-config state: `config_fn` runs once per Envoy filter config (on Envoy's main thread)
    /// with its [`ConfigHandle`] (parse `filter_config`, define metrics). It is the filter's
    /// factory: an error refuses that config, with the message in Envoy's log. The handlers
    /// then receive `&S` first: `async fn(&S, Request, ResponseWriter)`.
    pub fn state<S, C>(self, config_fn: C) -> FilterBuilder<'r, S, C>
    where
        S: Send + Sync + 'static,
        C: Fn(&mut ConfigHandle<'_>) -> Result<S, ConfigError> + Send + Sync + 'static,
    {
        FilterBuilder {
            registry: self.registry,
            name: self.name,
            state: config_fn,
            _state: PhantomData,
        }
    }
}

impl<'r, S, C> FilterBuilder<'r, S, C>
where
    S: Send + Sync + 'static,
    C: Fn(&mut ConfigHandle<'_>) -> Result<S, ConfigError> + Send + Sync + 'static,
{
    /// Registers the filter with a request handler (or a chain ending in one); the response
    /// passes untouched.
    pub fn handle<H, M>(self, handler: H) -> &'r mut Registry
    where
        H: IntoRequestHandler<S, (), M> + Clone + Send + Sync + 'static,
    {
        let state_fn = self.state;
        self.registry.push(
            &self.name,
            Box::new(move |cfg| {
                let state = state_fn(cfg)?;
                let req = handler.clone().into_pipeline();
                Ok(config_box(
                    cfg,
                    state,
                    req,
                    NoResponse,
                    ResponseMode::Passthrough,
                ))
            }),
        )
    }

    /// Registers the filter with a response handler only (`async fn((), Response,
    /// ResponseWriter)`, or a response chain; with [`state`](FilterBuilder::state), `&S`
    /// first): the request passes untouched, with no handler to start or poll, and the
    /// response handler receives `()`. The same as [`respond`](Self::respond) with a request
    /// handler that does nothing, minus that handler's cost on every request.
    ///
    /// ```
    /// use jisr::testing::{MetaValue, TestFilter};
    /// use jisr::{Registry, Response, ResponseMode, ResponseWriter};
    ///
    /// async fn count_bytes(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
    ///     let (mut buf, mut total) = ([0u8; 256], 0);
    ///     while let Ok(n) = resp.read(&mut buf).await {
    ///         if n == 0 {
    ///             break;
    ///         }
    ///         total += n;
    ///     }
    ///     w.set_metadata_num("tap", "bytes", total as f64);
    /// }
    /// fn register(r: &mut Registry) {
    ///     r.filter("tap").on_response(ResponseMode::Observe, count_bytes);
    /// }
    ///
    /// let f = TestFilter::new(register, "tap", b"").unwrap();
    /// let mut s = f.stream();
    /// s.request_headers(&[(":method", "GET"), (":path", "/")], true);
    /// s.response_headers(&[(":status", "200")], false);
    /// s.response_body(b"hello ", false);
    /// s.response_body(b"world", true);
    /// assert_eq!(s.metadata("tap", "bytes"), Some(MetaValue::Num(11.0)));
    /// ```
    pub fn on_response<R, MR>(self, mode: ResponseMode, response: R) -> &'r mut Registry
    where
        R: IntoResponseHandler<S, (), MR> + Clone + Send + Sync + 'static,
    {
        let state_fn = self.state;
        self.registry.push(
            &self.name,
            Box::new(move |cfg| {
                let state = state_fn(cfg)?;
                let resp = response.clone().into_pipeline();
                Ok(config_box(cfg, state, NoRequest, resp, mode))
            }),
        )
    }

    /// Registers the filter with a request handler (`async fn(Request, ResponseWriter) -> T`)
    /// and a response handler (`async fn(T, Response, ResponseWriter)`, or a response chain)
    /// that receives the request handler's value for the same request; `mode` fixes how the
    /// response handler sees the response. With [`state`](FilterBuilder::state), both
    /// receive `&S` first.
    pub fn respond<T, Q, R, MQ, MR>(
        self,
        mode: ResponseMode,
        request: Q,
        response: R,
    ) -> &'r mut Registry
    where
        T: 'static,
        Q: IntoRequestHandler<S, T, MQ> + Clone + Send + Sync + 'static,
        R: IntoResponseHandler<S, T, MR> + Clone + Send + Sync + 'static,
    {
        let state_fn = self.state;
        self.registry.push(
            &self.name,
            Box::new(move |cfg| {
                let state = state_fn(cfg)?;
                let req = request.clone().into_pipeline();
                let resp = response.clone().into_pipeline();
                Ok(config_box(cfg, state, req, resp, mode))
            }),
        )
    }
}
