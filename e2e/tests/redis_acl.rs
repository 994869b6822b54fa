//! `examples/redis_acl.rs` in real Envoy, in front of a real `redis-server`, driven by the
//! real Python client (redis-py): AUTH answered by the filter, refused commands answered in
//! order inside pipelines, MULTI/EXEC aborted like Redis, a 5 MiB value both ways, and what
//! reached Redis checked on a direct connection.

use jisr_e2e::peers::{Redis, run_redis_py};
use jisr_e2e::{Cluster, Envoy, EnvoyConfig, Listener};
use std::collections::HashMap;

const ACL: &str = "reader: GET PING\nwriter: GET SET MULTI EXEC DISCARD PING\n";

#[test]
fn redis_py_through_the_acl_filter() {
    let redis = Redis::start();
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .listener(Listener::tcp(
                "redis",
                "redis_acl",
                "redis_acl",
                ACL,
                "redis",
            ))
            .cluster(Cluster::new("redis", redis.port())),
    );
    let out = run_redis_py(
        "redis_acl_client.py",
        &[
            &envoy.listener_port("redis").to_string(),
            &redis.port().to_string(),
        ],
    );
    let got: HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let expect = [
        ("wrong_key", "AuthenticationError"),
        ("no_auth", "AuthenticationError:Authentication"),
        ("writer_ping", "True"),
        ("user_and_key", "True"),
        ("pipeline", "True,NoPermissionError,b'1',NoPermissionError"),
        ("multi", "NoPermissionError"),
        ("t_after_abort", "None"),
        ("multi_ok", "[True, b'2']"),
        ("big_roundtrip", "True"),
        ("big_direct", "True"),
        ("reader_set", "NoPermissionError"),
        ("reader_set_direct", "None"),
        ("reader_get", "b'1'"),
    ];
    for (k, v) in expect {
        assert_eq!(got.get(k).copied(), Some(v), "{k}\n--- output ---\n{out}");
    }
    assert!(!envoy.log().contains("panicked"), "{}", envoy.log());
}
