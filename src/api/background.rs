//! Work a filter config owns, run on Envoy's main thread: tasks that outlive a request,
//! callouts and streams not tied to any stream, and metrics updated without a stream.

use crate::api::Unsupported;
use crate::api::callout::{
    CalloutError, CalloutRequest, NoAnswer, PathBuf, request_pairs, trailer_pairs,
};
use crate::api::config::ConfigHandle;
use crate::api::metrics::MetricError;
use crate::api::metrics::metric_result;
use crate::executor::background::{OwnedHeaders, Runtime, StreamEvent};
use crate::host::MetricOp;
use crate::host::current::with_config;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The background runtime of a filter config ([`ConfigHandle::background`]).
///
/// Tasks run on Envoy's main thread, polled by jisr through the config's scheduler: no thread
/// and no async runtime. A task can be spawned from anywhere (a request handler on a worker,
/// the config loader, a thread of yours); it may outlive the request that spawned it, not the
/// config: when Envoy drops the config, its tasks are dropped. A task that panics is dropped
/// (and counted, see [`panics`](Self::panics)); Envoy and the other tasks go on.
///
/// Inside a task, [`callout`](Self::callout), [`stream`](Self::stream) and the metric calls
/// work; outside one they return a `Detached` error (they need the main thread).
///
/// ```
/// use jisr::background::Background;
/// use jisr::callout::CalloutRequest;
/// use jisr::{ConfigError, ConfigHandle, Counter, Request, ResponseWriter};
///
/// struct Audit { bg: Background, sent: Counter }
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Audit, ConfigError> {
///     Ok(Audit { bg: cfg.background(), sent: cfg.counter("audit_sent", &[])? })
/// }
///
/// async fn audited(audit: &Audit, req: Request<'_>, _w: ResponseWriter<'_>) {
///     let path = req.path().unwrap_or("/").to_string();
///     let (bg, sent) = (audit.bg.clone(), audit.sent);
///     // Fire and forget: the request goes on at once; the audit call outlives it.
///     audit.bg.spawn(async move {
///         let req = CalloutRequest::post("audit", "/log", "audit.local", path.as_bytes());
///         if bg.callout(req).await.is_ok() {
///             let _ = bg.counter_add(sent, &[], 1);
///         }
///     });
/// }
/// # let _ = (load, audited);
/// ```
#[derive(Clone)]
pub struct Background {
    rt: Arc<Runtime>,
}

impl fmt::Debug for Background {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Background")
            .field("tasks", &self.rt.live_tasks())
            .finish()
    }
}

impl ConfigHandle<'_> {
    /// The config's background runtime (made on first use; later calls return the same).
    pub fn background(&mut self) -> Background {
        if let Some(rt) = &self.background {
            return Background { rt: rt.clone() };
        }
        let rt = Runtime::new(self.host.new_scheduler());
        self.background = Some(rt.clone());
        Background { rt }
    }
}

/// The answer to a background callout (owned: a task may keep it as long as it likes).
///
/// ```
/// use jisr::background::BackgroundResponse;
///
/// /// The version a config server answered with, from its `etag`.
/// fn version(answer: &BackgroundResponse) -> Option<&str> {
///     let etag = std::str::from_utf8(answer.header("etag")?).ok()?;
///     Some(etag.trim_matches('"'))
/// }
///
/// // What `bg.callout(..).await` gives a task:
/// let answer = BackgroundResponse {
///     status: 200,
///     headers: vec![("ETag".to_string(), b"\"v7\"".to_vec())],
///     body: b"{}".to_vec(),
/// };
/// assert_eq!(version(&answer), Some("v7"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackgroundResponse {
    /// The response's `:status` code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole response body, as received.
    pub body: Vec<u8>,
}

impl BackgroundResponse {
    /// The first value of header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// An event of a background stream (see [`Background::stream`]).
///
/// ```
/// use jisr::background::BackgroundEvent;
/// use jisr::callout::CalloutRequest;
/// # use jisr::testing::TestFilter;
/// # use jisr::{ConfigError, ConfigHandle, Registry, Request, ResponseWriter};
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<(), ConfigError> {
///     let (bg, bytes) = (cfg.background(), cfg.counter("feed_bytes", &[])?);
///     bg.clone().spawn(async move {
///         let Ok(mut feed) = bg.stream(CalloutRequest::get("feed", "/events", "feed.local"), true) else { return };
///         let Some(BackgroundEvent::Headers(200, ..)) = feed.next_event().await else { return };
///         while let Some(BackgroundEvent::Data(chunk, _end)) = feed.next_event().await {
///             let _ = bg.counter_add(bytes, &[], chunk.len() as u64);
///         }
///     });
///     Ok(())
/// }
/// # async fn pass(_: &(), _req: Request<'_>, _w: ResponseWriter<'_>) {}
/// # fn register(r: &mut Registry) { r.filter("feed").state(load).handle(pass); }
///
/// let f = TestFilter::new(register, "feed", b"").unwrap();
/// f.run_background(); // the task opens its stream
/// f.answer_background_stream(f.background_stream_log()[0].0, 200, &[b"abc", b"de"]);
/// assert_eq!(f.metric("feed_bytes"), Some(5));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackgroundEvent {
    /// Response headers: status, headers, and whether the response ends here.
    Headers(u16, Vec<(String, Vec<u8>)>, bool),
    /// Response data, and whether the response ends here.
    Data(Vec<u8>, bool),
    /// Response trailers (the response ends).
    Trailers(Vec<(String, Vec<u8>)>),
    /// The stream completed.
    Complete,
    /// The stream was reset.
    Reset,
}

fn unsupported_metric() -> MetricError {
    MetricError::Unsupported(Unsupported {
        callback: "envoy_dynamic_module_callback_http_filter_config_increment_counter",
    })
}

impl Background {
    /// Adds a task; `false` (and `task` is dropped) once the config is gone.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> bool {
        self.rt.spawn(Box::pin(task))
    }

    /// Tasks alive now.
    pub fn tasks(&self) -> usize {
        self.rt.live_tasks()
    }

    /// Tasks that panicked so far (each was dropped).
    pub fn panics(&self) -> u64 {
        self.rt.panics()
    }

    /// Sends an HTTP callout owned by the config; resolves to its response. It starts when
    /// first polled, which must be inside a background task (else `Err(Detached)`).
    /// Dropping the future forgets the answer (Envoy still completes the request).
    pub fn callout<'r>(&self, req: CalloutRequest<'r>) -> BackgroundCallout<'r> {
        BackgroundCallout {
            rt: self.rt.clone(),
            req,
            id: None,
            done: false,
        }
    }

    /// Opens a streaming HTTP callout owned by the config (inside a background task): the
    /// request headers and `body` go at once (`end_stream` ends the request there); send more
    /// with [`BackgroundStream::send`] and read the response with
    /// [`BackgroundStream::next_event`].
    ///
    /// # Errors
    /// Outside a background task (`Detached`), or when Envoy refuses the request.
    pub fn stream(
        &self,
        req: CalloutRequest<'_>,
        end_stream: bool,
    ) -> Result<BackgroundStream, CalloutError> {
        let timeout_ms = u64::try_from(req.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut path = PathBuf::new();
        let pairs = request_pairs(&req, &mut path)?;
        self.rt.stream_opening();
        let started = with_config(|h| {
            h.start_stream(
                req.cluster.as_bytes(),
                &pairs,
                req.body,
                end_stream,
                timeout_ms,
            )
        })
        .unwrap_or(Err(u32::MAX));
        match self.rt.stream_opened(started) {
            Ok(id) => Ok(BackgroundStream {
                rt: self.rt.clone(),
                id,
                ended: false,
            }),
            Err(u32::MAX) => Err(CalloutError::Detached),
            Err(rc) => Err(CalloutError::from_init(rc)),
        }
    }

    fn metric(
        &self,
        op: MetricOp,
        id: usize,
        expected: usize,
        labels: &[&str],
        v: u64,
    ) -> Result<(), MetricError> {
        if labels.len() != expected {
            return Err(MetricError::LabelCount {
                expected,
                got: labels.len(),
            });
        }
        let bytes: arrayvec::ArrayVec<&[u8], 16> =
            labels.iter().take(16).map(|l| l.as_bytes()).collect();
        match with_config(|h| h.metric(op, id, &bytes, v)) {
            Some(None) => Err(unsupported_metric()),
            rc => metric_result(rc.flatten(), expected, labels.len()),
        }
    }

    crate::api::metrics::metric_methods!(
        "Outside a background task (`Detached`: these run on the main thread, without a \
         stream), on Envoy 1.38 (`Unsupported`: config-level metrics need 1.39), a label count \
         that differs from the definition, or Envoy's refusal."
    );
}

/// The future of [`Background::callout`].
///
/// ```
/// use jisr::callout::CalloutRequest;
/// # use jisr::testing::TestFilter;
/// # use jisr::{ConfigError, ConfigHandle, Registry, Request, ResponseWriter};
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<(), ConfigError> {
///     let (bg, warmed) = (cfg.background(), cfg.counter("cache_warmed", &[])?);
///     bg.clone().spawn(async move {
///         let warm = bg.callout(CalloutRequest::post("cache", "/warm", "cache.local", b"all"));
///         if warm.await.is_ok_and(|answer| answer.status == 200) {
///             let _ = bg.counter_inc(warmed, &[]);
///         }
///     });
///     Ok(())
/// }
/// # async fn pass(_: &(), _req: Request<'_>, _w: ResponseWriter<'_>) {}
/// # fn register(r: &mut Registry) { r.filter("warm").state(load).handle(pass); }
///
/// let f = TestFilter::new(register, "warm", b"").unwrap();
/// f.run_background(); // the task starts its callout
/// let call = f.background_callouts().remove(0);
/// f.complete_background_callout(call.id, 200, b"");
/// assert_eq!(f.metric("cache_warmed"), Some(1));
/// ```
pub struct BackgroundCallout<'r> {
    rt: Arc<Runtime>,
    req: CalloutRequest<'r>,
    id: Option<u64>,
    done: bool,
}

fn owned(h: OwnedHeaders) -> Vec<(String, Vec<u8>)> {
    h
}

impl Future for BackgroundCallout<'_> {
    type Output = Result<BackgroundResponse, CalloutError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(CalloutError::Detached));
        }
        let id = match this.id {
            Some(id) => id,
            None => {
                let r = &this.req;
                let timeout_ms = u64::try_from(r.timeout.as_millis()).unwrap_or(u64::MAX);
                let mut path = PathBuf::new();
                let pairs = match request_pairs(r, &mut path) {
                    Ok(p) => p,
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Err(e));
                    }
                };
                this.rt.callout_opening();
                // No lock is held: Envoy may answer inside this call.
                let started =
                    with_config(|h| h.callout(r.cluster.as_bytes(), &pairs, r.body, timeout_ms))
                        .unwrap_or(Err(u32::MAX));
                match this.rt.callout_opened(started) {
                    Ok(id) => {
                        this.id = Some(id);
                        id
                    }
                    Err(rc) => {
                        this.done = true;
                        return Poll::Ready(Err(if rc == u32::MAX {
                            CalloutError::Detached
                        } else {
                            CalloutError::from_init(rc)
                        }));
                    }
                }
            }
        };
        let Some(outcome) = this.rt.callout_poll(id, cx.waker()) else {
            return Poll::Pending;
        };
        this.done = true;
        this.id = None;
        Poll::Ready(match outcome {
            Ok((504, _, body)) if body == b"upstream request timeout" => Err(CalloutError::Timeout),
            Ok((status, _, body)) if NoAnswer::of(status, &body).is_some() => {
                Err(CalloutError::Unavailable(
                    NoAnswer::of(status, &body).unwrap_or(NoAnswer::ResetBeforeHeaders),
                ))
            }
            Ok((status, headers, body)) => Ok(BackgroundResponse {
                status,
                headers: owned(headers),
                body,
            }),
            Err(crate::abi::callout_result::RESET) => Err(CalloutError::Reset),
            Err(_) => Err(CalloutError::ResponseTooLarge),
        })
    }
}

impl Drop for BackgroundCallout<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.rt.callout_forget(id);
        }
    }
}

/// A streaming callout owned by a filter config (see [`Background::stream`]).
///
/// ```
/// use jisr::callout::CalloutRequest;
/// # use jisr::testing::TestFilter;
/// # use jisr::{ConfigError, ConfigHandle, Registry, Request, ResponseWriter};
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<(), ConfigError> {
///     let bg = cfg.background();
///     bg.clone().spawn(async move {
///         let req = CalloutRequest::post("logs", "/ingest", "logs.local", b"line 1\n");
///         let Ok(mut upload) = bg.stream(req, false) else { return };
///         upload.send(b"line 2\n", false);
///         upload.send_trailers(&[("x-lines", b"2")]); // ends the request
///         while upload.next_event().await.is_some() {} // until the answer is complete
///     });
///     Ok(())
/// }
/// # async fn pass(_: &(), _req: Request<'_>, _w: ResponseWriter<'_>) {}
/// # fn register(r: &mut Registry) { r.filter("logs").state(load).handle(pass); }
///
/// let f = TestFilter::new(register, "logs", b"").unwrap();
/// f.run_background();
/// let sent: Vec<String> = f.background_stream_log().into_iter().map(|(_, e)| e).collect();
/// assert_eq!(sent, ["start end=false", r#"data "line 2\n" end=false"#, "trailers 1"]);
/// ```
pub struct BackgroundStream {
    rt: Arc<Runtime>,
    id: u64,
    ended: bool,
}

impl BackgroundStream {
    /// Sends request data (`end_stream` ends the request); `false` when Envoy refused (the
    /// stream is over) or outside a background task.
    pub fn send(&self, data: &[u8], end_stream: bool) -> bool {
        with_config(|h| h.stream_send(self.id, data, end_stream)).unwrap_or(false)
    }

    /// Sends request trailers (ends the request). `false` when a trailer is not valid HTTP
    /// or there are more than 16 (nothing is sent; see [`jisr::wire`](crate::wire)), when Envoy
    /// refused, or outside a background task.
    pub fn send_trailers(&self, trailers: &[(&str, &[u8])]) -> bool {
        let Ok(pairs) = trailer_pairs::<16>(trailers) else {
            return false;
        };
        with_config(|h| h.stream_trailers(self.id, &pairs)).unwrap_or(false)
    }

    /// Resets the stream.
    pub fn reset(mut self) {
        with_config(|h| h.stream_reset(self.id));
        self.ended = true;
    }

    /// The next response event; `None` after `Complete` or `Reset`.
    pub fn next_event(&mut self) -> impl Future<Output = Option<BackgroundEvent>> + '_ {
        std::future::poll_fn(move |cx| {
            if self.ended {
                return Poll::Ready(None);
            }
            match self.rt.stream_poll(self.id, cx.waker()) {
                Err(()) => {
                    self.ended = true;
                    Poll::Ready(None)
                }
                Ok(None) => Poll::Pending,
                Ok(Some(ev)) => {
                    let ev = match ev {
                        StreamEvent::Headers(s, h, end) => BackgroundEvent::Headers(s, h, end),
                        StreamEvent::Data(d, end) => BackgroundEvent::Data(d, end),
                        StreamEvent::Trailers(t) => BackgroundEvent::Trailers(t),
                        StreamEvent::Complete => {
                            self.ended = true;
                            BackgroundEvent::Complete
                        }
                        StreamEvent::Reset => {
                            self.ended = true;
                            BackgroundEvent::Reset
                        }
                    };
                    Poll::Ready(Some(ev))
                }
            }
        })
    }
}

impl Drop for BackgroundStream {
    fn drop(&mut self) {
        if !self.ended {
            // Not finished: reset it if we can (inside a task), and forget its events.
            with_config(|h| h.stream_reset(self.id));
        }
        self.rt.stream_forget(self.id);
    }
}
