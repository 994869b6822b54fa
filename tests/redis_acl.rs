//! The `redis_acl` example on simulated connections, with Redis's replies played by the
//! test: AUTH answered by the filter, denied commands answered in their place among Redis's
//! replies, pipelines cut at every byte, transactions, large values streamed, garbage.

#[path = "../examples/redis_acl.rs"]
mod redis_acl;

use jisr::testing::{TestConnection, TestNetworkFilter};

const CONFIG: &[u8] = b"reader: GET PING\nwriter: GET SET MULTI EXEC DISCARD PING\nadmin: *\n";

fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn filter() -> TestNetworkFilter {
    TestNetworkFilter::new(redis_acl::register, "redis_acl", CONFIG).unwrap()
}

fn authed<'f>(f: &'f TestNetworkFilter, key: &str) -> TestConnection<'f> {
    let mut c = f.connect();
    c.client_sends(&cmd(&[b"AUTH", key.as_bytes()]));
    assert_eq!(c.take_client(), b"+OK\r\n");
    c
}

#[test]
fn auth_is_answered_by_the_filter_and_nothing_else_runs_before_it() {
    let f = filter();
    let mut c = f.connect();
    c.client_sends(&cmd(&[b"GET", b"k"]));
    assert_eq!(c.take_client(), b"-NOAUTH Authentication required.\r\n");
    c.client_sends(&cmd(&[b"AUTH", b"nobody"]));
    assert!(c.take_client().starts_with(b"-WRONGPASS"));
    c.client_sends(&cmd(&[b"AUTH", b"default", b"reader"]));
    assert_eq!(c.take_client(), b"+OK\r\n");
    assert_eq!(
        c.upstream(),
        b"",
        "no AUTH and no refused command reached Redis"
    );
    c.client_sends(&cmd(&[b"GET", b"k"]));
    assert_eq!(c.upstream(), cmd(&[b"GET", b"k"]));
}

#[test]
fn a_denied_command_is_answered_in_its_place_in_a_pipeline_cut_anywhere() {
    let f = filter();
    let pipeline = [
        cmd(&[b"SET", b"a", b"1"]),
        cmd(&[b"FLUSHALL"]),
        cmd(&[b"GET", b"a"]),
    ]
    .concat();
    let forwarded = [cmd(&[b"SET", b"a", b"1"]), cmd(&[b"GET", b"a"])].concat();
    let replies = b"+OK\r\n$1\r\n1\r\n";
    for cut in 0..=pipeline.len() {
        let mut c = authed(&f, "writer");
        c.client_sends(&pipeline[..cut]);
        c.client_sends(&pipeline[cut..]);
        assert_eq!(c.take_upstream(), forwarded, "cut at {cut}");
        assert_eq!(c.client(), b"", "the refusal waits for the SET's reply");
        for (i, chunk) in replies.chunks(3).enumerate() {
            c.upstream_sends(chunk);
            if i == 1 {
                // "+OK\r\n" is complete: the refusal follows it at once.
                assert!(
                    c.client()
                        .ends_with(b"\r\n-NOPERM this key may not run the 'flushall' command\r\n")
                        || c.client().starts_with(b"+OK\r\n-NOPERM")
                );
            }
        }
        assert_eq!(
            c.client(),
            [
                &b"+OK\r\n"[..],
                b"-NOPERM this key may not run the 'flushall' command\r\n",
                b"$1\r\n1\r\n"
            ]
            .concat(),
            "cut at {cut}"
        );
    }
}

#[test]
fn a_denied_command_inside_multi_aborts_the_transaction_like_redis() {
    let f = filter();
    let mut c = authed(&f, "writer");
    c.client_sends(
        &[
            cmd(&[b"MULTI"]),
            cmd(&[b"SET", b"a", b"1"]),
            cmd(&[b"DEL", b"a"]),
            cmd(&[b"EXEC"]),
        ]
        .concat(),
    );
    assert_eq!(
        c.take_upstream(),
        [
            cmd(&[b"MULTI"]),
            cmd(&[b"SET", b"a", b"1"]),
            cmd(&[b"DISCARD"])
        ]
        .concat()
    );
    c.upstream_sends(b"+OK\r\n+QUEUED\r\n+OK\r\n");
    assert_eq!(
        c.client(),
        [
            &b"+OK\r\n+QUEUED\r\n"[..],
            b"-NOPERM this key may not run the 'del' command\r\n",
            b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        ]
        .concat()
    );
}

#[test]
fn a_large_value_streams_through_in_pieces() {
    let f = filter();
    let mut c = authed(&f, "writer");
    let value: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let frame = cmd(&[b"SET", b"big", &value]);
    for piece in frame.chunks(7_001) {
        c.client_sends(piece);
    }
    assert_eq!(c.take_upstream(), frame);
    c.upstream_sends(b"+OK\r\n");
    assert_eq!(c.take_client(), b"+OK\r\n");
    // A denied large value is swallowed, not kept.
    let mut r = authed(&f, "reader");
    for piece in frame.chunks(65_536) {
        r.client_sends(piece);
    }
    assert_eq!(r.upstream(), b"");
    assert!(r.take_client().starts_with(b"-NOPERM"));
}

#[test]
fn inline_commands_and_array_replies_count_right() {
    let f = filter();
    let mut c = authed(&f, "admin");
    c.client_sends(b"PING\r\nKEYS *\r\n");
    assert_eq!(c.take_upstream(), b"PING\r\nKEYS *\r\n");
    c.client_sends(&cmd(&[b"SUBSCRIBE", b"news"]));
    assert_eq!(c.upstream(), b"", "refused whatever the key allows");
    c.upstream_sends(b"+PONG\r\n*2\r\n$1\r\na\r\n*-1\r\n");
    assert_eq!(
        c.client(),
        [
            &b"+PONG\r\n*2\r\n$1\r\na\r\n*-1\r\n"[..],
            b"-NOPERM this key may not run the 'subscribe' command\r\n"
        ]
        .concat()
    );
}

#[test]
fn garbage_and_oversized_frames_close_with_details() {
    let f = filter();
    for (input, details) in [
        (&b"*x\r\n"[..], "redis_acl_malformed"),
        (b"*1\r\n:5\r\n", "redis_acl_malformed"),
        (b"*1\r\n$3\r\nGETxx", "redis_acl_malformed"),
        (&[b'A'; 2000][..], "redis_acl_frame_too_long"),
        (
            b"*2\r\n$4\r\nAUTH\r\n$100000\r\n",
            "redis_acl_frame_too_long",
        ),
    ] {
        let mut c = f.connect();
        c.client_sends(input);
        assert_eq!(c.closed().as_deref(), Some(details), "{input:?}");
        assert_eq!(c.upstream(), b"");
    }
    // Refusals pile up only so far while Redis does not answer.
    let mut c = authed(&f, "reader");
    c.client_sends(&cmd(&[b"GET", b"a"]));
    let denied = cmd(&[b"SET", b"a", b"1"]).repeat(1100);
    c.client_sends(&denied);
    assert_eq!(c.closed().as_deref(), Some("redis_acl_too_many_waiting"));
}

#[test]
fn a_bad_config_is_refused_with_the_reason() {
    let err = TestNetworkFilter::new(redis_acl::register, "redis_acl", b"just words")
        .err()
        .unwrap();
    assert!(err.contains("redis_acl") && err.contains("line 1"), "{err}");
    assert!(TestNetworkFilter::new(redis_acl::register, "redis_acl", b"\n\n").is_err());
}
