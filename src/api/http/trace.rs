//! Tracing: the stream's active span and child spans, from a handler.

use crate::api::Unsupported;
use crate::filter::http::core::StreamCore;
use crate::host::http::context::{SpanEdit, SpanField, SpanPtr};
use std::fmt;

/// A tracing span of the stream: the active span Envoy made for the request
/// ([`ResponseWriter::span`](crate::ResponseWriter::span)) or a child of it ([`Span::child`]).
///
/// Changes reach Envoy's tracer at once. A child span is finished when its `Span` is dropped;
/// one that is leaked (or still open when the stream ends) is finished when the stream
/// completes, so Envoy always gets it back. Methods do nothing once the stream is over.
///
/// ```
/// use jisr::{Request, ResponseWriter};
///
/// async fn traced(req: Request<'_>, w: ResponseWriter<'_>) {
///     let Some(span) = w.span() else { return }; // tracing is off for this request
///     span.set_tag("tenant", req.header_str("x-tenant").unwrap_or("none"));
///     if let Some(lookup) = span.child("policy lookup") {
///         lookup.set_tag("policy", "default");
///         // ... await a callout here; `lookup` finishes when dropped.
///     }
/// }
/// # let _ = traced;
/// ```
pub struct Span<'w> {
    pub(crate) core: &'w StreamCore,
    pub(crate) ptr: SpanPtr,
    pub(crate) child: bool,
}

impl<'w> Span<'w> {
    fn edit(&self, edit: SpanEdit<'_>) {
        if self.live() {
            self.core.with_host(|h| h.span_edit(self.ptr, edit));
        }
    }

    /// Whether the span can still be used: the active span while the stream lives, a child
    /// until the stream completes.
    fn live(&self) -> bool {
        !self.child || self.core.spans.is_open(self.ptr)
    }

    /// Sets a tag (shown as a span attribute by the tracer).
    pub fn set_tag(&self, key: &str, value: &str) {
        self.edit(SpanEdit::Tag(key.as_bytes(), value.as_bytes()));
    }

    /// Sets several tags; one call into Envoy where it has a batch call, else one per tag.
    pub fn set_tags(&self, tags: &[(&str, &str)]) {
        if !self.live() {
            return;
        }
        self.core.with_host(|h| {
            let mut pairs: arrayvec::ArrayVec<(&[u8], &[u8]), 16> = arrayvec::ArrayVec::new();
            for chunk in tags.chunks(16) {
                pairs.clear();
                pairs.extend(chunk.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
                if !h.span_tags(self.ptr, &pairs) {
                    for (k, v) in &pairs {
                        h.span_edit(self.ptr, SpanEdit::Tag(k, v));
                    }
                }
            }
        });
    }

    /// Adds a log event (an annotation at the current time).
    pub fn log(&self, event: &str) {
        self.edit(SpanEdit::Log(event.as_bytes()));
    }

    /// Renames the span's operation.
    pub fn set_operation(&self, name: &str) {
        self.edit(SpanEdit::Operation(name.as_bytes()));
    }

    /// Forces the sampling decision of the span (and of the trace, for the active span).
    pub fn set_sampled(&self, sampled: bool) {
        self.edit(SpanEdit::Sampled(sampled));
    }

    /// Keeps the span's sampling decision from following Envoy's local decision (e.g. after a
    /// route change); use it with [`set_sampled`](Self::set_sampled). Tracers other than
    /// OpenTelemetry may ignore it.
    ///
    /// # Errors
    /// [`Unsupported`] on Envoy 1.38 (the callback exists from 1.39 on).
    pub fn disable_local_decision(&self) -> Result<(), Unsupported> {
        let ok = !self.live()
            || self
                .core
                .with_host(|h| h.span_disable_local_decision(self.ptr))
                .unwrap_or(true);
        if ok {
            Ok(())
        } else {
            Err(Unsupported {
                callback: "envoy_dynamic_module_callback_http_span_disable_local_decision",
            })
        }
    }

    /// Sets a baggage item, propagated to every later span of the trace.
    pub fn set_baggage(&self, key: &str, value: &str) {
        self.edit(SpanEdit::Baggage(key.as_bytes(), value.as_bytes()));
    }

    fn read(&self, field: SpanField<'_>) -> Option<&'w str> {
        if !self.live() {
            return None;
        }
        let core = self.core;
        let bytes = core
            .with_host(|h| {
                h.span_read(self.ptr, field)
                    .map(|raw| raw.keep_in(&core.arena))
            })
            .flatten()?;
        core::str::from_utf8(bytes).ok()
    }

    /// A baggage item of the trace (set here or by any parent), copied into the stream's
    /// arena; `None` when absent.
    pub fn baggage(&self, key: &str) -> Option<&'w str> {
        self.read(SpanField::Baggage(key.as_bytes()))
    }

    /// The trace id as the tracer prints it (e.g. 32 hex digits), copied into the stream's
    /// arena; `None` when the tracer has none (yet).
    pub fn trace_id(&self) -> Option<&'w str> {
        self.read(SpanField::TraceId)
    }

    /// The span id as the tracer prints it, copied into the stream's arena.
    pub fn span_id(&self) -> Option<&'w str> {
        self.read(SpanField::SpanId)
    }

    /// Starts a child span named `operation`, finished when the returned `Span` is dropped.
    /// `None` when the tracer made none, the stream is over, or 16 children are open already.
    pub fn child(&self, operation: &str) -> Option<Span<'w>> {
        if !self.live() {
            return None;
        }
        let core = self.core;
        let (ptr, finish) = core
            .with_host(|h| h.span_child(self.ptr, operation.as_bytes()))
            .flatten()?;
        core.spans.open(ptr, finish).then_some(Span {
            core,
            ptr,
            child: true,
        })
    }

    /// Whether this is a child span (finished on drop) rather than the stream's active span.
    pub fn is_child(&self) -> bool {
        self.child
    }
}

impl Drop for Span<'_> {
    fn drop(&mut self) {
        if self.child {
            self.core.spans.finish(self.ptr);
        }
    }
}

impl fmt::Debug for Span<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Span")
            .field("child", &self.child)
            .finish_non_exhaustive()
    }
}
