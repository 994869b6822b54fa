//! `ResponseWriter`: Dynamic metadata: set, append and read values, whole structs and typed metadata.

use super::*;
use crate::api::Unsupported;
use crate::api::pb::{StructValue, TypedMetadata, put_any, put_struct, with_scratch};

/// Dynamic metadata: set, append and read values, whole structs and typed metadata.
impl<'a> ResponseWriter<'a> {
    /// Appends `value` to the dynamic-metadata list `ns:key`, creating the list when absent.
    /// `false` when Envoy refused (the key already holds a value that is not a list). Other
    /// filters and the access log (`%DYNAMIC_METADATA(ns:key)%`) see the list.
    ///
    /// ```
    /// use jisr::{Request, ResponseWriter};
    ///
    /// async fn audit(req: Request<'_>, w: ResponseWriter<'_>) {
    ///     if req.header("authorization").is_none() {
    ///         w.append_metadata_str("audit", "reasons", "no-credentials");
    ///     }
    ///     if req.header("user-agent").is_none() {
    ///         w.append_metadata_str("audit", "reasons", "no-user-agent");
    ///     }
    /// }
    /// # let _ = audit;
    /// ```
    pub fn append_metadata_str(&self, ns: &str, key: &str, value: &str) -> bool {
        self.append(ns, key, MetadataValue::Str(value.as_bytes()))
    }

    /// Appends a number to the dynamic-metadata list `ns:key` (see
    /// [`append_metadata_str`](Self::append_metadata_str)).
    pub fn append_metadata_num(&self, ns: &str, key: &str, value: f64) -> bool {
        self.append(ns, key, MetadataValue::Num(value))
    }

    /// Appends a boolean to the dynamic-metadata list `ns:key` (see
    /// [`append_metadata_str`](Self::append_metadata_str)).
    pub fn append_metadata_bool(&self, ns: &str, key: &str, value: bool) -> bool {
        self.append(ns, key, MetadataValue::Bool(value))
    }

    /// Sets dynamic metadata `ns:key` to a string (see `%DYNAMIC_METADATA(ns:key)%`).
    pub fn set_metadata_str(&self, ns: &str, key: &str, value: &str) {
        self.core.with_host(|h| {
            h.set_metadata(
                ns.as_bytes(),
                key.as_bytes(),
                MetadataValue::Str(value.as_bytes()),
            )
        });
    }

    /// Sets several string values of dynamic-metadata namespace `ns` (a later duplicate key
    /// wins). On Envoy 1.39+ up to 16 values go in one call into Envoy; on 1.38 one call each.
    ///
    /// ```
    /// use jisr::{Request, ResponseWriter};
    ///
    /// async fn tag(req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let user = req.header_str("x-user").unwrap_or("anonymous");
    ///     w.set_metadata_strs("acme", &[("user", user), ("decision", "allow")]);
    /// }
    /// # let _ = tag;
    /// ```
    pub fn set_metadata_strs(&self, ns: &str, pairs: &[(&str, &str)]) {
        self.core.with_host(|h| {
            let mut raw: arrayvec::ArrayVec<(&[u8], &[u8]), 16> = arrayvec::ArrayVec::new();
            for chunk in pairs.chunks(16) {
                raw.clear();
                raw.extend(chunk.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
                if !h.set_metadata_strs(ns.as_bytes(), &raw) {
                    for (k, v) in &raw {
                        h.set_metadata(ns.as_bytes(), k, MetadataValue::Str(v));
                    }
                }
            }
        });
    }

    /// Sets dynamic metadata `ns:key` to a number.
    pub fn set_metadata_num(&self, ns: &str, key: &str, value: f64) {
        self.core.with_host(|h| {
            h.set_metadata(ns.as_bytes(), key.as_bytes(), MetadataValue::Num(value))
        });
    }

    /// Sets dynamic metadata `ns:key` to a boolean.
    pub fn set_metadata_bool(&self, ns: &str, key: &str, value: bool) {
        self.core.with_host(|h| {
            h.set_metadata(ns.as_bytes(), key.as_bytes(), MetadataValue::Bool(value))
        });
    }

    /// The string value of metadata `ns:key` from `source`, copied into the stream's storage
    /// (valid for the whole handler); `None` when absent or not a string.
    ///
    /// ```
    /// use jisr::{MetadataSource, Request, ResponseWriter};
    ///
    /// async fn tier(_req: Request<'_>, w: ResponseWriter<'_>) {
    ///     // `metadata: { filter_metadata: { acme: { tier: gold } } }` on the route.
    ///     if w.metadata_str(MetadataSource::Route, "acme", "tier") != Some("gold") {
    ///         w.send(403, b"gold only\n");
    ///     }
    /// }
    /// # let _ = tier;
    /// ```
    pub fn metadata_str(&self, source: MetadataSource, ns: &str, key: &str) -> Option<&str> {
        let core = self.core;
        let bytes = core
            .with_host(|h| {
                match h.metadata(source as u32, ns.as_bytes(), key.as_bytes(), MetaKind::Str) {
                    Some(MetaRead::Str(raw)) => Some(raw.keep_in(&core.arena)),
                    _ => None,
                }
            })
            .flatten()?;
        core::str::from_utf8(bytes).ok()
    }

    /// The number value of metadata `ns:key` from `source`; `None` when absent or not a
    /// number.
    pub fn metadata_num(&self, source: MetadataSource, ns: &str, key: &str) -> Option<f64> {
        self.core
            .with_host(|h| {
                match h.metadata(source as u32, ns.as_bytes(), key.as_bytes(), MetaKind::Num) {
                    Some(MetaRead::Num(n)) => Some(n),
                    _ => None,
                }
            })
            .flatten()
    }

    /// The boolean value of metadata `ns:key` from `source`; `None` when absent or not a
    /// boolean.
    pub fn metadata_bool(&self, source: MetadataSource, ns: &str, key: &str) -> Option<bool> {
        self.core
            .with_host(|h| {
                match h.metadata(source as u32, ns.as_bytes(), key.as_bytes(), MetaKind::Bool) {
                    Some(MetaRead::Bool(b)) => Some(b),
                    _ => None,
                }
            })
            .flatten()
    }

    /// The keys of metadata namespace `ns` from `source` (e.g. every claim `jwt_authn` wrote);
    /// empty when the namespace is absent.
    ///
    /// ```
    /// use jisr::{MetadataSource, Request, ResponseWriter};
    ///
    /// async fn claims(_req: Request<'_>, w: ResponseWriter<'_>) {
    ///     for key in w.metadata_keys(MetadataSource::Dynamic, "jwt") {
    ///         if let Some(v) = w.metadata_str(MetadataSource::Dynamic, "jwt", key) {
    ///             w.set_metadata_str("claims", key, v);
    ///         }
    ///     }
    /// }
    /// # let _ = claims;
    /// ```
    pub fn metadata_keys(&self, source: MetadataSource, ns: &str) -> MetadataNames<'_> {
        self.names(source, Some(ns))
    }

    /// The metadata namespaces of `source` (e.g. which filters wrote dynamic metadata).
    pub fn metadata_namespaces(&self, source: MetadataSource) -> MetadataNames<'_> {
        self.names(source, None)
    }

    /// The number of elements of the list metadata `ns:key` from `source` (e.g. a JWT's
    /// `aud` array that `jwt_authn` wrote); `None` when absent or not a list.
    ///
    /// ```
    /// use jisr::{MetadataSource, Request, ResponseWriter};
    ///
    /// async fn audience(_req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let (src, ns, key) = (MetadataSource::Dynamic, "jwt", "aud");
    ///     let n = w.metadata_list_len(src, ns, key).unwrap_or(0);
    ///     if !(0..n).any(|i| w.metadata_list_str(src, ns, key, i) == Some("api")) {
    ///         w.send(403, b"wrong audience\n");
    ///     }
    /// }
    /// # let _ = audience;
    /// ```
    pub fn metadata_list_len(&self, source: MetadataSource, ns: &str, key: &str) -> Option<usize> {
        self.core
            .with_host(|h| h.metadata_list_len(source as u32, ns.as_bytes(), key.as_bytes()))
            .flatten()
    }

    /// Element `index` of the list metadata `ns:key` from `source`, copied into the stream's
    /// arena; `None` when absent, out of range or not a string.
    pub fn metadata_list_str(
        &self,
        source: MetadataSource,
        ns: &str,
        key: &str,
        index: usize,
    ) -> Option<&str> {
        let core = self.core;
        let bytes = core
            .with_host(|h| {
                match h.metadata_list_item(
                    source as u32,
                    ns.as_bytes(),
                    key.as_bytes(),
                    index,
                    MetaKind::Str,
                ) {
                    Some(MetaRead::Str(raw)) => Some(raw.keep_in(&core.arena)),
                    _ => None,
                }
            })
            .flatten()?;
        core::str::from_utf8(bytes).ok()
    }

    /// Element `index` of the list metadata `ns:key` from `source`; `None` when absent, out of
    /// range or not a number.
    pub fn metadata_list_num(
        &self,
        source: MetadataSource,
        ns: &str,
        key: &str,
        index: usize,
    ) -> Option<f64> {
        match self.list_item(source, ns, key, index, MetaKind::Num)? {
            MetaRead::Num(n) => Some(n),
            _ => None,
        }
    }

    /// Element `index` of the list metadata `ns:key` from `source`; `None` when absent, out of
    /// range or not a boolean.
    pub fn metadata_list_bool(
        &self,
        source: MetadataSource,
        ns: &str,
        key: &str,
        index: usize,
    ) -> Option<bool> {
        match self.list_item(source, ns, key, index, MetaKind::Bool)? {
            MetaRead::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// Dynamic metadata: set, append and read values, whole structs and typed metadata.
impl<'w> ResponseWriter<'w> {
    /// Replaces dynamic-metadata namespace `ns` with `fields` (nested structs and lists
    /// included), in one call into Envoy. Keys of `ns` not in `fields` are kept (Envoy merges
    /// at the top level).
    ///
    /// ```
    /// use jisr::handler::StructValue::{List, Num, Str};
    /// use jisr::{Request, ResponseWriter};
    ///
    /// async fn audit(_req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let scopes = [Str("read"), Str("write")];
    ///     let _ = w.set_metadata_struct("acme.audit", &[("user", Str("alice")), ("scopes", List(&scopes)), ("score", Num(0.9))]);
    /// }
    /// # let _ = audit;
    /// ```
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40 (use the `set_metadata_*` calls there).
    pub fn set_metadata_struct(
        &self,
        ns: &str,
        fields: &[(&str, StructValue<'_>)],
    ) -> Result<(), Unsupported> {
        let ok = with_scratch(|buf| {
            put_struct(buf, fields);
            self.core
                .with_host(|h| h.set_metadata_struct(ns.as_bytes(), buf))
                .unwrap_or(true)
        });
        ok.then_some(()).ok_or(Unsupported {
            callback: "envoy_dynamic_module_callback_http_set_dynamic_metadata_struct",
        })
    }

    /// Sets typed dynamic metadata `ns` to a message of type `type_url` (e.g.
    /// `type.googleapis.com/google.protobuf.StringValue`) given serialized.
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40.
    pub fn set_typed_metadata(
        &self,
        ns: &str,
        type_url: &str,
        value: &[u8],
    ) -> Result<(), Unsupported> {
        let ok = with_scratch(|buf| {
            put_any(buf, type_url, value);
            self.core
                .with_host(|h| h.set_typed_metadata(ns.as_bytes(), buf))
                .unwrap_or(true)
        });
        ok.then_some(()).ok_or(Unsupported {
            callback: "envoy_dynamic_module_callback_http_set_dynamic_typed_metadata",
        })
    }

    /// Typed metadata `ns` of `source` (e.g. a route's `typed_filter_metadata`), copied into
    /// the stream's arena; `None` when absent.
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40.
    pub fn typed_metadata(
        &self,
        source: MetadataSource,
        ns: &str,
    ) -> Result<Option<TypedMetadata<'_>>, Unsupported> {
        let core = self.core;
        let got = core
            .with_host(|h| {
                h.typed_metadata(source as u32, ns.as_bytes()).map(|found| {
                    found.map(|(url, value)| (url.keep_in(&core.arena), value.keep_in(&core.arena)))
                })
            })
            .flatten()
            .ok_or(Unsupported {
                callback: "envoy_dynamic_module_callback_http_get_typed_metadata",
            })?;
        Ok(got.and_then(|(url, value)| {
            Some(TypedMetadata {
                type_url: core::str::from_utf8(url).ok()?,
                value,
            })
        }))
    }
}
