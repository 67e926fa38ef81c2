//! Names people and integrations choose: tenants, keys (with their
//! description and labels), collections and idempotency keys.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

fn preview(raw: &str) -> String {
    super::redact_credentials(raw).chars().take(80).collect()
}

fn free_text(raw: &str, what: &str, max: usize) -> Result<String, NameError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(NameError(format!("{what} must not be empty")));
    }
    if trimmed.chars().count() > max {
        return Err(NameError(format!("{what} is longer than {max} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(NameError(format!(
            "{what} must not contain control characters"
        )));
    }
    // Bidirectional overrides and isolates make a name display as something
    // else ("evil\u{202E}txt.exe" shows as "evilexe.txt"); invisible format
    // characters let two names that look alike differ.
    if trimmed.chars().any(is_deceptive_format_character) {
        return Err(NameError(format!(
            "{what} must not contain bidirectional or invisible formatting characters"
        )));
    }
    Ok(trimmed.to_owned())
}

fn is_deceptive_format_character(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' // zero-width spaces and joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}' // embeddings and overrides
        | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, isolates
        | '\u{FEFF}' // zero-width no-break space
        | '\u{061C}' // Arabic letter mark
    )
}

/// A company's display name: free text, unique across Keyport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        free_text(raw, "a tenant name", 100).map(TenantName)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a key is for ("ERP nightly sync"): free text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(String);

impl KeyName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        free_text(raw, "a key name", 100).map(KeyName)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a key is used for, at length: free text, at most 500 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescription(String);

impl KeyDescription {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(raw: &str) -> Result<Self, NameError> {
        free_text(raw, "a key description", Self::MAX_CHARS).map(KeyDescription)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key's labels (`env=prod`, `team=finance`), so people can tell keys
/// apart and filter them: at most [`KeyLabels::MAX`], each name 1 to 32 of
/// `a-z 0-9 _ . -`, each value 1 to 64 characters of printable text.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct KeyLabels(BTreeMap<String, String>);

impl KeyLabels {
    pub const MAX: usize = 10;

    /// Labels from name/value pairs; a name given twice is refused.
    pub fn parse<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Result<Self, NameError> {
        if pairs.len() > Self::MAX {
            return Err(NameError(format!(
                "a key may carry at most {} labels, not {}",
                Self::MAX,
                pairs.len()
            )));
        }
        let mut labels = BTreeMap::new();
        for (name, value) in pairs {
            let (name, value) = Self::check(name.as_ref(), value.as_ref())?;
            if labels.insert(name.clone(), value).is_some() {
                return Err(NameError(format!("the label `{name}` is given twice")));
            }
        }
        Ok(KeyLabels(labels))
    }

    /// One `name=value` as typed on a command line or in a filter.
    pub fn parse_assignment(raw: &str) -> Result<(String, String), NameError> {
        let (name, value) = raw.split_once('=').ok_or_else(|| {
            NameError(format!(
                "`{}` is not a label: write name=value, e.g. env=prod",
                preview(raw)
            ))
        })?;
        Self::check(name, value)
    }

    /// One label, checked: the name as is, the value trimmed.
    fn check(name: &str, value: &str) -> Result<(String, String), NameError> {
        let name_ok = (1..=32).contains(&name.len())
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            });
        if !name_ok {
            return Err(NameError(format!(
                "`{}` is not a label name: use 1 to 32 of a-z, 0-9, '_', '.' or '-'",
                preview(name)
            )));
        }
        let value = free_text(value, &format!("the value of label `{name}`"), 64)?;
        Ok((name.to_owned(), value))
    }

    /// The stored form: a JSON object; `None` when there are no labels.
    pub fn to_stored(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| serde_json::to_string(&self.0).unwrap_or_default())
    }

    /// Reads the stored form back.
    pub fn from_stored(stored: Option<&str>) -> Result<Self, String> {
        match stored {
            None | Some("") => Ok(KeyLabels::default()),
            Some(text) => serde_json::from_str(text)
                .map(KeyLabels)
                .map_err(|e| format!("stored labels are not a JSON object of strings: {e}")),
        }
    }

    /// Whether every one of `wanted` is among these labels, with its value.
    pub fn has_all(&self, wanted: &[(String, String)]) -> bool {
        wanted
            .iter()
            .all(|(name, value)| self.0.get(name) == Some(value))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A collection of records in the report and webhook APIs: it appears in
/// URLs, so it is kept to a URL- and SQL-safe alphabet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionName(String);

impl CollectionName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        // A secret pasted into the URL (`/api/v1/reports/kps_…`) would be
        // echoed in the answer and stored with the records: refused, and
        // never repeated.
        if super::credentials::redact_credentials(raw) != raw {
            return Err(NameError(
                "the collection name looks like a Keyport secret or token, which never goes in \
                 a URL: name the collection, and send the secret only to POST /oauth/token"
                    .to_owned(),
            ));
        }
        let ok = (1..=64).contains(&raw.len())
            && raw.as_bytes()[0].is_ascii_alphanumeric()
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(CollectionName(raw.to_owned()))
        } else {
            Err(NameError(format!(
                "`{}` is not a collection name: use 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit",
                preview(raw)
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CollectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `Idempotency-Key` header of a push: printable ASCII, at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if (1..=255).contains(&raw.len()) && raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            Ok(IdempotencyKey(raw.to_owned()))
        } else {
            Err(NameError(
                "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces"
                    .to_owned(),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_refuse_sql_and_path_characters() {
        for bad in [
            "",
            "a b",
            "orders;drop",
            "../x",
            "'x'",
            "-x",
            &"a".repeat(65),
            "ü",
        ] {
            assert!(CollectionName::parse(bad).is_err(), "accepted {bad:?}");
        }
        assert!(CollectionName::parse("orders_2026-q1.v2").is_ok());
    }

    #[test]
    fn a_collection_named_like_a_secret_is_refused_without_repeating_it() {
        let secret = crate::domain::ClientSecret::generate();
        for bad in [
            secret.expose().to_owned(),
            "kpsess_abc123".to_owned(),
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".to_owned(),
        ] {
            let err = CollectionName::parse(&bad).expect_err(&bad);
            assert!(err.0.contains("looks like a Keyport secret"), "{err:?}");
            assert!(!err.0.contains(&bad), "the secret is echoed: {err:?}");
        }
        // A name that merely starts like one, inside a word, is a name.
        assert!(CollectionName::parse("mykps_orders").is_ok());
    }

    #[test]
    fn key_names_are_trimmed_and_bounded() {
        assert_eq!(
            KeyName::parse("  ERP nightly sync ").unwrap().as_str(),
            "ERP nightly sync"
        );
        assert!(KeyName::parse("   ").is_err());
        assert!(KeyName::parse(&"x".repeat(101)).is_err());
        assert!(KeyName::parse("a\u{0}b").is_err());
        assert!(KeyName::parse("a\u{7}b").is_err());
    }

    #[test]
    fn key_names_refuse_bidirectional_overrides_and_invisible_characters() {
        for bad in [
            "evil\u{202E}txt.exe",
            "\u{2066}x",
            "a\u{200B}b",
            "x\u{FEFF}",
        ] {
            assert!(KeyName::parse(bad).is_err(), "accepted {bad:?}");
        }
        assert!(KeyName::parse("Größe → Power BI 報告").is_ok());
    }

    #[test]
    fn descriptions_are_free_text_of_at_most_500_characters() {
        assert_eq!(
            KeyDescription::parse(" pulls invoices nightly ")
                .unwrap()
                .as_str(),
            "pulls invoices nightly"
        );
        assert!(KeyDescription::parse(&"é".repeat(500)).is_ok());
        assert!(KeyDescription::parse(&"é".repeat(501)).is_err());
        assert!(KeyDescription::parse("line\nbreak").is_err());
        assert!(KeyDescription::parse("a\u{202E}b").is_err());
    }

    #[test]
    fn labels_have_plain_names_printable_values_and_a_limit() {
        let labels = KeyLabels::parse(&[("env", "prod"), ("team", "finance ops")]).unwrap();
        assert_eq!(
            labels.to_stored().as_deref(),
            Some(r#"{"env":"prod","team":"finance ops"}"#)
        );
        assert_eq!(
            KeyLabels::from_stored(labels.to_stored().as_deref()).unwrap(),
            labels
        );
        assert!(labels.has_all(&[("env".into(), "prod".into())]));
        assert!(!labels.has_all(&[("env".into(), "prod".into()), ("team".into(), "x".into())]));
        assert_eq!(
            KeyLabels::parse_assignment("owner=a=b").unwrap(),
            ("owner".to_owned(), "a=b".to_owned())
        );
        for (name, value) in [
            ("Env", "prod"),
            ("", "prod"),
            ("env", ""),
            ("env", "pr\u{7}od"),
            ("env", "pr\nod"),
            ("env", "x\u{202E}y"),
            ("a b", "c"),
        ] {
            assert!(
                KeyLabels::parse(&[(name, value)]).is_err(),
                "{name:?}={value:?}"
            );
        }
        assert!(KeyLabels::parse(&[("n".repeat(33), "v")]).is_err());
        assert!(KeyLabels::parse(&[("n", "v".repeat(65))]).is_err());
        assert!(KeyLabels::parse_assignment("no-equals").is_err());
        let twice = KeyLabels::parse(&[("env", "a"), ("env", "b")]).unwrap_err();
        assert!(twice.0.contains("twice"), "{twice}");
        let eleven: Vec<(String, String)> =
            (0..11).map(|n| (format!("l{n}"), "v".into())).collect();
        assert!(
            KeyLabels::parse(&eleven)
                .unwrap_err()
                .0
                .contains("at most 10")
        );
    }

    #[test]
    fn idempotency_keys_must_be_printable_ascii() {
        assert!(IdempotencyKey::parse("order-42").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }
}
