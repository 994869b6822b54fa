//! Handlers and middleware of both phases, and how they compose without allocating.
//!
//! Users write plain `async fn`s; the blanket impls below make them handlers. Request and
//! response handling are one machinery, parameterised by a [`Phase`]: a request handler is
//! started with `()` and gets a [`Request`]; a response handler is started with the request
//! handler's value and gets a [`Response`]. The future of each stream is stored inline in the
//! stream's pooled slot (its type is known at registration), so no request allocates a
//! `Box<dyn Future>`.

use crate::api::request::Request;
use crate::api::response::Response;
use crate::api::writer::ResponseWriter;
use crate::executor::task::{Cleared, TaskCell};
use crate::filter::core::StreamCore;
use crate::filter::pipeline::Pipeline;
use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Which handle a phase's handlers and middleware receive: [`Req`] or [`Resp`].
pub trait Side: 'static {
    /// The handle.
    type Handle<'a>;
    #[doc(hidden)]
    fn handle(core: &StreamCore) -> Self::Handle<'_>;
}

/// The request side: handlers and middleware get a [`Request`].
pub enum Req {}
/// The response side: handlers and middleware get a [`Response`].
pub enum Resp {}

impl Side for Req {
    type Handle<'a> = Request<'a>;
    fn handle(core: &StreamCore) -> Request<'_> {
        Request::new(core)
    }
}

impl Side for Resp {
    type Handle<'a> = Response<'a>;
    fn handle(core: &StreamCore) -> Response<'_> {
        Response::new(core, core.meta.mode)
    }
}

/// A phase of a filter: its side, what its handler is started with, and what it produces.
pub trait Phase: 'static {
    /// The handle the phase's handlers get.
    type Side: Side;
    /// What the handler is started with.
    type In: 'static;
    /// What the handler produces.
    type Out: 'static;
}

/// The request phase of a filter whose request handler returns `T` (`()` without a response
/// handler).
pub struct OnRequest<T>(PhantomData<fn() -> T>);
/// The response phase of a filter whose request handler returned `T`.
pub struct OnResponse<T>(PhantomData<fn() -> T>);

impl<T: 'static> Phase for OnRequest<T> {
    type Side = Req;
    type In = ();
    type Out = T;
}

impl<T: 'static> Phase for OnResponse<T> {
    type Side = Resp;
    type In = T;
    type Out = ();
}

/// The handle of phase `P`.
type HandleOf<'a, P> = <<P as Phase>::Side as Side>::Handle<'a>;

/// A handler of phase `P` without per-config state:
/// `async fn(Request<'_>, ResponseWriter<'_>) -> T` for requests,
/// `async fn(T, Response<'_>, ResponseWriter<'_>)` for responses (`T` is what the request
/// handler of the same request returned).
///
/// Implemented for every such function; you never implement it by hand.
pub trait Handler<'a, P: Phase>: Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = P::Out> + 'a;
    /// Starts handling one request or response.
    fn call(&self, input: P::In, h: HandleOf<'a, P>, w: ResponseWriter<'a>) -> Self::Future;
}

impl<'a, T: 'static, F, Fut> Handler<'a, OnRequest<T>> for F
where
    F: Fn(Request<'a>, ResponseWriter<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'a,
{
    type Future = Fut;
    fn call(&self, _: (), req: Request<'a>, w: ResponseWriter<'a>) -> Fut {
        self(req, w)
    }
}

impl<'a, T: 'static, F, Fut> Handler<'a, OnResponse<T>> for F
where
    F: Fn(T, Response<'a>, ResponseWriter<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, value: T, resp: Response<'a>, w: ResponseWriter<'a>) -> Fut {
        self(value, resp, w)
    }
}

/// A handler of phase `P` that receives its config's state first:
/// `async fn(&S, Request<'_>, ResponseWriter<'_>) -> T` or
/// `async fn(&S, T, Response<'_>, ResponseWriter<'_>)`.
pub trait StateHandler<'a, S: 'a, P: Phase>: Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = P::Out> + 'a;
    /// Starts handling one request or response.
    fn call(
        &self,
        state: &'a S,
        input: P::In,
        h: HandleOf<'a, P>,
        w: ResponseWriter<'a>,
    ) -> Self::Future;
}

impl<'a, S: 'a, T: 'static, F, Fut> StateHandler<'a, S, OnRequest<T>> for F
where
    F: Fn(&'a S, Request<'a>, ResponseWriter<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'a,
{
    type Future = Fut;
    fn call(&self, state: &'a S, _: (), req: Request<'a>, w: ResponseWriter<'a>) -> Fut {
        self(state, req, w)
    }
}

impl<'a, S: 'a, T: 'static, F, Fut> StateHandler<'a, S, OnResponse<T>> for F
where
    F: Fn(&'a S, T, Response<'a>, ResponseWriter<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, state: &'a S, value: T, resp: Response<'a>, w: ResponseWriter<'a>) -> Fut {
        self(state, value, resp, w)
    }
}

/// Middleware of side `D`: `async fn(Request<'_>, ResponseWriter<'_>, Next<'_>)` in front of
/// request handlers, `async fn(Response<'_>, ResponseWriter<'_>, ResponseNext<'_>)` in front of
/// response handlers.
///
/// Call [`Next::run`] to pass on, or don't (short-circuit, e.g. after a 401).
pub trait Middleware<'a, D: Side>: Send + Sync + 'static {
    /// The middleware's future.
    type Future: Future<Output = ()> + 'a;
    /// Runs the middleware for one request or response.
    fn call(&self, h: D::Handle<'a>, w: ResponseWriter<'a>, next: Next<'a, D>) -> Self::Future;
}

impl<'a, F, Fut> Middleware<'a, Req> for F
where
    F: Fn(Request<'a>, ResponseWriter<'a>, Next<'a, Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, req: Request<'a>, w: ResponseWriter<'a>, next: Next<'a, Req>) -> Fut {
        self(req, w, next)
    }
}

impl<'a, F, Fut> Middleware<'a, Resp> for F
where
    F: Fn(Response<'a>, ResponseWriter<'a>, Next<'a, Resp>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, resp: Response<'a>, w: ResponseWriter<'a>, next: Next<'a, Resp>) -> Fut {
        self(resp, w, next)
    }
}

/// The rest of the chain, handed to a [`Middleware`].
pub struct Next<'a, D: Side = Req> {
    inner: &'a dyn NextRun,
    core: &'a StreamCore,
    _side: PhantomData<D>,
}

/// The rest of a response chain, handed to response middleware.
pub type ResponseNext<'a> = Next<'a, Resp>;

impl<'a, D: Side> Next<'a, D> {
    /// Runs the rest of the chain; the handle and writer are lent to it until it completes.
    pub fn run<'r>(
        self,
        h: &'r mut D::Handle<'a>,
        w: &'r mut ResponseWriter<'a>,
    ) -> NextFuture<'r> {
        let _ = (&h, &w);
        self.inner.start(self.core);
        NextFuture::new(self.inner)
    }
}

/// Future of [`Next::run`].
pub struct NextFuture<'r> {
    inner: &'r dyn NextRun,
    done: bool,
    _lent: PhantomData<&'r mut ()>,
}

impl<'r> NextFuture<'r> {
    fn new(inner: &'r dyn NextRun) -> Self {
        NextFuture {
            inner,
            done: false,
            _lent: PhantomData,
        }
    }
}

impl Future for NextFuture<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        match self.inner.poll(cx) {
            Poll::Ready(()) => {
                self.done = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for NextFuture<'_> {
    fn drop(&mut self) {
        // The inner handler's handles must not outlive the loan: drop its future now.
        self.inner.clear();
    }
}

/// Type-erased access to the inner part of a chain (lives in the stream slot).
trait NextRun {
    fn start(&self, core: &StreamCore);
    fn poll(&self, cx: &mut Context<'_>) -> Poll<()>;
    fn clear(&self);
}

/// A stateless handler as a pipeline.
#[doc(hidden)]
pub struct Plain<H, P>(H, PhantomData<fn() -> P>);

impl<S: 'static, P: Phase, H> Pipeline<S, P::In> for Plain<H, P>
where
    H: for<'a> Handler<'a, P>,
{
    type Output = P::Out;
    type Storage = TaskCell<<H as Handler<'static, P>>::Future>;

    fn start(
        &'static self,
        storage: &'static Self::Storage,
        _state: &'static S,
        input: P::In,
        core: &'static StreamCore,
    ) {
        let _ = storage.set(
            self.0
                .call(input, P::Side::handle(core), ResponseWriter::new(core)),
        );
    }
    fn poll(storage: &Self::Storage, cx: &mut Context<'_>) -> Poll<Option<P::Out>> {
        storage.poll(cx)
    }
    fn clear(storage: &Self::Storage) -> Cleared {
        storage.clear()
    }
}

/// A state-receiving handler as a pipeline.
#[doc(hidden)]
pub struct WithState<H, P>(H, PhantomData<fn() -> P>);

impl<S: 'static, P: Phase, H> Pipeline<S, P::In> for WithState<H, P>
where
    H: for<'a> StateHandler<'a, S, P>,
{
    type Output = P::Out;
    type Storage = TaskCell<<H as StateHandler<'static, S, P>>::Future>;

    fn start(
        &'static self,
        storage: &'static Self::Storage,
        state: &'static S,
        input: P::In,
        core: &'static StreamCore,
    ) {
        let _ = storage.set(self.0.call(
            state,
            input,
            P::Side::handle(core),
            ResponseWriter::new(core),
        ));
    }
    fn poll(storage: &Self::Storage, cx: &mut Context<'_>) -> Poll<Option<P::Out>> {
        storage.poll(cx)
    }
    fn clear(storage: &Self::Storage) -> Cleared {
        storage.clear()
    }
}

/// Middleware `M` in front of pipeline `I`, in phase `P`; built by [`chain`].
#[doc(hidden)]
pub struct Chain<M, I, P> {
    mw: M,
    inner: I,
    _phase: PhantomData<fn() -> P>,
}

/// Storage of a [`Chain`]: the middleware's future and the inner pipeline's part.
#[doc(hidden)]
pub struct ChainStorage<F, S: 'static, In: 'static, I: Pipeline<S, In>> {
    outer: TaskCell<F>,
    inner: InnerSlot<S, In, I>,
}

impl<F, S: 'static, In: 'static, I: Pipeline<S, In>> Default for ChainStorage<F, S, In, I> {
    fn default() -> Self {
        ChainStorage {
            outer: TaskCell::default(),
            inner: InnerSlot::default(),
        }
    }
}

/// The inner pipeline of a chain, started lazily by [`Next::run`] with the input the chain was
/// started with.
#[doc(hidden)]
pub struct InnerSlot<S: 'static, In: 'static, I: Pipeline<S, In>> {
    svc: Cell<Option<&'static I>>,
    state: Cell<Option<&'static S>>,
    input: Cell<Option<In>>,
    storage: I::Storage,
}

impl<S: 'static, In: 'static, I: Pipeline<S, In>> Default for InnerSlot<S, In, I> {
    fn default() -> Self {
        InnerSlot {
            svc: Cell::new(None),
            state: Cell::new(None),
            input: Cell::new(None),
            storage: I::Storage::default(),
        }
    }
}

impl<S: 'static, In: 'static, I: Pipeline<S, In>> NextRun for InnerSlot<S, In, I> {
    fn start(&self, core: &StreamCore) {
        let (Some(svc), Some(state)) = (self.svc.get(), self.state.get()) else {
            return;
        };
        let Some(input) = self.input.take() else {
            return;
        };
        if I::clear(&self.storage) == Cleared::Busy {
            return;
        }
        crate::filter::slot::start_inner(svc, &self.storage, state, input, core);
    }
    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        // A chain's inner output is not passed through middleware: chains produce `()`.
        I::poll(&self.storage, cx).map(|_| ())
    }
    fn clear(&self) {
        // A panicking destructor is caught (and the storage emptied) inside; a `Drop` must not
        // unwind, so the outcome is not passed on.
        let _ = I::clear(&self.storage);
    }
}

impl<S: 'static, P, M, I> Pipeline<S, P::In> for Chain<M, I, P>
where
    P: Phase<Out = ()>,
    M: for<'a> Middleware<'a, P::Side>,
    I: Pipeline<S, P::In, Output = ()>,
{
    type Output = ();
    type Storage = ChainStorage<<M as Middleware<'static, P::Side>>::Future, S, P::In, I>;

    fn start(
        &'static self,
        storage: &'static Self::Storage,
        state: &'static S,
        input: P::In,
        core: &'static StreamCore,
    ) {
        let inner = &storage.inner;
        inner.svc.set(Some(&self.inner));
        inner.state.set(Some(state));
        inner.input.set(Some(input));
        let next = Next {
            inner,
            core,
            _side: PhantomData,
        };
        let _ = storage.outer.set(self.mw.call(
            P::Side::handle(core),
            ResponseWriter::new(core),
            next,
        ));
    }
    fn poll(storage: &Self::Storage, cx: &mut Context<'_>) -> Poll<Option<()>> {
        storage.outer.poll(cx)
    }
    fn clear(storage: &Self::Storage) -> Cleared {
        // Outer first: its `NextFuture` refers to the inner storage.
        let cleared = match storage.outer.clear() {
            Cleared::Busy => return Cleared::Busy,
            outer => outer.and(I::clear(&storage.inner.storage)),
        };
        match storage.inner.input.take() {
            None => cleared,
            Some(input) => match crate::executor::catch(move || drop(input)) {
                Ok(()) => cleared,
                Err(msg) => cleared.and(Cleared::Panicked(msg)),
            },
        }
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

/// Converts handlers, state handlers and chains of phase `P` into a pipeline.
///
/// `Marker` only disambiguates the blanket impls; it is inferred.
pub trait IntoPipeline<S: 'static, P: Phase, Marker> {
    /// The pipeline type.
    #[doc(hidden)]
    type Pipeline: Pipeline<S, P::In, Output = P::Out>;
    /// Converts.
    #[doc(hidden)]
    fn into_pipeline(self) -> Self::Pipeline;
}

/// Marker: a handler without state.
#[doc(hidden)]
pub struct PlainMarker;
/// Marker: a handler receiving `&S`.
#[doc(hidden)]
pub struct StateMarker;
/// Marker: a chain.
#[doc(hidden)]
pub struct ChainMarker<K>(PhantomData<K>);

impl<S: 'static, P: Phase, H> IntoPipeline<S, P, PlainMarker> for H
where
    H: for<'a> Handler<'a, P>,
{
    type Pipeline = Plain<H, P>;
    fn into_pipeline(self) -> Plain<H, P> {
        Plain(self, PhantomData)
    }
}

impl<S: 'static, P: Phase, H> IntoPipeline<S, P, StateMarker> for H
where
    H: for<'a> StateHandler<'a, S, P>,
{
    type Pipeline = WithState<H, P>;
    fn into_pipeline(self) -> WithState<H, P> {
        WithState(self, PhantomData)
    }
}

/// Middleware in front of a handler (or another chain), before conversion; from [`chain`].
#[derive(Clone, Copy)]
pub struct Chained<M, I> {
    mw: M,
    inner: I,
}

impl<S: 'static, P, M, I, K> IntoPipeline<S, P, ChainMarker<K>> for Chained<M, I>
where
    P: Phase<Out = ()>,
    M: for<'a> Middleware<'a, P::Side>,
    I: IntoPipeline<S, P, K>,
{
    type Pipeline = Chain<M, I::Pipeline, P>;
    fn into_pipeline(self) -> Self::Pipeline {
        Chain {
            mw: self.mw,
            inner: self.inner.into_pipeline(),
            _phase: PhantomData,
        }
    }
}

/// Puts middleware `mw` in front of `inner` (a handler or another chain), for requests or
/// responses alike. The first middleware is the outermost:
/// `chain(log, chain(auth, handler))` runs `log`, then `auth`, then `handler`.
///
/// ```
/// use jisr::{chain, Next, Request, ResponseWriter};
///
/// async fn require_key(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
///     if req.header("x-api-key").is_none() {
///         w.send(401, b"missing key"); // short-circuit: `next` is not called
///         return;
///     }
///     next.run(&mut req, &mut w).await;
/// }
/// async fn hello(_req: Request<'_>, _w: ResponseWriter<'_>) {}
///
/// let _pipeline = chain(require_key, hello);
/// ```
pub fn chain<M, I>(mw: M, inner: I) -> Chained<M, I> {
    Chained { mw, inner }
}

/// [`chain`] for response middleware (the same function; the name reads better in a response
/// chain).
///
/// ```
/// use jisr::{Response, ResponseWriter, response::{ResponseNext, response_chain}};
///
/// async fn timed(mut resp: Response<'_>, mut w: ResponseWriter<'_>, next: ResponseNext<'_>) {
///     next.run(&mut resp, &mut w).await;
/// }
/// async fn stamp(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
///     let _ = resp.set_header("x-stamped", "1");
/// }
/// let _pipeline = response_chain(timed, stamp);
/// ```
pub fn response_chain<M, I>(mw: M, inner: I) -> Chained<M, I> {
    chain(mw, inner)
}
