//! The client credentials grant and the token lifecycle: which scopes,
//! audience, lifetime and claims a token gets (RFC 6749 §4.4, RFC 9068),
//! what introspection tells (RFC 7662) and who may revoke what (RFC 7009).

use serde::Serialize;

use super::audit::{self, Event};
use super::clients::{self, AuthenticatedKey};
use super::{Service, authz};
use crate::domain::{ClientSecret, Role, ScopeSet, SessionToken, SetPasswordToken, now};
use crate::storage::StorageError;
use crate::telemetry::traces;
use crate::tokens::{AccessTokenClaims, Confirmation, KeyRing, KeyRingError, VerifiedToken};

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{0}")]
    InvalidScope(String),
    #[error("this server issues tokens only for `{0}`")]
    InvalidTarget(String),
    /// RFC 8693 §2.2.2: an audience the exchange may not target.
    #[error("{0}")]
    ExchangeTarget(String),
    /// RFC 8693 §2.2.2: the subject or actor token is bad, expired, foreign
    /// or revoked, or no rule admits it. Says which, never what the token holds.
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnauthorizedClient(&'static str),
    #[error("{0}")]
    InvalidRequest(String),
    /// Exchanging a Keyport token needs a key that authenticated.
    #[error("client authentication is required to exchange a Keyport access token")]
    ClientRequired,
    /// RFC 7009 §2.2.1: a credential Keyport issues but does not revoke at
    /// `/oauth/revoke`; the message says what ends it instead.
    #[error("{}", .0.how_to_end())]
    UnsupportedTokenType(NotRevokedHere),
    /// RFC 9449 §5: the key requires DPoP and the request carried no proof.
    #[error("this key requires DPoP: send a DPoP proof in the DPoP header (RFC 9449)")]
    DpopRequired,
    #[error("cannot sign the token")]
    Signing(#[from] KeyRingError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A credential `/oauth/revoke` recognises by its prefix but does not end:
/// it has a way of its own, which answering 200 would hide (the caller would
/// believe it revoked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRevokedHere {
    /// An API key's secret (`kps_…`).
    ApiKeySecret,
    /// A signed-in person's session (`kpsess_…`).
    Session,
    /// A new user's one-time set-password token (`kpset_…`).
    SetPasswordToken,
}

impl NotRevokedHere {
    /// What `raw` is, if it is one of these. Only the prefix is read: the
    /// answer must not tell whether the credential is valid.
    fn of(raw: &str) -> Option<Self> {
        if ClientSecret::has_secret_prefix(raw) {
            Some(NotRevokedHere::ApiKeySecret)
        } else if SessionToken::has_prefix(raw) {
            Some(NotRevokedHere::Session)
        } else if SetPasswordToken::has_prefix(raw) {
            Some(NotRevokedHere::SetPasswordToken)
        } else {
            None
        }
    }

    fn how_to_end(self) -> &'static str {
        match self {
            NotRevokedHere::ApiKeySecret => {
                "this endpoint revokes access tokens, not API keys: revoke the key with \
                 POST /api/v1/keys/{id}/revoke or `keyport key revoke KEY`"
            }
            NotRevokedHere::Session => {
                "this endpoint revokes access tokens, not sessions: end the session with \
                 DELETE /api/v1/session, presenting it as the bearer token"
            }
            NotRevokedHere::SetPasswordToken => {
                "this endpoint revokes access tokens, not set-password tokens: one ends when \
                 it is used, after 72 hours, or when an admin disables the user"
            }
        }
    }
}

pub struct IssuedToken {
    pub access_token: String,
    /// `Bearer`, or `DPoP` for a token bound to a key (RFC 9449 §5.1).
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

/// Issues an access token for `key`: `requested` scopes may only narrow the
/// key's; `resource` (RFC 8707) must be this server's audience.
pub fn issue(
    service: &Service,
    keys: &KeyRing,
    key: &AuthenticatedKey,
    requested: Option<&str>,
    resource: Option<&str>,
) -> Result<IssuedToken, GrantError> {
    issue_bound(service, keys, key, requested, resource, None, None)
}

/// [`issue`], bound to `dpop_jkt` when the request carried a DPoP proof
/// (RFC 9449 §6.1: the thumbprint of the proof's key, checked by the
/// caller), as `cnf.jkt`; else to `certificate` when the client presented
/// one over mutual TLS (RFC 8705 §3.1), as `cnf.x5t#S256`. A key that
/// requires DPoP gets no token without one.
pub fn issue_bound(
    service: &Service,
    keys: &KeyRing,
    key: &AuthenticatedKey,
    requested: Option<&str>,
    resource: Option<&str>,
    dpop_jkt: Option<&str>,
    certificate: Option<&str>,
) -> Result<IssuedToken, GrantError> {
    if key.require_dpop && dpop_jkt.is_none() {
        return Err(GrantError::DpopRequired);
    }
    let settings = &service.settings.tokens;
    let scopes = match requested {
        None => key.scopes.clone(),
        Some(raw) => {
            let asked =
                ScopeSet::parse(raw).map_err(|e| GrantError::InvalidScope(e.to_string()))?;
            let beyond = asked.missing_from(&key.scopes);
            if !beyond.is_empty() {
                return Err(GrantError::InvalidScope(format!(
                    "the key does not hold: {beyond}"
                )));
            }
            if asked.is_empty() {
                key.scopes.clone()
            } else {
                asked
            }
        }
    };
    if scopes.is_empty() {
        return Err(GrantError::InvalidScope(
            "the key holds no scopes: its owner has no permissions it may use".to_owned(),
        ));
    }
    if let Some(resource) = resource
        && resource != settings.audience
    {
        return Err(GrantError::InvalidTarget(settings.audience.clone()));
    }
    let max_ttl = settings.max_ttl.as_secs() as i64;
    let ttl = key
        .token_ttl_seconds
        .unwrap_or(settings.default_ttl.as_secs() as i64)
        .clamp(1, max_ttl);
    sign(
        keys,
        settings,
        TokenSpec {
            sub: key.owner_id.clone(),
            client_id: key.client_id.clone(),
            tenant_id: key.tenant_id.clone(),
            role: key.owner_role,
            scopes,
            audience: settings.audience.clone(),
            ttl,
            kp_src: key.allowed_sources.to_strings(),
            kp_rl: key.rate_limit,
            act: None,
            dpop_jkt: dpop_jkt.map(str::to_owned),
            certificate: certificate.map(str::to_owned),
        },
    )
}

/// What a token says, decided by a grant.
pub(super) struct TokenSpec {
    pub sub: String,
    pub client_id: String,
    pub tenant_id: String,
    pub role: Role,
    pub scopes: ScopeSet,
    pub audience: String,
    /// Seconds, already within the server's maximum.
    pub ttl: i64,
    pub kp_src: Vec<String>,
    pub kp_rl: Option<crate::domain::RateLimit>,
    pub act: Option<crate::domain::exchange::Actor>,
    /// Bound to this key (RFC 9449 `cnf.jkt`): a DPoP token.
    pub dpop_jkt: Option<String>,
    /// Bound to this certificate (RFC 8705 `cnf.x5t#S256`), unless bound
    /// to a DPoP key: a token has one binding, and a DPoP proof is the one
    /// the client asked for explicitly.
    pub certificate: Option<String>,
}

pub(super) fn sign(
    keys: &KeyRing,
    settings: &crate::config::TokenSettings,
    spec: TokenSpec,
) -> Result<IssuedToken, GrantError> {
    let issued_at = now();
    let claims = AccessTokenClaims {
        iss: settings.issuer.clone(),
        sub: spec.sub,
        aud: spec.audience,
        exp: issued_at + spec.ttl,
        iat: issued_at,
        nbf: issued_at,
        // From the thread's CSPRNG: `Uuid::new_v4` makes a getrandom system
        // call per token.
        jti: uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string(),
        client_id: spec.client_id,
        scope: spec.scopes.to_string(),
        tenant_id: spec.tenant_id,
        roles: vec![spec.role.as_str().to_owned()],
        kp_src: spec.kp_src,
        kp_rl: spec.kp_rl,
        act: spec.act,
        cnf: match (spec.dpop_jkt, spec.certificate) {
            (Some(jkt), _) => Some(Confirmation {
                jkt: Some(jkt),
                x5t_s256: None,
            }),
            (None, Some(x5t)) => Some(Confirmation {
                jkt: None,
                x5t_s256: Some(x5t),
            }),
            (None, None) => None,
        },
    };
    let mut span = traces::Leaf::start("sign_token", traces::Kind::Internal, || {
        vec![traces::Attribute::new(
            "keyport.signing_algorithm",
            keys.algorithm().as_str(),
        )]
    });
    let access_token = keys
        .sign(&claims)
        .inspect_err(|_| span.fail("signing failed"))?;
    drop(span);
    Ok(IssuedToken {
        access_token,
        // RFC 8705 §3: a certificate-bound token is still a Bearer token.
        token_type: if claims.dpop_jkt().is_some() {
            "DPoP"
        } else {
            "Bearer"
        },
        expires_in: spec.ttl,
        scope: claims.scope,
    })
}

/// Whether `key` may see or revoke a token with these claims: never across
/// tenants; an admin's key for the whole tenant; otherwise its owner's tokens.
fn may_act_on(key: &AuthenticatedKey, claims: &AccessTokenClaims) -> bool {
    let actor = authz::Actor {
        tenant_id: &key.tenant_id,
        user_id: &key.owner_id,
        role: key.owner_role,
    };
    authz::reach(actor, &claims.tenant_id, &claims.sub) == authz::Reach::Manages
}

/// An RFC 7662 answer about an active token.
#[derive(Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(flatten)]
    pub claims: Option<AccessTokenClaims>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
}

impl Introspection {
    fn inactive() -> Self {
        Introspection {
            active: false,
            claims: None,
            token_type: None,
        }
    }
}

/// RFC 7662: what `token` is, for a key of its tenant. A token is active
/// only while it verifies, is not revoked, and the key behind it and that
/// key's owner are still live: introspection is how resource servers learn
/// about revocation, so it reads the database.
pub async fn introspect(
    service: &Service,
    key: &AuthenticatedKey,
    token: Result<VerifiedToken, crate::tokens::TokenError>,
) -> Result<Introspection, StorageError> {
    let Ok(token) = token else {
        return Ok(Introspection::inactive());
    };
    if !may_act_on(key, &token.claims) || service.revoked.is_revoked(&token.claims.jti) {
        return Ok(Introspection::inactive());
    }
    match clients::current_key(&service.store, &token.claims.client_id).await {
        Ok(_) => {}
        Err(clients::ClientAuthError::Storage(err)) => return Err(err),
        // RFC 7662 §2.2: nothing more is said about a token that is not valid.
        Err(_) => return Ok(Introspection::inactive()),
    }
    // RFC 9449 §6.2: a DPoP-bound token introspects as DPoP; RFC 8705
    // §3.2: a certificate-bound one as Bearer. Both with their `cnf`.
    let token_type = if token.claims.dpop_jkt().is_some() {
        "DPoP"
    } else {
        "Bearer"
    };
    Ok(Introspection {
        active: true,
        claims: Some(token.claims),
        token_type: Some(token_type),
    })
}

/// RFC 7009: revokes the access token `raw` if `key` may (its owner's
/// tokens; an admin's key: any token of the tenant). An API key's secret or a
/// session token is refused as `UnsupportedTokenType` (§2.2.1), without
/// checking it; anything else that is not a token `key` may revoke is
/// silently ignored, as the RFC asks.
pub async fn revoke(
    service: &Service,
    keys: &KeyRing,
    key: AuthenticatedKey,
    raw: &str,
    source_address: Option<std::net::IpAddr>,
) -> Result<(), GrantError> {
    if let Some(credential) = NotRevokedHere::of(raw) {
        return Err(GrantError::UnsupportedTokenType(credential));
    }
    let Ok(token) = keys.verifier().verify(raw) else {
        return Ok(());
    };
    if !may_act_on(&key, &token.claims) {
        return Ok(());
    }
    service
        .revoked
        .revoke(&service.store, &token.claims.jti, token.claims.exp)
        .await?;
    let principal = key.into_principal(source_address, crate::domain::KeyProof::Secret);
    audit::record(
        &service.store,
        &principal,
        Event::new("token.revoke")
            .target(&token.claims.jti)
            .detail(format!("client_id={}", token.claims.client_id)),
    )
    .await;
    Ok(())
}
