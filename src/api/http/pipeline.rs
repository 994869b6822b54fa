//! Handlers and middleware of both phases, and how they compose without allocating.
//!
//! Users write plain `async fn`s; the blanket impls below make them handlers. Request and
//! response handling are one machinery, parameterised by a [`Phase`]: a request handler is
//! started with `()` and gets a [`Request`]; a response handler is started with the request
//! handler's value and gets a [`Response`]. The future of each stream is stored inline in the
//! stream's pooled slot (its type is known at registration), so no request allocates a
//! `Box<dyn Future>`.

use crate::api::http::request::Request;
use crate::api::http::response::Response;
use crate::api::http::writer::ResponseWriter;
use crate::executor::task::{Cleared, TaskCell};
use crate::filter::http::core::StreamCore;
use crate::filter::http::pipeline::Pipeline;
use crate::filter::http::pipeline::sealed::Sealed;
use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Which handle a phase's handlers and middleware receive: [`Req`] or [`Resp`].
///
/// ```
/// use jisr::handler::{Req, Resp, Side};
/// use jisr::{Request, Response};
///
/// // The handle of each side, spelled out (this compiles because the types are the same):
/// fn request<'a>(h: <Req as Side>::Handle<'a>) -> Request<'a> { h }
/// fn response<'a>(h: <Resp as Side>::Handle<'a>) -> Response<'a> { h }
/// # let _ = (request, response);
/// ```
///
/// Sealed: [`Req`] and [`Resp`] are the only sides; a type of yours cannot be one.
///
/// ```compile_fail,E0277
/// struct Mine;
/// impl jisr::handler::Side for Mine {
///     type Handle<'a> = ();
/// }
/// ```
pub trait Side: Sealed + 'static {
    /// The handle this side's handlers and middleware get: [`Request`] or [`Response`].
    type Handle<'a>;
    #[doc(hidden)]
    fn handle(core: &StreamCore) -> Self::Handle<'_>;
}

/// The request side: handlers and middleware get a [`Request`]. It is the default side of
/// [`Next`], so request middleware usually writes `Next<'_>`.
///
/// ```
/// use jisr::handler::Req;
/// # use jisr::testing::TestFilter;
/// use jisr::{chain, Next, Registry, Request, ResponseWriter};
///
/// async fn no_bots(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_, Req>) {
///     if req.header_str("user-agent").is_some_and(|ua| ua.contains("bot")) {
///         return w.send(403, b"no bots\n");
///     }
///     next.run(&mut req, &mut w).await;
/// }
/// async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}
/// fn register(r: &mut Registry) { r.register("no_bots", chain(no_bots, pass)); }
///
/// let f = TestFilter::new(register, "no_bots", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/"), ("user-agent", "crawl-bot/2")], true);
/// assert_eq!(s.local_reply().unwrap().status, 403);
/// ```
pub enum Req {}
impl Sealed for Req {}
/// The response side: handlers and middleware get a [`Response`].
///
/// ```
/// use jisr::handler::Resp;
/// use jisr::response::response_chain;
/// # use jisr::testing::TestFilter;
/// use jisr::{Next, Registry, Request, Response, ResponseMode, ResponseWriter};
///
/// async fn no_cache(mut resp: Response<'_>, mut w: ResponseWriter<'_>, next: Next<'_, Resp>) {
///     next.run(&mut resp, &mut w).await;
///     let _ = resp.set_header("cache-control", "no-store");
/// }
/// # async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}
/// # async fn stamp(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
/// #     let _ = resp.set_header("x-stamp", "1");
/// # }
/// fn register(r: &mut Registry) {
///     r.filter("fresh").respond(ResponseMode::Passthrough, pass, response_chain(no_cache, stamp));
/// }
///
/// let f = TestFilter::new(register, "fresh", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// s.response_headers(&[(":status", "200")], true);
/// assert_eq!(s.response_header("cache-control").as_deref(), Some("no-store"));
/// ```
pub enum Resp {}
impl Sealed for Resp {}

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
///
/// ```
/// use jisr::handler::{OnRequest, OnResponse, Phase};
/// use std::any::type_name;
///
/// fn takes_and_makes<P: Phase>() -> (&'static str, &'static str) {
///     (type_name::<P::In>(), type_name::<P::Out>())
/// }
/// // A request handler starts from nothing and produces the value its response handler gets.
/// assert_eq!(takes_and_makes::<OnRequest<bool>>(), ("()", "bool"));
/// assert_eq!(takes_and_makes::<OnResponse<bool>>(), ("bool", "()"));
/// ```
///
/// Sealed: [`OnRequest`] and [`OnResponse`] are the only phases.
pub trait Phase: Sealed + 'static {
    /// The handle the phase's handlers get.
    type Side: Side;
    /// What the handler is started with.
    type In: 'static;
    /// What the handler produces.
    type Out: 'static;
}

/// The request phase of a filter whose request handler returns `T` (`()` without a response
/// handler).
///
/// ```
/// use jisr::handler::{Handler, OnRequest};
/// use jisr::{Request, ResponseWriter};
///
/// async fn wants_debug(req: Request<'_>, _w: ResponseWriter<'_>) -> bool {
///     req.header("x-debug").is_some()
/// }
/// async fn plain(_req: Request<'_>, _w: ResponseWriter<'_>) {}
///
/// fn request_handler<T: 'static, H: for<'a> Handler<'a, OnRequest<T>>>(_: H) {}
/// request_handler::<bool, _>(wants_debug); // hands a `bool` to the response handler
/// request_handler::<(), _>(plain);
/// ```
pub struct OnRequest<T>(PhantomData<fn() -> T>);
impl<T> Sealed for OnRequest<T> {}
/// The response phase of a filter whose request handler returned `T`.
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{Registry, Request, Response, ResponseMode, ResponseWriter};
///
/// async fn started(_req: Request<'_>, _w: ResponseWriter<'_>) -> std::time::Instant {
///     std::time::Instant::now()
/// }
/// // In phase `OnResponse<Instant>`: it gets what `started` returned for the same request.
/// async fn timed(t0: std::time::Instant, mut resp: Response<'_>, _w: ResponseWriter<'_>) {
///     let _ = resp.set_header("x-upstream-ms", t0.elapsed().as_millis().to_string());
/// }
/// fn register(r: &mut Registry) { r.filter("timed").respond(ResponseMode::Passthrough, started, timed); }
///
/// let f = TestFilter::new(register, "timed", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// s.response_headers(&[(":status", "200")], true);
/// assert!(s.response_header("x-upstream-ms").is_some());
/// ```
pub struct OnResponse<T>(PhantomData<fn() -> T>);
impl<T> Sealed for OnResponse<T> {}

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
/// Implemented for every such function; you never implement it by hand. Name it to write
/// helpers that take any handler:
///
/// ```
/// use jisr::handler::{Handler, OnRequest};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// /// Registers `handler` as `<name>_v1` and `<name>_v2`.
/// fn versioned<H>(r: &mut Registry, name: &str, handler: H)
/// where
///     H: for<'a> Handler<'a, OnRequest<()>> + Clone,
/// {
///     r.register(&format!("{name}_v1"), handler.clone());
///     r.register(&format!("{name}_v2"), handler);
/// }
/// async fn hello(mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     let _ = req.set_header("x-hello", "world");
/// }
///
/// let f = TestFilter::new(|r: &mut Registry| versioned(r, "hello", hello), "hello_v2", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.request_header("x-hello").as_deref(), Some("world"));
/// ```
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
///
/// Like [`Handler`], implemented for every such function; `S` is what the filter's
/// [`state`](crate::handler::FilterBuilder::state) function built from its config.
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{ConfigError, ConfigHandle, Registry, Request, ResponseWriter};
///
/// struct Blocked(Vec<String>);
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Blocked, ConfigError> {
///     Ok(Blocked(cfg.config_str()?.split(',').map(String::from).collect()))
/// }
/// async fn block(blocked: &Blocked, req: Request<'_>, w: ResponseWriter<'_>) {
///     if blocked.0.iter().any(|p| req.path() == Some(p.as_str())) {
///         w.send(404, b"");
///     }
/// }
/// fn register(r: &mut Registry) { r.filter("block").state(load).handle(block); }
///
/// let f = TestFilter::new(register, "block", b"/admin,/debug").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/debug")], true);
/// assert_eq!(s.local_reply().unwrap().status, 404);
/// ```
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
/// Call [`Next::run`] to pass on, or don't (short-circuit, e.g. after a 401). Implemented for
/// every such function; name it to write helpers that take any middleware:
///
/// ```
/// use jisr::handler::{Middleware, Req};
/// # use jisr::testing::TestFilter;
/// # use jisr::{chain, Next, Registry, Request, ResponseWriter};
///
/// /// Puts `mw` in front of every handler of the module.
/// fn guarded<M: for<'a> Middleware<'a, Req> + Clone>(r: &mut Registry, mw: M) {
///     r.register("hello", chain(mw.clone(), hello));
///     r.register("bye", chain(mw, bye));
/// }
/// async fn internal_only(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
///     match req.header("x-internal") {
///         Some(_) => next.run(&mut req, &mut w).await,
///         None => w.send(404, b""),
///     }
/// }
/// # async fn hello(_req: Request<'_>, _w: ResponseWriter<'_>) {}
/// # async fn bye(_req: Request<'_>, _w: ResponseWriter<'_>) {}
///
/// let f = TestFilter::new(|r: &mut Registry| guarded(r, internal_only), "bye", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.local_reply().unwrap().status, 404);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not middleware",
    label = "expected `async fn(Request<'_>, ResponseWriter<'_>, Next<'_>)` (or its response form)",
    note = "request middleware: `async fn(req: Request<'_>, w: ResponseWriter<'_>, next: Next<'_>)`; response middleware: `async fn(resp: Response<'_>, w: ResponseWriter<'_>, next: ResponseNext<'_>)`",
    note = "`chain(middleware, handler)` takes the middleware first and the handler (or another chain) second"
)]
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
///
/// ```
/// use jisr::{chain, Next};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn require_key(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
///     if req.header("x-api-key").is_none() {
///         return w.send(401, b"missing key\n"); // `next` is dropped: the handler never runs
///     }
///     next.run(&mut req, &mut w).await;
/// }
/// # async fn hello(mut req: Request<'_>, _w: ResponseWriter<'_>) {
/// #     req.set_header("x-hello", "world");
/// # }
/// fn register(r: &mut Registry) { r.register("hello", chain(require_key, hello)); }
///
/// let f = TestFilter::new(register, "hello", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.local_reply().unwrap().status, 401);
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/"), ("x-api-key", "k1")], true);
/// assert_eq!(s.request_header("x-hello").as_deref(), Some("world"));
/// ```
pub struct Next<'a, D: Side = Req> {
    inner: &'a dyn NextRun,
    core: &'a StreamCore,
    _side: PhantomData<D>,
}

/// The rest of a response chain, handed to response middleware.
///
/// ```
/// use jisr::response::{ResponseNext, response_chain};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, Response, ResponseMode, ResponseWriter};
///
/// async fn hide_errors(mut resp: Response<'_>, mut w: ResponseWriter<'_>, next: ResponseNext<'_>) {
///     if resp.status().is_some_and(|s| s >= 500) {
///         let _ = resp.remove_header("x-debug-trace");
///         return; // the rest of the chain does not run
///     }
///     next.run(&mut resp, &mut w).await;
/// }
/// # async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}
/// # async fn stamp(_: (), mut resp: Response<'_>, _w: ResponseWriter<'_>) {
/// #     let _ = resp.set_header("x-stamp", "1");
/// # }
/// fn register(r: &mut Registry) {
///     r.filter("edge").respond(ResponseMode::Passthrough, pass, response_chain(hide_errors, stamp));
/// }
///
/// let f = TestFilter::new(register, "edge", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// s.response_headers(&[(":status", "502"), ("x-debug-trace", "db timeout")], true);
/// assert_eq!(s.response_header("x-debug-trace"), None);
/// # assert_eq!(s.response_header("x-stamp"), None);
/// ```
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

/// Future of [`Next::run`]: completes when the rest of the chain did. Dropping it before then
/// drops the inner handlers' futures, cancelling what they were waiting for.
///
/// ```
/// use std::time::Duration;
/// # use jisr::testing::TestFilter;
/// use jisr::{chain, Next, Registry, Request, ResponseWriter};
///
/// async fn deadline(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
///     let rest = next.run(&mut req, &mut w); // a `NextFuture`
///     if jisr::time::timeout(Duration::from_millis(20), rest).await.is_err() {
///         w.send(408, b"request body too slow\n");
///     }
/// }
/// async fn upload(mut req: Request<'_>, _w: ResponseWriter<'_>) {
///     let _ = req.read_to_end(&mut Vec::new()).await;
/// }
/// fn register(r: &mut Registry) { r.register("upload", chain(deadline, upload)); }
///
/// let f = TestFilter::new(register, "upload", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":method", "POST"), (":path", "/up")], false); // no body follows
/// s.wait_scheduled(Duration::from_secs(5));
/// assert_eq!(s.local_reply().unwrap().status, 408);
/// ```
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
impl<H, P> Sealed for Plain<H, P> {}

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
impl<H, P> Sealed for WithState<H, P> {}

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
impl<M, I, P> Sealed for Chain<M, I, P> {}

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
        crate::filter::http::slot::start_inner(svc, &self.storage, state, input, core);
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

/// No request handler (a filter registered with `on_response`): the request passes untouched
/// and the response handler receives `()`.
#[doc(hidden)]
pub struct NoRequest;
impl Sealed for NoRequest {}

impl<S: 'static> Pipeline<S, ()> for NoRequest {
    const PRESENT: bool = false;
    type Output = ();
    type Storage = ();
    fn start(&'static self, _: &'static (), _: &'static S, _: (), _: &'static StreamCore) {}
    fn poll(_: &(), _: &mut Context<'_>) -> Poll<Option<()>> {
        Poll::Ready(Some(()))
    }
    fn clear(_: &()) -> Cleared {
        Cleared::Clean
    }
}

/// No response handler: the response passes untouched.
#[doc(hidden)]
pub struct NoResponse;
impl Sealed for NoResponse {}

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
/// `Marker` only disambiguates the blanket impls; it is inferred. Name the trait to write
/// helpers that accept all three kinds:
///
/// ```
/// use jisr::handler::{IntoPipeline, OnRequest};
/// # use jisr::testing::TestFilter;
/// # use jisr::{chain, Next, Registry, Request, ResponseWriter};
///
/// /// Registers `pipeline` twice: as `name` and as `<name>_legacy`.
/// fn with_alias<P, M>(r: &mut Registry, name: &str, pipeline: P)
/// where
///     P: IntoPipeline<(), OnRequest<()>, M> + Clone + Send + Sync + 'static,
/// {
///     r.register(name, pipeline.clone()).register(&format!("{name}_legacy"), pipeline);
/// }
/// # async fn log(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
/// #     next.run(&mut req, &mut w).await;
/// # }
/// # async fn hello(mut req: Request<'_>, _w: ResponseWriter<'_>) {
/// #     req.set_header("x-hello", "world");
/// # }
/// fn register(r: &mut Registry) {
///     with_alias(r, "hello", hello); // a handler
///     with_alias(r, "logged", chain(log, hello)); // a chain
/// }
///
/// let f = TestFilter::new(register, "logged_legacy", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.request_header("x-hello").as_deref(), Some("world"));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler, state handler or chain of phase `{P}`",
    label = "not a handler of an accepted shape",
    note = "request handler: `async fn(Request<'_>, ResponseWriter<'_>)`, or `async fn(&S, Request<'_>, ResponseWriter<'_>)` after `.state(load)`",
    note = "response handler: `async fn(T, Response<'_>, ResponseWriter<'_>)`, `T` being what the request handler returned (`()` if nothing), or `async fn(&S, T, Response<'_>, ResponseWriter<'_>)` after `.state(load)`",
    note = "a handler is an `async fn` (or a closure returning a future) and takes its handles by value, not `&mut Request<'_>`"
)]
pub trait IntoPipeline<S: 'static, P: Phase, Marker> {
    /// The compiled pipeline the handler (or chain) becomes.
    #[doc(hidden)]
    type Pipeline: Pipeline<S, P::In, Output = P::Out>;
    /// Compiles the handler (or chain) into its pipeline, once, at registration.
    #[doc(hidden)]
    fn into_pipeline(self) -> Self::Pipeline;
}

/// What [`Registry::register`](crate::Registry::register) accepts: a request handler without
/// state, `async fn(Request<'_>, ResponseWriter<'_>)`, or a [`chain`] ending in one.
///
/// Implemented for everything [`IntoPipeline`] converts in that phase; it exists so that a
/// handler of another shape is told which shapes `register` takes:
///
/// ```
/// use jisr::handler::IntoRegistered;
/// use jisr::{Request, ResponseWriter};
///
/// fn accepted<M>(_: impl IntoRegistered<M>) {}
/// async fn hello(_req: Request<'_>, _w: ResponseWriter<'_>) {}
/// accepted(hello);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a request handler that `Registry::register` accepts",
    label = "expected `async fn(Request<'_>, ResponseWriter<'_>)` or a `chain(..)` ending in one",
    note = "`register` takes a handler without state: `async fn(req: Request<'_>, w: ResponseWriter<'_>)`",
    note = "a handler that takes the filter's state first (`&S`) is registered with `r.filter(name).state(load).handle(handler)`",
    note = "a filter with a response handler is registered with `r.filter(name).respond(mode, request_handler, response_handler)`",
    note = "a handler is an `async fn` (or a closure returning a future) and takes `Request<'_>` and `ResponseWriter<'_>` by value, not `&mut`"
)]
pub trait IntoRegistered<Marker>: IntoPipeline<(), OnRequest<()>, Marker> {}

impl<H, M> IntoRegistered<M> for H where H: IntoPipeline<(), OnRequest<()>, M> {}

/// What [`FilterBuilder::handle`](crate::handler::FilterBuilder::handle) and the first handler
/// of [`FilterBuilder::respond`](crate::handler::FilterBuilder::respond) accept: a request
/// handler returning `T`, `async fn(Request<'_>, ResponseWriter<'_>) -> T` or, with state `S`,
/// `async fn(&S, Request<'_>, ResponseWriter<'_>) -> T`; or a [`chain`] ending in one.
///
/// Implemented for everything [`IntoPipeline`] converts in that phase; it exists so that a
/// handler of another shape is told which shapes are accepted:
///
/// ```
/// use jisr::handler::IntoRequestHandler;
/// use jisr::{Request, ResponseWriter};
///
/// struct Limits;
/// fn accepted<S: 'static, T: 'static, M>(_: impl IntoRequestHandler<S, T, M>) {}
/// async fn check(_lim: &Limits, _req: Request<'_>, _w: ResponseWriter<'_>) -> bool { true }
/// accepted::<Limits, bool, _>(check);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a request handler of this filter",
    label = "expected `async fn(Request<'_>, ResponseWriter<'_>) -> {T}`, or `async fn(&S, Request<'_>, ResponseWriter<'_>) -> {T}` after `.state(load)`",
    note = "without `.state(load)`, a request handler is `async fn(req: Request<'_>, w: ResponseWriter<'_>)`; after `.state(load)` it takes the state first: `async fn(state: &S, req: Request<'_>, w: ResponseWriter<'_>)`",
    note = "what a request handler returns is handed to the response handler (`respond`); with `handle` it returns `()`",
    note = "a handler is an `async fn` (or a closure returning a future) and takes `Request<'_>` and `ResponseWriter<'_>` by value, not `&mut`"
)]
pub trait IntoRequestHandler<S: 'static, T: 'static, Marker>:
    IntoPipeline<S, OnRequest<T>, Marker>
{
}

impl<S: 'static, T: 'static, H, M> IntoRequestHandler<S, T, M> for H where
    H: IntoPipeline<S, OnRequest<T>, M>
{
}

/// What the second handler of [`FilterBuilder::respond`](crate::handler::FilterBuilder::respond)
/// accepts: a response handler receiving the value `T` its request handler returned,
/// `async fn(T, Response<'_>, ResponseWriter<'_>)` or, with state `S`,
/// `async fn(&S, T, Response<'_>, ResponseWriter<'_>)`; or a response chain ending in one.
///
/// Implemented for everything [`IntoPipeline`] converts in that phase; it exists so that a
/// handler of another shape is told which shapes are accepted:
///
/// ```
/// use jisr::handler::IntoResponseHandler;
/// use jisr::{Response, ResponseWriter};
///
/// fn accepted<S: 'static, T: 'static, M>(_: impl IntoResponseHandler<S, T, M>) {}
/// async fn stamp(_debug: bool, _resp: Response<'_>, _w: ResponseWriter<'_>) {}
/// accepted::<(), bool, _>(stamp);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a response handler for a request handler returning `{T}`",
    label = "expected `async fn({T}, Response<'_>, ResponseWriter<'_>)`, or `async fn(&S, {T}, Response<'_>, ResponseWriter<'_>)` after `.state(load)`",
    note = "a response handler takes first the value its request handler returned (`()` if it returns nothing): `async fn(value: T, resp: Response<'_>, w: ResponseWriter<'_>)`",
    note = "after `.state(load)`, the state comes before the value: `async fn(state: &S, value: T, resp: Response<'_>, w: ResponseWriter<'_>)`",
    note = "a handler is an `async fn` (or a closure returning a future) and takes `Response<'_>` and `ResponseWriter<'_>` by value, not `&mut`"
)]
pub trait IntoResponseHandler<S: 'static, T: 'static, Marker>:
    IntoPipeline<S, OnResponse<T>, Marker>
{
}

impl<S: 'static, T: 'static, H, M> IntoResponseHandler<S, T, M> for H where
    H: IntoPipeline<S, OnResponse<T>, M>
{
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
/// It is `Copy` when its parts are (plain `async fn`s are), so one chain can be registered
/// under several names.
///
/// ```
/// use jisr::handler::Chained;
/// # use jisr::testing::TestFilter;
/// use jisr::{chain, Next, Registry, Request, ResponseWriter};
///
/// async fn require_key(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
///     match req.header("x-api-key") {
///         Some(_) => next.run(&mut req, &mut w).await,
///         None => w.send(401, b"missing key\n"),
///     }
/// }
/// async fn hello(_req: Request<'_>, _w: ResponseWriter<'_>) {}
/// fn register(r: &mut Registry) {
///     let guarded: Chained<_, _> = chain(require_key, hello);
///     r.register("hello", guarded).register("hello_v2", guarded);
/// }
///
/// let f = TestFilter::new(register, "hello_v2", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.local_reply().unwrap().status, 401);
/// ```
#[derive(Clone, Copy)]
pub struct Chained<M, I> {
    mw: M,
    inner: I,
}

// Not offered as a suggestion: a handler of the wrong shape is not helped by being told that
// chains implement the trait (the notes of `IntoPipeline` list the accepted shapes).
#[diagnostic::do_not_recommend]
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

#[cfg(test)]
mod slot_size {
    use super::*;
    use crate::filter::http::slot::StreamSlot;
    use crate::{Request, ResponseWriter};

    /// Bytes of the stream slot of a request handler `h` (without a response handler).
    fn slot_bytes<H, M>(_: &H) -> usize
    where
        H: IntoPipeline<(), OnRequest<()>, M>,
    {
        size_of::<StreamSlot<(), <H as IntoPipeline<(), OnRequest<()>, M>>::Pipeline, NoResponse>>()
    }

    async fn noop(_req: Request<'_>, _w: ResponseWriter<'_>) {}

    /// A stream slot at rest (before its handler runs, and between streams) holds its fixed
    /// part and at most its arena's first block (256 bytes, kept if its last stream read a few
    /// header values): this bounds the fixed part, so a field that grows it fails here. See
    /// BENCHMARKS.md, "Memory per live stream".
    #[test]
    fn a_slot_at_rest_is_small() {
        let core = size_of::<StreamCore>();
        let slot = slot_bytes(&noop);
        eprintln!("StreamCore {core} bytes, slot of a handler that does nothing {slot} bytes");
        assert!(core <= 512, "StreamCore is {core} bytes");
        assert!(
            slot <= 640,
            "the slot of a handler that does nothing is {slot} bytes"
        );
    }
}
