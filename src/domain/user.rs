//! Users: email, role and status.

use std::fmt;
use std::str::FromStr;

use super::scope::{ADMIN_SCOPES, ScopeSet};

/// A lower-cased email address; unique across Keyport because sign-in and the
/// CLI name users by email alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim().to_lowercase();
        let (local, domain) = trimmed
            .split_once('@')
            .ok_or_else(|| format!("`{}` is not an email address", shorten(raw)))?;
        let ok = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && trimmed.len() <= 254
            && !trimmed
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
            && !domain.contains('@');
        if ok {
            Ok(Email(trimmed))
        } else {
            Err(format!("`{}` is not an email address", shorten(raw)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn shorten(raw: &str) -> String {
    super::redact_credentials(raw).chars().take(80).collect()
}

/// Admins see and manage everything in their tenant; members only their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    /// What a user of this role may do with `granted` stored permissions:
    /// admins add the administration scopes, members can never hold them.
    pub fn permissions(self, granted: &ScopeSet) -> ScopeSet {
        let admin = ScopeSet::of_static(&ADMIN_SCOPES);
        match self {
            Role::Admin => granted.union(&admin),
            Role::Member => granted.missing_from(&admin),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(format!(
                "`{}` is not a role: use admin or member",
                shorten(other)
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }
}

impl FromStr for UserStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(UserStatus::Active),
            "disabled" => Ok(UserStatus::Disabled),
            other => Err(format!("`{}` is not a user status", shorten(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse(" Ana@Example.COM ").unwrap().as_str(),
            "ana@example.com"
        );
    }

    #[test]
    fn things_that_are_not_emails_are_refused() {
        for bad in [
            "",
            "ana",
            "@example.com",
            "ana@",
            "ana@example",
            "a b@x.io",
            "a@b@c.io",
        ] {
            assert!(Email::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn admins_hold_the_administration_scopes_and_members_never_do() {
        let granted = ScopeSet::parse("reports:read users:manage").unwrap();
        assert_eq!(
            Role::Admin.permissions(&granted).to_string(),
            "audit:read reports:read tenant:manage users:manage"
        );
        assert_eq!(
            Role::Member.permissions(&granted).to_string(),
            "reports:read"
        );
    }

    #[test]
    fn roles_parse_only_admin_and_member() {
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
    }
}
