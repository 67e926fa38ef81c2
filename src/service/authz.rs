//! Turning a presented credential into a [`Principal`], and the one check
//! every management operation starts with: [`require`].

use std::net::IpAddr;

use super::clients::{self, ClientAuthError};
use super::{Result, Service, ServiceError};
use crate::domain::{
    ActingUser, Credential, KeyProof, Principal, Role, SessionToken, SourceAllowList, UserStatus,
    now,
};
use crate::storage::StorageError;
use crate::telemetry::traces;
use crate::tokens::VerifiedToken;

/// Why a presented credential is not accepted at all (before any rule).
#[derive(Debug, thiserror::Error)]
pub enum CredentialRefusal {
    /// Said to the caller as is.
    #[error("{0}")]
    Rejected(&'static str),
    #[error("too many failed attempts; retry later")]
    Throttled(std::time::Duration),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<ClientAuthError> for CredentialRefusal {
    fn from(err: ClientAuthError) -> Self {
        match err {
            ClientAuthError::Storage(err) => CredentialRefusal::Storage(err),
            ClientAuthError::Throttled(retry_after) => CredentialRefusal::Throttled(retry_after),
            ClientAuthError::BadCredentials => {
                CredentialRefusal::Rejected("the API key is not valid")
            }
            other => CredentialRefusal::Rejected(other.message()),
        }
    }
}

/// What a token of a key with an allow-list is told outside it.
const TOKEN_SOURCE_REFUSED: &str = "this token may not be used from this address";

/// An access token verified offline (signature, expiry, audience), not on
/// this instance's revocation list, and presented from an address its key's
/// allow-list (the `kp_src` claim) admits. Good enough for reading records;
/// management operations re-check it through [`require`].
pub fn access_token(
    service: &Service,
    token: VerifiedToken,
    source_address: Option<IpAddr>,
) -> Result<Principal, CredentialRefusal> {
    if service.revoked.is_revoked(&token.claims.jti) {
        return Err(CredentialRefusal::Rejected(
            "the access token has been revoked",
        ));
    }
    if !token.claims.kp_src.is_empty() {
        // Signed by Keyport, so it parses; if it did not, nothing is allowed.
        let allowed = SourceAllowList::parse(&token.claims.kp_src)
            .is_ok_and(|list| list.allows(source_address));
        if !allowed {
            return Err(CredentialRefusal::Rejected(TOKEN_SOURCE_REFUSED));
        }
    }
    let role = if token.is_admin() {
        Role::Admin
    } else {
        Role::Member
    };
    let claims = token.claims;
    Ok(Principal {
        credential: Credential::AccessToken {
            jti: claims.jti,
            client_id: claims.client_id,
            expires_at: claims.exp,
            rate_limit: claims.kp_rl,
        },
        user: Some(ActingUser {
            user_id: claims.sub,
            tenant_id: claims.tenant_id,
            role,
        }),
        scopes: token.scopes,
        source_address,
    })
}

/// The API key presented on its own, acting as its owner.
pub async fn api_key(
    service: &Service,
    secret: &str,
    address: IpAddr,
) -> Result<Principal, CredentialRefusal> {
    let key = traces::in_span(
        "client_authentication",
        clients::authenticate_secret(service, secret, address),
    )
    .await?;
    Ok(key.into_principal(Some(address), KeyProof::Secret))
}

/// A request signed with AWS Signature Version 4 by a key that allows it,
/// acting as the key's owner with the key's scopes.
pub async fn sigv4(
    service: &Service,
    request: &crate::domain::sigv4::RequestParts<'_>,
    presentation: crate::domain::sigv4::Presentation,
    address: IpAddr,
) -> Result<Principal, super::sigv4::Sigv4Refusal> {
    traces::in_span(
        "client_authentication",
        super::sigv4::authenticate(service, request, presentation, address),
    )
    .await
}

/// A person's session: their current role and permissions.
pub async fn session(
    service: &Service,
    token: &SessionToken,
    source_address: Option<IpAddr>,
) -> Result<Principal, CredentialRefusal> {
    let digest = token.digest();
    let session = service
        .store
        .find_session(&digest.to_hex(), now())
        .await?
        .ok_or(CredentialRefusal::Rejected(
            "the session expired or was signed out",
        ))?;
    if session.status != UserStatus::Active.as_str() {
        return Err(CredentialRefusal::Rejected("the user is disabled"));
    }
    let (role, scopes) = super::stored_permissions(&session.role, &session.permissions)?;
    Ok(Principal {
        credential: Credential::Session {
            handle: digest.handle(),
        },
        user: Some(ActingUser {
            user_id: session.user_id,
            tenant_id: session.tenant_id,
            role,
        }),
        scopes,
        source_address,
    })
}

/// The first step of every management operation: the principal as it stands
/// now, holding `scope`. A session or key was read from the database for
/// this request already; an access token was only verified offline, so its
/// key and owner are read now: a revoked or expired key, a disabled owner
/// or withdrawn permissions take effect at once, whatever the token says.
pub async fn require(
    service: &Service,
    principal: &Principal,
    scope: &'static str,
) -> Result<Principal> {
    let current = current(service, principal).await?;
    if current.is_operator() || current.scopes.contains(scope) {
        Ok(current)
    } else {
        Err(ServiceError::InsufficientScope(scope))
    }
}

/// For what only a key's owner may do, because what it makes acts as the
/// owner (a rolled key's new secret, a public key whose assertions
/// authenticate the key): an admin may revoke, disable or narrow a
/// colleague's key, but never make credentials that act as the colleague.
/// The operator (the CLI on the server) acts for everyone. `what` completes
/// "only a key's owner may …".
pub fn require_key_owner(principal: &Principal, owner_id: &str, what: &str) -> Result<()> {
    match principal.user_id() {
        Some(user_id) if user_id != owner_id => Err(ServiceError::Forbidden(format!(
            "only a key's owner may {what}"
        ))),
        _ => Ok(()),
    }
}

/// Reading a user: everyone reads themself; a colleague takes an admin
/// holding `scope`. `current` is what [`current`] answered for the caller.
pub fn read_user(current: &Principal, user_id: &str, scope: &'static str) -> Result<()> {
    if current.is_operator() || current.user_id() == Some(user_id) {
        return Ok(());
    }
    match &current.user {
        Some(user) if user.role != Role::Admin => Err(ServiceError::Forbidden(
            "members may read only their own user".to_owned(),
        )),
        _ if current.scopes.contains(scope) => Ok(()),
        _ => Err(ServiceError::InsufficientScope(scope)),
    }
}

/// The principal re-read from the database where it came from a token: the
/// key's status, its owner, its scopes and its allow-list as they are now.
pub async fn current(service: &Service, principal: &Principal) -> Result<Principal> {
    match &principal.credential {
        Credential::Operator
        | Credential::SetupLink
        | Credential::Session { .. }
        | Credential::ApiKey { .. } => Ok(principal.clone()),
        Credential::Anonymous => Err(ServiceError::CredentialRevoked("this needs a credential")),
        Credential::AccessToken { client_id, .. } => {
            let key = clients::current_key(&service.store, client_id)
                .await
                .map_err(|e| match e {
                    ClientAuthError::Storage(err) => ServiceError::Storage(err),
                    ClientAuthError::Revoked => ServiceError::CredentialRevoked(
                        "the key behind this token has been revoked",
                    ),
                    ClientAuthError::Disabled => {
                        ServiceError::CredentialRevoked("the key behind this token is disabled")
                    }
                    ClientAuthError::Expired => {
                        ServiceError::CredentialRevoked("the key behind this token has expired")
                    }
                    ClientAuthError::OwnerDisabled => {
                        ServiceError::CredentialRevoked("the user behind this token is disabled")
                    }
                    _ => ServiceError::CredentialRevoked("the key behind this token is not valid"),
                })?;
            if principal.user_id() != Some(key.owner_id.as_str()) {
                return Err(ServiceError::CredentialRevoked(
                    "the key behind this token is not valid",
                ));
            }
            // The key's allow-list as it is now, whatever the token carries.
            if key.check_source(principal.source_address).is_err() {
                return Err(ServiceError::CredentialRevoked(TOKEN_SOURCE_REFUSED));
            }
            let mut current = principal.clone();
            current.scopes = principal.scopes.intersection(&key.scopes);
            if let Some(user) = current.user.as_mut() {
                user.role = key.owner_role;
            }
            Ok(current)
        }
    }
}

/// Who acts, as the "same company, then admin or owner" rule sees them:
/// a signed-in or key-holding user, or the key behind a token being
/// introspected.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub role: Role,
}

impl<'a> From<&'a ActingUser> for Actor<'a> {
    fn from(user: &'a ActingUser) -> Self {
        Actor {
            tenant_id: &user.tenant_id,
            user_id: &user.user_id,
            role: user.role,
        }
    }
}

/// How far an [`Actor`] reaches over something a user of a company owns
/// (a key, a webhook endpoint, a token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Theirs, or their company's and they are an admin.
    Manages,
    /// A colleague's, and they are a member: forbidden, and they may know it
    /// exists.
    Colleagues,
    /// Another company's: it does not exist for them.
    OtherCompany,
}

/// The one rule for what belongs to a company's users: never across
/// companies; an admin reaches the whole company's; a member only their own.
pub fn reach(actor: Actor<'_>, tenant_id: &str, owner_id: &str) -> Reach {
    if actor.tenant_id != tenant_id {
        Reach::OtherCompany
    } else if actor.role == Role::Admin || actor.user_id == owner_id {
        Reach::Manages
    } else {
        Reach::Colleagues
    }
}

/// The owner whose things a listing shows: `None`, the whole company's,
/// for an admin; otherwise the actor's own. [`reach`] as a filter.
pub fn visible_owner(actor: Actor<'_>) -> Option<&str> {
    (actor.role != Role::Admin).then_some(actor.user_id)
}

/// Whose records a principal reads or writes, decided offline: reports and
/// webhooks validate tokens without the database. Borrowed from the
/// principal: a pull copies nothing.
#[derive(Debug, Clone, Copy)]
pub struct RecordAccess<'a> {
    pub tenant_id: &'a str,
    /// The user records are written as.
    pub user_id: &'a str,
    /// `None`: the whole tenant (admins); otherwise only this owner's records.
    pub visible_owner: Option<&'a str>,
    /// The key behind the call, or `session`.
    pub client_id: &'a str,
}

/// The record access `principal` has when it holds `scope`.
pub fn records<'a>(principal: &'a Principal, scope: &'static str) -> Result<RecordAccess<'a>> {
    let Some(user) = &principal.user else {
        return Err(ServiceError::Forbidden(
            "records belong to a company's users".to_owned(),
        ));
    };
    if !principal.scopes.contains(scope) {
        return Err(ServiceError::InsufficientScope(scope));
    }
    Ok(RecordAccess {
        tenant_id: &user.tenant_id,
        user_id: &user.user_id,
        visible_owner: visible_owner(user.into()),
        client_id: principal.credential.client_id().unwrap_or("session"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role) -> Actor<'static> {
        Actor {
            tenant_id: "acme",
            user_id: "ana",
            role,
        }
    }

    #[test]
    fn a_member_reaches_their_own_an_admin_their_companys_nobody_another_companys() {
        for (role, tenant, owner, expected) in [
            (Role::Member, "acme", "ana", Reach::Manages),
            (Role::Member, "acme", "bob", Reach::Colleagues),
            (Role::Member, "globex", "ana", Reach::OtherCompany),
            (Role::Admin, "acme", "ana", Reach::Manages),
            (Role::Admin, "acme", "bob", Reach::Manages),
            (Role::Admin, "globex", "bob", Reach::OtherCompany),
        ] {
            assert_eq!(
                reach(actor(role), tenant, owner),
                expected,
                "{role:?} over {tenant}/{owner}"
            );
        }
    }

    #[test]
    fn listings_show_an_admin_everyone_and_a_member_themself() {
        assert_eq!(visible_owner(actor(Role::Admin)), None);
        assert_eq!(visible_owner(actor(Role::Member)), Some("ana"));
    }
}
