//! Names people and integrations choose: tenants, keys, collections and
//! idempotency keys.

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

/// A collection of records in the report and webhook APIs: it appears in
/// URLs, so it is kept to a URL- and SQL-safe alphabet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionName(String);

impl CollectionName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
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
    fn idempotency_keys_must_be_printable_ascii() {
        assert!(IdempotencyKey::parse("order-42").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }
}
