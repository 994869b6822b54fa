//! JSON through `serde_json`: quoting strings into configs and bodies.
//!
//! Tests parse bodies into [`serde_json::Value`] (`Response::json`) and index it:
//! `v["headers"]["x-hello"].as_str()`.

/// `s` as a quoted JSON string.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn quote_round_trips_escapes() {
        let s = "a\"b\\c\nd\u{1}é";
        let v: Value = serde_json::from_str(&quote(s)).unwrap();
        assert_eq!(v.as_str(), Some(s));
    }
}
