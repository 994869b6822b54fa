//! Response handlers and response middleware, composed without allocating.

use crate::api::handler::{NextFuture, NextRun};
use crate::api::response::Response;
use crate::api::writer::ResponseWriter;
use crate::executor::task::{Cleared, TaskCell};
use crate::filter::core::StreamCore;
use crate::filter::pipeline::Pipeline;
use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::task::{Context, Poll};

/// A response handler without per-config state:
/// `async fn(T, Response<'_>, ResponseWriter<'_>)`, where `T` is what the request handler of the
/// same request returned.
pub trait ResponseHandler<'a, T: 'static>: Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = ()> + 'a;
    /// Starts handling one response.
    fn call(&self, value: T, resp: Response<'a>, w: ResponseWriter<'a>) -> Self::Future;
}

impl<'a, T: 'static, F, Fut> ResponseHandler<'a, T> for F
where
    F: Fn(T, Response<'a>, ResponseWriter<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, value: T, resp: Response<'a>, w: ResponseWriter<'a>) -> Fut {
        self(value, resp, w)
    }
}

/// A response handler that receives its config's state:
/// `async fn(&S, T, Response<'_>, ResponseWriter<'_>)`.
pub trait StateResponseHandler<'a, S: 'a, T: 'static>: Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = ()> + 'a;
    /// Starts handling one response.
    fn call(
        &self,
        state: &'a S,
        value: T,
        resp: Response<'a>,
        w: ResponseWriter<'a>,
    ) -> Self::Future;
}

impl<'a, S: 'a, T: 'static, F, Fut> StateResponseHandler<'a, S, T> for F
where
    F: Fn(&'a S, T, Response<'a>, ResponseWriter<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, state: &'a S, value: T, resp: Response<'a>, w: ResponseWriter<'a>) -> Fut {
        self(state, value, resp, w)
    }
}

/// Response middleware: `async fn(Response<'_>, ResponseWriter<'_>, ResponseNext<'_>)`.
pub trait ResponseMiddleware<'a>: Send + Sync + 'static {
    /// The middleware's future.
    type Future: Future<Output = ()> + 'a;
    /// Runs the middleware for one response.
    fn call(
        &self,
        resp: Response<'a>,
        w: ResponseWriter<'a>,
        next: ResponseNext<'a>,
    ) -> Self::Future;
}

impl<'a, F, Fut> ResponseMiddleware<'a> for F
where
    F: Fn(Response<'a>, ResponseWriter<'a>, ResponseNext<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, resp: Response<'a>, w: ResponseWriter<'a>, next: ResponseNext<'a>) -> Fut {
        self(resp, w, next)
    }
}

/// The rest of a response chain, handed to a [`ResponseMiddleware`].
pub struct ResponseNext<'a> {
    inner: &'a dyn NextRun,
    core: &'a StreamCore,
}

impl<'a> ResponseNext<'a> {
    /// Runs the rest of the chain; the response and writer are lent to it until it completes.
    pub fn run<'r>(
        self,
        resp: &'r mut Response<'a>,
        w: &'r mut ResponseWriter<'a>,
    ) -> NextFuture<'r> {
        let _ = (&resp, &w);
        self.inner.start(self.core);
        NextFuture::new(self.inner)
    }
}

/// No response handler: the response passes untouched.
#[doc(hidden)]
pub struct NoResponse;

impl<S: 'static, T: 'static> Pipeline<S, T> for NoResponse {
    const PRESENT: bool = false;
    type Output = ();
    type Storage = ();
    fn start(&'static self, _: &'static (), _: &'static S, _: T, _: &'static StreamCore) {}
    fn poll(_: &(), _: &mut Context<'_>) -> Poll<Option<()>> {
        Poll::Ready(None)
    }
    fn clear(_: &()) -> Cleared {
        Cleared::Clean
    }
}

/// A stateless response handler as a pipeline.
#[doc(hidden)]
pub struct RespPlain<H>(pub(crate) H);

impl<S: 'static, T: 'static, H> Pipeline<S, T> for RespPlain<H>
where
    H: for<'a> ResponseHandler<'a, T>,
{
    type Output = ();
    type Storage = TaskCell<<H as ResponseHandler<'static, T>>::Future>;
    fn start(
        &'static self,
        storage: &'static Self::Storage,
        _state: &'static S,
        value: T,
        core: &'static StreamCore,
    ) {
        let _ = storage.set(self.0.call(
            value,
            Response::new(core, core.meta.mode),
            ResponseWriter::new(core),
        ));
    }
    fn poll(storage: &Self::Storage, cx: &mut Context<'_>) -> Poll<Option<()>> {
        storage.poll(cx)
    }
    fn clear(storage: &Self::Storage) -> Cleared {
        storage.clear()
    }
}

/// A state-receiving response handler as a pipeline.
#[doc(hidden)]
pub struct RespWithState<H>(pub(crate) H);

impl<S: 'static, T: 'static, H> Pipeline<S, T> for RespWithState<H>
where
    H: for<'a> StateResponseHandler<'a, S, T>,
{
    type Output = ();
    type Storage = TaskCell<<H as StateResponseHandler<'static, S, T>>::Future>;
    fn start(
        &'static self,
        storage: &'static Self::Storage,
        state: &'static S,
        value: T,
        core: &'static StreamCore,
    ) {
        let _ = storage.set(self.0.call(
            state,
            value,
            Response::new(core, core.meta.mode),
            ResponseWriter::new(core),
        ));
    }
    fn poll(storage: &Self::Storage, cx: &mut Context<'_>) -> Poll<Option<()>> {
        storage.poll(cx)
    }
    fn clear(storage: &Self::Storage) -> Cleared {
        storage.clear()
    }
}

/// Response middleware `M` in front of response pipeline `I`.
#[doc(hidden)]
pub struct RespChain<M, I> {
    mw: M,
    inner: I,
}

/// Storage of a [`RespChain`].
#[doc(hidden)]
pub struct RespChainStorage<F, S: 'static, T: 'static, I: Pipeline<S, T, Output = ()>> {
    outer: TaskCell<F>,
    inner: RespInnerSlot<S, T, I>,
}

impl<F, S: 'static, T: 'static, I: Pipeline<S, T, Output = ()>> Default
    for RespChainStorage<F, S, T, I>
{
    fn default() -> Self {
        RespChainStorage {
            outer: TaskCell::default(),
            inner: RespInnerSlot::default(),
        }
    }
}

/// The inner part of a response chain; holds the request value until the inner starts.
#[doc(hidden)]
pub struct RespInnerSlot<S: 'static, T: 'static, I: Pipeline<S, T, Output = ()>> {
    svc: Cell<Option<&'static I>>,
    state: Cell<Option<&'static S>>,
    value: Cell<Option<T>>,
    storage: I::Storage,
}

impl<S: 'static, T: 'static, I: Pipeline<S, T, Output = ()>> Default for RespInnerSlot<S, T, I> {
    fn default() -> Self {
        RespInnerSlot {
            svc: Cell::new(None),
            state: Cell::new(None),
            value: Cell::new(None),
            storage: I::Storage::default(),
        }
    }
}

impl<S: 'static, T: 'static, I: Pipeline<S, T, Output = ()>> NextRun for RespInnerSlot<S, T, I> {
    fn start(&self, core: &StreamCore) {
        let (Some(svc), Some(state)) = (self.svc.get(), self.state.get()) else {
            return;
        };
        let Some(value) = self.value.take() else {
            return;
        };
        if I::clear(&self.storage) == Cleared::Busy {
            return;
        }
        crate::filter::slot::start_inner(svc, &self.storage, state, value, core);
    }
    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        I::poll(&self.storage, cx).map(|_| ())
    }
    fn clear(&self) {
        // See `InnerSlot::clear`: never unwinds, so the outcome is not passed on.
        let _ = I::clear(&self.storage);
    }
}

impl<S: 'static, T: 'static, M, I> Pipeline<S, T> for RespChain<M, I>
where
    M: for<'a> ResponseMiddleware<'a>,
    I: Pipeline<S, T, Output = ()>,
{
    type Output = ();
    type Storage = RespChainStorage<<M as ResponseMiddleware<'static>>::Future, S, T, I>;
    fn start(
        &'static self,
        storage: &'static Self::Storage,
        state: &'static S,
        value: T,
        core: &'static StreamCore,
    ) {
        let inner = &storage.inner;
        inner.svc.set(Some(&self.inner));
        inner.state.set(Some(state));
        inner.value.set(Some(value));
        let next = ResponseNext { inner, core };
        let _ = storage.outer.set(self.mw.call(
            Response::new(core, core.meta.mode),
            ResponseWriter::new(core),
            next,
        ));
    }
    fn poll(storage: &Self::Storage, cx: &mut Context<'_>) -> Poll<Option<()>> {
        storage.outer.poll(cx)
    }
    fn clear(storage: &Self::Storage) -> Cleared {
        let cleared = match storage.outer.clear() {
            Cleared::Busy => return Cleared::Busy,
            outer => outer.and(I::clear(&storage.inner.storage)),
        };
        let value = storage.inner.value.take();
        match crate::executor::catch(move || drop(value)) {
            Ok(()) => cleared,
            Err(msg) => cleared.and(Cleared::Panicked(msg)),
        }
    }
}

/// Converts response handlers and response chains into a pipeline.
pub trait IntoResponseService<S: 'static, T: 'static, Marker> {
    /// The pipeline type.
    #[doc(hidden)]
    type Service: Pipeline<S, T, Output = ()>;
    /// Converts.
    #[doc(hidden)]
    fn into_response_service(self) -> Self::Service;
}

/// Marker: `async fn(T, Response, ResponseWriter)`.
#[doc(hidden)]
pub struct RespPlainMarker;
/// Marker: `async fn(&S, T, Response, ResponseWriter)`.
#[doc(hidden)]
pub struct RespStateMarker;
/// Marker: a response chain.
#[doc(hidden)]
pub struct RespChainMarker<K>(PhantomData<K>);

impl<S: 'static, T: 'static, H> IntoResponseService<S, T, RespPlainMarker> for H
where
    H: for<'a> ResponseHandler<'a, T>,
{
    type Service = RespPlain<H>;
    fn into_response_service(self) -> RespPlain<H> {
        RespPlain(self)
    }
}

impl<S: 'static, T: 'static, H> IntoResponseService<S, T, RespStateMarker> for H
where
    H: for<'a> StateResponseHandler<'a, S, T>,
{
    type Service = RespWithState<H>;
    fn into_response_service(self) -> RespWithState<H> {
        RespWithState(self)
    }
}

/// Response middleware in front of a response handler (or chain), before conversion.
#[derive(Clone, Copy)]
pub struct ResponseChained<M, I> {
    mw: M,
    inner: I,
}

impl<S: 'static, T: 'static, M, I, K> IntoResponseService<S, T, RespChainMarker<K>>
    for ResponseChained<M, I>
where
    M: for<'a> ResponseMiddleware<'a>,
    I: IntoResponseService<S, T, K>,
{
    type Service = RespChain<M, I::Service>;
    fn into_response_service(self) -> Self::Service {
        RespChain {
            mw: self.mw,
            inner: self.inner.into_response_service(),
        }
    }
}

/// Puts response middleware `mw` in front of `inner` (jisr's `ResponseChain`); the first
/// middleware is the outermost.
///
/// ```
/// use jisr::{Response, ResponseWriter, response::{response_chain, ResponseNext}};
///
/// async fn timing(mut resp: Response<'_>, mut w: ResponseWriter<'_>, next: ResponseNext<'_>) {
///     next.run(&mut resp, &mut w).await;
///     let _ = resp.set_header("x-handled", "1");
/// }
/// async fn stamp(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
///     let _ = resp.set_header("x-stamp", "1");
/// }
/// let _pipeline = response_chain(timing, stamp);
/// ```
pub fn response_chain<M, I>(mw: M, inner: I) -> ResponseChained<M, I>
where
    M: for<'a> ResponseMiddleware<'a>,
{
    ResponseChained { mw, inner }
}
