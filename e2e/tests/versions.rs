//! The same module on each Envoy version (run by `.ci/matrix.sh` on 1.38.3 and 1.39.3, and by
//! `cargo test` on the pinned 1.40.0): a streamed reply, answered from `on_scheduled`, whose
//! stream Envoy tears down right after (1.38/1.39 destroy the filter synchronously inside the
//! last write — jisr defers freeing the stream until its own hook has unwound).
//!
//! `.ci/matrix.sh` runs every e2e file but the harness self-tests on 1.38.3 and 1.39.3 with the
//! same `.so` files. These passed there: hello, auth, async, config_errors, response, trailers,
//! callouts (timeouts included), faults, routing, llm_router, introspection, stream_callout,
//! sse_tap, versions, soak, streaming and backpressure. `panic_abort` and `soundness` joined the
//! matrix later; CONSTRAINTS.md reports them in their own rows.

use jisr_e2e::client;
use jisr_e2e::{Envoy, EnvoyConfig, Listener, Upstream, module_filter};

#[test]
fn streamed_replies_work_and_envoy_keeps_serving() {
    let up = Upstream::start("versions-up");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::new("sse").filter(module_filter("stream_demo", "sse", None)))
            .upstream(up.port()),
    );
    for _ in 0..3 {
        let r = client::get(envoy.listener_port("sse"), "/events");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert!(r.text().contains("data:"), "{}", r.text());
    }
    envoy.assert_ready();
    assert!(!envoy.log().contains("Segmentation fault"));
}

/// Callback names this Envoy binary exports (`envoy_dynamic_module_callback_http_*`), read from
/// its dynamic string table.
fn exported_callbacks() -> std::collections::BTreeSet<String> {
    const PREFIX: &[u8] = b"\0envoy_dynamic_module_callback_http_";
    let bin = std::fs::read(jisr_e2e::envoy_bin()).expect("read the Envoy binary");
    let mut names = std::collections::BTreeSet::new();
    let mut at = 0;
    while let Some(i) = memchr_find(&bin[at..], PREFIX) {
        let start = at + i + 1;
        let len = bin[start..]
            .iter()
            .position(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_'))
            .unwrap_or(0);
        // A symbol name ends with the string table's NUL (log messages that quote a name do
        // not).
        if bin.get(start + len) == Some(&0) {
            names.insert(String::from_utf8_lossy(&bin[start..start + len]).into_owned());
        }
        at = start + len;
    }
    names
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Names declared in a source file (`envoy_dynamic_module_callback_http_*` identifiers).
fn declared(src: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = src;
    while let Some(i) = rest.find("envoy_dynamic_module_callback_http_") {
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..len].to_string());
        rest = &tail[len..];
    }
    out
}

/// Every HTTP-filter callback the running Envoy exports is bound by jisr: declared for direct
/// linking (`src/abi/ffi.rs`, each of which this Envoy must export, or the module would not
/// load) or looked up at run time (`src/abi/late.rs`); and CONSTRAINTS.md's callback table
/// lists each with the first version that has it, which matches this binary.
#[test]
fn every_callback_is_bound_and_the_table_matches_the_binary() {
    let exported = exported_callbacks();
    assert!(
        exported.len() >= 90,
        "only {} callbacks found",
        exported.len()
    );
    let linked = declared(include_str!("../../src/abi/ffi.rs"));
    let late = declared(include_str!("../../src/abi/late.rs"));
    for name in &linked {
        assert!(
            exported.contains(name),
            "{name} is linked directly but this Envoy lacks it"
        );
    }
    for name in &exported {
        assert!(
            linked.contains(name) || late.contains(name),
            "{name} is exported by Envoy {} but not bound by jisr",
            jisr_e2e::envoy_version()
        );
    }
    let table = include_str!("../../CONSTRAINTS.md");
    let rows: Vec<(String, (u32, u32))> = table
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let since = cells.get(3)?.strip_prefix("1.")?.parse().ok()?;
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                .then(|| {
                    (
                        format!("envoy_dynamic_module_callback_http_{name}"),
                        (1, since),
                    )
                })
        })
        .collect();
    assert_eq!(
        rows.len(),
        120,
        "CONSTRAINTS.md lists {} callbacks",
        rows.len()
    );
    let version = jisr_e2e::envoy_minor();
    for (name, since) in &rows {
        assert_eq!(
            exported.contains(name),
            *since <= version,
            "{name}: table says since {since:?}, Envoy {version:?} disagrees"
        );
        assert!(
            linked.contains(name) || late.contains(name),
            "{name} not bound"
        );
        if *since > (1, 38) {
            assert!(
                late.contains(name),
                "{name} (since {since:?}) must be looked up late"
            );
        }
    }
}
