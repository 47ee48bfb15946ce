//! A JSON object read with every key once. RFC 8259 leaves duplicate names
//! to the reader, and serde_json keeps the last; which one a sender meant
//! would be a guess, so the bodies that name fields (orders, settings,
//! staff, webhook registrations, the gateway's token frame) refuse them,
//! as §1's event scanner does.

use serde_json::{Map, Value};

use crate::echo::Echo;

/// A JSON object whose keys are all different (escapes decoded first:
/// `"\u006eame"` is `name`). Deserializing anything else fails: another
/// JSON type, or a key given twice (a data error, `e.is_data()`).
pub struct UniqueKeys(pub Map<String, Value>);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut map = Map::new();
                while let Some((key, value)) = a.next_entry::<String, Value>()? {
                    if map.contains_key(&key) {
                        return Err(serde::de::Error::custom(format_args!(
                            "the key {} appears twice",
                            Echo(&key)
                        )));
                    }
                    map.insert(key, value);
                }
                Ok(UniqueKeys(map))
            }
        }
        d.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Result<Vec<String>, serde_json::Error> {
        serde_json::from_str::<UniqueKeys>(text).map(|o| o.0.keys().cloned().collect())
    }

    #[test]
    fn a_key_given_twice_is_refused_escaped_or_not() {
        assert_eq!(keys(r#"{"a":1,"b":{"a":2}}"#).unwrap(), ["a", "b"]);
        for twice in [
            r#"{"a":1,"a":1}"#,
            r#"{"name":"1","\u006eame":"2"}"#,
            r#"{"a":1,"b":2,"a":null}"#,
        ] {
            let e = keys(twice).unwrap_err();
            assert!(
                e.is_data() && e.to_string().contains("appears twice"),
                "{twice}: {e}"
            );
        }
        for other in ["[]", "[1]", "1", "null", "\"a\""] {
            assert!(keys(other).is_err(), "{other}");
        }
    }
}
