//! Envoy 1.40's stream facts, filter-state objects, structured and typed metadata, and SDS
//! secrets, through the simulated stream; and `Unsupported` on an older Envoy.

mod common;

use common::GET;
use jisr::control::{StateLife, StateSharing};
use jisr::handler::StructValue::{self, Bool, List, Null, Num, Str, Struct};
use jisr::info::TimingPoint;
use jisr::testing::{TestFilter, set_secret};
use jisr::{ConfigError, ConfigHandle, MetadataSource, Registry, Request, ResponseWriter, Secret};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

async fn facts(_req: Request<'_>, w: ResponseWriter<'_>) {
    let t = w.timing();
    let line = match t {
        Err(e) => format!("unsupported: {e}"),
        Ok(t) => format!(
            "start={:?} ttfb={:?} before={:?} none={:?} direct={:?} upstream={:?} conn={:?} hosts={:?} ids={:?}",
            t.start_unix_ns(),
            t.since_start(TimingPoint::FirstUpstreamRxByteReceived),
            t.since_start(TimingPoint::DownstreamConnectionBegin),
            t.offset_ns(TimingPoint::RequestComplete),
            w.downstream_direct_remote_address(),
            w.upstream_remote_address(),
            w.upstream_connection_id(),
            w.upstream_hosts_attempted().map(|h| h.collect::<Vec<_>>()),
            w.upstream_connection_ids_attempted(),
        ),
    };
    w.send(200, line.as_bytes());
}

struct Principal {
    user: String,
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

impl Drop for Principal {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

async fn objects(_req: Request<'_>, w: ResponseWriter<'_>) {
    let before = w.has_filter_state("acme.principal");
    let set = w.set_filter_state_object(
        "acme.principal",
        Principal {
            user: "alice".into(),
        },
        StateLife::Request,
    );
    let back: Option<Arc<Principal>> = w.filter_state_object("acme.principal").ok().flatten();
    let wrong: Option<Arc<String>> = w.filter_state_object("acme.principal").ok().flatten();
    let typed = w.set_filter_state_typed_with(
        "envoy.network.upstream_server_name",
        b"api.internal",
        StateLife::Request,
        StateSharing::SharedWithUpstreamConnection,
    );
    let after = w.has_filter_state("acme.principal");
    w.send(
        200,
        format!(
            "{before:?} {set:?} {:?} {} {typed:?} {after:?}",
            back.map(|p| p.user.clone()),
            wrong.is_none()
        )
        .as_bytes(),
    );
}

async fn metadata(_req: Request<'_>, w: ResponseWriter<'_>) {
    let roles = [Str("admin"), Str("ops")];
    let limits = [("rpm", Num(600.0))];
    let fields: [(&str, StructValue<'_>); 5] = [
        ("user", Str("alice")),
        ("admin", Bool(true)),
        ("roles", List(&roles)),
        ("limits", Struct(&limits)),
        ("gone", Null),
    ];
    let s = w.set_metadata_struct("acme.audit", &fields);
    let t = w.set_typed_metadata("acme.typed", "type.example/Tier", b"\x08\x02");
    let back = w
        .typed_metadata(MetadataSource::Dynamic, "acme.typed")
        .map(|m| m.map(|m| (m.type_url.to_string(), m.value.to_vec())));
    let route = w
        .typed_metadata(MetadataSource::Route, "acme.route")
        .map(|m| m.map(|m| m.type_url.to_string()));
    let absent = w
        .typed_metadata(MetadataSource::Route, "nope")
        .map(|m| m.is_none());
    w.send(
        200,
        format!("{s:?} {t:?} {back:?} {route:?} {absent:?}").as_bytes(),
    );
}

struct Keys {
    keys: Secret,
}

fn load_keys(cfg: &mut ConfigHandle<'_>) -> Result<Keys, ConfigError> {
    let keys = cfg.secret("api-keys")?;
    let now = cfg.secret_value(keys);
    cfg.log(jisr::Level::Info, format_args!("keys at load: {now:?}"));
    Ok(Keys { keys })
}

async fn check_key(state: &Keys, req: Request<'_>, w: ResponseWriter<'_>) {
    let given = req.header("x-api-key").unwrap_or_default();
    let ok = w
        .secret(state.keys)
        .is_some_and(|all| all.split(|b| *b == b',').any(|k| k == given));
    if !ok {
        w.send(401, b"bad key\n");
    }
}

fn register(r: &mut Registry) {
    r.register("facts", facts);
    r.register("objects", objects);
    r.register("metadata", metadata);
    r.filter("keys").state(load_keys).handle(check_key);
}

#[test]
fn timing_addresses_and_upstream_attempts() {
    let f = TestFilter::new(register, "facts", b"").unwrap();
    let mut s = f.stream();
    s.set_timing(
        1_700_000_000_000_000_000,
        &[
            (TimingPoint::FirstUpstreamRxByteReceived, 1_500_000),
            (TimingPoint::DownstreamConnectionBegin, -200),
        ],
    );
    s.set_addresses(Some("10.0.0.7:51000"), Some("127.0.0.1:8080"));
    s.set_upstream_attempts(&["127.0.0.1:8081", "127.0.0.1:8080"], &[4, 9]);
    s.request_headers(GET, true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        "start=Some(1700000000000000000) ttfb=Some(1.5ms) before=None none=None \
         direct=Ok(Some(\"10.0.0.7:51000\")) upstream=Ok(Some(\"127.0.0.1:8080\")) \
         conn=Ok(Some(9)) hosts=Ok([\"127.0.0.1:8081\", \"127.0.0.1:8080\"]) ids=Ok([4, 9])"
    );
}

#[test]
fn older_envoy_reports_unsupported_not_a_crash() {
    for name in ["facts", "objects", "metadata"] {
        let f = TestFilter::new(register, name, b"").unwrap();
        let mut s = f.stream();
        s.simulate_envoy_before_1_40();
        s.request_headers(GET, true);
        let body = String::from_utf8(s.local_reply().unwrap().body).unwrap();
        assert!(body.contains("nsupported"), "{name}: {body}");
    }
    // The object that could not be stored was dropped, not leaked.
    assert!(DROPPED.load(Ordering::SeqCst) >= 1);
}

#[test]
fn filter_state_objects_are_shared_without_copies_and_dropped_by_envoy() {
    let before = DROPPED.load(Ordering::SeqCst);
    let f = TestFilter::new(register, "objects", b"").unwrap();
    let mut s = f.stream();
    s.add_filter_state_factory("envoy.network.upstream_server_name");
    s.request_headers(GET, true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        "Ok(false) Ok(true) Some(\"alice\") true Ok(true) Ok(true)"
    );
    assert_eq!(
        s.filter_state_options(),
        [("envoy.network.upstream_server_name".to_string(), 1, 1)]
    );
    assert_eq!(
        s.typed_filter_state("envoy.network.upstream_server_name"),
        Some(b"api.internal".to_vec())
    );
    drop(s);
    // Envoy dropped the stream's filter state, and with it the object.
    assert!(DROPPED.load(Ordering::SeqCst) > before);
}

#[test]
fn struct_and_typed_metadata() {
    let f = TestFilter::new(register, "metadata", b"").unwrap();
    let mut s = f.stream();
    s.set_source_typed_metadata(
        MetadataSource::Route,
        "acme.route",
        "type.example/Route",
        b"r",
    );
    s.request_headers(GET, true);
    assert_eq!(
        String::from_utf8(s.local_reply().unwrap().body).unwrap(),
        "Ok(()) Ok(()) Ok(Some((\"type.example/Tier\", [8, 2]))) \
         Ok(Some(\"type.example/Route\")) Ok(true)"
    );
    let structs = s.struct_metadata("acme.audit");
    assert_eq!(structs.len(), 1);
    // Spot-check the encoding: the first entry is "user" -> string "alice".
    assert!(structs[0].starts_with(&[0x0a, 15, 0x0a, 4, b'u', b's', b'e', b'r', 0x12, 7, 0x1a, 5]));
}

#[test]
fn secrets_are_read_per_request_and_rotation_is_seen() {
    set_secret("api-keys", Some(b"k1,k2"));
    let f = TestFilter::new(register, "keys", b"").unwrap();
    assert!(
        f.logs()
            .iter()
            .any(|(_, l)| l.contains("keys at load: Some(")),
        "{:?}",
        f.logs()
    );
    let mut s = f.stream();
    let mut h = GET.to_vec();
    h.push(("x-api-key", "k2"));
    s.request_headers(&h, true);
    assert!(s.local_reply().is_none());
    // Rotate: k2 is gone, k3 is in; the next request sees it.
    set_secret("api-keys", Some(b"k1,k3"));
    let mut s = f.stream();
    s.request_headers(&h, true);
    assert_eq!(s.local_reply().unwrap().status, 401);
    let mut s = f.stream();
    let mut h3 = GET.to_vec();
    h3.push(("x-api-key", "k3"));
    s.request_headers(&h3, true);
    assert!(s.local_reply().is_none());
}

#[test]
fn unknown_secret_refuses_the_config() {
    let err = TestFilter::new(
        |r: &mut Registry| {
            r.filter("keys")
                .state(|cfg: &mut ConfigHandle<'_>| {
                    cfg.secret("no-such-secret")?;
                    Ok(())
                })
                .handle(|_: &(), _req: Request<'_>, _w: ResponseWriter<'_>| async {});
        },
        "keys",
        b"",
    )
    .err()
    .unwrap();
    assert!(err.contains("secret 'no-such-secret'"), "{err}");
}
