//! logfmt: every value survives `write_value` + `parse_value`; keys never break a pair; the
//! `Display` variant writes the same bytes; `parse_value` never panics on any text.
#![no_main]

use jisr_fuzz::buffer::logfmt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (key, value) = text.split_at(text.char_indices().nth(3).map_or(text.len(), |(i, _)| i));

    let mut encoded = String::new();
    logfmt::write_value(&mut encoded, value).unwrap();
    assert!(
        !encoded.contains(['\n', '\r']),
        "a value broke the line: {encoded:?}"
    );
    let mut decoded = String::new();
    let rest = logfmt::parse_value(&encoded, &mut decoded).unwrap();
    assert_eq!(decoded, value);
    assert_eq!(rest, "");
    if !logfmt::needs_quotes(value) {
        assert_eq!(encoded, value);
    }

    let mut pair = String::new();
    logfmt::write_pair(&mut pair, key, value).unwrap();
    let mut shown = String::new();
    logfmt::write_pair_display(&mut shown, key, value).unwrap();
    assert_eq!(pair, shown);
    let written_key = &pair[1..pair.find('=').unwrap()];
    assert!(!written_key.is_empty());
    assert!(!written_key.contains(|c: char| c.is_whitespace() || c.is_control() || c == '"'));
    let mut decoded = String::new();
    let rest = logfmt::parse_value(&pair[2 + written_key.len()..], &mut decoded).unwrap();
    assert_eq!((decoded.as_str(), rest), (value, ""));

    let mut lossy = String::new();
    logfmt::write_pair_bytes(&mut lossy, "k", data).unwrap();
    let mut expected = String::new();
    logfmt::write_pair(&mut expected, "k", &text).unwrap();
    assert_eq!(lossy, expected);

    let mut msg = String::new();
    logfmt::write_msg(&mut msg, &text).unwrap();
    assert!(!msg.contains(['\n', '\r']));
    // A message that could forge a pair is quoted, and decodes back whole.
    if text.contains(['=', '"']) || text.contains(char::is_control) {
        let mut decoded = String::new();
        let rest = logfmt::parse_value(&msg, &mut decoded).unwrap();
        assert_eq!((decoded.as_str(), rest), (&*text, ""));
    } else {
        assert_eq!(msg, *text);
    }

    let _ = logfmt::parse_value(&text, &mut String::new());
});
