//! Scopes: the permissions a user holds and a key or token carries.

use std::collections::BTreeSet;
use std::fmt;

pub const REPORTS_READ: &str = "reports:read";
pub const WEBHOOKS_WRITE: &str = "webhooks:write";
pub const KEYS_MANAGE: &str = "keys:manage";
/// Registers and manages outbound webhook endpoints.
pub const WEBHOOKS_MANAGE: &str = "webhooks:manage";
/// Lets a key exchange access tokens it was given (RFC 8693): granted on
/// purpose, never by default.
pub const TOKENS_EXCHANGE: &str = "tokens:exchange";

/// Administration scopes: every admin holds them, no member can. A key or
/// token carries them only when its owner is an admin and it was not narrowed.
pub const USERS_MANAGE: &str = "users:manage";
pub const TENANT_MANAGE: &str = "tenant:manage";
pub const AUDIT_READ: &str = "audit:read";
pub const ADMIN_SCOPES: [&str; 3] = [USERS_MANAGE, TENANT_MANAGE, AUDIT_READ];

/// The scopes a user can be granted one by one.
pub const GRANTABLE_SCOPES: [&str; 5] = [
    REPORTS_READ,
    WEBHOOKS_WRITE,
    KEYS_MANAGE,
    WEBHOOKS_MANAGE,
    TOKENS_EXCHANGE,
];

/// What the first admin is granted at setup: everything but exchanging
/// tokens, which is opted into.
pub const SETUP_GRANTS: [&str; 4] = [REPORTS_READ, WEBHOOKS_WRITE, KEYS_MANAGE, WEBHOOKS_MANAGE];

/// Every scope Keyport itself checks, as the metadata's `scopes_supported`.
pub const SUPPORTED_SCOPES: [&str; 8] = [
    REPORTS_READ,
    WEBHOOKS_WRITE,
    KEYS_MANAGE,
    WEBHOOKS_MANAGE,
    TOKENS_EXCHANGE,
    USERS_MANAGE,
    TENANT_MANAGE,
    AUDIT_READ,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "`{0}` is not a valid scope: use 1 to 64 characters from letters, digits, ':', '.', '_' and '-'"
    )]
    Invalid(String),
    #[error("too many scopes (at most 64)")]
    TooMany,
    /// Scopes Keyport does not define: a typo here would otherwise end up in
    /// keys and tokens that no endpoint ever honours.
    #[error("{}", unknown_message(.0))]
    Unknown(Vec<String>),
}

fn unknown_message(unknown: &[String]) -> String {
    let named: Vec<String> = unknown
        .iter()
        .map(|scope| match closest_known(scope) {
            Some(known) => format!("`{scope}` (did you mean {known}?)"),
            None => format!("`{scope}`"),
        })
        .collect();
    format!(
        "unknown scope{} {}: the scopes are {}",
        if unknown.len() == 1 { "" } else { "s" },
        named.join(", "),
        SUPPORTED_SCOPES.join(", ")
    )
}

/// The known scope `raw` was probably meant as: same letters in another
/// case, or the singular/plural of the resource.
fn closest_known(raw: &str) -> Option<&'static str> {
    let lower = raw.to_ascii_lowercase();
    let resource = |s: &str| -> String {
        let (name, action) = s.split_once(':').unwrap_or((s, ""));
        format!("{}:{action}", name.trim_end_matches('s'))
    };
    SUPPORTED_SCOPES
        .iter()
        .copied()
        .find(|known| *known == lower)
        .or_else(|| {
            SUPPORTED_SCOPES
                .iter()
                .copied()
                .find(|known| resource(known) == resource(&lower))
        })
}

/// One scope token (RFC 6749 §3.3), restricted to a conservative character set
/// so scopes are safe in headers, logs and SQL alike.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(String);

impl Scope {
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        let valid = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'));
        if valid {
            Ok(Scope(raw.to_owned()))
        } else {
            Err(ScopeError::Invalid(raw.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A set of scopes, printed space-separated as OAuth does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// Parses scopes separated by spaces or commas (the CLI takes commas, OAuth
    /// takes spaces). Duplicates collapse.
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        let mut set = BTreeSet::new();
        for part in raw.split([' ', ',']).filter(|p| !p.is_empty()) {
            set.insert(Scope::parse(part)?);
            if set.len() > 64 {
                return Err(ScopeError::TooMany);
            }
        }
        Ok(ScopeSet(set))
    }

    /// Parses scopes being granted (a user's permissions, a key's scopes, an
    /// exchange rule's scopes): like [`ScopeSet::parse`], and every scope must
    /// be one Keyport defines (scopes are case-sensitive). Stored values are
    /// read with `parse`, so rows written before this check still load.
    pub fn parse_known(raw: &str) -> Result<Self, ScopeError> {
        let set = Self::parse(raw)?;
        let unknown: Vec<String> = set
            .iter()
            .filter(|scope| !SUPPORTED_SCOPES.contains(scope))
            .map(str::to_owned)
            .collect();
        if unknown.is_empty() {
            Ok(set)
        } else {
            Err(ScopeError::Unknown(unknown))
        }
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s.0 == scope)
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.intersection(&other.0).cloned().collect())
    }

    /// The scopes of `self` that `other` lacks.
    pub fn missing_from(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.difference(&other.0).cloned().collect())
    }

    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.union(&other.0).cloned().collect())
    }

    /// The administration scopes in this set.
    pub fn admin_scopes(&self) -> ScopeSet {
        ScopeSet(
            self.0
                .iter()
                .filter(|s| ADMIN_SCOPES.contains(&s.as_str()))
                .cloned()
                .collect(),
        )
    }

    pub fn of_static(scopes: &[&str]) -> ScopeSet {
        ScopeSet(scopes.iter().map(|s| Scope((*s).to_owned())).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| s.as_str())
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_from_spaces_or_commas_and_print_with_spaces() {
        let set = ScopeSet::parse("webhooks:write,reports:read  reports:read").unwrap();
        assert_eq!(set.to_string(), "reports:read webhooks:write");
    }

    #[test]
    fn invalid_scope_characters_are_refused() {
        for bad in ["reports:read\"", "a;b", "é", "x'--", &"a".repeat(65)] {
            assert!(ScopeSet::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn only_scopes_keyport_defines_are_granted() {
        // input → the message must name
        let table = [
            ("reports:read,foo:bar", vec!["`foo:bar`"]),
            (
                "Reports:Read",
                vec!["`Reports:Read` (did you mean reports:read?)"],
            ),
            ("report:read", vec!["did you mean reports:read?"]),
            (
                "webhook:write foo",
                vec!["did you mean webhooks:write?", "`foo`"],
            ),
        ];
        for (raw, needles) in table {
            let message = ScopeSet::parse_known(raw).unwrap_err().to_string();
            for needle in needles {
                assert!(message.contains(needle), "{raw}: {message}");
            }
            assert!(
                message.contains(&SUPPORTED_SCOPES.join(", ")),
                "{raw}: lists the known scopes: {message}"
            );
        }
        let all = SUPPORTED_SCOPES.join(",");
        assert_eq!(ScopeSet::parse_known(&all).unwrap().to_vec().len(), 8);
        assert!(ScopeSet::parse_known("").unwrap().is_empty());
        // Stored values keep loading whatever they hold.
        assert!(ScopeSet::parse("foo:bar").is_ok());
    }

    #[test]
    fn subset_and_intersection_behave_as_sets() {
        let held = ScopeSet::parse("reports:read webhooks:write").unwrap();
        let asked = ScopeSet::parse("reports:read").unwrap();
        let wider = ScopeSet::parse("reports:read keys:manage").unwrap();
        assert!(asked.is_subset(&held));
        assert!(!wider.is_subset(&held));
        assert_eq!(wider.intersection(&held).to_string(), "reports:read");
        assert_eq!(wider.missing_from(&held).to_string(), "keys:manage");
    }
}
