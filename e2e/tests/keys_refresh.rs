//! The `keys_refresh` example in real Envoy: a server task fetches the allowed API keys every
//! interval; Envoy serves only after the first fetch; the `keys_auth` filter follows changes
//! within an interval; when the key server fails, the last good keys stay and a counter counts
//! the failures.

use jisr_e2e::client;
use jisr_e2e::{
    Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, module_filter, module_stat, wait_until,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct KeyServer {
    keys: Arc<Mutex<(String, u16, Duration)>>,
    up: Upstream,
}

impl KeyServer {
    fn start(keys: &str, first_delay: Duration) -> KeyServer {
        let state = Arc::new(Mutex::new((keys.to_string(), 200u16, first_delay)));
        let s = state.clone();
        let up = Upstream::start_with("keys", move |_req, w| {
            let (body, status, delay) = {
                let mut g = s.lock().unwrap();
                let d = std::mem::take(&mut g.2);
                (g.0.clone(), g.1, d)
            };
            w.sleep(delay);
            w.status(status).send(body.as_bytes());
        });
        KeyServer { keys: state, up }
    }

    fn set(&self, keys: &str, status: u16) {
        let mut g = self.keys.lock().unwrap();
        g.0 = keys.to_string();
        g.1 = status;
    }
}

fn envoy(keys: &KeyServer, every_ms: u64, init_timeout_ms: u64) -> (Envoy, Upstream) {
    let up = Upstream::start("main");
    let server = format!(
        r#"bootstrap_extensions:
- name: envoy.bootstrap.dynamic_modules
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.bootstrap.dynamic_modules.v3.DynamicModuleBootstrapExtension
    dynamic_module_config: {{ name: keys_refresh }}
    extension_name: keys_refresh
    extension_config:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: '{{"cluster": "keys", "path": "/keys", "every_ms": {every_ms}, "init_timeout_ms": {init_timeout_ms}}}'"#
    );
    let env = Envoy::start(
        &EnvoyConfig::new()
            .listener(
                Listener::new("api")
                    .filter(module_filter("keys_refresh", "keys_auth", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("main", up.port()))
            .cluster(Cluster::new("keys", keys.up.port()))
            .raw_top_level(server),
    );
    (env, up)
}

fn status(envoy: &Envoy, key: &str) -> u16 {
    client::request(
        envoy.listener_port("api"),
        "GET",
        "/",
        &[("x-api-key", key)],
        b"",
    )
    .status
}

#[test]
fn keys_follow_the_key_server_and_survive_its_failures() {
    let keys = KeyServer::start("k1\nk2", Duration::from_millis(1200));
    let (envoy, _up) = envoy(&keys, 300, 10_000);
    // Envoy became ready only once the first (slow) fetch was in.
    assert!(
        envoy.ready_after() >= Duration::from_millis(1100),
        "ready after {:?}",
        envoy.ready_after()
    );
    assert_eq!(status(&envoy, "k1"), 200, "{}", envoy.log());
    assert_eq!(status(&envoy, "k3"), 401);
    // New keys are used within an interval; the old one is refused.
    keys.set("k3", 200);
    assert!(
        wait_until(Duration::from_secs(3), || status(&envoy, "k3") == 200),
        "{}",
        envoy.log()
    );
    assert_eq!(status(&envoy, "k1"), 401);
    // The key server fails: the last good set stays, failures are counted.
    keys.set("", 503);
    let failed = module_stat("keys_refresh_total", &[("result", "failed")]);
    assert!(
        wait_until(Duration::from_secs(3), || envoy
            .counter(&failed)
            .unwrap_or(0)
            >= 2),
        "{:?}\n{}",
        envoy.counter(&failed),
        envoy.stats()
    );
    assert_eq!(status(&envoy, "k3"), 200);
}

#[test]
fn envoy_starts_without_keys_when_the_first_fetch_never_comes() {
    let keys = KeyServer::start("k1", Duration::from_secs(30));
    let (envoy, _up) = envoy(&keys, 500, 1000);
    assert!(
        envoy.ready_after() < Duration::from_secs(10),
        "ready after {:?}",
        envoy.ready_after()
    );
    assert!(
        envoy.log().contains("init not complete after 1s"),
        "{}",
        envoy.log()
    );
    assert_eq!(status(&envoy, "k1"), 401, "no keys yet");
}
