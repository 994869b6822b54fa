//! Per-route config, filter state and route-cache clearing, through the simulated stream.

mod common;

use common::GET;
use jisr::testing::{MetaValue, TestFilter};
use jisr::{ConfigError, Registry, Request, ResponseWriter, raw::HeadersStatus};

#[derive(Debug)]
struct Tier(String);

fn parse_tier(bytes: &[u8]) -> Result<Tier, ConfigError> {
    let s = std::str::from_utf8(bytes).map_err(|e| ConfigError::new(e.to_string()))?;
    if s.is_empty() {
        return Err(ConfigError::new("tier must not be empty"));
    }
    Ok(Tier(s.to_string()))
}

async fn tiered(mut req: Request<'_>, w: ResponseWriter<'_>) {
    let tier = req
        .route_config::<Tier>()
        .map(|t| t.0.clone())
        .unwrap_or_else(|| "default".into());
    let _ = req.set_header("x-tier", &tier);
    let _ = req.set_header("x-cluster", format!("pool-{tier}"));
    w.clear_route_cache();
    w.set_filter_state("jisr.tier", tier.as_bytes());
    let mut back = Vec::new();
    w.filter_state("jisr.tier", &mut back);
    let _ = req.set_header("x-state", back);
}

fn register(r: &mut Registry) {
    r.register("tiered", tiered);
    r.route_config("tiered", parse_tier);
}

#[test]
fn most_specific_route_config_is_read_by_the_handler() {
    let f = TestFilter::new(register, "tiered", b"").unwrap();
    let gold = f.add_route_config("tiered", b"gold").unwrap();
    let mut s = f.stream();
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    assert_eq!(s.request_header("x-tier").as_deref(), Some("default"));
    drop(s);
    let mut s = f.stream();
    s.use_route_config(gold);
    assert_eq!(s.request_headers(GET, true), HeadersStatus::Continue);
    assert_eq!(s.request_header("x-tier").as_deref(), Some("gold"));
    assert_eq!(s.request_header("x-cluster").as_deref(), Some("pool-gold"));
    assert_eq!(s.request_header("x-state").as_deref(), Some("gold"));
    assert_eq!(s.route_cache_clears(), 1);
}

#[test]
fn bad_route_config_is_refused_with_a_clear_message() {
    let f = TestFilter::new(register, "tiered", b"").unwrap();
    assert_eq!(
        f.add_route_config("tiered", b"").unwrap_err(),
        "jisr: per-route config 'tiered' rejected: tier must not be empty"
    );
    assert_eq!(
        f.add_route_config("other", b"x").unwrap_err(),
        "jisr: no per-route config named 'other'; this module declares: tiered"
    );
}

async fn read_metadata(_req: jisr::Request<'_>, w: jisr::ResponseWriter<'_>) {
    use jisr::MetadataSource::{Cluster, Dynamic, Route};
    let tier = w.metadata_str(Route, "acme", "tier").unwrap_or("-");
    let weight = w.metadata_num(Route, "acme", "weight").unwrap_or(-1.0);
    let canary = w.metadata_bool(Cluster, "acme", "canary");
    let user = w.metadata_str(Dynamic, "jwt", "sub").unwrap_or("-");
    // Asked with the wrong type, a value is absent.
    let wrong = w.metadata_num(Route, "acme", "tier");
    w.set_metadata_str("jisr", "seen", "1");
    let own = w.metadata_str(Dynamic, "jisr", "seen").unwrap_or("-");
    w.send(
        200,
        format!("{tier} {weight} {canary:?} {user} {wrong:?} {own}").as_bytes(),
    );
}

/// Metadata from the route, the cluster and earlier filters, read as string, number and bool.
#[test]
fn metadata_is_read_from_every_source_by_type() {
    use jisr::MetadataSource::{Cluster, Dynamic, Route};
    let f = jisr::testing::TestFilter::new(
        |r| {
            r.register("md", read_metadata);
        },
        "md",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.set_source_metadata(Route, "acme", "tier", MetaValue::Str("gold".into()));
    s.set_source_metadata(Route, "acme", "weight", MetaValue::Num(2.5));
    s.set_source_metadata(Cluster, "acme", "canary", MetaValue::Bool(true));
    s.set_source_metadata(Dynamic, "jwt", "sub", MetaValue::Str("alice".into()));
    s.request_headers(&[(":method", "GET"), (":path", "/")], true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        "gold 2.5 Some(true) alice None 1"
    );
    // Nothing set: every read is absent.
    let mut s = f.stream();
    s.request_headers(&[(":method", "GET"), (":path", "/")], true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        "- -1 None - None 1"
    );
}

async fn flag_and_recluster(req: jisr::Request<'_>, w: jisr::ResponseWriter<'_>) {
    if req.header("x-legacy").is_some() {
        w.add_response_flag("LEGACY");
    }
    w.clear_route_cluster_cache();
}

/// Custom response flags and the route-cluster cache reach the host.
#[test]
fn response_flag_and_cluster_cache_reach_envoy() {
    let f = jisr::testing::TestFilter::new(
        |r| {
            r.register("f", flag_and_recluster);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.request_headers(
        &[(":method", "GET"), (":path", "/"), ("x-legacy", "1")],
        true,
    );
    assert_eq!(s.response_flags(), vec!["LEGACY".to_string()]);
    assert_eq!(s.route_cluster_cache_clears(), 1);
    let mut s = f.stream();
    s.request_headers(&[(":method", "GET"), (":path", "/")], true);
    assert!(s.response_flags().is_empty());
}

async fn cluster_and_limit(_req: Request<'_>, w: ResponseWriter<'_>) {
    let before = w.buffer_limit();
    w.set_buffer_limit(4 << 20);
    let cluster = w.cluster_name().unwrap_or("-");
    w.send(
        200,
        format!(
            "before={before} cluster={cluster} p0={:?} p1={:?}",
            w.cluster_hosts(0),
            w.cluster_hosts(1)
        )
        .as_bytes(),
    );
}

/// The routed cluster's name and host counts reach the handler; the buffer limit it sets
/// reaches the host.
#[test]
fn cluster_info_and_buffer_limit_reach_the_handler() {
    let f = jisr::testing::TestFilter::new(
        |r| {
            r.register("f", cluster_and_limit);
        },
        "f",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.set_cluster("main", &[[3, 2, 1]]);
    s.request_headers(&[(":method", "GET"), (":path", "/")], true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        "before=1048576 cluster=main p0=Some(ClusterHosts { total: 3, healthy: 2, degraded: 1 }) p1=None"
    );
    assert_eq!(s.buffer_limit(), 4 << 20);
    // No routed cluster (e.g. a direct response route): no name, no hosts.
    let mut s = f.stream();
    s.request_headers(&[(":method", "GET"), (":path", "/")], true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        "before=1048576 cluster=- p0=None p1=None"
    );
}

async fn read_lists(_req: jisr::Request<'_>, w: jisr::ResponseWriter<'_>) {
    use jisr::MetadataSource::{Dynamic, Host};
    let n = w.metadata_list_len(Dynamic, "jwt", "aud");
    let aud: Vec<_> = (0..3)
        .map(|i| w.metadata_list_str(Dynamic, "jwt", "aud", i))
        .collect();
    let mixed = (
        w.metadata_list_num(Host, "lb", "mixed", 0),
        w.metadata_list_bool(Host, "lb", "mixed", 1),
        w.metadata_list_bool(Host, "lb", "mixed", 0),
    );
    let scalar = w.metadata_list_len(Dynamic, "jwt", "sub");
    let keys: Vec<_> = w.metadata_keys(Dynamic, "jwt").collect();
    let host_ns: Vec<_> = w.metadata_namespaces(Host).collect();
    let absent = w.metadata_keys(Host, "nope").len();
    w.send(
        200,
        format!("{n:?} {aud:?} {mixed:?} {scalar:?} {keys:?} {host_ns:?} {absent}").as_bytes(),
    );
}

/// List metadata: its length, then each element by index and type; a scalar is not a list.
/// Keys of a namespace and the namespaces of a source are listed.
#[test]
fn metadata_lists_are_read_by_index_and_type() {
    use jisr::MetadataSource::{Dynamic, Host};
    let f = jisr::testing::TestFilter::new(
        |r| {
            r.register("lists", read_lists);
        },
        "lists",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    let aud = ["api", "web"].map(|a| MetaValue::Str(a.into())).to_vec();
    s.set_source_metadata(Dynamic, "jwt", "aud", MetaValue::List(aud));
    s.set_source_metadata(Dynamic, "jwt", "sub", MetaValue::Str("alice".into()));
    let mixed = vec![MetaValue::Num(7.0), MetaValue::Bool(false)];
    s.set_source_metadata(Host, "lb", "mixed", MetaValue::List(mixed));
    s.request_headers(&[(":method", "GET"), (":path", "/")], true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        r#"Some(2) [Some("api"), Some("web"), None] (Some(7.0), Some(false), None) None ["aud", "sub"] ["lb"] 0"#
    );
}

async fn count_keys(_req: jisr::Request<'_>, w: jisr::ResponseWriter<'_>) {
    let keys = w.metadata_keys(jisr::MetadataSource::Dynamic, "many");
    let n = keys.len();
    let joined: Vec<_> = keys.collect();
    w.send(200, format!("{n} {}", joined.join(",")).as_bytes());
}

/// More keys than the 32 held inline spill to the heap and are all listed, in order.
#[test]
fn metadata_keys_past_the_inline_capacity_are_all_listed() {
    let f = jisr::testing::TestFilter::new(
        |r| {
            r.register("keys", count_keys);
        },
        "keys",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    let names: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
    for n in &names {
        s.set_source_metadata(
            jisr::MetadataSource::Dynamic,
            "many",
            n,
            MetaValue::Num(1.0),
        );
    }
    s.request_headers(&[(":method", "GET"), (":path", "/")], true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        format!("40 {}", names.join(","))
    );
}

async fn append_lists(_req: jisr::Request<'_>, w: jisr::ResponseWriter<'_>) {
    use jisr::MetadataSource::Dynamic;
    let ok = [
        w.append_metadata_str("audit", "reasons", "a"),
        w.append_metadata_str("audit", "reasons", "b"),
        w.append_metadata_num("audit", "mixed", 2.0),
        w.append_metadata_bool("audit", "mixed", false),
    ];
    w.set_metadata_num("audit", "scalar", 1.0);
    let refused = w.append_metadata_num("audit", "scalar", 2.0);
    let n = w.metadata_list_len(Dynamic, "audit", "reasons");
    let b = w.metadata_list_str(Dynamic, "audit", "reasons", 1);
    let mixed = (
        w.metadata_list_num(Dynamic, "audit", "mixed", 0),
        w.metadata_list_bool(Dynamic, "audit", "mixed", 1),
    );
    let scalar = w.metadata_num(Dynamic, "audit", "scalar");
    w.send(
        200,
        format!("{ok:?} {refused} {n:?} {b:?} {mixed:?} {scalar:?}").as_bytes(),
    );
}

/// Appending builds dynamic-metadata lists the handler reads back; appending to a scalar is
/// refused and keeps it.
#[test]
fn appended_metadata_lists_are_read_back() {
    let f = jisr::testing::TestFilter::new(
        |r| {
            r.register("append", append_lists);
        },
        "append",
        b"",
    )
    .unwrap();
    let mut s = f.stream();
    s.request_headers(&[(":method", "GET"), (":path", "/")], true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        r#"[true, true, true, true] false Some(2) Some("b") (Some(2.0), Some(false)) Some(1.0)"#
    );
}
