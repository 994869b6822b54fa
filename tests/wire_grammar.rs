//! Property tests: what `jisr::wire` accepts is exactly what the RFC 9110/9112 grammar allows,
//! written out here a second time from the ABNF, and what it accepts survives a real HTTP/1.1
//! parser (httparse) as one header with the same name and value, or one request line with the
//! same method and path.

use jisr::wire;
use proptest::prelude::*;

// RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
// "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// RFC 9110 §5.5: field-value = *field-content; field-content = field-vchar
// [ 1*( SP / HTAB / field-vchar ) field-vchar ]; field-vchar = VCHAR / obs-text
fn field_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

fn abnf_value(v: &[u8]) -> bool {
    let inner = |b: u8| field_vchar(b) || b == b' ' || b == b'\t';
    match (v.first(), v.last()) {
        (None, _) => true,
        (Some(&f), Some(&l)) => field_vchar(f) && field_vchar(l) && v.iter().all(|&b| inner(b)),
        _ => unreachable!(),
    }
}

fn abnf_name(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|&b| tchar(b))
}

// The request line jisr allows: origin-form or `*`, visible ASCII only.
fn abnf_path(p: &[u8]) -> bool {
    p == b"*" || (p.first() == Some(&b'/') && p.iter().all(|b| (0x21..=0x7e).contains(b)))
}

/// Bytes biased towards the interesting ones: controls, separators, whitespace, high bytes.
fn field_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => proptest::char::range('a', 'z').prop_map(|c| c as u8),
        2 => Just(b' '),
        1 => Just(b'\t'),
        1 => Just(b'\r'),
        1 => Just(b'\n'),
        1 => Just(0u8),
        1 => Just(0x7fu8),
        1 => Just(b':'),
        1 => Just(b'/'),
        2 => any::<u8>(),
    ];
    proptest::collection::vec(byte, 0..12)
}

/// Mostly valid token bytes, sometimes not.
fn token_ish() -> impl Strategy<Value = Vec<u8>> {
    let tchars: Vec<u8> = (0u8..=255).filter(|&b| tchar(b)).collect();
    let byte = prop_oneof![20 => proptest::sample::select(tchars), 1 => any::<u8>()];
    proptest::collection::vec(byte, 1..10)
}

/// Mostly valid field content (visible ASCII, UTF-8, spaces and tabs inside), sometimes not.
fn value_ish() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        20 => 0x21u8..=0x7e,
        3 => Just(b' '),
        1 => Just(b'\t'),
        3 => 0x80u8..=0xff,
        1 => any::<u8>(),
    ];
    proptest::collection::vec(byte, 0..16)
}

/// Mostly valid paths, sometimes not.
fn path_ish() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![20 => 0x21u8..=0x7e, 1 => any::<u8>()];
    proptest::collection::vec(byte, 0..16).prop_map(|mut p| {
        p.insert(0, b'/');
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn header_checks_are_the_abnf(name in field_bytes(), value in field_bytes()) {
        prop_assert_eq!(wire::header_name(&name).is_ok(), abnf_name(&name));
        prop_assert_eq!(wire::header_value(&value).is_ok(), abnf_value(&value));
    }

    #[test]
    fn accepted_headers_parse_back_as_one_header(name in token_ish(), value in value_ish()) {
        prop_assert_eq!(wire::header_name(&name).is_ok(), abnf_name(&name));
        prop_assert_eq!(wire::header_value(&value).is_ok(), abnf_value(&value));
        if wire::header_name(&name).is_err() || wire::header_value(&value).is_err() {
            return Ok(());
        }
        let mut wire_bytes = b"HTTP/1.1 200 OK\r\n".to_vec();
        wire_bytes.extend_from_slice(&name);
        wire_bytes.extend_from_slice(b": ");
        wire_bytes.extend_from_slice(&value);
        wire_bytes.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\nnext");
        let mut headers = [httparse::EMPTY_HEADER; 4];
        let mut resp = httparse::Response::new(&mut headers);
        let status = resp.parse(&wire_bytes).expect("valid response head");
        // One response head, ending where it should: nothing of the value spilled over.
        prop_assert_eq!(status, httparse::Status::Complete(wire_bytes.len() - 4));
        prop_assert_eq!(resp.headers.len(), 2);
        prop_assert_eq!(resp.headers[0].name.as_bytes(), &name[..]);
        prop_assert_eq!(resp.headers[0].value, &value[..]);
    }

    #[test]
    fn accepted_request_lines_parse_back_whole(method in token_ish(), path in path_ish()) {
        prop_assert_eq!(wire::method(&method).is_ok(), abnf_name(&method));
        prop_assert_eq!(wire::path(&path).is_ok(), abnf_path(&path));
        if wire::method(&method).is_err() || wire::path(&path).is_err() {
            return Ok(());
        }
        let mut line = method.clone();
        line.push(b' ');
        line.extend_from_slice(&path);
        line.extend_from_slice(b" HTTP/1.1\r\nhost: h\r\n\r\n");
        let mut headers = [httparse::EMPTY_HEADER; 2];
        let mut req = httparse::Request::new(&mut headers);
        prop_assert_eq!(req.parse(&line).expect("valid request"), httparse::Status::Complete(line.len()));
        prop_assert_eq!(req.method.unwrap().as_bytes(), &method[..]);
        prop_assert_eq!(req.path.unwrap().as_bytes(), &path[..]);
        prop_assert_eq!(req.version, Some(1));
    }

    #[test]
    fn authority_and_scheme_have_no_space_or_control(a in field_bytes()) {
        let visible = !a.is_empty() && a.iter().all(|b| (0x21..=0x7e).contains(b));
        prop_assert_eq!(wire::authority(&a).is_ok(), visible);
        let scheme = a.first().is_some_and(u8::is_ascii_alphabetic)
            && a.iter().all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        prop_assert_eq!(wire::scheme(&a).is_ok(), scheme);
    }

    #[test]
    fn only_final_statuses_are_accepted(s in any::<u16>()) {
        prop_assert_eq!(wire::status(s).is_ok(), (200..=599).contains(&s));
    }
}
