//! A JSON parse that refuses an object with the same key twice, at any depth.
//!
//! `serde_json` keeps the last of two equal keys silently, so `{"privacy_level":"SELF_ONLY",
//! "privacy_level":"PUBLIC_TO_EVERYONE"}` would post publicly what the first key kept private. This
//! builds the same [`Value`] through a visitor whose maps fail on a repeated key; everything else
//! (nesting limit, number handling, escapes, lone surrogates) is `serde_json`'s own.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A JSON value whose objects had no repeated key.
struct Strict(Value);

/// Parses `text` as JSON, failing on a key repeated in any object.
pub fn from_str(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|s| s.0)
}

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // JSON text cannot spell NaN or infinity, so this is always `Some`; `Null` keeps it total.
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let shown = super::echo::name(&key);
                return Err(de::Error::custom(format!(
                    "key `{shown}` is given twice in one object; give it once"
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_fails_at_the_top_and_at_depth() {
        let e = from_str(r#"{"privacy_level":"SELF_ONLY","privacy_level":"PUBLIC_TO_EVERYONE"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`privacy_level` is given twice"), "{e}");
        let e = from_str(r#"{"a":[{"b":{"c":1,"c":2}}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`c` is given twice"), "{e}");
        // Keys that differ only after an escape are the same key once decoded.
        let e = from_str(r#"{"id":"1","\u0069d":"2"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`id` is given twice"), "{e}");
    }

    #[test]
    fn values_are_the_same_as_serde_json_gives() {
        let text = r#"{"a":1,"b":-2,"c":1.5,"d":"x\u00e9","e":[true,null,{}],"f":{"a":1}}"#;
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(from_str(text).unwrap(), plain);
        // The same key in two different objects is fine.
        assert!(from_str(r#"{"a":{"k":1},"b":{"k":2}}"#).is_ok());
        assert!(from_str(r#"{"a":"\ud800"}"#).is_err(), "a lone surrogate");
        assert!(from_str(&"[".repeat(10_000)).is_err(), "nesting is bounded");
    }
}
