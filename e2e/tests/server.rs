//! jisr server extensions (Envoy's bootstrap extension) in real Envoy: main-thread tasks with
//! Envoy timers, readiness held until a first result (or a timeout), admin endpoints, a
//! panicking task, drain and shutdown; and a request handler's `timeout` cutting a callout to
//! a slow upstream.

use jisr_e2e::client;
use jisr_e2e::{Cluster, Envoy, EnvoyConfig, Listener, Route, Upstream, module_filter, wait_until};
use std::time::Duration;

fn server_yaml(config: &str) -> String {
    format!(
        r#"bootstrap_extensions:
- name: envoy.bootstrap.dynamic_modules
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.bootstrap.dynamic_modules.v3.DynamicModuleBootstrapExtension
    dynamic_module_config: {{ name: server_fixture }}
    extension_name: clock
    extension_config:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: "{config}""#
    )
}

fn config(server: &str, up: &Upstream) -> EnvoyConfig {
    EnvoyConfig::new()
        .listener(
            Listener::new("show")
                .filter(module_filter("server_fixture", "show", None))
                .route(Route::to("/", "main")),
        )
        .cluster(Cluster::new("main", up.port()))
        .raw_top_level(server_yaml(server))
}

fn state(envoy: &Envoy) -> String {
    client::get(envoy.listener_port("show"), "/").text()
}

#[test]
fn main_thread_tasks_timers_admin_and_a_panicking_task() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(&config("0,0", &up));
    assert!(
        wait_until(Duration::from_secs(5), || state(&envoy)
            .contains("slept_ms=")),
        "{}\n{}",
        state(&envoy),
        envoy.log()
    );
    // A 200 ms sleep on Envoy's main thread resumes in 200-300 ms.
    let s = state(&envoy);
    let ms: u64 = s
        .split("slept_ms=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{s}"));
    assert!((200..300).contains(&ms), "slept {ms} ms");
    // The admin endpoint answers on Envoy's admin listener.
    let r = envoy.admin_get("/jisr/fixture?x=1");
    assert_eq!(r.status, 200, "{}", envoy.log());
    let text = r.text();
    assert!(
        text.starts_with("GET /jisr/fixture?x=1 panics=1 state="),
        "{text}"
    );
    // Envoy's own stats are readable from a task.
    assert!(
        wait_until(Duration::from_secs(2), || state(&envoy)
            .contains("clusters_added=Some(")),
        "{}",
        state(&envoy)
    );
    // An admin handler's status is held to 200-599 like every reply.
    let r = envoy.admin_get("/jisr/fixture?status=418");
    assert_eq!((r.status, r.text().as_str()), (418, "asked status\n"));
    let r = envoy.admin_get("/jisr/fixture?status=0");
    assert_eq!(r.status, 500);
    assert_eq!(
        r.text(),
        "jisr admin handler: status 0 is not a final status (200-599)\n"
    );
    // jisr's own admin paths.
    assert_eq!(envoy.admin_get("/jisr/healthz").text(), "ok\n");
    assert!(
        envoy
            .admin_get("/jisr/stats")
            .text()
            .contains("\"filter\":\"show\"")
    );
    let streams = envoy.admin_get("/jisr/streams").text();
    assert!(
        streams.contains("\"server\":\"clock\",\"tasks\":")
            && streams.contains("\"task_panics\":1"),
        "{streams}"
    );
    // The panicking task was dropped and logged; Envoy and the other tasks go on.
    assert!(
        envoy.log().contains(
            "jisr: server 'clock': a background task panicked and was dropped: a task bug"
        ),
        "{}",
        envoy.log()
    );
    assert_eq!(client::get(envoy.listener_port("show"), "/").status, 200);
}

#[test]
fn readiness_waits_for_the_first_result() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(&config("1500,10000", &up));
    assert!(
        envoy.ready_after() >= Duration::from_millis(1400),
        "ready after {:?}",
        envoy.ready_after()
    );
    assert!(
        state(&envoy).contains("init_released_after=1500"),
        "{}",
        state(&envoy)
    );
}

#[test]
fn readiness_hold_times_out_and_envoy_starts_anyway() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(&config("60000,1000", &up));
    let after = envoy.ready_after();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(10)).contains(&after),
        "ready after {after:?}"
    );
    assert!(
        envoy
            .log()
            .contains("init not complete after 1s; Envoy starts anyway"),
        "{}",
        envoy.log()
    );
}

#[test]
fn drain_and_shutdown_reach_the_tasks() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(&config("0,0", &up));
    let r = envoy.admin_post("/drain_listeners?graceful");
    assert_eq!(r.status, 200);
    let drained = wait_until(Duration::from_secs(5), || {
        envoy.admin_get("/jisr/fixture").text().contains("drained")
    });
    let status = envoy.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        envoy.log()
    );
    // Drain reaches the tasks through `on_drain_started`; the shutdown hook ran before exit.
    assert!(drained, "{}", envoy.log());
}

#[test]
fn a_handler_timeout_cuts_a_slow_callout() {
    let up = Upstream::start("main");
    let slow = Upstream::start_with("slow", |_req, w| {
        w.sleep(Duration::from_secs(3));
        w.send(b"late");
    });
    let envoy = Envoy::start(
        &config("0,0", &up)
            .listener(
                Listener::new("bounded")
                    .filter(module_filter("server_fixture", "bounded", None))
                    .route(Route::to("/", "main")),
            )
            .cluster(Cluster::new("slow", slow.port())),
    );
    let t = std::time::Instant::now();
    let r = client::get(envoy.listener_port("bounded"), "/");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}\n{}", r.text(), envoy.log());
    assert!(r.text().starts_with("timeout after 3"), "{}", r.text());
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn a_task_sees_a_watched_file_change() {
    let dir = std::env::temp_dir().join(format!("jisr-e2e-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("watched.txt");
    std::fs::write(&path, "one").unwrap();
    let up = Upstream::start("main");
    let envoy = Envoy::start(&config(&format!("0,0,{}", path.display()), &up));
    // Moved into place, as config files are updated.
    let tmp = dir.join("watched.tmp");
    std::fs::write(&tmp, "two").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || state(&envoy)
            .contains("file_changed=1")),
        "{}\n{}",
        state(&envoy),
        envoy.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/jisr/streams` lists each waiting stream: filter, phase, age, polls and wakes.
#[test]
fn admin_streams_lists_a_waiting_stream() {
    let up = Upstream::start("main");
    let envoy = Envoy::start(
        &config("0,0", &up).listener(
            Listener::new("wait")
                .filter(module_filter("server_fixture", "wait", None))
                .route(Route::to("/", "main")),
        ),
    );
    let port = envoy.listener_port("wait");
    let client = std::thread::spawn(move || client::get(port, "/").status);
    let listed = wait_until(Duration::from_secs(1), || {
        let s = envoy.admin_get("/jisr/streams").text();
        s.contains("\"filter\":\"wait\",\"phase\":\"request\",\"age_ms\":")
    });
    let streams = envoy.admin_get("/jisr/streams").text();
    assert!(listed, "{streams}");
    assert!(streams.contains("\"polls\":1"), "{streams}");
    assert_eq!(client.join().unwrap(), 200);
    // Done: no longer listed.
    let after = envoy.admin_get("/jisr/streams").text();
    assert!(!after.contains("\"filter\":\"wait\",\"phase\""), "{after}");
}
