//! The simulated host's tracing, socket options, stream control and typed filter state.

use super::SimHost;
use crate::abi::ffi::TimingInfo;
use crate::host::Raw;
use crate::host::http::context::{
    Addr, FinishSpan, ObjectDtor, SockOpt, SpanEdit, SpanField, SpanPtr, StreamContext,
};
use core::ffi::c_void;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// A span recorded by the simulated tracer.
///
/// ```
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
/// async fn traced(_req: Request<'_>, w: ResponseWriter<'_>) {
///     let Some(span) = w.span() else { return };
///     span.set_tag("tenant", "t1");
///     if let Some(lookup) = span.child("policy lookup") {
///         lookup.log("cache miss");
///     } // `lookup` is finished here
/// }
/// # fn register(r: &mut Registry) { r.register("traced", traced); }
///
/// let f = TestFilter::new(register, "traced", b"").unwrap();
/// let mut s = f.stream();
/// s.enable_tracing("ingress");
/// s.request_headers(&[(":path", "/")], true);
/// let spans = s.spans();
/// assert_eq!(spans[0].tags, [("tenant".to_string(), "t1".to_string())]);
/// assert_eq!((spans[1].operation.as_str(), spans[1].parent, spans[1].finished), ("policy lookup", Some(0), true));
/// assert_eq!(spans[1].logs, ["cache miss"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimSpan {
    /// Operation name.
    pub operation: String,
    /// Tags, in the order set (a tag set twice appears twice).
    pub tags: Vec<(String, String)>,
    /// Log events.
    pub logs: Vec<String>,
    /// Baggage set on this span.
    pub baggage: Vec<(String, String)>,
    /// The last sampling decision set, if any.
    pub sampled: Option<bool>,
    /// Whether the local sampling decision was disabled.
    pub local_decision_disabled: bool,
    /// Index of the parent in [`TestStream::spans`](crate::testing::TestStream::spans)
    /// (`None` for the active span).
    pub parent: Option<usize>,
    /// Whether the span was finished (the active span never is: Envoy finishes it).
    pub finished: bool,
}

type Bytes = Box<[u8]>;

/// A socket option the filter set: its address and its int value or bytes.
pub(crate) type SetOption = (SockOpt, Result<i64, Bytes>);

/// A module object in filter state: key, object, destructor, life span.
pub(crate) type StoredObject = (Vec<u8>, *mut c_void, ObjectDtor, u32);

/// Typed metadata of a source: (source, namespace, type URL, value).
pub(crate) type SourceTyped = (u32, String, String, Vec<u8>);

/// One simulated span; its address is the span pointer handed to the filter.
#[derive(Debug, Default)]
pub(crate) struct SpanCell {
    pub(crate) span: RefCell<SimSpan>,
    index: Cell<usize>,
}

/// Tracing, socket options, stream control and typed filter state of a simulated stream.
#[derive(Default)]
pub(crate) struct SimContext {
    /// Every span; the first is the active span when tracing is on.
    pub(crate) spans: RefCell<Vec<Rc<SpanCell>>>,
    /// Socket options the filter set: (address, int value or bytes).
    pub(crate) socket_options: RefCell<Vec<SetOption>>,
    /// GOAWAY-and-close calls (`graceful` each).
    pub(crate) goaways: RefCell<Vec<bool>>,
    /// Stream recreations Envoy accepted.
    pub(crate) recreated: Cell<u32>,
    /// Whether Envoy refuses to recreate (as for a request with a body).
    pub(crate) refuse_recreate: Cell<bool>,
    /// Keys Envoy has an object factory for (typed filter state needs one).
    pub(crate) factories: RefCell<Vec<Vec<u8>>>,
    /// Typed filter state, as serialized bytes.
    pub(crate) typed_state: RefCell<Vec<(Vec<u8>, Bytes)>>,
    /// Whether the simulated Envoy is older than 1.40 (the 1.40-only calls are missing).
    pub(crate) before_1_40: Cell<bool>,
    /// Timing Envoy reports.
    pub(crate) timing: Cell<Option<TimingInfo>>,
    /// The client's direct address and the upstream host's address.
    pub(crate) addresses: RefCell<[Option<Bytes>; 2]>,
    /// Upstream hosts tried and the connection ids used.
    pub(crate) attempts: RefCell<(Vec<Bytes>, Vec<u64>)>,
    /// Module objects in filter state: key, object, destructor, life span.
    pub(crate) objects: RefCell<Vec<StoredObject>>,
    /// `(key, life span, sharing)` of each typed set with options.
    pub(crate) state_options: RefCell<Vec<(Vec<u8>, u32, u32)>>,
    /// Serialized `Struct` and `Any` metadata set per namespace, in order.
    pub(crate) struct_metadata: RefCell<Vec<(String, Vec<u8>)>>,
    pub(crate) typed_metadata: RefCell<Vec<(String, Vec<u8>)>>,
    /// Typed metadata of route, cluster and host sources: (source, ns, type URL, value).
    pub(crate) source_typed: RefCell<Vec<SourceTyped>>,
}

impl Drop for SimContext {
    fn drop(&mut self) {
        // Envoy destroys filter state objects with the stream.
        for (_, obj, dtor, _) in self.objects.get_mut().drain(..) {
            // SAFETY: each object was handed over by `set_filter_state_object` with its
            // destructor, and is destroyed only here (replaced ones were destroyed then).
            unsafe { dtor(obj) };
        }
    }
}

/// Reads a serialized `google.protobuf.Any` (field 1 type URL, field 2 value).
fn parse_any(mut b: &[u8]) -> Option<(String, Vec<u8>)> {
    let (mut url, mut value) = (String::new(), Vec::new());
    while let [tag, rest @ ..] = b {
        let (mut len, mut shift, mut i) = (0usize, 0, 0);
        loop {
            let byte = *rest.get(i)?;
            len |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            i += 1;
            if byte < 0x80 {
                break;
            }
        }
        let field = rest.get(i..i + len)?;
        match tag {
            0x0a => url = String::from_utf8(field.to_vec()).ok()?,
            0x12 => value = field.to_vec(),
            _ => return None,
        }
        b = &rest[i + len..];
    }
    Some((url, value))
}

impl SimContext {
    /// Turns tracing on: the stream gets an active span named `operation`.
    pub(crate) fn enable_tracing(&self, operation: &str) {
        let mut spans = self.spans.borrow_mut();
        if spans.is_empty() {
            let cell = Rc::new(SpanCell::default());
            cell.span.borrow_mut().operation = operation.to_string();
            spans.push(cell);
        }
    }
}

fn cell(span: SpanPtr) -> &'static SpanCell {
    // SAFETY: a simulated span pointer is the address of a `SpanCell` kept alive by an `Rc`:
    // the active span by the host's list, a child by the strong count handed to the filter
    // (released only by `finish_sim_child`, after which the filter no longer uses it; the
    // host's list keeps another). Cells are never mutated through this reference except via
    // their `RefCell`/`Cell`; the `'static` is only as long as the test keeps the host, which
    // outlives every filter call.
    unsafe { &*span.0.cast::<SpanCell>() }
}

/// Finishes a simulated child span and releases the filter's reference to it.
///
/// # Safety
/// `span` must come from `SimHost::span_child` and not have been finished.
unsafe fn finish_sim_child(span: SpanPtr) {
    // SAFETY: per the contract, `span` is the pointer from `Rc::into_raw` in `span_child`
    // whose count was not released yet.
    let rc = unsafe { Rc::from_raw(span.0.cast::<SpanCell>().cast_const()) };
    rc.span.borrow_mut().finished = true;
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl StreamContext for SimHost {
    fn header_values(
        &self,
        map: super::Map,
        key: &[u8],
        max: usize,
        f: &mut dyn FnMut(Raw<'_>),
    ) -> Option<usize> {
        self.touch("header_values");
        let (_, n) = super::Host::header(self, map, key, 0);
        if n > max {
            return None;
        }
        for i in 0..n {
            if let (Some(v), _) = super::Host::header(self, map, key, i) {
                f(v);
            }
        }
        self.header_batches.set(self.header_batches.get() + 1);
        Some(n)
    }

    fn secret(&self, handle: u64) -> Option<Option<Raw<'_>>> {
        self.touch("secret");
        if self.context.before_1_40.get() {
            return None;
        }
        let Some(value) = secret_value(handle) else {
            return Some(None);
        };
        let mut buf = self.span_scratch.borrow_mut();
        *buf = value.into_boxed_slice();
        // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only by a
        // host method that modifies or refills them, as `Raw::new` requires.
        Some(Some(unsafe { Raw::new(buf.as_ptr(), buf.len()) }))
    }

    fn set_metadata_strs(&self, ns: &[u8], pairs: &[(&[u8], &[u8])]) -> bool {
        self.touch("set_metadata_strs");
        for (k, v) in pairs {
            super::Host::set_metadata(self, ns, k, super::MetadataValue::Str(v));
        }
        self.metadata_batches.set(self.metadata_batches.get() + 1);
        true
    }

    fn active_span(&self) -> Option<SpanPtr> {
        self.touch("active_span");
        let spans = self.context.spans.borrow();
        spans
            .first()
            .map(|c| SpanPtr(Rc::as_ptr(c).cast_mut().cast()))
    }

    fn span_edit(&self, span: SpanPtr, edit: SpanEdit<'_>) {
        self.touch("span_edit");
        let mut sp = cell(span).span.borrow_mut();
        match edit {
            SpanEdit::Tag(k, v) => sp.tags.push((s(k), s(v))),
            SpanEdit::Log(e) => sp.logs.push(s(e)),
            SpanEdit::Operation(op) => sp.operation = s(op),
            SpanEdit::Sampled(b) => sp.sampled = Some(b),
            SpanEdit::Baggage(k, v) => sp.baggage.push((s(k), s(v))),
        }
    }

    fn span_tags(&self, span: SpanPtr, tags: &[(&[u8], &[u8])]) -> bool {
        self.touch("span_tags");
        let mut sp = cell(span).span.borrow_mut();
        sp.tags.extend(tags.iter().map(|(k, v)| (s(k), s(v))));
        true
    }

    fn span_disable_local_decision(&self, span: SpanPtr) -> bool {
        self.touch("span_disable_local_decision");
        cell(span).span.borrow_mut().local_decision_disabled = true;
        true
    }

    fn span_read(&self, span: SpanPtr, field: SpanField<'_>) -> Option<Raw<'_>> {
        self.touch("span_read");
        let c = cell(span);
        let value = match field {
            SpanField::TraceId => "0000000000000abc".to_string(),
            SpanField::SpanId => format!("{:016x}", 0x100 + c.index.get()),
            SpanField::Baggage(k) => {
                // Baggage is inherited from the parents, as in Envoy.
                let spans = self.context.spans.borrow();
                let mut at = Some(c.index.get());
                let mut found = None;
                while let (Some(i), None) = (at, &found) {
                    let sp = spans[i].span.borrow();
                    found = sp
                        .baggage
                        .iter()
                        .rev()
                        .find(|(bk, _)| bk.as_bytes() == k)
                        .map(|(_, v)| v.clone());
                    at = sp.parent;
                }
                found?
            }
        };
        // Like Envoy's thread-local buffer: valid until the next tracing call.
        let mut buf = self.span_scratch.borrow_mut();
        *buf = value.into_bytes().into_boxed_slice();
        // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only by a
        // host method that modifies or refills them, as `Raw::new` requires.
        Some(unsafe { Raw::new(buf.as_ptr(), buf.len()) })
    }

    fn span_child(&self, span: SpanPtr, operation: &[u8]) -> Option<(SpanPtr, FinishSpan)> {
        self.touch("span_child");
        let parent = cell(span).index.get();
        let mut spans = self.context.spans.borrow_mut();
        let child = Rc::new(SpanCell::default());
        child.index.set(spans.len());
        {
            let mut sp = child.span.borrow_mut();
            sp.operation = s(operation);
            sp.parent = Some(parent);
        }
        spans.push(child.clone());
        let ptr = Rc::into_raw(child).cast_mut().cast();
        Some((SpanPtr(ptr), finish_sim_child as FinishSpan))
    }

    fn socket_option_int(&self, opt: SockOpt) -> Option<i64> {
        self.touch("socket_option_int");
        let opts = self.context.socket_options.borrow();
        opts.iter()
            .rev()
            .find(|(o, _)| *o == opt)
            .and_then(|(_, v)| v.as_ref().ok().copied())
    }

    fn socket_option_bytes(&self, opt: SockOpt) -> Option<Raw<'_>> {
        self.touch("socket_option_bytes");
        let opts = self.context.socket_options.borrow();
        let (_, v) = opts.iter().rev().find(|(o, _)| *o == opt)?;
        let b = v.as_ref().err()?;
        // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only by a
        // host method that modifies or refills them, as `Raw::new` requires.
        Some(unsafe { Raw::new(b.as_ptr(), b.len()) })
    }

    fn set_socket_option_int(&self, opt: SockOpt, value: i64) -> bool {
        self.touch("set_socket_option_int");
        self.context
            .socket_options
            .borrow_mut()
            .push((opt, Ok(value)));
        true
    }

    fn set_socket_option_bytes(&self, opt: SockOpt, value: &[u8]) -> bool {
        self.touch("set_socket_option_bytes");
        self.context
            .socket_options
            .borrow_mut()
            .push((opt, Err(value.into())));
        true
    }

    fn goaway_and_close(&self, graceful: bool) {
        self.touch("goaway_and_close");
        self.context.goaways.borrow_mut().push(graceful);
    }

    fn recreate_stream(&self) -> bool {
        self.touch("recreate_stream");
        if self.context.refuse_recreate.get() {
            return false;
        }
        self.context.recreated.set(self.context.recreated.get() + 1);
        true
    }

    fn set_filter_state_typed(&self, key: &[u8], value: &[u8]) -> bool {
        self.touch("set_filter_state_typed");
        if !self.context.factories.borrow().iter().any(|k| k == key) {
            return false;
        }
        let mut st = self.context.typed_state.borrow_mut();
        st.retain(|(k, _)| k != key);
        st.push((key.to_vec(), value.into()));
        true
    }

    fn filter_state_typed(&self, key: &[u8]) -> Option<Raw<'_>> {
        self.touch("filter_state_typed");
        let st = self.context.typed_state.borrow();
        if let Some((_, v)) = st.iter().find(|(k, _)| k == key) {
            // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only
            // by a host method that modifies or refills them, as `Raw::new` requires.
            return Some(unsafe { Raw::new(v.as_ptr(), v.len()) });
        }
        // Bytes set with `set_filter_state` serialize as themselves.
        drop(st);
        super::Host::filter_state(self, key)
    }

    fn timing(&self) -> Option<TimingInfo> {
        self.touch("timing");
        let x = &self.context;
        (!x.before_1_40.get()).then(|| x.timing.get().unwrap_or(TimingInfo::UNKNOWN))
    }

    fn address(&self, which: Addr) -> Option<Option<Raw<'_>>> {
        self.touch("address");
        if self.context.before_1_40.get() {
            return None;
        }
        let a = self.context.addresses.borrow();
        let v = match which {
            Addr::DownstreamDirectRemote => &a[0],
            Addr::UpstreamRemote => &a[1],
        };
        // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only by a
        // host method that modifies or refills them, as `Raw::new` requires.
        Some(v.as_ref().map(|b| unsafe { Raw::new(b.as_ptr(), b.len()) }))
    }

    fn upstream_connection_id(&self) -> Option<u64> {
        self.touch("upstream_connection_id");
        let x = &self.context;
        (!x.before_1_40.get()).then(|| x.attempts.borrow().1.last().copied().unwrap_or(0))
    }

    fn upstream_hosts_attempted(&self, f: &mut dyn FnMut(Raw<'_>)) -> bool {
        self.touch("upstream_hosts_attempted");
        if self.context.before_1_40.get() {
            return false;
        }
        for h in &self.context.attempts.borrow().0 {
            // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only
            // by a host method that modifies or refills them, as `Raw::new` requires.
            f(unsafe { Raw::new(h.as_ptr(), h.len()) });
        }
        true
    }

    fn upstream_connection_ids_attempted(&self, f: &mut dyn FnMut(u64)) -> bool {
        self.touch("upstream_connection_ids_attempted");
        if self.context.before_1_40.get() {
            return false;
        }
        self.context
            .attempts
            .borrow()
            .1
            .iter()
            .for_each(|id| f(*id));
        true
    }

    fn has_filter_state(&self, key: &[u8]) -> Option<bool> {
        self.touch("has_filter_state");
        if self.context.before_1_40.get() {
            return None;
        }
        let x = &self.context;
        Some(
            super::Host::filter_state(self, key).is_some()
                || x.typed_state.borrow().iter().any(|(k, _)| k == key)
                || x.objects.borrow().iter().any(|(k, ..)| k == key),
        )
    }

    fn set_filter_state_object(
        &self,
        key: &[u8],
        object: *mut c_void,
        dtor: ObjectDtor,
        life_span: u32,
    ) -> Option<bool> {
        self.touch("set_filter_state_object");
        if self.context.before_1_40.get() {
            return None;
        }
        let old = {
            let mut objs = self.context.objects.borrow_mut();
            let old = objs
                .iter()
                .position(|(k, ..)| k == key)
                .map(|i| objs.remove(i));
            objs.push((key.to_vec(), object, dtor, life_span));
            old
        };
        if let Some((_, obj, dtor, _)) = old {
            // SAFETY: the replaced object was handed over with its destructor and left the
            // table above, so this is its only destruction.
            unsafe { dtor(obj) };
        }
        Some(true)
    }

    fn filter_state_object(&self, key: &[u8]) -> Option<*mut c_void> {
        self.touch("filter_state_object");
        if self.context.before_1_40.get() {
            return None;
        }
        let objs = self.context.objects.borrow();
        Some(
            objs.iter()
                .find(|(k, ..)| k == key)
                .map_or(core::ptr::null_mut(), |(_, o, ..)| *o),
        )
    }

    fn set_filter_state_value(
        &self,
        key: &[u8],
        value: &[u8],
        life_span: u32,
        sharing: u32,
    ) -> Option<bool> {
        self.touch("set_filter_state_value");
        if self.context.before_1_40.get() {
            return None;
        }
        let ok = self.set_filter_state_typed(key, value);
        if ok {
            self.context
                .state_options
                .borrow_mut()
                .push((key.to_vec(), life_span, sharing));
        }
        Some(ok)
    }

    fn set_metadata_struct(&self, ns: &[u8], serialized: &[u8]) -> bool {
        self.touch("set_metadata_struct");
        if self.context.before_1_40.get() {
            return false;
        }
        self.context
            .struct_metadata
            .borrow_mut()
            .push((s(ns), serialized.to_vec()));
        true
    }

    fn set_typed_metadata(&self, ns: &[u8], serialized_any: &[u8]) -> bool {
        self.touch("set_typed_metadata");
        if self.context.before_1_40.get() {
            return false;
        }
        self.context
            .typed_metadata
            .borrow_mut()
            .push((s(ns), serialized_any.to_vec()));
        true
    }

    fn typed_metadata(&self, source: u32, ns: &[u8]) -> Option<Option<(Raw<'_>, Raw<'_>)>> {
        self.touch("typed_metadata");
        if self.context.before_1_40.get() {
            return None;
        }
        let found = if source == crate::abi::metadata_source::DYNAMIC {
            let typed = self.context.typed_metadata.borrow();
            typed
                .iter()
                .rev()
                .find(|(n, _)| n.as_bytes() == ns)
                .and_then(|(_, any)| parse_any(any))
        } else {
            let typed = self.context.source_typed.borrow();
            typed
                .iter()
                .find(|(src, n, ..)| *src == source && n.as_bytes() == ns)
                .map(|(_, _, url, v)| (url.clone(), v.clone()))
        };
        let Some((url, value)) = found else {
            return Some(None);
        };
        // Both views must stay valid together until the next host call: keep them in the
        // scratch, URL first.
        let mut buf = self.span_scratch.borrow_mut();
        *buf = [url.as_bytes(), &value].concat().into_boxed_slice();
        let (u, v) = buf.split_at(url.len());
        Some(Some((
            // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only
            // by a host method that modifies or refills them, as `Raw::new` requires.
            unsafe { Raw::new(u.as_ptr(), u.len()) },
            // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only
            // by a host method that modifies or refills them, as `Raw::new` requires.
            unsafe { Raw::new(v.as_ptr(), v.len()) },
        )))
    }
}

thread_local! {
    /// Simulated SDS generic secrets of this thread: name and current value (`None`: not
    /// available yet). Handles are 1-based indexes.
    pub(crate) static SECRETS: RefCell<Vec<(String, Option<Vec<u8>>)>> = const { RefCell::new(Vec::new()) };
}

/// Sets (or rotates) a simulated secret.
pub(crate) fn set_secret(name: &str, value: Option<&[u8]>) {
    SECRETS.with(|s| {
        let mut s = s.borrow_mut();
        match s.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.map(<[u8]>::to_vec),
            None => s.push((name.to_string(), value.map(<[u8]>::to_vec))),
        }
    });
}

/// The handle of simulated secret `name` (0: unknown, as Envoy refuses an unknown static
/// secret).
pub(crate) fn secret_handle(name: &[u8]) -> u64 {
    SECRETS.with(|s| {
        s.borrow()
            .iter()
            .position(|(n, _)| n.as_bytes() == name)
            .map_or(0, |i| i as u64 + 1)
    })
}

/// The current value of simulated secret `handle`.
pub(crate) fn secret_value(handle: u64) -> Option<Vec<u8>> {
    SECRETS.with(|s| {
        let s = s.borrow();
        s.get(usize::try_from(handle).ok()?.checked_sub(1)?)?
            .1
            .clone()
    })
}
