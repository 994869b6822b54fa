//! A bounded DNS message reader and writer: just what a filter answering `A` queries needs
//! (RFC 1035 header, one question, `A` records). Nothing allocates; every loop is bounded by
//! the message length, the 255-byte name limit and [`MAX_JUMPS`] compression pointers.

use std::net::Ipv4Addr;

/// The fixed DNS header.
pub const HEADER: usize = 12;
/// The longest name on the wire (length bytes and the root label included).
pub const MAX_NAME: usize = 255;
/// The most compression pointers followed in one name (each must also point backwards).
pub const MAX_JUMPS: usize = 16;
/// The longest answer this writer makes: a plain-DNS (no EDNS) UDP message.
pub const MAX_ANSWER: usize = 512;
/// Most `A` records in one answer (so that an answer always fits in [`MAX_ANSWER`]).
pub const MAX_ADDRS: usize = 8;
/// Record type `A`.
pub const TYPE_A: u16 = 1;
/// Class `IN`.
pub const CLASS_IN: u16 = 1;
/// Response code: format error.
pub const FORMERR: u16 = 1;

const QR: u16 = 0x8000;
const AA: u16 = 0x0400;
const RD: u16 = 0x0100;

/// Why a message is not a query this reader accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header: there is no id to answer with.
    Short,
    /// The QR bit is set: a response, not a query.
    NotAQuery,
    /// An opcode other than QUERY.
    Opcode(u8),
    /// Not exactly one question.
    QuestionCount(u16),
    /// The message ends inside the question.
    Truncated,
    /// A label type other than a plain label or a pointer (RFC 6891 extended labels).
    BadLabel,
    /// The name is longer than [`MAX_NAME`].
    NameTooLong,
    /// A pointer that does not point strictly backwards, or more than [`MAX_JUMPS`] of them.
    BadPointer,
}

/// A domain name in wire form (length-prefixed labels, ending with the root label), as it
/// came (letters keep their case).
#[derive(Clone)]
pub struct Name {
    bytes: [u8; MAX_NAME],
    len: u8,
}

impl Name {
    /// The name's wire form.
    pub fn wire(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The same name with ASCII letters lowercased (DNS compares names without case).
    pub fn lowercase(&self) -> Name {
        let mut n = self.clone();
        n.bytes[..usize::from(n.len)].make_ascii_lowercase();
        n
    }

    /// A name from text (`www.example.com`, a final dot optional), lowercased; `None` if a
    /// label is empty, longer than 63 bytes, or the name is too long.
    pub fn from_text(text: &str) -> Option<Name> {
        let text = text.strip_suffix('.').unwrap_or(text);
        let mut n = Name {
            bytes: [0; MAX_NAME],
            len: 0,
        };
        let mut at = 0usize;
        if !text.is_empty() {
            for label in text.split('.') {
                let l = label.len();
                if l == 0 || l > 63 || at + 1 + l + 1 > MAX_NAME {
                    return None;
                }
                n.bytes[at] = l as u8;
                n.bytes[at + 1..at + 1 + l].copy_from_slice(label.as_bytes());
                at += 1 + l;
            }
        }
        n.bytes[at] = 0;
        n.len = (at + 1) as u8;
        Some(n.lowercase())
    }

    /// The name as dotted text (labels' bytes as they are; for logs and tests).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let w = self.wire();
        let mut at = 0;
        while at < w.len() && w[at] != 0 {
            let l = usize::from(w[at]);
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&String::from_utf8_lossy(&w[at + 1..at + 1 + l]));
            at += 1 + l;
        }
        out
    }
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.to_text())
    }
}

/// Reads the name at `at` in `msg`, following compression pointers. Returns the name and the
/// offset just past it where it started (past the first pointer, if it had one).
pub fn read_name(msg: &[u8], at: usize) -> Result<(Name, usize), Error> {
    let mut name = Name {
        bytes: [0; MAX_NAME],
        len: 0,
    };
    let mut out = 0usize;
    let mut pos = at;
    let mut end = None;
    let mut jumps = 0;
    loop {
        let &len = msg.get(pos).ok_or(Error::Truncated)?;
        match len & 0xc0 {
            0x00 => {
                let l = usize::from(len);
                if out + 1 + l > MAX_NAME {
                    return Err(Error::NameTooLong);
                }
                if l == 0 {
                    name.bytes[out] = 0;
                    name.len = (out + 1) as u8;
                    return Ok((name, end.unwrap_or(pos + 1)));
                }
                let label = msg.get(pos + 1..pos + 1 + l).ok_or(Error::Truncated)?;
                name.bytes[out] = len;
                name.bytes[out + 1..out + 1 + l].copy_from_slice(label);
                out += 1 + l;
                pos += 1 + l;
            }
            0xc0 => {
                let &low = msg.get(pos + 1).ok_or(Error::Truncated)?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                jumps += 1;
                // Strictly backwards: every jump lands earlier, so the walk ends even without
                // the jump limit.
                if target >= pos || jumps > MAX_JUMPS {
                    return Err(Error::BadPointer);
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(Error::BadLabel),
        }
    }
}

/// One query: its id and flags, and its single question.
#[derive(Clone, Debug)]
pub struct Query {
    /// The id the answer must carry.
    pub id: u16,
    /// The query's flags (the answer copies RD and the opcode).
    pub flags: u16,
    /// The question's name, as asked.
    pub name: Name,
    /// The question's type.
    pub qtype: u16,
    /// The question's class.
    pub qclass: u16,
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// Reads the query in `msg` (records after the question, e.g. EDNS, are ignored).
pub fn parse_query(msg: &[u8]) -> Result<Query, Error> {
    if msg.len() < HEADER {
        return Err(Error::Short);
    }
    let id = u16_at(msg, 0).ok_or(Error::Short)?;
    let flags = u16_at(msg, 2).ok_or(Error::Short)?;
    if flags & QR != 0 {
        return Err(Error::NotAQuery);
    }
    let opcode = ((flags >> 11) & 0xf) as u8;
    if opcode != 0 {
        return Err(Error::Opcode(opcode));
    }
    let qd = u16_at(msg, 4).ok_or(Error::Short)?;
    if qd != 1 {
        return Err(Error::QuestionCount(qd));
    }
    let (name, at) = read_name(msg, HEADER)?;
    let qtype = u16_at(msg, at).ok_or(Error::Truncated)?;
    let qclass = u16_at(msg, at + 2).ok_or(Error::Truncated)?;
    Ok(Query {
        id,
        flags,
        name,
        qtype,
        qclass,
    })
}

fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) {
    out[*at..*at + bytes.len()].copy_from_slice(bytes);
    *at += bytes.len();
}

fn header(out: &mut [u8; MAX_ANSWER], id: u16, flags: u16, counts: [u16; 4]) -> usize {
    let mut at = 0;
    put(out, &mut at, &id.to_be_bytes());
    put(out, &mut at, &flags.to_be_bytes());
    for c in counts {
        put(out, &mut at, &c.to_be_bytes());
    }
    at
}

/// Writes the authoritative answer to `q` into `out`: its question, then one `A` record per
/// address (at most [`MAX_ADDRS`]; none: an empty answer, "no data"). Returns its length.
pub fn write_answer(q: &Query, ttl: u32, addrs: &[Ipv4Addr], out: &mut [u8; MAX_ANSWER]) -> usize {
    let addrs = &addrs[..addrs.len().min(MAX_ADDRS)];
    let flags = QR | AA | (q.flags & RD);
    let mut at = header(out, q.id, flags, [1, addrs.len() as u16, 0, 0]);
    put(out, &mut at, q.name.wire());
    put(out, &mut at, &q.qtype.to_be_bytes());
    put(out, &mut at, &q.qclass.to_be_bytes());
    for a in addrs {
        // The owner is the question's name: a pointer to it, right after the header.
        put(out, &mut at, &[0xc0, HEADER as u8]);
        put(out, &mut at, &TYPE_A.to_be_bytes());
        put(out, &mut at, &CLASS_IN.to_be_bytes());
        put(out, &mut at, &ttl.to_be_bytes());
        put(out, &mut at, &4u16.to_be_bytes());
        put(out, &mut at, &a.octets());
    }
    at
}

/// Writes a header-only error answer (`rcode`, e.g. [`FORMERR`]) to the query whose first
/// four bytes are `id` and `flags` (its RD bit is copied). Returns its length.
pub fn write_error(id: u16, flags: u16, rcode: u16, out: &mut [u8; MAX_ANSWER]) -> usize {
    let flags = QR | (flags & RD) | (rcode & 0xf);
    header(out, id, flags, [0; 4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `name`'s wire form, letters as given.
    fn wire(name: &str) -> Vec<u8> {
        let mut w = vec![];
        for l in name.trim_end_matches('.').split('.') {
            w.push(l.len() as u8);
            w.extend_from_slice(l.as_bytes());
        }
        w.push(0);
        w
    }

    /// A query for `name` (text) of type `qtype`, with an EDNS OPT record after it as `dig`
    /// sends.
    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&RD.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
        m.extend_from_slice(&wire(name));
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
        m
    }

    #[test]
    fn a_query_reads_back() {
        let q = parse_query(&query(7, "WWW.Example.com.", TYPE_A)).unwrap();
        assert_eq!((q.id, q.qtype, q.qclass), (7, TYPE_A, CLASS_IN));
        assert_eq!(q.name.to_text(), "WWW.Example.com", "as asked");
        assert_eq!(
            q.name.lowercase().wire(),
            Name::from_text("www.example.com").unwrap().wire()
        );
        assert_eq!(q.flags & RD, RD);
    }

    #[test]
    fn the_root_name_and_bad_text_names() {
        assert_eq!(Name::from_text(".").unwrap().wire(), [0]);
        assert!(Name::from_text("a..b").is_none());
        assert!(Name::from_text(&"x".repeat(64)).is_none());
        let long = ["a".repeat(63).as_str(); 4].join(".");
        assert!(Name::from_text(&long).is_none(), "256 bytes on the wire");
        let fits = [
            "a".repeat(63).as_str(),
            &"a".repeat(63),
            &"a".repeat(63),
            &"a".repeat(61),
        ]
        .join(".");
        assert_eq!(Name::from_text(&fits).unwrap().wire().len(), MAX_NAME);
    }

    #[test]
    fn what_is_refused_and_why() {
        assert_eq!(parse_query(&[0; 11]).unwrap_err(), Error::Short);
        let mut m = query(1, "a.b", TYPE_A);
        m[2] |= 0x80;
        assert_eq!(parse_query(&m).unwrap_err(), Error::NotAQuery);
        let mut m = query(1, "a.b", TYPE_A);
        m[2] |= 2 << 3;
        assert_eq!(parse_query(&m).unwrap_err(), Error::Opcode(2));
        let mut m = query(1, "a.b", TYPE_A);
        m[5] = 2;
        assert_eq!(parse_query(&m).unwrap_err(), Error::QuestionCount(2));
        let mut m = query(1, "a.b", TYPE_A);
        m[HEADER] = 0x40;
        assert_eq!(parse_query(&m).unwrap_err(), Error::BadLabel);
    }

    #[test]
    fn pointers_must_go_backwards() {
        let mut head = query(1, "a", TYPE_A)[..HEADER].to_vec();
        // A pointer to itself, and one forwards.
        for target in [HEADER as u8, HEADER as u8 + 2] {
            let mut m = head.clone();
            m.extend_from_slice(&[0xc0, target, 0, 0, 0, 1, 0, 1]);
            assert_eq!(parse_query(&m).unwrap_err(), Error::BadPointer);
        }
        // A pointer back to a label inside the header bytes: followed, bounded.
        head[6..8].copy_from_slice(&[1, b'x']);
        head[8] = 0;
        let mut m = head.clone();
        m.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, 6, 0, 1, 0, 1]);
        let q = parse_query(&m).unwrap();
        assert_eq!(q.name.to_text(), "www.x");
        assert_eq!(q.qtype, TYPE_A);
    }

    #[test]
    fn a_chain_of_backward_pointers_is_cut_at_the_limit() {
        // Header, then pointers each to the previous one, ending in a root label.
        let mut m = vec![0u8; HEADER];
        m[5] = 1;
        m.push(0); // the root, at HEADER
        let mut last = HEADER;
        for _ in 0..(MAX_JUMPS + 1) {
            let here = m.len();
            m.extend_from_slice(&[0xc0 | (last >> 8) as u8, last as u8]);
            last = here;
        }
        assert_eq!(read_name(&m, last).unwrap_err(), Error::BadPointer);
        // One fewer jump is fine.
        assert!(read_name(&m, last - 2).is_ok());
    }

    #[test]
    fn an_answer_has_the_question_and_the_records() {
        let q = parse_query(&query(0xbeef, "Host.Test", TYPE_A)).unwrap();
        let mut out = [0u8; MAX_ANSWER];
        let addrs = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
        let n = write_answer(&q, 30, &addrs, &mut out);
        let a = &out[..n];
        assert_eq!(&a[..2], [0xbe, 0xef]);
        assert_eq!(u16_at(a, 2).unwrap(), QR | AA | RD);
        assert_eq!(&a[4..12], [0, 1, 0, 2, 0, 0, 0, 0]);
        let (name, at) = read_name(a, HEADER).unwrap();
        assert_eq!(name.to_text(), "Host.Test", "the question as asked");
        assert_eq!(u16_at(a, at), Some(TYPE_A));
        let (owner, at) = read_name(a, at + 4).unwrap();
        assert_eq!(owner.wire(), name.wire());
        assert_eq!(&a[at..at + 10], [0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        assert_eq!(&a[at + 10..at + 14], [10, 0, 0, 1]);
        assert_eq!(n, at + 14 + 16);
    }

    #[test]
    fn an_error_answer_is_a_header() {
        let mut out = [0u8; MAX_ANSWER];
        let n = write_error(0x1234, RD | 0x0010, FORMERR, &mut out);
        assert_eq!(&out[..n], [0x12, 0x34, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9-]{1,63}"
    }

    proptest! {
        #[test]
        fn garbage_never_panics_and_stays_in_bounds(msg in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(q) = parse_query(&msg) {
                prop_assert!(q.name.wire().len() <= MAX_NAME);
                prop_assert_eq!(*q.name.wire().last().unwrap(), 0);
                let mut out = [0u8; MAX_ANSWER];
                let n = write_answer(&q, 1, &[Ipv4Addr::LOCALHOST; MAX_ADDRS + 3], &mut out);
                prop_assert!(n <= MAX_ANSWER);
            }
        }

        #[test]
        fn garbage_after_a_header_is_never_mistaken_for_a_long_name(
            tail in proptest::collection::vec(any::<u8>(), 0..2000),
        ) {
            let mut msg = query(9, "a", TYPE_A)[..HEADER].to_vec();
            msg.extend_from_slice(&tail);
            match parse_query(&msg) {
                Ok(q) => prop_assert!(q.name.wire().len() <= MAX_NAME),
                Err(e) => prop_assert!(e != Error::Short),
            }
        }

        #[test]
        fn every_name_reads_back_and_every_truncation_is_refused(
            labels in proptest::collection::vec(label(), 1..5),
            id in any::<u16>(),
        ) {
            let text = labels.join(".");
            prop_assume!(Name::from_text(&text).is_some());
            let m = query(id, &text, TYPE_A);
            let q = parse_query(&m).unwrap();
            prop_assert_eq!(q.id, id);
            prop_assert_eq!(q.name.to_text(), text);
            // The question ends 11 bytes (the OPT record) before the message.
            let question_end = m.len() - 11;
            for cut in 0..question_end {
                prop_assert!(parse_query(&m[..cut]).is_err(), "cut at {}", cut);
            }
        }

        #[test]
        fn flipped_bytes_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut m = query(3, "flip.example.com", TYPE_A);
            for (i, b) in flips {
                let i = i.index(m.len());
                m[i] = b;
            }
            let _ = parse_query(&m);
        }
    }
}
