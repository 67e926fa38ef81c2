//! Who is calling: a person's session, an API key, an access token, the
//! operator's CLI, or nobody yet (a sign-in attempt). Every service operation
//! takes one and decides from it, once, whether the call is allowed.

use std::net::IpAddr;

use super::{RateLimit, Role, ScopeSet, UnixTime};

/// The credential a call was made with. Its id is public (a client ID, a
/// session handle) and goes into audit rows; the secret never does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `keyport` on the server: allowed everything.
    Operator,
    /// The console's one-time first-run link, which the operator's log gave
    /// out: allowed to create the first company and its admin.
    SetupLink,
    /// No credential yet: sign-in and set-password requests.
    Anonymous,
    Session {
        /// A short public handle of the session (not the token).
        handle: String,
    },
    ApiKey {
        key_id: String,
        client_id: String,
        expires_at: Option<UnixTime>,
        /// The key's rate for reports and webhooks (its own or its
        /// company's default), read with the key.
        rate_limit: Option<RateLimit>,
        /// How the key proved itself on this request.
        proof: KeyProof,
    },
    /// A JWT validated offline; management operations re-check its key.
    AccessToken {
        jti: String,
        client_id: String,
        expires_at: UnixTime,
        /// The `kp_rl` claim: the key's rate when the token was issued.
        rate_limit: Option<RateLimit>,
    },
}

impl Credential {
    /// The kind, as audit rows and `whoami` name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Operator => "operator",
            Credential::SetupLink => "setup_link",
            Credential::Anonymous => "none",
            Credential::Session { .. } => "session",
            Credential::ApiKey {
                proof: KeyProof::Secret,
                ..
            } => "api_key",
            Credential::ApiKey {
                proof: KeyProof::Sigv4,
                ..
            } => "sigv4",
            Credential::AccessToken { .. } => "access_token",
        }
    }

    /// The credential's public id: a client ID or a session handle.
    pub fn id(&self) -> Option<&str> {
        match self {
            Credential::Operator | Credential::SetupLink | Credential::Anonymous => None,
            Credential::Session { handle } => Some(handle),
            Credential::ApiKey { client_id, .. } | Credential::AccessToken { client_id, .. } => {
                Some(client_id)
            }
        }
    }

    /// A key, or a token of one: it may hold fewer scopes than its owner,
    /// and never hands out more than it holds.
    pub fn is_delegated(&self) -> bool {
        matches!(
            self,
            Credential::ApiKey { .. } | Credential::AccessToken { .. }
        )
    }

    /// The key behind the call and its rate, when it has one: what the
    /// report and webhook APIs limit.
    pub fn rate_limit(&self) -> Option<(&str, RateLimit)> {
        match self {
            Credential::ApiKey {
                client_id,
                rate_limit: Some(limit),
                ..
            }
            | Credential::AccessToken {
                client_id,
                rate_limit: Some(limit),
                ..
            } => Some((client_id, *limit)),
            _ => None,
        }
    }

    /// The client ID of the key behind the call, if a key (or its token) made it.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Credential::ApiKey { client_id, .. } | Credential::AccessToken { client_id, .. } => {
                Some(client_id)
            }
            _ => None,
        }
    }
}

/// How an API key used on its own proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProof {
    /// The secret presented (`x-api-key`, `Bearer kps_…`).
    Secret,
    /// An AWS Signature Version 4 made with the secret.
    Sigv4,
}

/// The user a credential acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActingUser {
    pub user_id: String,
    pub tenant_id: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub credential: Credential,
    /// `None` for the operator and for anonymous callers.
    pub user: Option<ActingUser>,
    /// What the credential may do: a session's user permissions, a key's
    /// scopes within its owner's, a token's scopes.
    pub scopes: ScopeSet,
    /// Where the call came from (`routes::client_address`).
    pub source_address: Option<IpAddr>,
}

impl Principal {
    pub fn operator() -> Self {
        Principal {
            credential: Credential::Operator,
            user: None,
            scopes: ScopeSet::default(),
            source_address: None,
        }
    }

    pub fn anonymous(source_address: Option<IpAddr>) -> Self {
        Principal {
            credential: Credential::Anonymous,
            user: None,
            scopes: ScopeSet::default(),
            source_address,
        }
    }

    /// The operator, or the first-run link standing in for them.
    pub fn is_operator(&self) -> bool {
        matches!(
            self.credential,
            Credential::Operator | Credential::SetupLink
        )
    }

    /// The first-run setup, made through the console's one-time link.
    pub fn setup_link(source_address: Option<IpAddr>) -> Self {
        Principal {
            credential: Credential::SetupLink,
            user: None,
            scopes: ScopeSet::default(),
            source_address,
        }
    }

    pub fn tenant_id(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.tenant_id.as_str())
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.user_id.as_str())
    }

    /// Who acted, as audit rows name them: a user id, `cli` or `anonymous`.
    pub fn actor_label(&self) -> &str {
        match (&self.credential, &self.user) {
            (Credential::Operator, _) => "cli",
            (Credential::SetupLink, _) => "setup",
            (_, Some(user)) => &user.user_id,
            (_, None) => "anonymous",
        }
    }
}
