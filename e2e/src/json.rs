//! JSON through `serde_json`: quoting strings into configs and bodies, and [`Json`], a
//! chaining view kept for callers written against `.get(k).get(k).as_str()`.
//!
//! Tests parse bodies into [`serde_json::Value`] (`Response::json`) and index it:
//! `v["headers"]["x-hello"].as_str()`.

use serde_json::Value;
use std::ops::Deref;

/// `s` as a quoted JSON string.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

/// A JSON value whose [`Json::get`] chains: a missing key, or a lookup in something that is
/// not an object, reads as null. Everything else is the [`Value`] it derefs to. Returned by
/// `client::Response::try_json`, which the `demo` binary reads this way.
#[derive(Debug, Clone, PartialEq)]
pub struct Json(pub Value);

impl Json {
    /// Member `key` (a copy), or null.
    pub fn get(&self, key: &str) -> Json {
        Json(self.0[key].clone())
    }
}

impl Deref for Json {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_round_trips_escapes() {
        let s = "a\"b\\c\nd\u{1}é";
        let v: Value = serde_json::from_str(&quote(s)).unwrap();
        assert_eq!(v.as_str(), Some(s));
    }

    #[test]
    fn get_chains_through_missing_members() {
        let j = Json(serde_json::from_str(r#"{"a":{"b":"x"},"n":3}"#).unwrap());
        assert_eq!(j.get("a").get("b").as_str(), Some("x"));
        assert_eq!(j.get("n").as_u64(), Some(3));
        assert!(j.get("missing").get("b").is_null());
        assert!(j.get("n").get("b").is_null());
    }
}
