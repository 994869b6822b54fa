//! A network (L4) filter: the client's first line must be `AUTH <key>` with a key from the
//! filter config (one per line); then the connection flows to upstream untouched. A wrong key,
//! or a first line longer than 256 bytes, gets `-ERR ...` and the connection closed.
//!
//! With `watch` as the first config line, the handler keeps relaying both directions itself
//! and prefixes each chunk upstream sends back with `> ` (to show both directions).

use jisr::network::{Connection, Traffic};
use jisr::{ConfigError, ConfigHandle, Level, Registry};

struct Gate {
    keys: Vec<String>,
    watch: bool,
    denied: jisr::Counter,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Gate, ConfigError> {
    let text = cfg.config_str()?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .peekable();
    let watch = lines.next_if_eq(&"watch").is_some();
    let keys: Vec<String> = lines.map(str::to_string).collect();
    if keys.is_empty() {
        return Err(ConfigError::new("no keys: give one key per line"));
    }
    let denied = cfg.counter("tcp_gate_denied", &[])?;
    Ok(Gate {
        keys,
        watch,
        denied,
    })
}

async fn gate(g: &Gate, mut conn: Connection<'_>) {
    // The first line, read as it arrives (it may come in pieces).
    let mut line = [0u8; 256];
    let mut len = 0;
    let end = loop {
        if let Some(i) = memchr::memchr(b'\n', &line[..len]) {
            break i;
        }
        if len == line.len() {
            conn.send_downstream(b"-ERR first line too long\r\n");
            conn.close("tcp_gate_line_too_long");
            return;
        }
        let n = conn.read(&mut line[len..]).await;
        if n == 0 {
            return; // the client left before authenticating: nothing passed
        }
        len += n;
    };
    let first = core::str::from_utf8(&line[..end])
        .unwrap_or("")
        .trim_end_matches('\r');
    let allowed = first
        .strip_prefix("AUTH ")
        .is_some_and(|k| g.keys.iter().any(|key| key == k));
    if !allowed {
        conn.log(
            Level::Info,
            format_args!("tcp_gate: refused {:?}", conn.peer_addr()),
        );
        let _ = conn.counter_inc(g.denied, &[]);
        conn.send_downstream(b"-ERR denied\r\n");
        conn.close("tcp_gate_denied");
        return;
    }
    conn.set_metadata("tcp_gate", "user", &first[5..]);
    conn.set_filter_state("tcp_gate.user", &first.as_bytes()[5..]);
    conn.send_downstream(b"+OK\r\n");
    // What the client sent after the AUTH line goes on.
    conn.send_upstream(&line[end + 1..len]);
    if !g.watch {
        return; // from here on the connection flows untouched
    }
    let mut buf = [0u8; 4096];
    loop {
        match conn.read_any(&mut buf).await {
            Traffic::Client(n) => conn.send_upstream(&buf[..n]),
            Traffic::Upstream(n) => {
                conn.send_downstream(b"> ");
                conn.send_downstream(&buf[..n]);
            }
            Traffic::ClientEnd => conn.end_upstream(),
            Traffic::UpstreamEnd => conn.end_downstream(),
            Traffic::Closed => return,
        }
    }
}

fn register(r: &mut Registry) {
    r.network("tcp_gate").state(load).handle(gate);
}

jisr::export!(register);
