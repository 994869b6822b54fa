//! Registering named filters in one module.

use crate::api::config::{ConfigError, ConfigHandle};
use crate::api::handler::{IntoService, Service};
use crate::api::raw::{RawConfig, RawFactory};
use crate::executor::pool::Pool;
use crate::executor::slot::JisrConfig;
use crate::filter::core::{FilterMeta, FilterStats};
use crate::filter::hooks::ConfigHooks;
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
///     req.set_header("x-hello", "from-jisr");
/// }
///
/// fn register(r: &mut Registry) {
///     r.register("hello", hello);
/// }
/// # let mut r = Registry::default();
/// # register(&mut r);
/// # assert_eq!(r.names().collect::<Vec<_>>(), ["hello"]);
/// ```
#[derive(Default)]
pub struct Registry {
    entries: Vec<(String, Build)>,
}

/// A handler bound to its config's state; returned by a factory (see
/// [`Registry::register_factory`]).
pub struct Bound<S, H> {
    state: S,
    handler: H,
}

/// Binds `handler` (an `async fn(&S, Request, ResponseWriter)` or a chain ending in one) to
/// `state`.
pub fn bind<S, H>(state: S, handler: H) -> Bound<S, H> {
    Bound { state, handler }
}

fn meta(name: &str) -> Arc<FilterMeta> {
    Arc::new(FilterMeta {
        name: name.to_string(),
        stats: FilterStats::default(),
    })
}

fn config_box<S, Svc>(name: &str, state: S, svc: Svc) -> Box<dyn ConfigHooks>
where
    S: Send + Sync + 'static,
    Svc: Service<S>,
{
    Box::new(JisrConfig {
        meta: meta(name),
        state,
        svc,
        pool: Pool::default(),
    })
}

impl Registry {
    fn push(&mut self, name: &str, build: Build) -> &mut Self {
        self.entries.retain(|(n, _)| n != name);
        self.entries.push((name.to_string(), build));
        self
    }

    /// Registers a stateless handler (or a chain ending in one) under `name`.
    pub fn register<H, M>(&mut self, name: &str, handler: H) -> &mut Self
    where
        H: IntoService<(), M> + Clone + Send + Sync + 'static,
    {
        self.push(
            name,
            Box::new(move |cfg| {
                Ok(config_box(
                    cfg.filter_name(),
                    (),
                    handler.clone().into_service(),
                ))
            }),
        )
    }

    /// Registers a handler whose config is built once per Envoy filter config by `config_fn`
    /// (parse `filter_config`, define metrics); the handler receives `&S`.
    pub fn register_with_config<S, C, H, M>(
        &mut self,
        name: &str,
        config_fn: C,
        handler: H,
    ) -> &mut Self
    where
        S: Send + Sync + 'static,
        C: Fn(&mut ConfigHandle<'_>) -> Result<S, ConfigError> + Send + Sync + 'static,
        H: IntoService<S, M> + Clone + Send + Sync + 'static,
    {
        self.push(
            name,
            Box::new(move |cfg| {
                let state = config_fn(cfg)?;
                Ok(config_box(
                    cfg.filter_name(),
                    state,
                    handler.clone().into_service(),
                ))
            }),
        )
    }

    /// Registers a factory: once per Envoy filter config it receives the [`ConfigHandle`] and
    /// returns a handler bound to its own state ([`bind`]), or an error that makes Envoy refuse
    /// the config.
    pub fn register_factory<S, F, H, M>(&mut self, name: &str, factory: F) -> &mut Self
    where
        S: Send + Sync + 'static,
        F: Fn(&mut ConfigHandle<'_>) -> Result<Bound<S, H>, ConfigError> + Send + Sync + 'static,
        H: IntoService<S, M>,
    {
        self.push(
            name,
            Box::new(move |cfg| {
                let Bound { state, handler } = factory(cfg)?;
                Ok(config_box(cfg.filter_name(), state, handler.into_service()))
            }),
        )
    }

    /// Registers a raw filter, written directly against Envoy's hooks (see [`RawFilter`]).
    ///
    /// [`RawFilter`]: crate::RawFilter
    pub fn register_raw<F, C>(&mut self, name: &str, factory: C) -> &mut Self
    where
        F: RawFactory,
        C: Fn(&mut ConfigHandle<'_>) -> Result<F, ConfigError> + Send + Sync + 'static,
    {
        self.push(
            name,
            Box::new(move |cfg| {
                let f = factory(cfg)?;
                Ok(Box::new(RawConfig::new(meta(cfg.filter_name()), f)) as Box<dyn ConfigHooks>)
            }),
        )
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
        match self.entries.iter().find(|(n, _)| n == cfg.filter_name()) {
            None => Ok(None),
            Some((_, build)) => build(cfg).map(Some),
        }
    }
}
