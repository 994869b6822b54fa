//! `redis_acl`: a RESP-aware network filter in front of Redis.
//!
//! The filter config holds one key per line with the commands it may run:
//!
//! ```text
//! reader: GET MGET EXISTS TTL PING
//! writer: GET SET DEL INCR MULTI EXEC DISCARD PING
//! admin: *
//! ```
//!
//! - A connection starts unauthenticated: `AUTH <key>` (or `AUTH <user> <key>`, the user is
//!   ignored) is answered by the filter itself and never reaches Redis. Anything else before
//!   it gets `-NOAUTH`.
//! - A command the key does not allow gets `-NOPERM` and never reaches Redis; allowed ones
//!   are forwarded as they arrive, a large value streamed through in pieces, never held whole.
//! - Replies stay in order: the filter counts Redis's replies, and its own answers (to `AUTH`
//!   and denied commands) are sent at their place among them, so a pipelining client gets one
//!   reply per command, in order.
//! - Inside `MULTI`, a denied command marks the transaction: its `EXEC` goes to Redis as
//!   `DISCARD` and the client gets `-EXECABORT`, as Redis does for a command that fails to
//!   queue.
//! - Bounded: a command name or `AUTH` argument over 512 bytes, a malformed frame, a RESP3
//!   switch (`HELLO 3`), or more than 1,024 filter answers waiting for their place close the
//!   connection with details `redis_acl_*`. Subscribe-style commands (whose replies are not one
//!   per command) and `HELLO`, `MONITOR` and `RESET` are refused whatever the key allows.

use jisr::network::{Connection, Traffic};
use jisr::{ConfigError, ConfigHandle, Registry};
use std::collections::{HashMap, VecDeque};

/// Keys and what each may run (upper-case command names; `None`: everything).
struct Acl {
    keys: HashMap<String, Option<Vec<String>>>,
}

fn load(cfg: &mut ConfigHandle<'_>) -> Result<Acl, ConfigError> {
    let mut keys = HashMap::new();
    for (i, line) in cfg.config_str()?.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, cmds)) = line.split_once(':') else {
            return Err(ConfigError::new(format!(
                "line {}: expected `key: COMMAND ...`",
                i + 1
            )));
        };
        let key = key.trim();
        if key.is_empty() || key.len() > 512 {
            return Err(ConfigError::new(format!("line {}: bad key", i + 1)));
        }
        let cmds: Vec<String> = cmds.split_whitespace().map(str::to_uppercase).collect();
        let allowed = if cmds.iter().any(|c| c == "*") {
            None
        } else {
            Some(cmds)
        };
        keys.insert(key.to_string(), allowed);
    }
    if keys.is_empty() {
        return Err(ConfigError::new("no keys configured"));
    }
    Ok(Acl { keys })
}

/// Commands refused whatever the key says: their replies are not one per command, or they
/// change the protocol under the filter.
const NEVER: &[&str] = &[
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "SUNSUBSCRIBE",
    "MONITOR",
    "HELLO",
    "RESET",
    "SYNC",
    "PSYNC",
];

/// The longest command name or `AUTH` argument kept.
const MAX_HEAD: usize = 512;
/// The most filter answers waiting for their place among Redis's replies.
const MAX_WAITING: usize = 1024;

/// Where the client-side parser is inside the current command.
enum In {
    /// Between commands.
    Idle,
    /// Reading an array header `*N\r\n` (bytes so far in `line`).
    ArrayHeader,
    /// Reading the `$len\r\n` of argument `index` (of `count`).
    BulkHeader { index: u64, count: u64 },
    /// Inside argument `index`: `left` bytes of it (plus its CRLF) to come.
    Bulk { index: u64, count: u64, left: u64 },
    /// An inline command line (no `*`): up to its newline.
    Inline,
}

/// What happens to the current command's bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Not decided yet (the name is not complete): bytes are kept in `head`.
    Undecided,
    /// Forwarded to Redis as they come.
    Forward,
    /// Swallowed (denied); the answer is queued when the command ends.
    Deny,
    /// `AUTH`: kept whole (bounded) and answered by the filter.
    Auth,
}

/// One answer of the filter's, to be sent once Redis has answered `after` commands.
struct Waiting {
    after: u64,
    bytes: Vec<u8>,
}

struct Session<'a> {
    acl: &'a Acl,
    /// The key's allowed commands once authenticated (`Some(None)`: everything).
    allowed: Option<&'a Option<Vec<String>>>,
    // Client side.
    state: In,
    line: Vec<u8>,
    fate: Fate,
    /// The command's bytes while its fate is undecided, or `AUTH`'s whole frame.
    head: Vec<u8>,
    /// Arguments of the current command (name first) while they are kept.
    args: Vec<Vec<u8>>,
    in_multi: bool,
    multi_dirty: bool,
    /// Commands sent to Redis.
    forwarded: u64,
    /// Bytes for Redis gathered during one read, sent in one piece.
    out: Vec<u8>,
    // Server side.
    replies: ReplyCounter,
    waiting: VecDeque<Waiting>,
    /// Replies (by number) that the client must not see: their replacement is queued.
    replace: VecDeque<(u64, Vec<u8>)>,
}

/// Why the filter closes a connection.
struct Fail(&'static str);

impl<'a> Session<'a> {
    fn new(acl: &'a Acl) -> Self {
        Session {
            acl,
            allowed: None,
            state: In::Idle,
            line: Vec::new(),
            fate: Fate::Undecided,
            head: Vec::new(),
            args: Vec::new(),
            in_multi: false,
            multi_dirty: false,
            forwarded: 0,
            out: Vec::new(),
            replies: ReplyCounter::default(),
            waiting: VecDeque::new(),
            replace: VecDeque::new(),
        }
    }

    /// Client bytes: parsed, forwarded or swallowed; answers of the filter queued in order.
    fn client(&mut self, conn: &mut Connection<'_>, data: &[u8]) -> Result<(), Fail> {
        let r = self.client_bytes(conn, data);
        self.send_out(conn);
        r
    }

    fn send_out(&mut self, conn: &mut Connection<'_>) {
        if !self.out.is_empty() {
            conn.send_upstream(&self.out);
            self.out.clear();
        }
    }

    fn client_bytes(&mut self, conn: &mut Connection<'_>, mut data: &[u8]) -> Result<(), Fail> {
        while !data.is_empty() {
            // The body of an argument that is not kept passes (or is skipped) in one piece.
            if let In::Bulk { index, count, left } = self.state {
                if matches!(self.fate, Fate::Forward | Fate::Deny) && index > 0 {
                    let n = (left as usize).min(data.len());
                    if self.fate == Fate::Forward {
                        self.send_out(conn);
                        conn.send_upstream(&data[..n]);
                    }
                    data = &data[n..];
                    self.state = In::Bulk {
                        index,
                        count,
                        left: left - n as u64,
                    };
                    if left as usize == n {
                        self.next_arg(conn, index, count)?;
                    }
                    continue;
                }
            }
            let b = data[0];
            data = &data[1..];
            self.byte(conn, b)?;
        }
        Ok(())
    }

    /// One byte of the command (headers, names and kept arguments go byte by byte).
    fn byte(&mut self, conn: &mut Connection<'_>, b: u8) -> Result<(), Fail> {
        match self.fate {
            Fate::Undecided | Fate::Auth => {
                if self.head.len() >= MAX_HEAD + 64 {
                    return Err(Fail("redis_acl_frame_too_long"));
                }
                self.head.push(b);
            }
            Fate::Forward => self.out.push(b),
            Fate::Deny => {}
        }
        match self.state {
            In::Idle => match b {
                b'*' => {
                    self.line.clear();
                    self.state = In::ArrayHeader;
                }
                b'\r' | b'\n' => self.head.clear(),
                _ => {
                    self.line.clear();
                    self.line.push(b);
                    self.state = In::Inline;
                }
            },
            In::ArrayHeader => {
                if let Some(n) = self.line_byte(b)? {
                    if n <= 0 {
                        // An empty array: Redis ignores it; so does the filter.
                        self.head.clear();
                        self.state = In::Idle;
                    } else {
                        self.args.clear();
                        self.state = In::BulkHeader {
                            index: 0,
                            count: n as u64,
                        };
                    }
                }
            }
            In::BulkHeader { index, count } => {
                if self.line.is_empty() && b != b'$' {
                    return Err(Fail("redis_acl_malformed"));
                }
                if b == b'$' && self.line.is_empty() {
                    self.line.push(b);
                    return Ok(());
                }
                self.line.push(b);
                if b == b'\n' {
                    let text = core::str::from_utf8(&self.line[1..])
                        .ok()
                        .and_then(|t| t.trim_end().parse::<i64>().ok())
                        .filter(|n| *n >= 0 && *n <= 512 * 1024 * 1024)
                        .ok_or(Fail("redis_acl_malformed"))?;
                    self.line.clear();
                    let keep = index == 0 || self.fate == Fate::Auth;
                    if keep && text as usize > MAX_HEAD {
                        return Err(Fail("redis_acl_frame_too_long"));
                    }
                    if keep {
                        self.args.push(Vec::new());
                    }
                    self.state = In::Bulk {
                        index,
                        count,
                        left: text as u64 + 2,
                    };
                } else if self.line.len() > 24 {
                    return Err(Fail("redis_acl_malformed"));
                }
            }
            In::Bulk { index, count, left } => {
                if left > 2 {
                    if let Some(a) = self.args.last_mut() {
                        if index == 0 || self.fate == Fate::Auth {
                            a.push(b);
                        }
                    }
                } else if (left == 2 && b != b'\r') || (left == 1 && b != b'\n') {
                    return Err(Fail("redis_acl_malformed"));
                }
                self.state = In::Bulk {
                    index,
                    count,
                    left: left - 1,
                };
                if left == 1 {
                    if index == 0 {
                        self.decide()?;
                    }
                    self.next_arg(conn, index, count)?;
                }
            }
            In::Inline => {
                if b == b'\n' {
                    let line = core::mem::take(&mut self.line);
                    let text = String::from_utf8_lossy(&line);
                    self.args = text
                        .split_whitespace()
                        .map(|w| w.as_bytes().to_vec())
                        .collect();
                    self.state = In::Idle;
                    if self.args.is_empty() {
                        self.head.clear();
                        return Ok(());
                    }
                    self.decide()?;
                    self.end_command(conn)?;
                } else {
                    if self.line.len() > MAX_HEAD {
                        return Err(Fail("redis_acl_frame_too_long"));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    /// A header line's number, once its `\n` arrived.
    fn line_byte(&mut self, b: u8) -> Result<Option<i64>, Fail> {
        self.line.push(b);
        if b != b'\n' {
            if self.line.len() > 24 {
                return Err(Fail("redis_acl_malformed"));
            }
            return Ok(None);
        }
        let n = core::str::from_utf8(&self.line)
            .ok()
            .and_then(|t| t.trim_end().parse::<i64>().ok())
            .filter(|n| *n <= 1024 * 1024)
            .ok_or(Fail("redis_acl_malformed"))?;
        self.line.clear();
        Ok(Some(n))
    }

    /// After argument `index`: the next one, or the command's end.
    fn next_arg(&mut self, conn: &mut Connection<'_>, index: u64, count: u64) -> Result<(), Fail> {
        if index + 1 < count {
            self.state = In::BulkHeader {
                index: index + 1,
                count,
            };
            Ok(())
        } else {
            self.state = In::Idle;
            self.end_command(conn)
        }
    }

    /// The command's name is complete: decide its fate.
    fn decide(&mut self) -> Result<(), Fail> {
        let name = String::from_utf8_lossy(&self.args[0]).to_uppercase();
        self.fate = if name == "AUTH" {
            Fate::Auth
        } else if self.allowed.is_none() {
            self.deny("-NOAUTH Authentication required.\r\n")?;
            Fate::Deny
        } else if NEVER.contains(&name.as_str()) || !self.may_run(&name) {
            let msg = format!(
                "-NOPERM this key may not run the '{}' command\r\n",
                name.to_lowercase()
            );
            self.deny(&msg)?;
            if self.in_multi {
                self.multi_dirty = true;
            }
            Fate::Deny
        } else {
            match name.as_str() {
                "MULTI" => self.in_multi = true,
                "EXEC" if self.multi_dirty => {
                    // Redis would refuse the transaction: so does the filter, and the queued
                    // commands are dropped rather than run.
                    self.in_multi = false;
                    self.multi_dirty = false;
                    self.out.extend_from_slice(b"*1\r\n$7\r\nDISCARD\r\n");
                    self.forwarded += 1;
                    self.replace.push_back((
                        self.forwarded,
                        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
                            .to_vec(),
                    ));
                    self.head.clear();
                    self.fate = Fate::Deny;
                    return Ok(());
                }
                "EXEC" | "DISCARD" => {
                    self.in_multi = false;
                    self.multi_dirty = false;
                }
                _ => {}
            }
            Fate::Forward
        };
        if self.fate == Fate::Forward {
            self.out.extend_from_slice(&self.head);
            self.head.clear();
            self.forwarded += 1;
        } else if self.fate == Fate::Deny {
            self.head.clear();
        }
        Ok(())
    }

    fn may_run(&self, name: &str) -> bool {
        match self.allowed {
            Some(None) => true,
            Some(Some(list)) => list.iter().any(|c| c == name),
            None => false,
        }
    }

    /// The command ended: answer `AUTH`, and ready for the next command.
    fn end_command(&mut self, conn: &mut Connection<'_>) -> Result<(), Fail> {
        if self.fate == Fate::Auth {
            let key = match self.args.len() {
                2 => Some(&self.args[1]),
                3 => Some(&self.args[2]),
                _ => None,
            };
            let entry = key
                .and_then(|k| core::str::from_utf8(k).ok())
                .and_then(|k| self.acl.keys.get_key_value(k));
            match entry {
                Some((_, allowed)) => {
                    self.allowed = Some(allowed);
                    self.answer(conn, b"+OK\r\n".to_vec())?;
                }
                None => self.answer(
                    conn,
                    b"-WRONGPASS invalid username-password pair or user is disabled.\r\n".to_vec(),
                )?,
            }
        }
        self.fate = Fate::Undecided;
        self.head.clear();
        self.args.clear();
        // A refusal with nothing before it goes out now.
        self.flush_waiting(conn);
        Ok(())
    }

    fn deny(&mut self, msg: &str) -> Result<(), Fail> {
        self.waiting_push(msg.as_bytes().to_vec())
    }

    fn answer(&mut self, conn: &mut Connection<'_>, bytes: Vec<u8>) -> Result<(), Fail> {
        self.waiting_push(bytes)?;
        self.flush_waiting(conn);
        Ok(())
    }

    fn waiting_push(&mut self, bytes: Vec<u8>) -> Result<(), Fail> {
        if self.waiting.len() >= MAX_WAITING {
            return Err(Fail("redis_acl_too_many_waiting"));
        }
        self.waiting.push_back(Waiting {
            after: self.forwarded,
            bytes,
        });
        Ok(())
    }

    /// Sends the filter's answers whose place has come (all replies before them arrived).
    fn flush_waiting(&mut self, conn: &mut Connection<'_>) {
        while let Some(w) = self.waiting.front() {
            if w.after > self.replies.done {
                break;
            }
            conn.send_downstream(&w.bytes);
            self.waiting.pop_front();
        }
    }

    /// Redis's bytes: passed to the client, with the filter's answers put in their places.
    fn upstream(&mut self, conn: &mut Connection<'_>, data: &[u8]) -> Result<(), Fail> {
        let mut from = 0;
        for (i, &b) in data.iter().enumerate() {
            let before = self.replies.done;
            self.replies
                .byte(b)
                .map_err(|()| Fail("redis_acl_bad_reply"))?;
            if self.replies.done != before {
                // Reply number `done` ends at `i`.
                let n = self.replies.done;
                let replaced = self.replace.front().is_some_and(|(at, _)| *at == n);
                if replaced {
                    let (_, bytes) = self.replace.pop_front().expect("checked");
                    conn.send_downstream(&bytes);
                } else {
                    conn.send_downstream(&data[from..=i]);
                }
                from = i + 1;
                self.flush_waiting(conn);
            }
        }
        // A reply in progress: its bytes go now, unless it is one to replace.
        let n = self.replies.done + 1;
        if from < data.len() && self.replace.front().is_none_or(|(at, _)| *at != n) {
            conn.send_downstream(&data[from..]);
        }
        Ok(())
    }
}

/// Counts complete RESP2 replies in a byte stream (bulk bodies skipped by length).
#[derive(Default)]
struct ReplyCounter {
    /// Replies completed.
    done: u64,
    /// Elements still expected by each open array, innermost last.
    open: Vec<u64>,
    /// The current header line (type byte first).
    line: Vec<u8>,
    /// Bytes of a bulk body (plus CRLF) still to skip.
    skip: u64,
}

impl ReplyCounter {
    fn byte(&mut self, b: u8) -> Result<(), ()> {
        if self.skip > 0 {
            self.skip -= 1;
            if self.skip == 0 {
                self.element_done();
            }
            return Ok(());
        }
        self.line.push(b);
        if b != b'\n' {
            // Error and status lines may be long; they are only scanned for their end.
            if self.line.len() > 64 && matches!(self.line[0], b'$' | b'*' | b':') {
                return Err(());
            }
            return Ok(());
        }
        let kind = self.line[0];
        let num = || {
            core::str::from_utf8(&self.line[1..])
                .ok()
                .and_then(|t| t.trim_end().parse::<i64>().ok())
        };
        match kind {
            b'+' | b'-' | b':' => {
                self.line.clear();
                self.element_done();
            }
            b'$' => {
                let n = num().ok_or(())?;
                self.line.clear();
                if n < 0 {
                    self.element_done();
                } else {
                    self.skip = n as u64 + 2;
                }
            }
            b'*' => {
                let n = num().ok_or(())?;
                self.line.clear();
                if n <= 0 {
                    self.element_done();
                } else {
                    self.open.push(n as u64);
                }
            }
            _ => return Err(()),
        }
        Ok(())
    }

    fn element_done(&mut self) {
        loop {
            match self.open.last_mut() {
                None => {
                    self.done += 1;
                    return;
                }
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        return;
                    }
                    self.open.pop();
                }
            }
        }
    }
}

async fn acl(acl: &Acl, mut conn: Connection<'_>) {
    let mut s = Session::new(acl);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let step = match conn.read_any(&mut buf).await {
            Traffic::Client(n) => s.client(&mut conn, &buf[..n]),
            Traffic::Upstream(n) => s.upstream(&mut conn, &buf[..n]),
            Traffic::ClientEnd => {
                conn.end_upstream();
                Ok(())
            }
            Traffic::UpstreamEnd => {
                conn.end_downstream();
                Ok(())
            }
            Traffic::Closed => return,
        };
        if let Err(Fail(details)) = step {
            conn.send_downstream(b"-ERR redis_acl: protocol error\r\n");
            conn.close(details);
            return;
        }
    }
}

/// Registers `redis_acl`.
pub fn register(r: &mut Registry) {
    r.network("redis_acl").state(load).handle(acl);
}

jisr::export!(register);
