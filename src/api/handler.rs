//! Handler and middleware traits, and how they compose without allocating.
//!
//! Users write plain `async fn`s; the blanket impls below make them handlers. The future of each
//! request is stored inline in the stream's pooled slot (its type is known at registration), so
//! no request allocates a `Box<dyn Future>`.

use crate::api::request::Request;
use crate::api::writer::ResponseWriter;
use crate::executor::task::{Cleared, TaskCell};
use crate::filter::core::StreamCore;
use crate::filter::pipeline::Pipeline;
use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A request handler without per-config state:
/// `async fn(Request<'_>, ResponseWriter<'_>) -> T`.
///
/// Implemented for every such function; you never implement it by hand. `T` is `()` for a
/// filter without a response handler; otherwise the value is handed to the response handler of
/// the same request (it cannot borrow from the request).
pub trait Handler<'a, T: 'static = ()>: Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = T> + 'a;
    /// Starts handling one request.
    fn call(&self, req: Request<'a>, w: ResponseWriter<'a>) -> Self::Future;
}

impl<'a, T: 'static, F, Fut> Handler<'a, T> for F
where
    F: Fn(Request<'a>, ResponseWriter<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'a,
{
    type Future = Fut;
    fn call(&self, req: Request<'a>, w: ResponseWriter<'a>) -> Fut {
        self(req, w)
    }
}

/// A request handler that receives its config's state:
/// `async fn(&State, Request<'_>, ResponseWriter<'_>) -> T`.
pub trait StateHandler<'a, S: 'a, T: 'static = ()>: Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = T> + 'a;
    /// Starts handling one request.
    fn call(&self, state: &'a S, req: Request<'a>, w: ResponseWriter<'a>) -> Self::Future;
}

impl<'a, S: 'a, T: 'static, F, Fut> StateHandler<'a, S, T> for F
where
    F: Fn(&'a S, Request<'a>, ResponseWriter<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'a,
{
    type Future = Fut;
    fn call(&self, state: &'a S, req: Request<'a>, w: ResponseWriter<'a>) -> Fut {
        self(state, req, w)
    }
}

/// Request middleware: `async fn(Request<'_>, ResponseWriter<'_>, Next<'_>)`.
///
/// Call [`Next::run`] to pass the request on, or don't (short-circuit, e.g. after a 401).
pub trait Middleware<'a>: Send + Sync + 'static {
    /// The middleware's future.
    type Future: Future<Output = ()> + 'a;
    /// Runs the middleware for one request.
    fn call(&self, req: Request<'a>, w: ResponseWriter<'a>, next: Next<'a>) -> Self::Future;
}

impl<'a, F, Fut> Middleware<'a> for F
where
    F: Fn(Request<'a>, ResponseWriter<'a>, Next<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, req: Request<'a>, w: ResponseWriter<'a>, next: Next<'a>) -> Fut {
        self(req, w, next)
    }
}

/// The rest of the chain, handed to a [`Middleware`].
pub struct Next<'a> {
    inner: &'a dyn NextRun,
    core: &'a StreamCore,
}

impl<'a> Next<'a> {
    /// Runs the rest of the chain; the request and writer are lent to it until it completes.
    pub fn run<'r>(
        self,
        req: &'r mut Request<'a>,
        w: &'r mut ResponseWriter<'a>,
    ) -> NextFuture<'r> {
        let _ = (&req, &w);
        self.inner.start(self.core);
        NextFuture::new(self.inner)
    }
}

/// Future of [`Next::run`] and [`ResponseNext::run`](crate::ResponseNext::run).
pub struct NextFuture<'r> {
    inner: &'r dyn NextRun,
    done: bool,
    _lent: PhantomData<&'r mut ()>,
}

impl<'r> NextFuture<'r> {
    pub(crate) fn new(inner: &'r dyn NextRun) -> Self {
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
pub trait NextRun {
    fn start(&self, core: &StreamCore);
    fn poll(&self, cx: &mut Context<'_>) -> Poll<()>;
    fn clear(&self);
}

/// A stateless handler as a pipeline.
#[doc(hidden)]
pub struct Plain<H, T>(pub(crate) H, PhantomData<fn() -> T>);

impl<S: 'static, T: 'static, H> Pipeline<S, ()> for Plain<H, T>
where
    H: for<'a> Handler<'a, T>,
{
    type Output = T;
    type Storage = TaskCell<<H as Handler<'static, T>>::Future>;

    fn start(
        &'static self,
        storage: &'static Self::Storage,
        _state: &'static S,
        _input: (),
        core: &'static StreamCore,
    ) {
        let _ = storage.set(self.0.call(Request::new(core), ResponseWriter::new(core)));
    }
    fn poll(storage: &Self::Storage, cx: &mut Context<'_>) -> Poll<Option<T>> {
        storage.poll(cx)
    }
    fn clear(storage: &Self::Storage) -> Cleared {
        storage.clear()
    }
}

/// A state-receiving handler as a pipeline.
#[doc(hidden)]
pub struct WithState<H, T>(pub(crate) H, PhantomData<fn() -> T>);

impl<S: 'static, T: 'static, H> Pipeline<S, ()> for WithState<H, T>
where
    H: for<'a> StateHandler<'a, S, T>,
{
    type Output = T;
    type Storage = TaskCell<<H as StateHandler<'static, S, T>>::Future>;

    fn start(
        &'static self,
        storage: &'static Self::Storage,
        state: &'static S,
        _input: (),
        core: &'static StreamCore,
    ) {
        let _ = storage.set(
            self.0
                .call(state, Request::new(core), ResponseWriter::new(core)),
        );
    }
    fn poll(storage: &Self::Storage, cx: &mut Context<'_>) -> Poll<Option<T>> {
        storage.poll(cx)
    }
    fn clear(storage: &Self::Storage) -> Cleared {
        storage.clear()
    }
}

/// Middleware `M` in front of pipeline `I`; built by [`chain`].
pub struct Chain<M, I> {
    mw: M,
    inner: I,
}

/// Storage of a [`Chain`]: the middleware's future and the inner pipeline's storage.
#[doc(hidden)]
pub struct ChainStorage<F, S: 'static, I: Pipeline<S, ()>> {
    outer: TaskCell<F>,
    inner: InnerSlot<S, I>,
}

impl<F, S: 'static, I: Pipeline<S, ()>> Default for ChainStorage<F, S, I> {
    fn default() -> Self {
        ChainStorage {
            outer: TaskCell::default(),
            inner: InnerSlot::default(),
        }
    }
}

/// The inner pipeline of a chain, started lazily by [`Next::run`].
#[doc(hidden)]
pub struct InnerSlot<S: 'static, I: Pipeline<S, ()>> {
    svc: Cell<Option<&'static I>>,
    state: Cell<Option<&'static S>>,
    storage: I::Storage,
}

impl<S: 'static, I: Pipeline<S, ()>> Default for InnerSlot<S, I> {
    fn default() -> Self {
        InnerSlot {
            svc: Cell::new(None),
            state: Cell::new(None),
            storage: I::Storage::default(),
        }
    }
}

impl<S: 'static, I: Pipeline<S, ()>> NextRun for InnerSlot<S, I> {
    fn start(&self, core: &StreamCore) {
        let (Some(svc), Some(state)) = (self.svc.get(), self.state.get()) else {
            return;
        };
        if I::clear(&self.storage) == Cleared::Busy {
            return;
        }
        crate::filter::slot::start_inner(svc, &self.storage, state, (), core);
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

impl<S: 'static, M, I> Pipeline<S, ()> for Chain<M, I>
where
    M: for<'a> Middleware<'a>,
    I: Pipeline<S, ()>,
{
    type Output = ();
    type Storage = ChainStorage<<M as Middleware<'static>>::Future, S, I>;

    fn start(
        &'static self,
        storage: &'static Self::Storage,
        state: &'static S,
        _input: (),
        core: &'static StreamCore,
    ) {
        storage.inner.svc.set(Some(&self.inner));
        storage.inner.state.set(Some(state));
        let next = Next {
            inner: &storage.inner,
            core,
        };
        let _ = storage.outer.set(self.mw.call(
            Request::new(core),
            ResponseWriter::new(core),
            next,
        ));
    }
    fn poll(storage: &Self::Storage, cx: &mut Context<'_>) -> Poll<Option<()>> {
        storage.outer.poll(cx)
    }
    fn clear(storage: &Self::Storage) -> Cleared {
        // Outer first: its `NextFuture` refers to the inner storage.
        match storage.outer.clear() {
            Cleared::Busy => Cleared::Busy,
            outer => outer.and(I::clear(&storage.inner.storage)),
        }
    }
}

/// Converts handlers, state handlers and chains into a pipeline producing `T`.
///
/// `Marker` only disambiguates the blanket impls; it is inferred.
pub trait IntoService<S: 'static, T: 'static, Marker> {
    /// The pipeline type.
    #[doc(hidden)]
    type Service: Pipeline<S, (), Output = T>;
    /// Converts.
    #[doc(hidden)]
    fn into_service(self) -> Self::Service;
}

/// Marker: a stateless `async fn(Request, ResponseWriter)`.
#[doc(hidden)]
pub struct PlainMarker;
/// Marker: an `async fn(&S, Request, ResponseWriter)`.
#[doc(hidden)]
pub struct StateMarker;
/// Marker: a chain.
#[doc(hidden)]
pub struct ChainMarker<T>(PhantomData<T>);

impl<S: 'static, T: 'static, H> IntoService<S, T, PlainMarker> for H
where
    H: for<'a> Handler<'a, T>,
{
    type Service = Plain<H, T>;
    fn into_service(self) -> Plain<H, T> {
        Plain(self, PhantomData)
    }
}

impl<S: 'static, T: 'static, H> IntoService<S, T, StateMarker> for H
where
    H: for<'a> StateHandler<'a, S, T>,
{
    type Service = WithState<H, T>;
    fn into_service(self) -> WithState<H, T> {
        WithState(self, PhantomData)
    }
}

/// Middleware in front of a handler (or another chain), before conversion.
#[derive(Clone, Copy)]
pub struct Chained<M, I> {
    mw: M,
    inner: I,
}

impl<S: 'static, M, I, K> IntoService<S, (), ChainMarker<K>> for Chained<M, I>
where
    M: for<'a> Middleware<'a>,
    I: IntoService<S, (), K>,
{
    type Service = Chain<M, I::Service>;
    fn into_service(self) -> Self::Service {
        Chain {
            mw: self.mw,
            inner: self.inner.into_service(),
        }
    }
}

/// Puts middleware `mw` in front of `inner` (a handler or another chain). The first middleware
/// is the outermost: `chain(log, chain(auth, handler))` runs `log`, then `auth`, then `handler`.
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
pub fn chain<M, I>(mw: M, inner: I) -> Chained<M, I>
where
    M: for<'a> Middleware<'a>,
{
    Chained { mw, inner }
}
