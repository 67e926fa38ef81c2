//! Pushed records: the JSON objects of a webhook push, kept exactly as they
//! were sent (numbers with all their digits, strings byte for byte), only
//! without the whitespace between tokens. A report returns what was pushed.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not JSON, or JSON that cannot be kept as sent (a member named twice).
    #[error("{0}")]
    Malformed(String),
    /// JSON of the wrong shape: not objects, too few or too many.
    #[error("{0}")]
    Shape(String),
}

/// The records of one push, each as compact JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch(Vec<String>);

impl RecordBatch {
    /// A JSON object, or an array of 1 to `max` objects.
    pub fn parse(body: &[u8], max: usize) -> Result<Self, RecordError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| RecordError::Malformed("the body is not UTF-8 text".to_owned()))?;
        // One walk over the whole body: valid JSON, no member named twice,
        // nesting within serde_json's limit.
        check_unique_members(body)
            .map_err(|e| RecordError::Malformed(format!("the body is not valid JSON: {e}")))?;
        let whole: &RawValue = serde_json::from_str(text)
            .map_err(|e| RecordError::Malformed(format!("the body is not valid JSON: {e}")))?;
        let items: Vec<&RawValue> = match whole.get().trim_start().as_bytes().first() {
            Some(b'{') => vec![whole],
            Some(b'[') => serde_json::from_str(whole.get())
                .map_err(|e| RecordError::Malformed(format!("the body is not valid JSON: {e}")))?,
            _ => {
                return Err(RecordError::Shape(
                    "send a JSON object, or an array of JSON objects".to_owned(),
                ));
            }
        };
        if items.is_empty() || items.len() > max {
            return Err(RecordError::Shape(format!(
                "send between 1 and {max} records per push"
            )));
        }
        let mut records = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            if !item.get().starts_with('{') {
                return Err(RecordError::Shape(format!(
                    "record {position} is not a JSON object"
                )));
            }
            records.push(compact(item.get()));
        }
        Ok(RecordBatch(records))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_texts(self) -> Vec<String> {
        self.0
    }
}

/// Checks that `json` is valid JSON in which no object names a member twice.
pub fn check_unique_members(json: &[u8]) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    UniqueMembers
        .check(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|e| e.to_string())
}

/// Valid JSON without the whitespace between tokens; strings untouched.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// Walks a JSON value without building it, refusing an object that names a
/// member twice: a parser keeping the last would silently drop data.
#[derive(Clone, Copy)]
struct UniqueMembers;

impl UniqueMembers {
    fn check<'de, D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> de::DeserializeSeed<'de> for UniqueMembers {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueMembers {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            map.next_value_seed(self)?;
            if !seen.insert(name.clone()) {
                let shown: String = name.chars().take(64).collect();
                return Err(de::Error::custom(format!(
                    "member `{shown}` appears more than once in one object"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(body: &str) -> Vec<String> {
        RecordBatch::parse(body.as_bytes(), 10)
            .unwrap()
            .into_texts()
    }

    #[test]
    fn records_are_kept_as_sent_without_whitespace() {
        assert_eq!(
            texts(r#" { "n" : 123456789012345678901234567890, "z": 1, "a": "x y\"}" } "#),
            vec![r#"{"n":123456789012345678901234567890,"z":1,"a":"x y\"}"}"#]
        );
        assert_eq!(
            texts(r#"[{"a":1.10}, {"b":[1e300, -0, "\u00e9"]}]"#),
            vec![r#"{"a":1.10}"#, r#"{"b":[1e300,-0,"\u00e9"]}"#]
        );
    }

    #[test]
    fn a_number_no_double_can_hold_is_refused_rather_than_stored() {
        // Most JSON readers would fail on it (or turn it into infinity).
        let err = RecordBatch::parse(br#"{"huge":1e400}"#, 10).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn a_member_named_twice_is_refused_at_any_depth() {
        for twice in [
            r#"{"a":1,"a":2}"#,
            r#"[{"ok":1},{"x":{"b":1,"b":1}}]"#,
            r#"{"list":[{"k":true,"k":false}]}"#,
            r#"{"a\u0062":1,"ab":2}"#,
        ] {
            let err = RecordBatch::parse(twice.as_bytes(), 10).unwrap_err();
            assert!(matches!(err, RecordError::Malformed(_)), "{twice}: {err:?}");
        }
    }

    #[test]
    fn the_wrong_shape_is_refused() {
        for (body, malformed) in [
            ("", true),
            ("{", true),
            ("42", false),
            ("[]", false),
            ("[1]", false),
            (r#"[{"a":1}, "x"]"#, false),
            (r#""text""#, false),
        ] {
            let err = RecordBatch::parse(body.as_bytes(), 10).unwrap_err();
            assert_eq!(
                matches!(err, RecordError::Malformed(_)),
                malformed,
                "{body}: {err:?}"
            );
        }
        let eleven = format!("[{}]", [r#"{"a":1}"#; 11].join(","));
        assert!(RecordBatch::parse(eleven.as_bytes(), 10).is_err());
    }
}
